"""Gates on real traffic through a real Prometheus (Debian's package) scraping a fake API that
exports ``ai_ir_failures_total``: the client reads what Prometheus computes, and `slots guard`
flips back when the API's failure rate rises while the probes still pass."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from gx10slots.config import GateQuery, PrometheusConfig
from gx10slots.guard.prometheus import PrometheusGates
from gx10slots.guard.rules import gate_verdict
from tests.e2e.conftest import Sandbox, wait_for
from tests.prometheus_server import FakeApi, Prometheus, fake_api, prometheus
from tests.webhook_receiver import receiver

pytestmark = pytest.mark.e2e

# rate() over five 1 s scrapes: follows a change within a few seconds.
ERRORS = GateQuery("errors", "sum(rate(ai_ir_failures_total[5s]))", max=0.5)
MISSING = GateQuery("missing", "sum(rate(ai_ir_timeouts_total[5s]))", max=0.5)


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with fake_api() as server:
        yield server


@pytest.fixture
def prom(tmp_path: Path, api: FakeApi) -> Iterator[Prometheus]:
    with prometheus(tmp_path / "prometheus", [api.target]) as server:
        # Data for the rate: at least two scrapes of the fake API.
        server.wait_for(
            "count_over_time(ai_ir_failures_total[1m])", lambda v: bool(v) and v[0] >= 2
        )
        yield server


def test_the_client_reads_a_rising_failure_rate_and_reports_no_data(
    api: FakeApi, prom: Prometheus
) -> None:
    gates = PrometheusGates(PrometheusConfig(prom.url, (ERRORS, MISSING), 5.0))
    errors, missing = gates.read()
    assert gate_verdict(errors) == ("ok", "gate errors: 0")
    assert gate_verdict(missing) == ("no-data", "gate missing: no data (empty result)")

    api.set_failure_rate(3.0)
    # Prometheus sees it within a few scrapes; so does the gate, read the same way as the guard.
    prom.wait_for(ERRORS.query, lambda v: bool(v) and v[0] > 0.5)  # ERRORS.max
    [errors] = PrometheusGates(PrometheusConfig(prom.url, (ERRORS,), 5.0)).read()
    state, detail = gate_verdict(errors)
    assert state == "breach"
    assert detail.startswith("gate errors: ") and "above max 0.5" in detail


def test_the_guard_flips_back_when_the_api_failure_rate_rises_while_probes_pass(
    two_warm_slots: Sandbox, api: FakeApi, tmp_path: Path
) -> None:
    box = two_warm_slots
    # Prometheus scrapes the fake API and both slots' model servers (vLLM's metric names).
    slots = [httpx.URL(box.info["slots"][slot]) for slot in ("blue", "green")]
    targets = [api.target, *(f"{url.host}:{url.port}" for url in slots)]
    with prometheus(tmp_path / "prometheus", targets) as prom, receiver() as team:
        prom.wait_for("count_over_time(ai_ir_failures_total[1m])", lambda v: bool(v) and v[0] >= 2)
        prom.wait_for("count(vllm:num_requests_waiting)", lambda v: v == [2.0])
        box.set_config(
            "guard",
            interval="1s",
            failures=2,
            prometheus={
                "url": prom.url,
                "timeout": "2s",
                "queries": [
                    {"name": ERRORS.name, "query": ERRORS.query, "max": ERRORS.max},
                    {"name": "queue", "query": "max(vllm:num_requests_waiting)", "max": 50},
                ],
            },
        )
        box.set_config("notify", webhooks=[{"url": team.url}])
        guard = box.spawn("-o", "json", "flip", "--guard", "90s")
        try:
            # The flip is done (and told) before the guard's first check.
            wait_for(lambda: "flip" in team.events(), timeout=60, what="the flip notification")
            assert box.flag() == "green"
            api.set_failure_rate(3.0)  # the clients' requests start failing through the API
            out, err = guard.communicate(timeout=120)
        finally:
            if guard.poll() is None:
                guard.kill()
                guard.communicate()
        assert guard.returncode == 1, err
        assert box.answering_slot() == "blue"
        assert team.events() == ["flip", "auto-revert"]
    doc = json.loads(out)
    assert doc["guard"]["result"] == "tripped"
    streak = doc["guard"]["evidence"]
    assert len(streak) == 2
    for check in streak:
        assert check["probe"]["passed"]  # the slot's own probes kept answering
        assert [g["state"] for g in check["gates"]] == ["breach", "ok"]
        assert any(r.startswith("gate errors: ") and "above max 0.5" in r for r in check["reasons"])
    [entry, *_] = box.history()
    assert (entry["action"], entry["from"], entry["to"]) == ("auto-revert", "green", "blue")
    assert "gate errors" in entry["reason"]
    revert = team.bodies("auto-revert")[0]
    assert revert["text"].startswith("[gx10] production automatically reverted green → blue")
    assert team.url not in out + err
