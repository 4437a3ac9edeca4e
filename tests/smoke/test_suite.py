"""The whole suite: order, gating, deadlines, the summary, the baseline, secrets."""

from __future__ import annotations

import dataclasses
import json
import time
import xml.etree.ElementTree as ET

import httpx
import pytest

from gx10slots.smoke import probes as probes_module
from gx10slots.smoke import suite as suite_module
from gx10slots.smoke.profiles import VLLM
from gx10slots.smoke.report import Report, Summary
from gx10slots.smoke.result import ProbeResult
from gx10slots.smoke.settings import PROBE_NAMES, SuiteSettings
from gx10slots.smoke.suite import run_suite
from tests.helpers.engines import BASE, FAST, FakeEngine, hang_forever

TOOLS = dataclasses.replace(FAST, tool_call=True)


def run(engine, settings: SuiteSettings = TOOLS, **kw) -> Report:
    return run_suite(BASE, "m", VLLM, settings, transport=httpx.MockTransport(engine), **kw)


def by_name(report: Report) -> dict[str, ProbeResult]:
    return {p.name: p for p in report.probes}


def test_a_healthy_engine_passes_every_probe_in_order() -> None:
    seen: list[str] = []
    report = run(
        FakeEngine(), slot="green", revision="rev-7", on_probe=lambda r: seen.append(r.name)
    )
    assert report.passed, [(p.name, p.detail) for p in report.probes if not p.passed]
    assert [p.name for p in report.probes] == list(PROBE_NAMES)
    assert seen == list(PROBE_NAMES)
    results = by_name(report)
    assert (
        results["baseline"].skipped and results["baseline"].detail == "skipped: no baseline report"
    )
    assert not any(p.skipped for p in report.probes if p.name != "baseline")
    assert report.slot == "green" and report.revision == "rev-7" and report.model == "m"
    s = report.summary
    assert s.failures == 0 and s.ttft_ms_p50 > 0 and s.tokens_per_s > 0
    assert s.requests >= 1 + 1 + 1 + FAST.burst  # known-answer, streaming, tool-call, burst
    assert report.finished_at >= report.started_at


def test_engine_not_ready_skips_the_rest_without_waiting() -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    settings = dataclasses.replace(TOOLS, timeouts={"readiness": 0.2})
    started = time.monotonic()
    report = run(refuse, settings)
    assert time.monotonic() - started < 2.0
    assert not report.passed
    results = by_name(report)
    assert not results["readiness"].passed and not results["readiness"].skipped
    assert "Connection refused" in results["readiness"].detail
    for name in PROBE_NAMES[1:]:
        assert results[name].skipped and not results[name].passed
        assert results[name].detail == "not run: engine not ready"
    assert report.summary.failures == 1


def test_a_wedge_fails_known_answer_and_the_stall_check_flags_it() -> None:
    engine = FakeEngine()
    engine.running = 1  # the hung request is "running" on the engine
    engine.routes["/v1/chat/completions"] = hang_forever
    settings = dataclasses.replace(TOOLS, probe_timeout_s=0.2)
    started = time.monotonic()
    report = run(engine, settings)
    assert time.monotonic() - started < 3.0
    results = by_name(report)
    assert results["readiness"].passed and results["identity"].passed  # /health lies
    assert results["known-answer"].detail == "timed out after 0.2 s waiting for the answer"
    for name in ("streaming", "tool-call", "burst"):
        assert results[name].detail == "not run: known-answer timed out; the engine looks wedged"
    assert results["progress"].detail.startswith("stall: vllm:num_requests_running stayed at 1")
    assert report.summary.failures == 2


def test_the_suite_deadline_bounds_everything() -> None:
    engine = FakeEngine()
    engine.routes["/v1/chat/completions"] = hang_forever
    settings = dataclasses.replace(TOOLS, deadline_s=0.3, probe_timeout_s=5.0)
    started = time.monotonic()
    report = run(engine, settings)
    assert time.monotonic() - started < 2.0
    results = by_name(report)
    assert results["known-answer"].detail.endswith("(suite deadline of 0.3 s)")
    assert results["progress"].detail.startswith("not run: the suite deadline of 0.3 s")


def test_tool_call_is_not_applicable_unless_enabled() -> None:
    report = run(FakeEngine(), FAST)
    tool = by_name(report)["tool-call"]
    assert tool.passed and tool.skipped
    assert tool.detail == "skipped: tool calls are not enabled (smoke tool_call)"


def test_only_the_chosen_probes_run() -> None:
    settings = dataclasses.replace(FAST, probes=("readiness", "known-answer"))
    report = run(FakeEngine(), settings)
    assert [p.name for p in report.probes] == ["readiness", "known-answer"]


def test_a_crashing_probe_becomes_a_failed_result(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(ctx, timeout):
        raise KeyError("surprise")

    monkeypatch.setitem(suite_module._PROBES, "identity", broken)
    report = run(FakeEngine())
    identity = by_name(report)["identity"]
    assert identity.detail == "internal error in the identity probe: KeyError: 'surprise'"
    assert by_name(report)["known-answer"].passed  # the suite went on


def _baseline(ttft_p95: float, tokens_per_s: float, passed: bool = True) -> Report:
    healthy = run(FakeEngine(), FAST)
    return dataclasses.replace(
        healthy,
        passed=passed,
        summary=Summary(ttft_ms_p50=ttft_p95, ttft_ms_p95=ttft_p95, tokens_per_s=tokens_per_s),
    )


def test_baseline_passes_against_a_similar_run() -> None:
    report = run(FakeEngine(), FAST, baseline=_baseline(ttft_p95=10_000.0, tokens_per_s=1.0))
    baseline = by_name(report)["baseline"]
    assert baseline.passed and not baseline.skipped, baseline.detail
    assert baseline.metrics["baseline_tokens_per_s"] == 1.0


def test_baseline_fails_below_the_ratio() -> None:
    report = run(FakeEngine(), FAST, baseline=_baseline(ttft_p95=0.001, tokens_per_s=1e9))
    baseline = by_name(report)["baseline"]
    assert not baseline.passed
    assert "TTFT p95" in baseline.detail and "tokens/s is below 0.7 x baseline" in baseline.detail
    assert not report.passed and report.summary.failures == 1


def test_a_failed_baseline_report_is_not_compared() -> None:
    report = run(FakeEngine(), FAST, baseline=_baseline(0.001, 1e9, passed=False))
    baseline = by_name(report)["baseline"]
    assert baseline.skipped and baseline.passed and "did not pass" in baseline.detail


def test_the_api_key_is_sent_but_never_reported() -> None:
    key = "sk-very-secret-key-12345"
    engine = FakeEngine()

    # A hostile engine that echoes the Authorization header everywhere it can.
    async def echo_chat(request: httpx.Request) -> httpx.Response:
        auth = request.headers["authorization"]
        return httpx.Response(400, json={"error": {"message": f"bad header {auth}"}})

    async def echo_models(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [{"id": request.headers["authorization"]}]})

    engine.routes["/v1/chat/completions"] = echo_chat
    engine.routes["/v1/models"] = echo_models
    seen: list[ProbeResult] = []
    report = run(engine, api_key=key, on_probe=seen.append)
    assert all(h["authorization"] == f"Bearer {key}" for h in engine.headers)
    assert "[REDACTED]" in report.to_json()
    for text in (report.to_json(), report.to_markdown(), report.to_junit(), repr(seen)):
        assert key not in text
        assert key[:12] not in text  # not even a truncated piece of it


def test_the_key_is_redacted_before_excerpts_are_cut() -> None:
    key = "k" * 40
    engine = FakeEngine(answer="x" * 70 + key)  # the quote is cut at 80 characters
    report = run(engine, FAST, api_key=key)
    known = by_name(report)["known-answer"]
    assert "kkkkkkkkkk" not in known.detail + known.evidence
    assert "[REDACTED]" in known.detail


def test_a_synchronous_transport_works_through_threads() -> None:
    class SyncEngine(httpx.BaseTransport):
        def handle_request(self, request: httpx.Request) -> httpx.Response:
            if request.url.path == "/v1/chat/completions":
                doc = {
                    "choices": [{"message": {"content": "pong"}, "finish_reason": "stop"}],
                    "usage": {"completion_tokens": 1},
                }
                return httpx.Response(200, json=doc)
            if request.url.path == "/v1/models":
                return httpx.Response(200, json={"data": [{"id": "m"}]})
            return httpx.Response(200)

    settings = dataclasses.replace(FAST, probes=("readiness", "identity", "known-answer"))
    report = run_suite(BASE, "m", VLLM, settings, transport=SyncEngine())
    assert report.passed, [p.detail for p in report.probes]


def test_report_formats_of_a_real_run_parse() -> None:
    report = run(FakeEngine(answer="carecarecare"))
    assert not report.passed
    doc = json.loads(report.to_json())
    assert doc["probes"][2]["detail"] == "expected /pong/i, got 'carecarecare'"
    ET.fromstring(report.to_junit())
    assert "❌ Smoke failed" in report.to_markdown()
    assert Report.from_json(report.to_json()).to_json() == report.to_json()


def test_probe_functions_are_exported_for_reuse() -> None:
    # `slots guard` reuses the stall watcher; keep it importable from the package.
    from gx10slots.smoke import watch_for_stall

    assert watch_for_stall is probes_module.watch_for_stall
