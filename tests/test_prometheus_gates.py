"""The guard's gates on real traffic, without a Prometheus: the threshold rule (pure) and the
client's handling of hostile answers (bodies as a misbehaving server would send them)."""

from __future__ import annotations

import json
import math
import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from gx10slots.config import GateQuery, PrometheusConfig, parse_config
from gx10slots.errors import ConfigError
from gx10slots.guard.prometheus import MAX_BODY_BYTES, PrometheusGates, parse_answer
from gx10slots.guard.rules import GateReading, Share, gate_verdict, judge_check
from gx10slots.smoke.live import Observation
from tests.test_config import valid
from tests.test_guardrules import SETTINGS

ERRORS = GateQuery("errors", "sum(rate(ai_ir_failures_total[1m]))", max=0.1)
THROUGHPUT = GateQuery("throughput", "sum(rate(ai_ir_requests_total[1m]))", min=1.0)
BAND = GateQuery("band", "x", max=10.0, min=2.0)
OK = Observation(True, "answered", ttft_ms=50.0, stall="progressing")


# -- the rule ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("gate", "values", "state", "detail"),
    [
        (ERRORS, (0.02,), "ok", "gate errors: 0.02"),
        (ERRORS, (0.1,), "ok", "gate errors: 0.1"),  # at the threshold is not above it
        (
            ERRORS,
            (0.5,),
            "breach",
            "gate errors: 0.5 above max 0.1 (sum(rate(ai_ir_failures_total[1m])))",
        ),
        (ERRORS, (math.inf,), "breach", "gate errors: inf above max 0.1"),
        (ERRORS, (0.01, 0.3, math.nan), "breach", "gate errors: 0.3 above max 0.1"),
        (ERRORS, (), "no-data", "gate errors: no data (empty result)"),
        (ERRORS, (math.nan,), "no-data", "gate errors: no data (NaN)"),
        (THROUGHPUT, (0.2,), "breach", "gate throughput: 0.2 below min 1"),
        (THROUGHPUT, (5.0, 7.0), "ok", "gate throughput: 5 to 7 over 2 series"),
        (BAND, (11.0,), "breach", "gate band: 11 above max 10"),
        (BAND, (1.0,), "breach", "gate band: 1 below min 2"),
        (BAND, (5.0,), "ok", "gate band: 5"),
    ],
)
def test_the_threshold_rule(
    gate: GateQuery, values: tuple[float, ...], state: str, detail: str
) -> None:
    got_state, got_detail = gate_verdict(GateReading(gate, values))
    assert got_state == state
    assert got_detail.startswith(detail)


def test_only_a_breach_fails_the_check() -> None:
    readings = [
        GateReading(ERRORS, (0.5,)),
        GateReading(THROUGHPUT, ()),
        GateReading(BAND, error="no answer within 5.0 s"),
    ]
    reasons = judge_check(OK, Share(0, 5), SETTINGS, None, readings)
    assert reasons == ["gate errors: 0.5 above max 0.1 (sum(rate(ai_ir_failures_total[1m])))"]
    assert judge_check(OK, Share(0, 5), SETTINGS, None, readings[1:]) == []
    state, detail = gate_verdict(readings[2])
    assert state == "unavailable"
    assert detail == "gate band: no usable answer from Prometheus (no answer within 5.0 s)"


def test_a_reading_is_json_even_with_nan_and_infinity() -> None:
    doc = GateReading(ERRORS, (math.nan, math.inf, 0.5)).to_dict()
    assert json.loads(json.dumps(doc, allow_nan=False))["values"] == ["nan", "inf", 0.5]


# -- hostile answers -----------------------------------------------------------------------------


def vector(*values: Any) -> bytes:
    result = [
        {"metric": {"pod": f"p{i}"}, "value": [1700000000.0, v]} for i, v in enumerate(values)
    ]
    return json.dumps(
        {"status": "success", "data": {"resultType": "vector", "result": result}}
    ).encode()


@pytest.mark.parametrize(
    ("status", "body", "values", "error"),
    [
        (200, vector("0.25"), (0.25,), None),
        (200, vector("0.25", "3"), (0.25, 3.0), None),
        (200, vector(), (), None),
        (200, vector("+Inf"), (math.inf,), None),
        (
            200,
            b'{"status":"success","data":{"resultType":"scalar","result":[1700000000,"7"]}}',
            (7.0,),
            None,
        ),
        (200, vector(0.25), (), "a vector sample without a numeric value"),
        (200, vector("lots"), (), "a vector sample without a numeric value"),
        (
            200,
            b'{"status":"success","data":{"resultType":"matrix","result":[]}}',
            (),
            "a matrix answer where a vector or a scalar was expected",
        ),
        (
            200,
            b'{"status":"success","data":{"resultType":"string","result":[1,"x"]}}',
            (),
            "a string answer where a vector or a scalar was expected",
        ),
        (
            400,
            b'{"status":"error","errorType":"bad_data","error":"parse error at char 5"}',
            (),
            "Prometheus refused the query: bad_data: parse error at char 5",
        ),
        (502, b"<html>Bad Gateway</html>", (), "HTTP 502: <html>Bad Gateway</html>"),
        (200, b"<html>login</html>", (), "not a JSON object: <html>login</html>"),
        (200, b"[1, 2]", (), "not a JSON object"),
        (200, b'{"status":"success"}', (), "not a successful query answer"),
        (
            200,
            b'{"status":"success","data":{"resultType":"vector","result":{}}}',
            (),
            "a vector answer without a list of samples",
        ),
        (200, b'{"status":"success","data":{"resultType":"scalar","result":"7"}}', (), "a scalar"),
    ],
)
def test_hostile_answers_become_readings_never_crashes(
    status: int, body: bytes, values: tuple[float, ...], error: str | None
) -> None:
    reading = parse_answer(ERRORS, status, body)
    if error is None:
        assert reading.error is None
        assert reading.values == values
    else:
        assert reading.error is not None and reading.error.startswith(error)
        assert gate_verdict(reading)[0] == "unavailable"


def gates(handler: Any, *queries: GateQuery, timeout_s: float = 2.0) -> PrometheusGates:
    config = PrometheusConfig("http://prometheus.test:9090", queries or (ERRORS,), timeout_s)
    return PrometheusGates(config, transport=httpx.MockTransport(handler))


def test_the_query_is_an_instant_query_with_its_own_timeout() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, content=vector("0.01"))

    [reading] = gates(handler).read()
    assert reading.values == (0.01,)
    [request] = seen
    assert request.method == "GET" and request.url.path == "/api/v1/query"
    assert request.url.params["query"] == ERRORS.query
    # What is left of the 2 s budget, in whole milliseconds: Prometheus refuses "1.999s".
    timeout = request.url.params["timeout"]
    assert timeout.endswith("ms") and 1000 < int(timeout.removesuffix("ms")) <= 2000


def test_an_oversized_body_is_not_read_to_the_end() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=b"[" + b"0," * MAX_BODY_BYTES + b"0]")

    [reading] = gates(handler).read()
    assert reading.error == f"answer larger than {MAX_BODY_BYTES} bytes"


def test_transport_failures_are_readings() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    [reading] = gates(refuse).read()
    assert reading.error == "cannot reach Prometheus (ConnectError)"


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A real socket that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        yield server.getsockname()[1]


def test_a_silent_prometheus_costs_the_budget_once_for_all_queries(silent_port: int) -> None:
    config = PrometheusConfig(f"http://127.0.0.1:{silent_port}", (ERRORS, THROUGHPUT), 0.5)
    first, second = PrometheusGates(config).read()
    assert first.error is not None and first.error.startswith("no answer within 0.5 s")
    # The first query took the whole budget: the second is not asked at all.
    assert second.error == "not asked: the check's 0.5 s for queries ran out"


# -- the config ----------------------------------------------------------------------------------


def prometheus(**section: Any) -> dict[str, Any]:
    return {**valid(), "guard": {"prometheus": section}}


def test_the_config_section() -> None:
    config = parse_config(
        prometheus(
            url="http://prometheus:9090/",
            queries=[{"name": "errors", "query": ERRORS.query, "max": 0.1}],
        )
    )
    assert config.guard.prometheus == PrometheusConfig("http://prometheus:9090", (ERRORS,), 2.0)
    assert parse_config(valid()).guard.prometheus.url is None  # no gates by default


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"url": "http://p"}, "guard.prometheus.queries: is required with url"),
        ({"queries": [{"name": "e", "query": "x", "max": 1}]}, "guard.prometheus.url: is required"),
        (
            {"url": "http://p", "queries": [{"name": "e", "query": "x"}]},
            "guard.prometheus.queries[0]: expected a threshold",
        ),
        (
            {"url": "http://p", "queries": [{"name": "e", "query": "x", "max": 1, "min": 2}]},
            "guard.prometheus.queries[0].min: expected at most max (1), got 2",
        ),
        (
            {
                "url": "http://p",
                "queries": [
                    {"name": "e", "query": "x", "max": 1},
                    {"name": "e", "query": "y", "max": 1},
                ],
            },
            "guard.prometheus.queries[1].name: 'e' is used by another query",
        ),
        (
            {"url": "http://p", "queries": [{"name": "e", "query": "x", "max": ".nan"}]},
            "guard.prometheus.queries[0].max: expected a number",
        ),
        ({"url": "http://p", "queries": "sum(x)"}, "guard.prometheus.queries: expected a list"),
    ],
)
def test_config_mistakes(section: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(prometheus(**section))
    assert message in info.value.message
