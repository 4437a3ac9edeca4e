"""Hostile engines on real sockets: the gaps tests/smoke (httpx.MockTransport) leaves.

A mock transport cannot show what a real peer can do to a client: accept a connection and never
say a word, answer headers and then trickle a byte at a time (every single read succeeds, so a
per-read timeout never fires), stream without end at full speed, close in the middle of a body,
speak something that is not HTTP. Each must end in a failed probe within the probe's own timeout,
with memory bounded, and nothing escaping as an exception; through the CLI, exit 1 and a report.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest

from gx10slots.smoke.profiles import VLLM
from gx10slots.smoke.settings import SuiteSettings
from gx10slots.smoke.suite import run_suite
from tests.helpers.hostile import (
    Behaviour,
    cut_mid_body,
    endless,
    endless_stream,
    hostile,
    not_http,
    reset,
    silent,
    trickle,
)
from tests.helpers.sandbox import Sandbox

PROBE_TIMEOUT_S = 1.0
CASES = {
    "accepts-and-never-answers": silent,
    "trickles-a-byte-at-a-time": trickle,
    "endless-body": endless,
    "endless-event-stream": endless_stream,
    "closes-mid-body": cut_mid_body,
    "not-http": not_http,
    "connection-reset": reset,
}


@pytest.mark.parametrize("behaviour", list(CASES.values()), ids=list(CASES))
def test_every_probe_fails_cleanly_in_time_with_memory_bounded(behaviour: Behaviour) -> None:
    settings = SuiteSettings(
        probes=("readiness", "identity", "known-answer", "streaming", "burst"),
        probe_timeout_s=PROBE_TIMEOUT_S,
        timeouts={"readiness": PROBE_TIMEOUT_S, "identity": PROBE_TIMEOUT_S},
        deadline_s=8.0,
        burst=4,
    )
    with hostile(behaviour) as endpoint:
        tracemalloc.start()
        started = time.monotonic()
        try:
            report = run_suite(endpoint, "m", VLLM, settings)
            elapsed = time.monotonic() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert not report.passed
    failed = [p for p in report.probes if not p.passed and not p.skipped]
    assert failed, report.probes
    # Readiness waits out its own timeout, the rest are cut short or bounded by theirs.
    assert elapsed < settings.deadline_s + 2, elapsed
    assert peak < 16 * 1024 * 1024, f"peak {peak / 2**20:.1f} MiB"
    for probe in report.probes:
        assert "Traceback" not in probe.detail and len(probe.detail) < 1000


@pytest.mark.parametrize(
    "behaviour", [silent, trickle, endless], ids=["silent", "trickle", "endless"]
)
def test_each_generation_probe_alone_respects_its_timeout(behaviour: Behaviour) -> None:
    # Skipping readiness makes every generation probe meet the hostile peer itself.
    for probe in ("known-answer", "streaming", "structured-output"):
        settings = SuiteSettings(
            probes=(probe,),
            probe_timeout_s=PROBE_TIMEOUT_S,
            deadline_s=10,
            structured_output=True,
        )
        with hostile(behaviour) as endpoint:
            started = time.monotonic()
            report = run_suite(endpoint, "m", VLLM, settings)
            elapsed = time.monotonic() - started
        assert not report.passed
        assert elapsed < PROBE_TIMEOUT_S + 1.5, (probe, elapsed, report.probes[0].detail)


@pytest.mark.e2e
def test_slots_smoke_against_a_silent_engine_exits_1_with_a_report(sandbox: Sandbox) -> None:
    with hostile(silent) as endpoint:
        sandbox.set_endpoint("blue", endpoint)
        sandbox.set_smoke(probe_timeout="1s", deadline="10s")
        started = time.monotonic()
        result = sandbox.cli("-o", "json", "smoke", "blue")
        elapsed = time.monotonic() - started
    assert result.code == 1, result.err
    assert elapsed < 15
    doc = result.json()
    assert doc["passed"] is False and doc["reports"]
    assert "Traceback" not in result.err
