"""How each engine's server looks on the wire, for the sandbox's fake model server to imitate.

One entry per smoke profile (gx10slots/smoke/profiles.py, where each fact's source is cited): the
fake server started with ``--engine NAME`` answers readiness, metrics, `/v1/models` and the
engine's own endpoints the way that engine does, so every profile's checks meet a server in
tests. Adding a profile: its entry in PROFILES and one here (a test checks both lists agree).

Stdlib only, like the fake server itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

ModelsShape = Literal["cards", "llama-server", "ollama"]


@dataclass(frozen=True)
class Metric:
    """One Prometheus family the fake server exports, and what it counts."""

    name: str  # the sample name, as the engine writes it
    kind: Literal["counter", "gauge"]
    # "step": tokens as they are generated; "end": a request's tokens when it finishes;
    # "running": requests in flight.
    counts: Literal["step", "end", "running"]
    # Extra labels (SGLang's realtime counter carries `mode`).
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Imitation:
    engine: str
    # GET paths answering 503 while the model loads and 200 (with ``ready_body``) after.
    readiness_paths: tuple[str, ...]
    ready_body: str = ""
    loading_body: str = '{"error":{"message":"loading model","code":503}}'
    # GET paths answering 200 with this body even while the model loads (liveness, version).
    live_paths: Mapping[str, str] = field(default_factory=dict)
    # Prometheus text here, with these families; None: no metrics endpoint (404).
    metrics_path: str | None = None
    metrics: tuple[Metric, ...] = ()
    # Further GET paths answering this JSON document (trtllm-serve's JSON `/metrics`).
    json_paths: Mapping[str, str] = field(default_factory=dict)
    models_shape: ModelsShape = "cards"
    # Ollama: `/api/ps` lists the models loaded now, `/api/generate` loads one with keep_alive.
    ps_path: str | None = None
    load_path: str | None = None
    # The id a response and the `/v1/models` card name: llama-server's alphabetically first
    # alias (a std::set), others the first served name.
    first_alias_sorted: bool = False
    owned_by: str = "vllm"


def _counter(name: str, counts: Literal["step", "end"], **labels: str) -> Metric:
    return Metric(name, "counter", counts, labels)


def _gauge(name: str) -> Metric:
    return Metric(name, "gauge", "running")


_VLLM_HEALTH = ("/health",)

IMITATIONS: dict[str, Imitation] = {
    i.engine: i
    for i in (
        # vLLM's metrics are written by the server's own vLLM-shaped renderer (Metrics.render).
        Imitation("vllm", _VLLM_HEALTH, live_paths={"/version": '{"version":"0.0.0+sandbox"}'}),
        Imitation(
            "llama-server",
            _VLLM_HEALTH,
            ready_body='{"status":"ok"}',
            loading_body=(
                '{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}'
            ),
            metrics_path="/metrics",
            metrics=(
                _counter("llamacpp:tokens_predicted_total", "end"),
                _counter("llamacpp:n_decode_total", "step"),
                _gauge("llamacpp:requests_processing"),
            ),
            models_shape="llama-server",
            first_alias_sorted=True,
            owned_by="llamacpp",
        ),
        # No /health and no metrics: readiness is /v1/models once uvicorn listens.
        Imitation("llama-cpp-python", ("/v1/models",), owned_by="me"),
        Imitation(
            "sglang",
            ("/health_generate", "/health"),
            metrics_path="/metrics",
            metrics=(
                _counter("sglang:generation_tokens_total", "end"),
                _counter("sglang:realtime_tokens_total", "step", mode="decode"),
                _gauge("sglang:num_running_reqs"),
            ),
            owned_by="sglang",
        ),
        Imitation(
            "ollama",
            (),
            live_paths={"/api/version": '{"version":"0.0.0+sandbox"}', "/": "Ollama is running"},
            models_shape="ollama",
            ps_path="/api/ps",
            load_path="/api/generate",
            owned_by="library",
        ),
        Imitation(
            "trtllm",
            ("/health", "/health_generate"),
            ready_body="Generation health check OK",
            live_paths={"/version": '{"version":"0.0.0+sandbox"}'},
            metrics_path="/prometheus/metrics",
            metrics=(
                _counter("trtllm_generation_tokens_total", "end"),
                _gauge("trtllm_num_requests_running"),
            ),
            json_paths={"/metrics": "[]"},
            owned_by="tensorrt_llm",
        ),
        Imitation(
            "nim",
            ("/v1/health/ready",),
            ready_body='{"object":"health.response","message":"Service is ready."}',
            live_paths={
                "/v1/health/live": '{"object":"health.response","message":"Service is live."}'
            },
            metrics_path="/v1/metrics",
            metrics=(
                _counter("vllm:generation_tokens_total", "step"),
                _gauge("vllm:num_requests_running"),
            ),
        ),
        Imitation("openai", (), owned_by="openai"),
    )
}


def imitation(engine: str) -> Imitation:
    try:
        return IMITATIONS[engine]
    except KeyError:
        raise ValueError(
            f"unknown engine {engine!r}; expected one of {', '.join(IMITATIONS)}"
        ) from None
