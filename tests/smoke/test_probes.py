"""Each probe against a scripted engine (httpx.MockTransport): the protocol's edge cases."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from gx10slots.smoke.probes import (
    ProbeContext,
    probe_burst,
    probe_identity,
    probe_known_answer,
    probe_progress,
    probe_readiness,
    probe_streaming,
    probe_structured_output,
    probe_tool_call,
    take_metrics_baseline,
)
from gx10slots.smoke.profiles import LLAMA_CPP_PYTHON, LLAMA_SERVER, OLLAMA, SGLANG, VLLM
from gx10slots.smoke.settings import MIB
from tests.helpers.engines import (
    FAST,
    FakeEngine,
    chunk,
    completion,
    event_stream,
    hang_forever,
    run_probe,
    sse,
    usage_chunk,
)


def respond(doc_or_response):
    async def handler(request: httpx.Request) -> httpx.Response:
        if isinstance(doc_or_response, httpx.Response):
            return doc_or_response
        return httpx.Response(200, json=doc_or_response)

    return handler


# --- readiness ----------------------------------------------------------------------------------


def test_readiness_waits_through_503_loading_then_passes() -> None:
    engine = FakeEngine()
    loading = '{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}'
    engine.health = [(503, loading)] * 3 + [(200, '{"status":"ok"}')]
    result, _ = run_probe(probe_readiness, engine, profile=LLAMA_SERVER)
    assert result.passed, result.detail
    assert result.metrics["attempts"] == 4
    assert result.detail.startswith("/health answered HTTP 200 after 4 attempts")


def test_readiness_fails_at_once_on_other_errors() -> None:
    engine = FakeEngine()
    engine.health = [(500, "Internal Server Error"), (200, "")]
    result, _ = run_probe(probe_readiness, engine)
    assert not result.passed
    assert result.detail == "/health answered HTTP 500: Internal Server Error"
    assert len(engine.headers) == 1  # no retry


def test_vllm_dead_engine_503_is_not_loading() -> None:
    engine = FakeEngine()
    engine.health = [(503, ""), (200, "")]
    result, _ = run_probe(probe_readiness, engine)
    assert not result.passed and "HTTP 503" in result.detail
    assert len(engine.headers) == 1


def test_readiness_retries_refused_connections_until_the_server_listens() -> None:
    calls = 0

    async def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
        return httpx.Response(200)

    result, _ = run_probe(probe_readiness, handler)
    assert result.passed and calls == 3


def test_readiness_gives_up_at_its_timeout_saying_what_it_saw() -> None:
    engine = FakeEngine()
    engine.health = [(503, "Loading model")]
    settings = FAST.__class__(**{**FAST.__dict__, "timeouts": {"readiness": 0.2}})
    started = time.monotonic()
    result, _ = run_probe(probe_readiness, engine, profile=LLAMA_SERVER, settings=settings)
    assert time.monotonic() - started < 1.5
    assert not result.passed
    assert "HTTP 503 Loading model" in result.detail
    assert result.detail.startswith(("still loading after", "timed out after 0.2 s"))


def test_readiness_of_a_stuck_endpoint_fails_at_once() -> None:
    engine = FakeEngine()
    engine.routes["/health_generate"] = hang_forever
    profile = SGLANG.__class__(**{**SGLANG.__dict__, "readiness_request_timeout_s": 0.05})
    result, _ = run_probe(probe_readiness, engine, profile=profile)
    assert not result.passed
    assert "did not answer within 0.05 s" in result.detail


def test_ollama_readiness_says_whether_the_model_was_loaded() -> None:
    engine = FakeEngine()

    async def ps(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"models": [{"name": "m:latest", "model": "m:latest"}]})

    engine.routes["/api/ps"] = ps
    result, _ = run_probe(probe_readiness, engine, profile=OLLAMA)
    assert result.passed and result.detail.endswith("; 'm' was loaded")
    assert result.metrics["warm"] == 1.0
    # An Ollama without /api/ps is still ready; only its warmth is unknown.
    result, _ = run_probe(probe_readiness, FakeEngine(), profile=OLLAMA)
    assert result.passed, result.detail
    assert "whether 'm' was loaded: /api/ps answered HTTP 404" in result.detail


# --- identity -----------------------------------------------------------------------------------


def test_identity_passes_for_the_served_name() -> None:
    result, _ = run_probe(probe_identity, FakeEngine())
    assert result.passed and result.detail == "serves 'm'"


def test_identity_reports_what_the_engine_holds_instead() -> None:
    engine = FakeEngine()
    engine.models = [{"id": "m-wrong"}]
    result, _ = run_probe(probe_identity, engine)
    assert result.detail == "expected exactly ['m'], /v1/models holds ['m-wrong']"


def _claiming(*names: str) -> Any:
    async def before(ctx: ProbeContext) -> None:
        ctx.served_names = names

    return before


def test_identity_accepts_the_slots_whole_list_and_requires_every_name() -> None:
    engine = FakeEngine()
    engine.models = [{"id": "m"}, {"id": "old"}, {"id": "gx10slots/green"}]
    claimed = _claiming("m", "old", "gx10slots/green")
    result, _ = run_probe(probe_identity, engine, before=claimed)
    assert result.passed, result.detail
    engine.models = [{"id": "m"}, {"id": "gx10slots/green"}]  # the old name is not served
    result, _ = run_probe(probe_identity, engine, before=claimed)
    assert not result.passed and "'old'" in result.detail


def test_identity_reads_llama_server_aliases() -> None:
    engine = FakeEngine()
    engine.models = [{"id": "m", "aliases": ["m", "old", "gx10slots/green"], "tags": []}]
    result, _ = run_probe(
        probe_identity,
        engine,
        profile=LLAMA_SERVER,
        before=_claiming("m", "old", "gx10slots/green"),
    )
    assert result.passed, result.detail


def test_identity_on_ollama_means_among_the_local_models() -> None:
    engine = FakeEngine()
    engine.models = [{"id": "llama3:8b"}, {"id": "m"}]
    assert run_probe(probe_identity, engine, profile=OLLAMA)[0].passed
    assert not run_probe(probe_identity, engine, profile=VLLM)[0].passed


# vllm/entrypoints/openai/serving_models.py show_available_models: a card per served name, a
# card per LoRA adapter with `parent` (and no max_model_len).
VLLM_LORA_MODELS: list[dict[str, Any]] = [
    {"id": "m", "object": "model", "root": "/models/base", "parent": None, "max_model_len": 4096},
    {"id": "old", "object": "model", "root": "/models/base", "parent": None, "max_model_len": 4096},
    {"id": "sql-lora", "object": "model", "root": "/adapters/sql", "parent": "m"},
]


def test_identity_accepts_vllm_lora_adapters_beside_the_claimed_names() -> None:
    engine = FakeEngine()
    engine.models = VLLM_LORA_MODELS
    result, _ = run_probe(probe_identity, engine, before=_claiming("m", "old"))
    assert result.passed, result.detail
    # A model name the slot does not claim is still a disagreement (not an adapter).
    engine.models = [*VLLM_LORA_MODELS, {"id": "stray", "parent": None}]
    result, _ = run_probe(probe_identity, engine, before=_claiming("m", "old"))
    assert not result.passed and "expected exactly" in result.detail


def test_identity_serves_a_lora_adapter_as_the_served_name_with_its_base_context() -> None:
    engine = FakeEngine(served="sql-lora")
    engine.models = VLLM_LORA_MODELS
    settings = FAST.__class__(**{**FAST.__dict__, "max_model_len": 4096})
    result, _ = run_probe(
        probe_identity, engine, settings=settings, served="sql-lora", before=_claiming("m", "old")
    )
    assert result.passed, result.detail
    assert result.metrics["max_model_len"] == 4096  # the adapter's base model's card


def test_identity_on_ollama_reads_an_untagged_name_as_latest() -> None:
    engine = FakeEngine(served="gx10")
    # openai/openai.go ToListCompletion: every local model by its full, tagged name.
    engine.models = [{"id": "gx10:latest", "object": "model", "owned_by": "library"}]
    result, _ = run_probe(probe_identity, engine, profile=OLLAMA, served="gx10")
    assert result.passed, result.detail
    engine.models = [{"id": "gx10:7b"}]
    result, _ = run_probe(probe_identity, engine, profile=OLLAMA, served="gx10")
    assert not result.passed and "'gx10'" in result.detail


def test_identity_checks_vllm_max_model_len_when_configured() -> None:
    settings = FAST.__class__(**{**FAST.__dict__, "max_model_len": 8192})
    result, _ = run_probe(probe_identity, FakeEngine(), settings=settings)
    assert result.detail == "max_model_len 4096 is below the configured 8192"
    engine = FakeEngine()
    engine.models = [{"id": "m"}]
    assert run_probe(probe_identity, engine, settings=settings)[0].detail == (
        "/v1/models does not report max_model_len"
    )


# JSON numbers have no size limit: an engine may send 400 digits, an int no float can hold.
HUGE = 10**400


class _HugeCounts(FakeEngine):
    """Answers with a count of 400 digits: completion tokens, and max_model_len on its card."""

    def __init__(self) -> None:
        super().__init__()
        self.models = [{"id": "m", "object": "model", "max_model_len": HUGE}]

    def chat(self, body: dict[str, Any]) -> httpx.Response:
        if body.get("stream"):
            frames = [chunk(role="assistant", content=""), chunk("pong"), chunk(finish="stop")]
            return event_stream(sse(*frames, usage_chunk(HUGE)))
        return httpx.Response(200, json=completion("pong", tokens=HUGE))


@pytest.mark.parametrize(
    ("probe", "field"),
    [
        (probe_identity, "data[0].max_model_len"),
        (probe_known_answer, "usage.completion_tokens"),
        (probe_streaming, "usage.completion_tokens"),
        (probe_burst, "usage.completion_tokens"),
    ],
)
def test_a_count_no_float_can_hold_fails_the_probe_naming_it_not_an_internal_error(
    probe: Any, field: str
) -> None:
    settings = FAST.__class__(**{**FAST.__dict__, "max_model_len": 4096})
    result, _ = run_probe(probe, _HugeCounts(), settings=settings)
    assert not result.passed
    assert field in result.detail and len(result.detail) < 300, result.detail


# --- known answer -------------------------------------------------------------------------------


def test_known_answer_passes_and_counts_tokens() -> None:
    result, ctx = run_probe(probe_known_answer, FakeEngine())
    assert result.passed, result.detail
    assert result.detail.startswith("answered 'pong' in")
    assert ctx.stats.tokens_received == 1 and ctx.stats.requests == 1


def test_known_answer_sends_max_tokens_to_ollama() -> None:
    engine = FakeEngine()
    run_probe(probe_known_answer, engine, profile=OLLAMA)
    assert engine.bodies[0]["max_tokens"] == 16
    assert "max_completion_tokens" not in engine.bodies[0]


def test_garbage_fails_with_the_evidence() -> None:
    result, _ = run_probe(probe_known_answer, FakeEngine(answer="carecarecare"))
    assert not result.passed
    assert result.detail == "expected /pong/i, got 'carecarecare'"
    assert result.evidence == "content: carecarecare"


def test_template_tokens_in_content_fail() -> None:
    result, _ = run_probe(probe_known_answer, respond(completion("pong<|im_end|>")))
    assert result.detail.startswith("raw template token <|im_end|> in content")


def test_content_null_with_reasoning_content() -> None:
    doc = completion(None, finish="length", tokens=16, reasoning_content="User wants pong")
    failed, _ = run_probe(probe_known_answer, respond(doc))
    assert "content is null and the text is in the reasoning field" in failed.detail
    reasoning = FAST.__class__(**{**FAST.__dict__, "reasoning": True})
    passed, _ = run_probe(probe_known_answer, respond(doc), settings=reasoning)
    assert passed.passed, passed.detail


def test_wrong_types_fail_cleanly() -> None:
    result, _ = run_probe(probe_known_answer, respond({"choices": "pong"}))
    assert result.detail == "`choices` is a string, expected a list"


def test_invalid_json_fails_cleanly() -> None:
    result, _ = run_probe(
        probe_known_answer,
        respond(httpx.Response(200, content=b'{"choices": [')),
    )
    assert result.detail.startswith("the response is not JSON (Expecting value")


def test_non_utf8_fails_cleanly() -> None:
    result, _ = run_probe(
        probe_known_answer, respond(httpx.Response(200, content=b'{"x": "\xff\xfe"}'))
    )
    assert result.detail == "the response is not valid UTF-8 (byte 0xff at offset 7)"


def test_deeply_nested_json_fails_cleanly() -> None:
    body = b"[" * 200_000 + b"]" * 200_000
    result, _ = run_probe(probe_known_answer, respond(httpx.Response(200, content=body)))
    assert result.detail == "the response is JSON nested too deeply to read"


def test_ten_megabyte_body_is_refused_by_its_content_length() -> None:
    body = b'{"pad": "' + b"x" * (10 * MIB) + b'"}'
    result, _ = run_probe(probe_known_answer, respond(httpx.Response(200, content=body)))
    assert not result.passed
    assert "declared a" in result.detail and "over the 1 MB limit" in result.detail


def test_ten_megabyte_body_without_length_stops_at_the_budget() -> None:
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(160):  # 10 MB in 64 KB chunks
            sent += 65536
            yield b"x" * 65536

    result, _ = run_probe(probe_known_answer, respond(httpx.Response(200, content=endless())))
    assert result.detail == "/v1/chat/completions sent more than 1 MB; stopped reading"
    assert sent <= MIB + 2 * 65536  # we stopped pulling at the budget
    assert len(result.evidence) <= 2000


def test_compressed_bodies_are_refused() -> None:
    response = httpx.Response(200, headers={"content-encoding": "gzip"}, content=b"\x1f\x8b")
    result, _ = run_probe(probe_known_answer, respond(response))
    assert "Content-Encoding 'gzip'" in result.detail


def test_error_status_quotes_the_engine_message() -> None:
    result, _ = run_probe(probe_known_answer, FakeEngine(served="other"))
    assert result.detail == "/v1/chat/completions answered HTTP 404: The model `m` does not exist."


def test_a_wedged_engine_fails_within_the_timeout() -> None:
    engine = FakeEngine()
    engine.routes["/v1/chat/completions"] = hang_forever
    settings = FAST.__class__(**{**FAST.__dict__, "probe_timeout_s": 0.2})
    started = time.monotonic()
    result, _ = run_probe(probe_known_answer, engine, settings=settings)
    assert time.monotonic() - started < 1.0
    assert result.detail == "timed out after 0.2 s waiting for the answer"


def test_refused_connection_is_a_failed_result() -> None:
    async def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    result, _ = run_probe(probe_known_answer, refuse)
    assert result.detail == (
        "cannot connect to http://engine.test/v1/chat/completions: [Errno 111] Connection refused"
    )


# --- streaming ----------------------------------------------------------------------------------


def test_streaming_passes_with_usage_chunk_and_measures_ttft() -> None:
    result, ctx = run_probe(probe_streaming, FakeEngine())
    assert result.passed, result.detail
    assert result.metrics["ttft_ms"] > 0 and result.metrics["completion_tokens"] == 1
    assert ctx.stats.ttft_ms == [result.metrics["ttft_ms"]]


def test_llama_server_usage_chunk_with_non_empty_choices() -> None:
    stream = sse(chunk("po"), chunk("ng"), usage_chunk(2, with_choices=True))
    result, _ = run_probe(probe_streaming, respond(event_stream(stream)), profile=LLAMA_SERVER)
    assert result.passed, result.detail
    assert result.metrics["completion_tokens"] == 2
    assert "usage rode on a chunk with choices" in result.detail


def test_llama_cpp_python_stream_without_usage_and_with_pings() -> None:
    stream = sse(chunk("pong", finish="stop"), comment=True)
    result, _ = run_probe(probe_streaming, respond(event_stream(stream)), profile=LLAMA_CPP_PYTHON)
    assert result.passed, result.detail
    failed, _ = run_probe(probe_streaming, respond(event_stream(stream)), profile=VLLM)
    assert failed.detail == "no usage.completion_tokens"


def test_truncated_stream_is_named() -> None:
    stream = sse(chunk("pong"), done=False)
    result, _ = run_probe(probe_streaming, respond(event_stream(stream)))
    assert result.detail == "the stream ended after 1 frames without data: [DONE] (truncated)"
    assert result.metrics["ttft_ms"] > 0


def test_a_frame_that_is_not_json() -> None:
    stream = sse(chunk("po"), "{not json", usage_chunk(1))
    result, _ = run_probe(probe_streaming, respond(event_stream(stream)))
    assert result.detail.startswith("stream frame 2 is not JSON")


def test_no_content_delta() -> None:
    stream = sse(chunk(role="assistant"), chunk(finish="stop"), usage_chunk(0))
    result, _ = run_probe(probe_streaming, respond(event_stream(stream)))
    assert result.detail.startswith("no content delta in 3 frames")


def test_endless_stream_stops_at_the_byte_budget() -> None:
    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield sse(chunk("pong "), done=False)

    result, _ = run_probe(probe_streaming, respond(event_stream(endless())))
    assert result.detail == "the stream exceeded 1 MB without ending; stopped reading"


def test_silent_stream_times_out_waiting_for_the_first_token() -> None:
    async def silent() -> AsyncIterator[bytes]:
        await asyncio.Event().wait()
        yield b""

    settings = FAST.__class__(**{**FAST.__dict__, "probe_timeout_s": 0.2})
    result, _ = run_probe(probe_streaming, respond(event_stream(silent())), settings=settings)
    assert result.detail == "timed out after 0.2 s waiting for the first token"


def test_stream_non_utf8_and_overlong_lines() -> None:
    bad = respond(event_stream(b"data: \xff\n\n"))
    assert run_probe(probe_streaming, bad)[0].detail.startswith("stream line 1 is not valid UTF-8")
    long_line = respond(event_stream(b"data: " + b"x" * (300 * 1024)))
    assert "exceeds 256 KB without a newline" in run_probe(probe_streaming, long_line)[0].detail


def test_json_answer_to_a_stream_request() -> None:
    result, _ = run_probe(probe_streaming, respond(completion()))
    assert result.detail == "asked for a stream, got a single application/json answer"


# --- tool call ----------------------------------------------------------------------------------


def test_tool_call_passes() -> None:
    engine = FakeEngine()
    result, _ = run_probe(probe_tool_call, engine)
    assert result.passed, result.detail
    assert engine.bodies[0]["tool_choice"] == "auto"
    assert engine.bodies[0]["tools"][0]["function"]["name"] == "get_weather"


def test_tool_call_leaked_into_content() -> None:
    engine = FakeEngine()
    engine.tool_mode = "leak"
    result, _ = run_probe(probe_tool_call, engine)
    assert result.detail.startswith('tool call leaked into content: <tool_call>{"name"')


def test_tool_call_answered_in_text() -> None:
    engine = FakeEngine()
    engine.tool_mode = "text"
    result, _ = run_probe(probe_tool_call, engine)
    assert result.detail == "no tool call: finish_reason 'stop', content 'It is sunny in Paris.'"


def test_tool_parser_not_enabled() -> None:
    message = (
        '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set'
    )
    response = httpx.Response(400, json={"error": {"message": message}})
    result, _ = run_probe(probe_tool_call, respond(response))
    assert result.detail == f"/v1/chat/completions answered HTTP 400: {message}"


# --- structured output --------------------------------------------------------------------------


def test_structured_output_asks_for_a_json_schema_and_passes_on_matching_json() -> None:
    engine = FakeEngine()
    result, _ = run_probe(probe_structured_output, engine)
    assert result.passed, result.detail
    asked = engine.bodies[0]["response_format"]
    assert asked["type"] == "json_schema"
    assert asked["json_schema"]["schema"]["required"] == ["city", "temperature_c"]


def test_structured_output_fails_on_prose_json_of_another_shape_and_a_cut_object() -> None:
    cases = {
        "ignore": "the answer is not JSON: 'pong'",
        '```json\n{"city": "Paris", "temperature_c": 21}\n```': "the answer is not JSON",
        '["Paris", 21]': "the answer is a list, expected object",
        '{"city": "Paris", "temperature_c": "warm"}': (
            "the answer['temperature_c'] is a string, expected integer"
        ),
        '{"city": "Paris", "temperature_c": true}': "is a boolean, expected integer",
        '{"city": "Paris"}': "the answer lacks 'temperature_c'",
        '{"city": "Paris", "temperature_c": 21, "x": 1}': "keys the schema does not allow: ['x']",
    }
    for mode, expected in cases.items():
        engine = FakeEngine()
        engine.json_mode = mode
        result, _ = run_probe(probe_structured_output, engine)
        assert not result.passed and expected in result.detail, (mode, result.detail)
    cut = completion('{"city": "Par', finish="length", tokens=128)
    result, _ = run_probe(probe_structured_output, respond(cut))
    assert result.detail.startswith("the answer is not JSON (cut at max_tokens)")


def test_structured_output_of_a_hostile_engine_fails_with_a_short_detail() -> None:
    nested = "[" * 100_000 + "]" * 100_000
    huge_key = json.dumps({"city": "Paris", "temperature_c": 1, "k" * 200_000: 1})
    for content in (nested, huge_key, "\x00" * 1000):
        result, _ = run_probe(probe_structured_output, respond(completion(content, tokens=9)))
        assert not result.passed and len(result.detail) < 1000, result.detail[:200]


def test_structured_output_refused_by_the_engine_quotes_it() -> None:
    # llama-server with a model whose vocabulary cannot build the schema's grammar.
    message = "Failed to initialize samplers: std::exception"
    response = httpx.Response(400, json={"error": {"code": 400, "message": message}})
    result, _ = run_probe(probe_structured_output, respond(response))
    assert result.detail == f"/v1/chat/completions answered HTTP 400: {message}"


# --- burst --------------------------------------------------------------------------------------


def test_burst_runs_concurrently_and_reports_percentiles() -> None:
    in_flight = peak = 0
    engine = FakeEngine()

    async def slow_chat(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        await asyncio.sleep(0.01)
        in_flight -= 1
        return engine.chat(json.loads(request.content))

    engine.routes["/v1/chat/completions"] = slow_chat
    result, ctx = run_probe(probe_burst, engine)
    assert result.passed, result.detail
    assert peak == FAST.burst  # all in flight at once
    assert result.metrics["failed"] == 0 and result.metrics["tokens_per_s"] > 0
    assert len(ctx.stats.ttft_ms) == FAST.burst and ctx.stats.burst_tokens_per_s > 0


def test_flaky_burst_fails_naming_the_error() -> None:
    engine = FakeEngine()
    calls = 0

    async def flaky(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls % 2:
            return httpx.Response(500, json={"error": {"message": "EngineCore died"}})
        return engine.chat(json.loads(request.content))

    engine.routes["/v1/chat/completions"] = flaky
    result, _ = run_probe(probe_burst, engine)
    assert result.detail == (
        "2 of 3 requests failed: /v1/chat/completions answered HTTP 500: EngineCore died"
    )


def test_burst_timeout_says_how_many_finished() -> None:
    engine = FakeEngine()
    calls = 0

    async def one_hangs(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        if calls == 2:
            return await hang_forever(request)
        return engine.chat(json.loads(request.content))

    engine.routes["/v1/chat/completions"] = one_hangs
    settings = FAST.__class__(**{**FAST.__dict__, "probe_timeout_s": 0.2})
    result, _ = run_probe(probe_burst, engine, settings=settings)
    assert result.detail == "timed out after 0.2 s with 2 of 3 concurrent requests finished"


# --- progress -----------------------------------------------------------------------------------


async def _snapshot(ctx: ProbeContext) -> None:
    await take_metrics_baseline(ctx, 1.0)


def test_progress_passes_when_the_counter_moved_with_our_tokens() -> None:
    engine = FakeEngine()

    async def generate_then_snapshot(ctx: ProbeContext) -> None:
        await take_metrics_baseline(ctx, 1.0)
        await probe_known_answer(ctx)
        await probe_streaming(ctx)

    result, ctx = run_probe(probe_progress, engine, before=generate_then_snapshot)
    assert result.passed, result.detail
    assert result.metrics["counter_delta"] >= ctx.stats.tokens_received >= 2


def test_progress_fails_when_the_counter_lags_what_we_received() -> None:
    engine = FakeEngine()

    async def received_without_counting(ctx: ProbeContext) -> None:
        await take_metrics_baseline(ctx, 1.0)
        ctx.stats.tokens_received = 40

    result, _ = run_probe(probe_progress, engine, before=received_without_counting)
    assert (
        result.detail
        == "vllm:generation_tokens_total advanced by 0, but the suite received 40 tokens"
    )


def test_flat_counter_with_running_requests_is_a_stall() -> None:
    engine = FakeEngine()
    engine.running = 2
    engine.routes["/v1/chat/completions"] = hang_forever
    started = time.monotonic()
    result, _ = run_probe(probe_progress, engine, before=_snapshot)
    assert time.monotonic() - started < 1.5
    assert not result.passed
    assert result.detail.startswith(
        "stall: vllm:num_requests_running stayed at 2 or more while "
        "vllm:generation_tokens_total stayed flat at 0 for"
    )
    assert result.metrics["running_max"] == 2


def test_counter_going_backwards_means_a_restart() -> None:
    engine = FakeEngine()
    engine.generated = 100

    async def then_restart(ctx: ProbeContext) -> None:
        await take_metrics_baseline(ctx, 1.0)
        engine.generated = 3

    result, _ = run_probe(probe_progress, engine, before=then_restart)
    assert "went backwards from 100 to 3" in result.detail


def test_progress_is_skipped_without_metrics() -> None:
    engine = FakeEngine()
    engine.metrics_status = 404
    result, _ = run_probe(probe_progress, engine, profile=LLAMA_SERVER, before=_snapshot)
    assert result.passed and result.skipped
    assert result.detail == (
        "skipped: /metrics answered 404 (llama-server serves /metrics only when started with "
        "--metrics)"
    )
    ollama, _ = run_probe(probe_progress, engine, profile=OLLAMA, before=_snapshot)
    assert ollama.skipped and ollama.detail == "skipped: ollama has no metrics endpoint"
