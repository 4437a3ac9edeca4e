"""The pure parts: profiles, the wire format, the checks, the stall verdict."""

from __future__ import annotations

import re

import pytest

from gx10slots.errors import ConfigError, UsageError
from gx10slots.smoke._failure import ProbeFailure
from gx10slots.smoke.checks import (
    answer_problems,
    baseline_problems,
    leaked_tool_call,
    percentile,
    template_tokens_in,
    tool_call_problems,
)
from gx10slots.smoke.profiles import (
    LLAMA_CPP_PYTHON,
    LLAMA_SERVER,
    NIM,
    OLLAMA,
    PROFILES,
    SGLANG,
    TRTLLM,
    VLLM,
    EngineProfile,
    get_profile,
    readiness_state,
)
from gx10slots.smoke.progress import (
    ProgressSample,
    Verdict,
    parse_prometheus,
    sample_of,
    stall_verdict,
    with_aliases,
)
from gx10slots.smoke.redact import Redactor
from gx10slots.smoke.settings import SuiteSettings
from gx10slots.smoke.wire import (
    ChatAnswer,
    ToolCall,
    chat_body,
    loaded_models,
    parse_chat_completion,
    parse_chunk,
    parse_models,
)
from tests.helpers.engines import completion

REDACT = Redactor()


# --- profiles -----------------------------------------------------------------------------------


def test_every_engine_of_the_config_has_a_profile() -> None:
    assert set(PROFILES) == {
        "vllm",
        "llama-server",
        "llama-cpp-python",
        "sglang",
        "ollama",
        "trtllm",
        "nim",
        "openai",
    }
    assert get_profile("sglang") is SGLANG
    with pytest.raises(ConfigError, match=r"unknown engine 'tgi'.*vllm"):
        get_profile("tgi")


@pytest.mark.parametrize(
    ("profile", "status", "body", "state"),
    [
        (LLAMA_SERVER, 503, '{"error":{"code":503,"message":"Loading model"}}', "loading"),
        (LLAMA_SERVER, 200, '{"status":"ok"}', "ready"),
        (SGLANG, 503, "", "loading"),  # ServerStatus.Starting: empty 503
        (VLLM, 503, "", "failed"),  # EngineDeadError: not loading, dead
        (VLLM, 503, '{"error":{"message":"loading model"}}', "loading"),  # the sandbox's
        (VLLM, 500, "boom", "failed"),
        (VLLM, 404, "", "failed"),
        (OLLAMA, 200, '{"version":"0.5"}', "ready"),
    ],
)
def test_readiness_state(profile, status, body, state) -> None:
    assert readiness_state(profile, status, body) == state


def test_ollama_gets_max_tokens_not_max_completion_tokens() -> None:
    body = chat_body(OLLAMA, "m", "hi", max_tokens=16, seed=7)
    assert body["max_tokens"] == 16
    assert "max_completion_tokens" not in body


def test_vllm_gets_max_completion_tokens_and_seed() -> None:
    body = chat_body(VLLM, "m", "hi", max_tokens=16, seed=7)
    assert body["max_completion_tokens"] == 16 and "max_tokens" not in body
    assert body["seed"] == 7 and body["temperature"] == 0


def test_stream_options_only_on_streams_and_only_where_honoured() -> None:
    assert "stream_options" not in chat_body(TRTLLM, "m", "hi", max_tokens=1, seed=1)
    assert chat_body(TRTLLM, "m", "hi", max_tokens=1, seed=1, stream=True)["stream_options"] == {
        "include_usage": True
    }
    # llama-cpp-python has no stream_options: no usage chunk to ask for.
    assert "stream_options" not in chat_body(
        LLAMA_CPP_PYTHON, "m", "hi", max_tokens=1, seed=1, stream=True
    )


# --- wire -----------------------------------------------------------------------------------


def test_parse_chat_completion_reads_content_reasoning_and_usage() -> None:
    answer = parse_chat_completion(
        completion(None, finish="length", tokens=16, reasoning_content="thinking about pong"),
        VLLM.reasoning_fields,
    )
    assert answer == ChatAnswer(None, "thinking about pong", "length", 16, ())


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"choices": "pong"}, "`choices` is a string, expected a list"),
        ({"choices": []}, "`choices` is empty"),
        ({"choices": [{"message": "pong"}]}, "`choices[0].message` is a string"),
        ({"choices": [{"message": {"content": 42}}]}, "content` is a number"),
        (completion() | {"usage": {"completion_tokens": "1"}}, "completion_tokens` is a string"),
        (completion() | {"usage": {"completion_tokens": True}}, "is a boolean"),
        ([1, 2], "`response` is a list, expected an object"),
    ],
)
def test_wrong_types_fail_naming_the_field(doc, message) -> None:
    with pytest.raises(ProbeFailure, match=re.escape(message)):
        parse_chat_completion(doc, VLLM.reasoning_fields)


def test_parse_models_and_max_model_len() -> None:
    entries = parse_models({"data": [{"id": "a", "max_model_len": 8192}, {"id": "b"}]})
    assert [(e.id, e.max_model_len) for e in entries] == [("a", 8192), ("b", None)]
    with pytest.raises(ProbeFailure, match="data"):
        parse_models({"data": {"id": "a"}})


def test_parse_chunk_shapes() -> None:
    usage_only = parse_chunk({"choices": [], "usage": {"completion_tokens": 3}}, (), 9)
    assert usage_only.completion_tokens == 3 and not usage_only.has_choices
    # llama-server before PR 15444: usage on a chunk that still has choices.
    mixed = parse_chunk(
        {"choices": [{"delta": {}, "finish_reason": "stop"}], "usage": {"completion_tokens": 2}},
        (),
        5,
    )
    assert mixed.completion_tokens == 2 and mixed.has_choices and mixed.finish_reason == "stop"
    with pytest.raises(ProbeFailure, match="stream carried an error in frame 2: engine died"):
        parse_chunk({"error": {"message": "engine died"}}, (), 2)


# --- checks ---------------------------------------------------------------------------------

PONG = re.compile("pong", re.I)


def problems(**kw) -> list[str]:
    args = dict(
        content="pong",
        reasoning=None,
        finish_reason="stop",
        completion_tokens=1,
        max_tokens=16,
        expect=PONG,
        expect_display="/pong/i",
        reasoning_allowed=False,
        usage_required=True,
        redact=REDACT,
    )
    return answer_problems(**(args | kw))


def test_a_good_answer_has_no_problems() -> None:
    assert problems() == []
    assert problems(content="Pong!", finish_reason="length", completion_tokens=16) == []


def test_garbage_is_quoted() -> None:
    assert problems(content="carecarecare") == ["expected /pong/i, got 'carecarecare'"]


def test_template_tokens_are_named() -> None:
    found = problems(content="pong<|im_end|><|im_start|>assistant")
    assert found[0].startswith("raw template token <|im_start|>, <|im_end|> in content")
    assert template_tokens_in("fine") == []
    assert template_tokens_in("a</s>") == ["</s>"]


def test_reasoning_answer_needs_the_reasoning_setting() -> None:
    found = problems(content=None, reasoning="The user wants pong.", finish_reason="length")
    assert len(found) == 1 and "content is null and the text is in the reasoning field" in found[0]
    assert (
        problems(
            content=None,
            reasoning="The user wants pong.",
            finish_reason="length",
            reasoning_allowed=True,
        )
        == []
    )
    ran_out = problems(
        content=None, reasoning="Let me think", finish_reason="length", reasoning_allowed=True
    )
    assert ran_out == ["expected /pong/i, got 'Let me think'"]


def test_finish_reason_and_usage_bounds() -> None:
    assert problems(finish_reason="tool_calls") == [
        "finish_reason 'tool_calls', expected stop or length"
    ]
    assert problems(finish_reason=None) == ["no finish_reason"]
    assert problems(completion_tokens=None) == ["no usage.completion_tokens"]
    assert problems(completion_tokens=None, usage_required=False) == []
    assert problems(completion_tokens=0)[0].startswith("usage.completion_tokens is 0")
    assert "ignored the length limit" in problems(completion_tokens=400)[0]


@pytest.mark.parametrize(
    "content",
    [
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>',
        'Sure: {"name": "get_weather", "arguments": {"city": "Paris"}}',
        '[{"name": "get_weather", "parameters": {"city": "Paris"}}]',
        '{"type": "function", "function": {"name": "get_weather", "arguments": "{}"}}',
        '<|python_tag|>get_weather.call(city="Paris")',
        '[TOOL_CALLS][{"name": "get_weather"}]',
    ],
)
def test_leaked_tool_calls_are_recognised(content: str) -> None:
    assert leaked_tool_call(content) is not None


@pytest.mark.parametrize("content", [None, "", "It is sunny.", '{"city": "Paris"}', "{" * 5000])
def test_plain_text_is_not_a_leaked_tool_call(content) -> None:
    assert leaked_tool_call(content) is None


def test_tool_call_problems() -> None:
    def answer(*calls: ToolCall, finish: str = "tool_calls", content: str | None = None):
        return ChatAnswer(content, None, finish, 10, calls)

    good = ToolCall("get_weather", '{"city": "Paris"}')
    assert tool_call_problems(answer(good), REDACT) == []
    assert tool_call_problems(answer(ToolCall("get_weather", {"city": "P"})), REDACT) == []
    assert tool_call_problems(answer(ToolCall("lookup", "{}")), REDACT) == [
        "called 'lookup', expected 'get_weather'"
    ]
    assert tool_call_problems(answer(ToolCall("get_weather", "{city")), REDACT)[0].startswith(
        "arguments are not JSON"
    )
    assert tool_call_problems(answer(ToolCall("get_weather", "[1]")), REDACT) == [
        "arguments are not a JSON object: '[1]'"
    ]
    assert tool_call_problems(answer(good, finish="stop"), REDACT) == [
        "finish_reason 'stop', expected 'tool_calls'"
    ]
    leak = tool_call_problems(answer(finish="stop", content="<tool_call>{}</tool_call>"), REDACT)
    assert leak == ["tool call leaked into content: <tool_call>{}</tool_call>"]
    assert tool_call_problems(answer(finish="stop", content="sunny"), REDACT) == [
        "no tool call: finish_reason 'stop', content 'sunny'"
    ]


def test_percentile() -> None:
    assert percentile([], 50) == 0.0
    assert percentile([10.0], 95) == 10.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([1.0, 2.0, 3.0, 4.0, 5.0], 95) == pytest.approx(4.8)


CONTRACT = dict(ttft_ratio=2.0, tokens_ratio=0.5, margin_ms=500.0)


def test_baseline_problems_follow_the_contracts_rule() -> None:
    base = dict(baseline_ttft_p95_ms=100.0, baseline_tokens_per_s=50.0, **CONTRACT)
    # 2x and 500 ms worse both needed: 599 ms is 6x but only 499 ms worse; 250 ms at 2x+ too.
    assert baseline_problems(ttft_p95_ms=599.0, tokens_per_s=50.0, burst_tokens=64, **base) == []
    ttft = baseline_problems(ttft_p95_ms=2006.0, tokens_per_s=50.0, burst_tokens=64, **base)
    assert len(ttft) == 1 and ttft[0].startswith("TTFT p95 2006 ms against the active slot's 100")
    # Below half, and the 64-token burst took 3.2 s instead of 1.28 s: a regression.
    slow = baseline_problems(ttft_p95_ms=100.0, tokens_per_s=20.0, burst_tokens=64, **base)
    assert len(slow) == 1 and slow[0].startswith("20.0 tokens/s is below 0.5 x the active slot's")
    # Exactly half is not below half.
    assert baseline_problems(ttft_p95_ms=100.0, tokens_per_s=25.0, burst_tokens=64, **base) == []


def test_a_tiny_bursts_noise_is_not_half_the_speed() -> None:
    # 5000 vs 2000 tokens/s on 80 tokens: 24 ms apart, not a regression...
    fast = dict(baseline_ttft_p95_ms=3.0, baseline_tokens_per_s=5000.0, **CONTRACT)
    assert baseline_problems(ttft_p95_ms=5.0, tokens_per_s=2000.0, burst_tokens=80, **fast) == []
    # ...unless the margin is set to 0 (the strict reading).
    strict = {**fast, "margin_ms": 0.0}
    assert baseline_problems(ttft_p95_ms=5.0, tokens_per_s=2000.0, burst_tokens=80, **strict)


def test_a_baseline_that_measured_nothing_compares_nothing() -> None:
    assert (
        baseline_problems(
            ttft_p95_ms=9000.0,
            tokens_per_s=1.0,
            burst_tokens=64,
            baseline_ttft_p95_ms=None,
            baseline_tokens_per_s=None,
            **CONTRACT,
        )
        == []
    )


# --- progress ---------------------------------------------------------------------------------


def test_parse_prometheus_sums_label_sets_and_rejects_garbage() -> None:
    text = (
        "# TYPE vllm:generation_tokens counter\n"
        'vllm:generation_tokens_total{engine="0"} 10\n'
        'vllm:generation_tokens_total{engine="1"} 5\n'
        "vllm:num_requests_running 2\n"
    )
    totals = parse_prometheus(text)
    assert totals["vllm:generation_tokens_total"] == 15.0
    assert totals["vllm:num_requests_running"] == 2.0
    with pytest.raises(ProbeFailure, match="not valid Prometheus text"):
        parse_prometheus("this is { not metrics\n")


def samples(*points: tuple[float, float | None, float | None]) -> list[ProgressSample]:
    return [ProgressSample(at, gen, run) for at, gen, run in points]


def judge(*points: tuple[float, float | None, float | None], window: float = 10.0) -> Verdict:
    return stall_verdict(samples(*points), window, "gen", "running").verdict


def test_stall_verdicts() -> None:
    assert judge((0, 5, 1), (10, 5, 1)) is Verdict.STALLED
    assert judge((0, 5, 1), (3, 6, 1)) is Verdict.PROGRESSING
    assert judge((0, 5, 0), (10, 5, 0)) is Verdict.IDLE
    assert judge((0, 5, 1), (4, 5, 1)) is Verdict.INCONCLUSIVE  # not a whole window yet
    assert judge((0, 5, None), (10, 5, None)) is Verdict.INCONCLUSIVE  # no gauge
    assert judge((0, 5, 1)) is Verdict.INCONCLUSIVE
    detail = stall_verdict(samples((0, 42, 2), (10, 42, 3)), 10.0, "gen", "running").detail
    assert (
        detail == "stall: running stayed at 2 or more while gen stayed flat at 42 for 10.0 s "
        "(engine wedged)"
    )


# --- settings ---------------------------------------------------------------------------------


def test_settings_validation() -> None:
    with pytest.raises(UsageError, match="unknown probe smell"):
        SuiteSettings(probes=("readiness", "smell"))
    with pytest.raises(UsageError, match="not a regular expression"):
        SuiteSettings(expect="(")
    with pytest.raises(UsageError, match="burst: expected a positive number"):
        SuiteSettings(burst=0)
    with pytest.raises(UsageError, match="tokens_ratio"):
        SuiteSettings(baseline_tokens_ratio=1.5)
    with pytest.raises(UsageError, match="ttft_ratio"):
        SuiteSettings(baseline_ttft_ratio=0.5)
    s = SuiteSettings(timeouts={"known-answer": 5.0})
    assert s.timeout_for("known-answer") == 5.0
    assert s.timeout_for("streaming") == s.probe_timeout_s
    assert s.timeout_for("readiness") == s.probe_timeout_s  # overrides replace the defaults
    assert SuiteSettings().timeout_for("readiness") == 120.0
    assert SuiteSettings().expect_display == "/pong/i"


# --- recorded engine bodies, read by each profile ------------------------------------------------

# sgl-project/sglang docs/references/production_metrics.md shape, plus the per-iteration
# `sglang:realtime_tokens_total` (python/sglang/srt/metrics/collector.py) with its `mode` labels.
SGLANG_METRICS = """\
# HELP sglang:generation_tokens_total Number of generation tokens processed.
# TYPE sglang:generation_tokens_total counter
sglang:generation_tokens_total{model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.557572e+06
# HELP sglang:realtime_tokens_total Total number of tokens processed (updated on each log interval).
# TYPE sglang:realtime_tokens_total counter
sglang:realtime_tokens_total{engine_type="unified",mode="prefill_compute",model_name="m"} 120.0
sglang:realtime_tokens_total{engine_type="unified",mode="decode",model_name="m"} 3400.0
# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
"""

# NVIDIA/TensorRT-LLM tensorrt_llm/metrics/collector.py names at /prometheus/metrics.
TRTLLM_METRICS = """\
# HELP trtllm_generation_tokens_total Cumulative number of generation (output) tokens produced.
# TYPE trtllm_generation_tokens_total counter
trtllm_generation_tokens_total{engine_type="undefined",model_name="undefined"} 512.0
# HELP trtllm_num_requests_running Number of active requests
# TYPE trtllm_num_requests_running gauge
trtllm_num_requests_running{engine_type="undefined",model_name="undefined"} 1.0
"""

# NIM 1.x (docs.nvidia.com/nim/large-language-models/1.x observability.html) at /v1/metrics: vLLM's
# metrics without the `vllm:` prefix, read as aliases of the 2.x (pass-through) names.
NIM_METRICS = """\
# HELP num_requests_running Number of requests currently running on GPU.
# TYPE num_requests_running gauge
num_requests_running{model_name="meta/llama-3.1-8b-instruct"} 3.0
# HELP generation_tokens_total Number of generation tokens processed.
# TYPE generation_tokens_total counter
generation_tokens_total{model_name="meta/llama-3.1-8b-instruct"} 9876.0
"""


@pytest.mark.parametrize(
    ("profile", "text", "progress", "running"),
    [
        (SGLANG, SGLANG_METRICS, 3520.0, 2.0),
        (TRTLLM, TRTLLM_METRICS, None, 1.0),
        (NIM, NIM_METRICS, 9876.0, 3.0),
    ],
    ids=["sglang", "trtllm", "nim"],
)
def test_each_profile_reads_its_engines_metrics(
    profile: EngineProfile, text: str, progress: float | None, running: float
) -> None:
    totals = with_aliases(parse_prometheus(text), profile)
    sample = sample_of(totals, profile, at=0.0)
    # SGLang's stall counter sums its modes; trtllm has none (its counter moves as requests end).
    assert (sample.generated, sample.running) == (progress, running)
    assert profile.generation_tokens_metric is not None
    assert profile.generation_tokens_metric in totals


def test_ollama_api_ps_lists_the_loaded_models() -> None:
    # docs.ollama.com/api/ps example answer.
    doc = {
        "models": [
            {
                "name": "gemma3",
                "model": "gemma3",
                "size": 6591830464,
                "digest": "a2af6cc3eb7fa8be8504abaf9b04e88f17a119ec3f04a3addf55f92841195f5a",
                "details": {"parent_model": "", "format": "gguf", "family": "gemma3"},
                "expires_at": "2025-10-17T16:47:07.93355-07:00",
                "size_vram": 5333539264,
            }
        ]
    }
    assert loaded_models(doc, "/api/ps") == ["gemma3"]
    assert OLLAMA.same_model("gemma3", "gemma3:latest")
    assert not OLLAMA.same_model("gemma3", "gemma3:27b")
    assert not VLLM.same_model("gemma3", "gemma3:latest")
    assert loaded_models({"models": []}, "/api/ps") == []
    with pytest.raises(ProbeFailure):
        loaded_models({"models": "many"}, "/api/ps")


def test_vllm_lora_cards_are_adapters_of_their_parent() -> None:
    doc = {
        "object": "list",
        "data": [
            {"id": "m", "root": "/models/base", "parent": None, "max_model_len": 4096},
            {"id": "sql-lora", "root": "/adapters/sql", "parent": "m"},
        ],
    }
    base, lora = parse_models(doc)
    assert (base.adapter, lora.adapter, lora.parent) == (False, True, "m")
