"""The guard's gates on real traffic: ``guard.prometheus`` queries asked of a Prometheus server
(``GET /api/v1/query``, an instant query), each answer turned into a :class:`GateReading` for the
pure rule (``guard.rules.gate_verdict``).

Everything Prometheus says is hostile until checked: the body is read up to
:data:`MAX_BODY_BYTES` and within the check's budget, must be JSON with ``status: success`` and a
``vector`` or ``scalar`` result, and each value must parse as a number (Prometheus writes
``"NaN"``, ``"+Inf"``, ``"-Inf"`` as strings; NaN stays, and the rule calls it no data). Any
other answer is a reading with an ``error``, which the rule reports and never counts as a breach.

The answer format: https://prometheus.io/docs/prometheus/latest/querying/api/#instant-queries
("resultType": "matrix" | "vector" | "scalar" | "string"; a sample's value is
``[<unix_time>, "<sample_value>"]``; an error answer is ``{"status": "error", "errorType": ...,
"error": ...}`` with a 4xx/5xx status).
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import Any

import httpx

from gx10slots.config import GateQuery, PrometheusConfig
from gx10slots.errors import excerpt
from gx10slots.guard.rules import GateReading

# An instant query for a gate answers a few series; a bigger body is not such an answer.
MAX_BODY_BYTES = 1024 * 1024
# More series than this are judged on the first ones only (the body bound keeps it small anyway).
MAX_SERIES = 1000
# Below this much budget a query is not worth asking.
MIN_QUERY_S = 0.05
USER_AGENT = "gx10slots-guard"


class PrometheusGates:
    """Asks every ``guard.prometheus`` query once per check, all within the configured budget."""

    def __init__(
        self,
        config: PrometheusConfig,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Any = time.monotonic,
    ) -> None:
        assert config.url is not None
        self.config = config
        self._clock = clock
        self._client = httpx.Client(
            base_url=config.url,
            transport=transport,
            follow_redirects=False,
            headers={"Accept": "application/json", "User-Agent": USER_AGENT},
        )

    def close(self) -> None:
        self._client.close()

    def read(self) -> tuple[GateReading, ...]:
        deadline = self._clock() + self.config.timeout_s
        readings: list[GateReading] = []
        for gate in self.config.queries:
            left = deadline - self._clock()
            if left < MIN_QUERY_S:
                readings.append(
                    GateReading(
                        gate,
                        error=f"not asked: the check's {self.config.timeout_s:g} s for queries "
                        "ran out",
                    )
                )
                continue
            readings.append(self.query(gate, left))
        return tuple(readings)

    def query(self, gate: GateQuery, timeout_s: float) -> GateReading:
        deadline = self._clock() + timeout_s
        # Prometheus stops evaluating at its own `timeout` too, so a heavy query costs it nothing
        # after we have given up. Its durations take no fractions ("1.5s" is refused): whole ms.
        params = {"query": gate.query, "timeout": f"{max(int(timeout_s * 1000), 1)}ms"}
        try:
            with self._client.stream(
                "GET", "/api/v1/query", params=params, timeout=httpx.Timeout(timeout_s)
            ) as response:
                status = response.status_code
                body = bytearray()
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        return GateReading(gate, error=f"answer larger than {MAX_BODY_BYTES} bytes")
                    if self._clock() > deadline:
                        return GateReading(gate, error=f"no full answer within {timeout_s:.1f} s")
        except httpx.TimeoutException:
            return GateReading(gate, error=f"no answer within {timeout_s:.1f} s")
        except httpx.HTTPError as exc:
            return GateReading(gate, error=f"cannot reach Prometheus ({type(exc).__name__})")
        return parse_answer(gate, status, bytes(body))


def parse_answer(gate: GateQuery, status: int, body: bytes) -> GateReading:
    """An instant query's HTTP answer as a reading (pure: the hostile-answer tests use it)."""
    try:
        doc: Any = json.loads(body)
    except ValueError:
        doc = None
    if isinstance(doc, Mapping) and doc.get("status") == "error":
        error_type = excerpt(str(doc.get("errorType") or "error"), 40)
        return GateReading(
            gate,
            error=f"Prometheus refused the query: {error_type}: {excerpt(str(doc.get('error')))}",
        )
    if status != 200:
        return GateReading(gate, error=f"HTTP {status}: {excerpt(body)}")
    if not isinstance(doc, Mapping):
        return GateReading(gate, error=f"not a JSON object: {excerpt(body, 80)}")
    data = doc.get("data")
    if doc.get("status") != "success" or not isinstance(data, Mapping):
        return GateReading(gate, error="not a successful query answer (no status: success, data)")
    kind = data.get("resultType")
    result = data.get("result")
    if kind == "scalar":
        value = _sample_value(result)
        if value is None:
            return GateReading(gate, error="a scalar without a numeric value")
        return GateReading(gate, (value,))
    if kind != "vector":
        return GateReading(
            gate,
            error=f"a {excerpt(str(kind), 20)} answer where a vector or a scalar was expected "
            "(an instant query, such as sum(rate(x[1m])))",
        )
    if not isinstance(result, list):
        return GateReading(gate, error="a vector answer without a list of samples")
    values: list[float] = []
    for sample in result[:MAX_SERIES]:
        value = _sample_value(sample.get("value") if isinstance(sample, Mapping) else None)
        if value is None:
            return GateReading(gate, error="a vector sample without a numeric value")
        values.append(value)
    return GateReading(gate, tuple(values))


def _sample_value(pair: Any) -> float | None:
    """``[<unix_time>, "<value>"]`` -> the value (NaN and ±Inf included), or None."""
    if not isinstance(pair, list) or len(pair) != 2 or not isinstance(pair[1], str):
        return None
    try:
        return float(pair[1])
    except ValueError:
        return None
