"""The whole suite: order, gating, deadlines, the summary, the baseline, secrets."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import xml.etree.ElementTree as ET

import httpx
import pytest

from gx10slots.smoke import probes as probes_module
from gx10slots.smoke.catalog import CATALOG, JUDGED_BY_SUITE
from gx10slots.smoke.profiles import VLLM
from gx10slots.smoke.report import Baseline, Report
from gx10slots.smoke.result import ProbeResult
from gx10slots.smoke.settings import PROBE_NAMES, GoldenPrompt, SuiteSettings
from gx10slots.smoke.suite import LiveTarget, confirm_baseline, regression_seen, run_suite
from tests.helpers.engines import BASE, FAST, FakeEngine, hang_forever

TOOLS = dataclasses.replace(FAST, tool_call=True, structured_output=True)


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
    # Without golden prompts, "prompts" adds no result.
    ran = [name for name in PROBE_NAMES if name != "prompts"]
    assert [p.name for p in report.probes] == ran
    assert seen == ran
    results = by_name(report)
    assert results["baseline"].skipped
    assert results["baseline"].detail == "skipped: no active slot measured in this run"
    # vLLM keeps its model loaded: nothing to ask it (an Ollama is asked: test_engine_profiles).
    assert results["keep-alive"].skipped
    assert not any(p.skipped for p in report.probes if p.name not in ("baseline", "keep-alive"))
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
    for name in [n for n in PROBE_NAMES[1:] if n != "prompts"]:
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

    monkeypatch.setitem(probes_module.PROBES, "identity", broken)
    report = run(FakeEngine())
    identity = by_name(report)["identity"]
    assert identity.detail == "internal error in the identity probe: KeyError: 'surprise'"
    assert by_name(report)["known-answer"].passed  # the suite went on


def _active(
    ttft_p95: float | None,
    tokens_per_s: float | None,
    *,
    tool_calls: bool = False,
    stream_usage: bool = False,
    structured_output: bool = False,
) -> Baseline:
    return Baseline(
        slot="blue",
        model="prod-model",
        passed=True,
        ttft_ms_p50=ttft_p95,
        ttft_ms_p95=ttft_p95,
        tokens_per_s=tokens_per_s,
        tool_calls=tool_calls,
        stream_usage=stream_usage,
        structured_output=structured_output,
    )


def test_baseline_passes_against_a_similar_active_slot() -> None:
    report = run(FakeEngine(), FAST, baseline=_active(ttft_p95=10_000.0, tokens_per_s=1.0))
    baseline = by_name(report)["baseline"]
    assert baseline.passed and not baseline.skipped, baseline.detail
    assert baseline.metrics["baseline_tokens_per_s"] == 1.0
    assert report.baseline is not None and report.baseline.slot == "blue"


def test_baseline_fails_on_a_slower_first_token_than_the_active_slot() -> None:
    async def slow_first_token(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(0.3)  # the engine's time to first token, not a wait for a race
        return engine.chat(json.loads(request.content))

    engine = FakeEngine()
    engine.routes["/v1/chat/completions"] = slow_first_token
    settings = dataclasses.replace(FAST, baseline_margin_ms=100.0)
    report = run(engine, settings, baseline=_active(ttft_p95=1.0, tokens_per_s=None))
    baseline = by_name(report)["baseline"]
    assert not baseline.passed
    assert "against the active slot's 1 ms: more than 2x" in baseline.detail
    assert not report.passed and report.summary.failures == 1


def test_an_active_slot_that_measured_nothing_is_not_compared() -> None:
    nothing = dataclasses.replace(_active(None, None), passed=False, detail="readiness: refused")
    report = run(FakeEngine(), FAST, baseline=nothing)
    baseline = by_name(report)["baseline"]
    assert baseline.skipped and baseline.passed and "measured nothing" in baseline.detail
    assert report.passed


def test_parity_requires_tool_calls_when_the_active_slot_makes_them() -> None:
    engine = FakeEngine()
    engine.tool_mode = "text"  # answers the tool prompt with prose
    assert not FAST.tool_call
    alone = run(engine, FAST)
    assert alone.passed and by_name(alone)["tool-call"].skipped
    report = run(engine, FAST, baseline=_active(5.0, 100.0, tool_calls=True))
    tool = by_name(report)["tool-call"]
    assert not tool.passed and not tool.skipped
    assert "capability parity: the active slot blue (prod-model) makes tool calls" in tool.detail
    assert not report.passed


def test_parity_requires_usage_in_the_stream_when_the_active_slot_sends_it() -> None:
    # A profile that does not demand usage (llama-cpp-python's): an engine that never sends it
    # passes alone but not against an active slot that does.
    no_usage_profile = dataclasses.replace(VLLM, stream_usage=False)
    asked_usage: list[bool] = []

    async def no_usage(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        asked_usage.append("stream_options" in body)
        body.pop("stream_options", None)
        return engine.chat(body)

    engine = FakeEngine()
    engine.routes["/v1/chat/completions"] = no_usage
    settings = dataclasses.replace(FAST, probes=("readiness", "streaming"))

    def go(baseline: Baseline | None) -> Report:
        return run_suite(
            BASE,
            "m",
            no_usage_profile,
            settings,
            transport=httpx.MockTransport(engine),
            baseline=baseline,
        )

    assert go(None).passed
    report = go(_active(5.0, 100.0, stream_usage=True))
    streaming = by_name(report)["streaming"]
    assert not streaming.passed and "no usage.completion_tokens" in streaming.detail
    assert "streams with usage" in streaming.detail
    # Alone it did not ask for the usage chunk; against the active slot it did.
    assert asked_usage == [False, True]


def test_parity_requires_structured_output_when_the_active_slot_returns_it() -> None:
    engine = FakeEngine()
    engine.json_mode = "ignore"  # no guided decoding: prose whatever response_format says
    alone = run(engine, FAST)
    assert alone.passed and by_name(alone)["structured-output"].skipped
    report = run(engine, FAST, baseline=_active(5.0, 100.0, structured_output=True))
    structured = by_name(report)["structured-output"]
    assert not structured.passed and not structured.skipped
    assert "the answer is not JSON" in structured.detail
    assert (
        "capability parity: the active slot blue (prod-model) returns JSON matching a schema"
        in structured.detail
    )
    assert not report.passed
    # An engine that does it passes against the same active slot.
    good = run(FakeEngine(), FAST, baseline=_active(5.0, 100.0, structured_output=True))
    assert good.passed and not by_name(good)["structured-output"].skipped


def test_an_active_slot_without_structured_output_does_not_require_it() -> None:
    # What the reference run learns from an engine that refuses response_format (llama-server
    # whose grammar cannot be built): no structured output, so the candidate is not asked.
    refusing = FakeEngine()

    async def refuse(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if "response_format" in body:
            message = "Failed to initialize samplers: std::exception"
            return httpx.Response(400, json={"error": {"code": 400, "message": message}})
        return refusing.chat(body)

    refusing.routes["/v1/chat/completions"] = refuse
    learn = dataclasses.replace(
        FAST, probes=("readiness", "streaming", "structured-output"), structured_output=True
    )
    reference = run(refusing, learn, slot="blue")
    assert not by_name(reference)["structured-output"].passed
    active = Baseline.of(reference)
    assert not active.structured_output
    engine = FakeEngine()
    engine.json_mode = "ignore"
    report = run(engine, FAST, baseline=active)
    assert by_name(report)["structured-output"].skipped and report.passed


def test_golden_prompts_run_as_probes_and_a_mismatch_fails_the_suite() -> None:
    engine = FakeEngine(answer="pong <b>bold</b>")
    prompts = (
        GoldenPrompt("ping", "Say pong.", r"\bpong\b"),
        GoldenPrompt("capital", "The capital of France?", "(?i)paris"),
    )
    report = run(engine, dataclasses.replace(TOOLS, prompts=prompts))
    results = by_name(report)
    names = [p.name for p in report.probes]
    assert names.index("tool-call") < names.index("prompt:ping") < names.index("prompt:capital")
    assert names.index("prompt:capital") < names.index("burst")
    assert results["prompt:ping"].passed
    capital = results["prompt:capital"]
    assert not capital.passed and "expected /(?i)paris/" in capital.detail
    assert "pong" in capital.evidence
    assert not report.passed and report.summary.failures == 1
    asked = [b["messages"][-1]["content"] for b in engine.bodies if "tools" not in b]
    assert "The capital of France?" in asked


def test_every_probe_in_the_catalog_has_a_function() -> None:
    functions = set(probes_module.PROBES)
    assert functions == {spec.name for spec in CATALOG} - JUDGED_BY_SUITE


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


def test_a_regression_not_seen_again_back_to_back_does_not_fail() -> None:
    # First measurement: the active slot looked far faster (a busy moment of the machine).
    settings = dataclasses.replace(FAST, baseline_margin_ms=0.0)
    first = run(FakeEngine(), settings, baseline=_active(ttft_p95=0.001, tokens_per_s=1e9))
    assert regression_seen(first) and not first.passed
    burst_only = dataclasses.replace(FAST, probes=("burst",))
    again = run(FakeEngine(), burst_only)
    active_again = Baseline.of(dataclasses.replace(run(FakeEngine(), burst_only), slot="blue"))
    # Measured again back to back, the two engines are alike: the suite passes.
    confirmed = confirm_baseline(first, active_again, again, FAST)
    baseline = by_name(confirmed)["baseline"]
    assert baseline.passed and baseline.detail.startswith("not confirmed")
    assert confirmed.passed and confirmed.summary.failures == 0
    # Seen again (an active slot still far faster), it stays a failure.
    far_faster = _active(ttft_p95=0.001, tokens_per_s=1e9)
    still = confirm_baseline(first, far_faster, again, settings)
    assert not still.passed
    assert "confirmed when measured again" in by_name(still)["baseline"].detail


def _two_slots(candidate: FakeEngine, active: FakeEngine, log: list[str]) -> httpx.MockTransport:
    """One transport for both slots: the active slot at http://active.test, the candidate at
    BASE; ``log`` records which slot each generation request went to, in order."""

    async def route(request: httpx.Request) -> httpx.Response:
        slot = "active" if request.url.host == "active.test" else "candidate"
        if request.url.path == "/v1/chat/completions":
            body = json.loads(request.content)
            log.append(f"{slot} {'stream' if body.get('stream') else 'once'}")
        return await (active if slot == "active" else candidate)(request)

    return httpx.MockTransport(route)


def test_the_active_slot_is_measured_interleaved_with_the_candidate() -> None:
    log: list[str] = []
    seen: list[str] = []
    # What the reference run learned: its capabilities, a first TTFT from its streaming probe.
    reference = _active(1.0, None, stream_usage=True)
    report = run_suite(
        BASE,
        "m",
        VLLM,
        dataclasses.replace(FAST, probes=("readiness", "streaming", "burst", "baseline")),
        transport=_two_slots(FakeEngine(), FakeEngine(), log),
        baseline=reference,
        live=LiveTarget("http://active.test", "m"),
        on_active_probe=lambda r: seen.append(r.name),
    )
    assert report.passed, [(p.name, p.detail) for p in report.probes if not p.passed]
    # Candidate, active, active, candidate: each slot measured next to the other, both seeing
    # the same moments of the machine.
    n = FAST.burst
    assert log == [
        "candidate stream",
        "active stream",
        *["active stream"] * n,
        *["candidate stream"] * n,
    ]
    assert seen == ["streaming", "burst"]
    # The active slot's figures are the interleaved measurement's, in the report's `baseline`.
    base = report.baseline
    assert base is not None and base.slot == "blue" and base.stream_usage
    assert base.ttft_ms_p95 is not None and base.ttft_ms_p95 > 0
    assert base.tokens_per_s is not None and base.tokens_per_s > 0
    baseline = by_name(report)["baseline"]
    assert baseline.passed and not baseline.skipped
    assert baseline.metrics["baseline_tokens_per_s"] == pytest.approx(base.tokens_per_s)


def test_an_active_slot_failing_its_interleaved_burst_is_said_and_not_compared() -> None:
    log: list[str] = []
    active = FakeEngine()

    async def broken(request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        if (
            body.get("max_tokens") == FAST.burst_max_tokens
            or body.get("max_completion_tokens") == FAST.burst_max_tokens
        ):
            return httpx.Response(500, json={"error": {"message": "EngineCore died"}})
        return active.chat(body)

    active.routes["/v1/chat/completions"] = broken
    report = run_suite(
        BASE,
        "m",
        VLLM,
        dataclasses.replace(FAST, probes=("readiness", "streaming", "burst", "baseline")),
        transport=_two_slots(FakeEngine(), active, log),
        baseline=_active(1.0, None),
        live=LiveTarget("http://active.test", "m"),
    )
    base = report.baseline
    assert base is not None and base.tokens_per_s is None and not base.passed
    assert "burst" in base.detail and "EngineCore died" in base.detail
    # Its time to first token was measured (streaming), so the baseline still judges that.
    assert base.ttft_ms_p95 is not None
    assert report.passed


def test_an_active_slot_that_streamed_nothing_before_is_not_measured_again() -> None:
    # Its reference run got no token (wedged): measuring it again would only spend the
    # candidate's time on timeouts.
    log: list[str] = []
    active = FakeEngine()
    active.routes["/v1/chat/completions"] = hang_forever
    started = time.monotonic()
    report = run_suite(
        BASE,
        "m",
        VLLM,
        dataclasses.replace(FAST, probes=("readiness", "streaming", "burst", "baseline")),
        transport=_two_slots(FakeEngine(), active, log),
        baseline=_active(None, None),
        live=LiveTarget("http://active.test", "m"),
    )
    assert time.monotonic() - started < FAST.probe_timeout_s
    assert not any(entry.startswith("active") for entry in log)
    assert report.passed and by_name(report)["baseline"].skipped


def test_a_figure_the_second_measurement_lacks_reads_n_a_not_zero() -> None:
    settings = dataclasses.replace(FAST, baseline_margin_ms=0.0)
    first = run(FakeEngine(), settings, baseline=_active(ttft_p95=0.001, tokens_per_s=1e9))
    again = run(FakeEngine(), dataclasses.replace(FAST, probes=("burst",)))
    # Measured again, the active slot gave tokens/s but no time to first token.
    confirmed = confirm_baseline(first, _active(None, 1.0), again, FAST)
    detail = by_name(confirmed)["baseline"].detail
    assert detail.startswith("not confirmed") and "(active n/a)" in detail
    assert "active 0 ms" not in detail


def test_a_golden_prompts_mismatch_quotes_a_short_clean_excerpt_of_a_hostile_answer() -> None:
    key = "sk-golden-secret-98765"
    hostile = "\x1b[31mred\x1b[0m\nline two | " + key + " " + "x" * 100_000
    engine = FakeEngine(answer=hostile)
    prompts = (GoldenPrompt("capital", "The capital of France?", "(?i)paris"),)
    report = run(engine, dataclasses.replace(FAST, prompts=prompts), api_key=key)
    capital = by_name(report)["prompt:capital"]
    assert not capital.passed
    assert len(capital.detail) < 300 and "\n" not in capital.detail
    assert "\x1b" not in capital.detail
    assert key not in capital.detail and key not in capital.evidence
    assert "red" in capital.detail
