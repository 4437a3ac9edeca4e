"""A real Prometheus for tests (Debian's ``prometheus`` package, /usr/bin/prometheus, which
scripts/test.sh installs), scraping a small fake inference API on 127.0.0.1 that exports
``ai_ir_failures_total`` and ``ai_ir_requests_total`` through prometheus-client.

The fake API's counters are functions of time: a test sets a failure rate, and every scrape sees
the counter grown by rate x elapsed time, exactly as an API failing that many requests per second
would count them, with no thread incrementing anything. Prometheus scrapes every second, so a
``rate(...[5s])`` follows a change within a few seconds; tests wait for it by polling the
Prometheus API, never by sleeping a guessed time.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from prometheus_client import start_http_server
from prometheus_client.core import CollectorRegistry, CounterMetricFamily, Metric
from prometheus_client.registry import Collector

PROMETHEUS = "/usr/bin/prometheus"
SCRAPE_INTERVAL = "1s"
READY_TIMEOUT_S = 60.0


class _RateCounters(Collector):
    """Counters that grow at a settable rate (per second), read at scrape time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._since = time.monotonic()
        self._failures = 0.0
        self._requests = 0.0
        self.failure_rate = 0.0
        self.request_rate = 10.0

    def _advance(self) -> None:
        now = time.monotonic()
        elapsed, self._since = now - self._since, now
        self._failures += self.failure_rate * elapsed
        self._requests += self.request_rate * elapsed

    def set_failure_rate(self, per_s: float) -> None:
        with self._lock:
            self._advance()
            self.failure_rate = per_s

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            self._advance()
            failures, requests = self._failures, self._requests
        yield CounterMetricFamily(
            "ai_ir_failures", "Failed inference requests (fake API).", value=failures
        )
        yield CounterMetricFamily(
            "ai_ir_requests", "Inference requests (fake API).", value=requests
        )


@dataclass
class FakeApi:
    port: int
    counters: _RateCounters

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def set_failure_rate(self, per_s: float) -> None:
        self.counters.set_failure_rate(per_s)


@contextmanager
def fake_api() -> Iterator[FakeApi]:
    registry = CollectorRegistry()
    counters = _RateCounters()
    registry.register(counters)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        yield FakeApi(server.server_address[1], counters)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Prometheus:
    url: str
    process: subprocess.Popen[bytes]

    def query(self, promql: str) -> dict[str, Any]:
        response = httpx.get(f"{self.url}/api/v1/query", params={"query": promql}, timeout=5)
        response.raise_for_status()
        return dict(response.json()["data"])

    def wait_for(
        self, promql: str, predicate: Callable[[list[float]], bool], timeout: float = 30.0
    ) -> list[float]:
        """Poll an instant query until its values satisfy ``predicate``; the values."""
        deadline = time.monotonic() + timeout
        values: list[float] = []
        while time.monotonic() < deadline:
            data = self.query(promql)
            values = [float(s["value"][1]) for s in data["result"]]
            if predicate(values):
                return values
            time.sleep(0.2)  # the next poll of the API, not a guess at when data arrives
        raise AssertionError(f"{promql} never satisfied the test (last values {values})")


@contextmanager
def prometheus(directory: Path, targets: list[str]) -> Iterator[Prometheus]:
    """Prometheus on 127.0.0.1 scraping ``targets`` every second, storage in ``directory``."""
    assert shutil.which(PROMETHEUS) or Path(PROMETHEUS).exists(), (
        f"{PROMETHEUS} is missing: scripts/test.sh installs Debian's prometheus package"
    )
    directory.mkdir(parents=True, exist_ok=True)
    config = directory / "prometheus.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": SCRAPE_INTERVAL, "evaluation_interval": "1s"},
                "scrape_configs": [{"job_name": "gx10", "static_configs": [{"targets": targets}]}],
            }
        )
    )
    port = _free_port()
    log = (directory / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            PROMETHEUS,
            f"--config.file={config}",
            f"--storage.tsdb.path={directory / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Prometheus(f"http://127.0.0.1:{port}", process)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise AssertionError(
                    f"prometheus exited with {process.returncode}: "
                    + (directory / "prometheus.log").read_text(errors="replace")[-2000:]
                )
            try:
                if httpx.get(f"{server.url}/-/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("prometheus did not become ready")
            time.sleep(0.1)  # polling readiness with a deadline
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
