"""What each inference engine means by "ready", where its metrics live, and its protocol quirks.

A profile is plain data: the probes read it, never branch on the engine's name. Every fact carries
the source it was checked against (the engine's own docs or code); versions move, so re-check the
source before a design rests on a fact that looks surprising.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal

from gx10slots.errors import ConfigError

MetricsFormat = Literal["prometheus", "json"]
ReadinessState = Literal["ready", "loading", "failed"]

# A body that says it is loading is read as "loading" whatever the engine (llama-server's
# "Loading model", the sandbox's "loading").
_LOADING_BODY = re.compile(r"\bloading\b", re.IGNORECASE)


@dataclass(frozen=True)
class EngineProfile:
    """How to talk to one engine's OpenAI-compatible server."""

    name: str
    # GET this path until it says "ready".
    readiness_path: str
    # Statuses of the readiness endpoint that mean "still starting, ask again". Any answer whose
    # body mentions loading is also read as loading, whatever the engine.
    loading_statuses: frozenset[int]
    # Whether the server answers HTTP at all while the model loads (False: connection refused
    # until it is ready, so connection errors are the loading signal).
    answers_while_loading: bool
    # One readiness request may take this long (SGLang's /health_generate runs a generation).
    readiness_request_timeout_s: float
    # Where metrics live and in which format; None when the engine has none.
    metrics_path: str | None
    metrics_format: MetricsFormat | None
    # Prometheus sample names for the progress check; None when the engine exports none. The
    # generation counter accounts for the tokens a finished request received.
    generation_tokens_metric: str | None
    requests_running_metric: str | None
    # Hint shown when the metrics endpoint answers 404 (e.g. a flag is needed to enable it).
    metrics_hint: str
    # The request field that caps the completion length and that this engine honours.
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"]
    # Whether the request schema accepts `seed` (some servers reject unknown fields with 400).
    accepts_seed: bool
    # Whether a stream honours `stream_options.include_usage` (sends a usage chunk).
    stream_usage: bool
    # The engine's final usage chunk may still carry a non-empty `choices` (read both shapes).
    usage_chunk_has_choices: bool
    # Message fields that may hold a reasoning model's chain of thought, in preference order.
    reasoning_fields: tuple[str, ...]
    # `/v1/models` lists every model the server could load, not just the one serving (identity
    # then means "contains", not "is exactly").
    lists_all_models: bool
    # `/v1/models` entries carry `max_model_len`.
    reports_max_model_len: bool
    # A counter that advances *during* a generation (per decode step), for the wedge/stall
    # check, when the generation counter only moves as a request ends; None: that counter moves
    # per step itself (unless ``generation_counter_per_step`` says it does not).
    progress_metric: str | None = None
    # Whether ``generation_tokens_metric`` moves at every decode step. False (and no
    # ``progress_metric``): the engine has no counter a stall can be read from, since a healthy
    # long generation keeps a request-end counter flat, so no stall rule runs on it.
    generation_counter_per_step: bool = True
    # GET this path for the models loaded in memory now (Ollama's `/api/ps`): a served name it
    # does not list is cold, its first request pays the load. None: loaded means ready.
    warmth_path: str | None = None
    # POST ``{"model": <served name>, "keep_alive": keep_alive}`` here to load the model and keep
    # it loaded (Ollama's `/api/generate` without a prompt). None: the engine never unloads.
    keep_alive_path: str | None = None
    keep_alive: int | str | None = None
    # Older names of a metric, per name above, read when the engine exports the older one
    # (NIM 1.x wrote vLLM's metrics without the `vllm:` prefix).
    metric_aliases: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The tag a model name without one means (Ollama: `llama3` is `llama3:latest`, and
    # `/v1/models` lists the tagged name); None: names compare as written.
    implicit_tag: str | None = None

    def same_model(self, a: str, b: str) -> bool:
        """Whether two model names name the same model on this engine."""
        if self.implicit_tag is None:
            return a == b

        def full(name: str) -> str:
            return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:{self.implicit_tag}"

        return full(a) == full(b)

    @property
    def progress_counter(self) -> str | None:
        """The counter whose flatness under running requests means a wedge (None: none)."""
        if self.progress_metric is not None:
            return self.progress_metric
        return self.generation_tokens_metric if self.generation_counter_per_step else None


# Reasoning field names across engines: DeepSeek's `reasoning_content` (llama-server, SGLang, vLLM
# before the rename) and OpenAI's guidance `reasoning` (vLLM >= the rename, ollama).
_BOTH_REASONING_FIELDS = ("reasoning_content", "reasoning")

VLLM = EngineProfile(
    name="vllm",
    # vllm/entrypoints/serve/instrumentator/health.py: `/health` awaits
    # engine_client.check_health() and returns 200, or 503 only on EngineDeadError; a deadlocked
    # but alive EngineCore keeps it at 200 (vllm issues 39863, PR 36451). The API server only
    # starts listening after the model is loaded, so nothing answers while loading.
    readiness_path="/health",
    loading_statuses=frozenset(),
    answers_while_loading=False,
    readiness_request_timeout_s=10.0,
    # docs/source/design/v1/metrics.md: Prometheus text at /metrics, no flag needed;
    # `vllm:generation_tokens_total` (Counter), `vllm:num_requests_running` (Gauge).
    metrics_path="/metrics",
    metrics_format="prometheus",
    generation_tokens_metric="vllm:generation_tokens_total",
    requests_running_metric="vllm:num_requests_running",
    metrics_hint="vLLM serves /metrics by default; is this really vLLM?",
    # vllm/entrypoints/openai/protocol.py ChatCompletionRequest: `max_tokens` is deprecated
    # in favour of `max_completion_tokens`; `seed` is accepted.
    max_tokens_field="max_completion_tokens",
    accepts_seed=True,
    # Same file: StreamOptions.include_usage → one final chunk with `choices: []` and usage.
    stream_usage=True,
    usage_chunk_has_choices=False,
    # vllm PR 27752 renamed `reasoning_content` to `reasoning` (PR 33402 removed the old name).
    reasoning_fields=("reasoning", "reasoning_content"),
    # vllm/entrypoints/openai/serving_models.py show_available_models: one card per
    # `--served-model-name` (parent None, max_model_len set) and one per LoRA adapter
    # (`--lora-modules`: parent = its base model's name, no max_model_len). Identity takes every
    # listed id as a name the slot may claim, and adapter cards as extras it may not.
    lists_all_models=False,
    # protocol.py ModelCard: `max_model_len: int | None`, served from config.
    reports_max_model_len=True,
)

LLAMA_SERVER = EngineProfile(
    name="llama-server",
    # ggml-org/llama.cpp tools/server/README.md "GET /health": 503
    # {"error":{"code":503,"message":"Loading model","type":"unavailable_error"}} while loading,
    # 200 {"status":"ok"} when ready; the HTTP server starts before the model loads.
    readiness_path="/health",
    loading_statuses=frozenset({503}),
    answers_while_loading=True,
    readiness_request_timeout_s=10.0,
    # Same README "GET /metrics": only with `--metrics`. tools/server/server-task.cpp
    # (to_metrics) and server-context.cpp: `llamacpp:tokens_predicted_total` (Counter) is added
    # when a request ends (metrics_on_prediction, from the slot's reset), so it stays flat through
    # a long generation; `llamacpp:n_decode_total` (Counter) counts every llama_decode() call
    # (metrics_post_decode), so it moves at each step: the stall check watches that one.
    # `llamacpp:requests_processing` (Gauge): slots processing. Verified against the real server
    # in tests/e2e/test_llamacpp.py.
    metrics_path="/metrics",
    metrics_format="prometheus",
    generation_tokens_metric="llamacpp:tokens_predicted_total",
    requests_running_metric="llamacpp:requests_processing",
    progress_metric="llamacpp:n_decode_total",
    metrics_hint="llama-server serves /metrics only when started with --metrics",
    # README "/completion" options: `seed` (default -1 = random); the OpenAI endpoints map
    # `max_tokens` onto n_predict.
    max_tokens_field="max_tokens",
    accepts_seed=True,
    # llama.cpp PR 15444 (Aug 2025) added a separate final chunk with `choices: []` and usage;
    # before it the usage rode on the last chunk together with a non-empty `choices`
    # (llama-cpp-python issue 1640 quotes that shape), and issue 16048 notes it is sent even
    # without include_usage.
    stream_usage=True,
    usage_chunk_has_choices=True,
    reasoning_fields=_BOTH_REASONING_FIELDS,
    # README "GET /v1/models": "The returned list always has one single element"; id is the
    # `--alias` or the model path.
    lists_all_models=False,
    reports_max_model_len=False,
)

LLAMA_CPP_PYTHON = EngineProfile(
    name="llama-cpp-python",
    # abetlen/llama-cpp-python llama_cpp/server/app.py: routes are /v1/completions,
    # /v1/chat/completions, /v1/embeddings, /v1/models, /extras/*; no /health (404), no /metrics.
    # The model loads before uvicorn listens.
    readiness_path="/v1/models",
    loading_statuses=frozenset(),
    answers_while_loading=False,
    readiness_request_timeout_s=10.0,
    metrics_path=None,
    metrics_format=None,
    generation_tokens_metric=None,
    requests_running_metric=None,
    metrics_hint="llama-cpp-python's server has no metrics endpoint",
    # llama_cpp/server/types.py CreateChatCompletionRequest: `max_tokens`, `seed`; no
    # `max_completion_tokens` (ignored, issue 1907) and no `stream_options` (so no usage chunk).
    max_tokens_field="max_tokens",
    accepts_seed=True,
    stream_usage=False,
    usage_chunk_has_choices=False,
    reasoning_fields=_BOTH_REASONING_FIELDS,
    lists_all_models=False,
    reports_max_model_len=False,
)

SGLANG = EngineProfile(
    name="sglang",
    # sgl-project/sglang python/sglang/srt/entrypoints/http_server.py health_generate(): 503
    # (empty body) while ServerStatus.Starting or shutting down, otherwise a one-token
    # generation (bounded by SGLANG_HEALTH_CHECK_TIMEOUT, 20 s by default) → 200 or 503.
    readiness_path="/health_generate",
    loading_statuses=frozenset({503}),
    answers_while_loading=True,
    readiness_request_timeout_s=25.0,
    # `/health` is the same handler but answers 200 without generating unless
    # SGLANG_ENABLE_HEALTH_ENDPOINT_GENERATION is set, so it says nothing about generation.
    # docs/references/production_metrics.md: only with `--enable-metrics`;
    # python/sglang/srt/metrics/collector.py: Counter `sglang:generation_tokens_total` is added
    # from a finished request's stats (TokenizerMetricsCollector), so it stays flat through a
    # long generation; Counter `sglang:realtime_tokens_total{mode=prefill_compute|prefill_cache|
    # decode}` is incremented by the scheduler at every decode iteration
    # (python/sglang/srt/managers/scheduler_metrics_mixin.py log_decode_stats_every_iteration):
    # the stall check watches that one (summed over modes); an SGLang too old to export it
    # leaves the stall check inconclusive, never a wedge. Gauge `sglang:num_running_reqs`.
    metrics_path="/metrics",
    metrics_format="prometheus",
    generation_tokens_metric="sglang:generation_tokens_total",
    requests_running_metric="sglang:num_running_reqs",
    progress_metric="sglang:realtime_tokens_total",
    metrics_hint="SGLang serves /metrics only when started with --enable-metrics",
    # python/sglang/srt/entrypoints/openai/protocol.py: `max_tokens` deprecated in favour of
    # `max_completion_tokens`; `seed` accepted; StreamOptions.include_usage honoured.
    max_tokens_field="max_completion_tokens",
    accepts_seed=True,
    stream_usage=True,
    usage_chunk_has_choices=False,
    reasoning_fields=_BOTH_REASONING_FIELDS,
    lists_all_models=False,
    reports_max_model_len=False,
)

OLLAMA = EngineProfile(
    name="ollama",
    # ollama/ollama server/routes.go: `GET /api/version` → 200 {"version": ...} (and `GET /` →
    # "Ollama is running") as soon as the server listens; neither loads a model nor says anything
    # about generation, so only the generation probes tell.
    readiness_path="/api/version",
    loading_statuses=frozenset(),
    answers_while_loading=True,
    readiness_request_timeout_s=10.0,
    metrics_path=None,
    metrics_format=None,
    generation_tokens_metric=None,
    requests_running_metric=None,
    metrics_hint="ollama has no metrics endpoint",
    # docs/api.md "List Running Models" (https://docs.ollama.com/api/ps): `GET /api/ps` →
    # {"models": [{"name", "model", "size", "digest", "details", "expires_at", "size_vram"}]},
    # only the models loaded in memory now. Ollama loads on the first request and unloads after
    # OLLAMA_KEEP_ALIVE (5 minutes by default), so a "warm" standby is usually cold.
    warmth_path="/api/ps",
    # docs/api.md "Load a model": `POST /api/generate` with only `model` loads it; `keep_alive`
    # (api/types.go GenerateRequest.KeepAlive: a duration string or seconds) "-1 or any negative
    # number keeps the model loaded indefinitely". The OpenAI-compatible endpoint takes no
    # keep_alive (openai/openai.go ChatCompletionRequest has none), hence the native call.
    keep_alive_path="/api/generate",
    keep_alive=-1,
    # types/model/name.go ParseName: a name without a tag gets the default tag "latest";
    # openai/openai.go ToListCompletion lists each local model by its full name.
    implicit_tag="latest",
    # ollama openai/openai.go ChatCompletionRequest has MaxTokens, Seed and StreamOptions, but no
    # max_completion_tokens: it is silently ignored (ollama issue 7125), so send `max_tokens`.
    max_tokens_field="max_tokens",
    accepts_seed=True,
    stream_usage=True,
    usage_chunk_has_choices=False,
    # Same file: Message.Reasoning is serialised as `reasoning`.
    reasoning_fields=("reasoning", "reasoning_content"),
    # Same file ToListCompletion: `/v1/models` lists every local model.
    lists_all_models=True,
    reports_max_model_len=False,
)

TRTLLM = EngineProfile(
    name="trtllm",
    # NVIDIA/TensorRT-LLM tensorrt_llm/serve/openai_server.py health_generate(): a real one-token
    # chat completion, 200 on success; the server listens only once the LLM is built.
    readiness_path="/health_generate",
    loading_statuses=frozenset(),
    answers_while_loading=False,
    readiness_request_timeout_s=25.0,
    # tensorrt_llm/serve/openai_server.py register_routes/mount_metrics: `/metrics` is a JSON
    # list of iteration stats, but with `return_perf_metrics: true` (LLM API options) the server
    # also mounts Prometheus text at `/prometheus/metrics`. tensorrt_llm/metrics/collector.py
    # MetricsCollector: Counter `trtllm_generation_tokens_total` is logged per *finished* request
    # (log_request_metrics_dict: "only recorded when ... the request has finished"), Gauge
    # `trtllm_num_requests_running` per iteration; no counter moves per decode step, so the
    # token check runs and the stall rule does not (a long generation keeps the counter flat).
    metrics_path="/prometheus/metrics",
    metrics_format="prometheus",
    generation_tokens_metric="trtllm_generation_tokens_total",
    requests_running_metric="trtllm_num_requests_running",
    generation_counter_per_step=False,
    metrics_hint=(
        "trtllm-serve serves /prometheus/metrics only with return_perf_metrics: true "
        "(--extra_llm_api_options)"
    ),
    # tensorrt_llm/serve/openai_protocol.py ChatCompletionRequest (extra="forbid", so unknown
    # fields are a 400): `max_completion_tokens` (alias `max_tokens`), `seed`, `stream_options`
    # (rejected unless stream is true).
    max_tokens_field="max_completion_tokens",
    accepts_seed=True,
    stream_usage=True,
    usage_chunk_has_choices=False,
    reasoning_fields=_BOTH_REASONING_FIELDS,
    lists_all_models=False,
    reports_max_model_len=False,
)

# NVIDIA NIM for LLMs serves vLLM behind its own front (the API reference below: an
# OpenAI-compatible API backed by vLLM, `seed`, `stream_options.include_usage` with a final
# `choices: []` usage chunk, reasoning as vLLM names it; `/v1/models` lists the model and its LoRA
# adapters, entries with `parent`): vLLM's profile, but for what NIM does differently.
NIM = replace(
    VLLM,
    name="nim",
    # NVIDIA NIM for LLMs API reference
    # (https://docs.nvidia.com/nim/large-language-models/latest/reference/api-reference.html):
    # `GET /v1/health/ready` answers 200 once the model is loaded, 503 until then;
    # `GET /v1/health/live` answers 200 as soon as the container runs (served by the nginx layer,
    # "does not require the model to be loaded"): the server answers while loading.
    readiness_path="/v1/health/ready",
    loading_statuses=frozenset({503}),
    answers_while_loading=True,
    # NIM LLM 2.x reference/logging-and-observability
    # (https://docs.nvidia.com/nim/large-language-models/latest/reference/logging-and-observability.html):
    # Prometheus text at `/v1/metrics`, "the inference backend's native Prometheus metrics
    # without modification", vLLM's by default: `vllm:generation_tokens_total` (per engine step)
    # and `vllm:num_requests_running`. NIM 1.x wrote the same metrics without the prefix
    # (https://docs.nvidia.com/nim/large-language-models/latest/observability.html, the 1.x page:
    # `generation_tokens_total` "per iteration", `num_requests_running`): read as aliases.
    metrics_path="/v1/metrics",
    metric_aliases={
        "vllm:generation_tokens_total": ("generation_tokens_total",),
        "vllm:num_requests_running": ("num_requests_running",),
    },
    metrics_hint="NIM serves Prometheus metrics at /v1/metrics",
    # The API reference documents `max_tokens`; its model cards carry no max_model_len.
    max_tokens_field="max_tokens",
    reports_max_model_len=False,
)

OPENAI = EngineProfile(
    name="openai",
    # A generic OpenAI-compatible server: `/v1/models` is the one endpoint they all share.
    readiness_path="/v1/models",
    loading_statuses=frozenset({503}),
    answers_while_loading=True,
    readiness_request_timeout_s=10.0,
    metrics_path=None,
    metrics_format=None,
    generation_tokens_metric=None,
    requests_running_metric=None,
    metrics_hint="the generic openai profile reads no metrics",
    # `max_tokens` is the field every self-hosted OpenAI-compatible server understands
    # (OpenAI itself deprecated it only for its o-series models).
    max_tokens_field="max_tokens",
    accepts_seed=True,
    stream_usage=True,
    usage_chunk_has_choices=True,
    reasoning_fields=_BOTH_REASONING_FIELDS,
    lists_all_models=False,
    reports_max_model_len=False,
)


def readiness_state(profile: EngineProfile, status: int, body: str) -> ReadinessState:
    """Read one answer of the readiness endpoint."""
    if status == 200:
        return "ready"
    if status in profile.loading_statuses or (status == 503 and _LOADING_BODY.search(body)):
        return "loading"
    return "failed"


PROFILES: dict[str, EngineProfile] = {
    p.name: p for p in (VLLM, LLAMA_SERVER, LLAMA_CPP_PYTHON, SGLANG, OLLAMA, TRTLLM, NIM, OPENAI)
}


def get_profile(name: str) -> EngineProfile:
    """The profile called ``name``; :class:`ConfigError` naming the known ones otherwise."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ConfigError(
            f"engine: unknown engine {name!r}; expected one of {', '.join(PROFILES)}"
        ) from None
