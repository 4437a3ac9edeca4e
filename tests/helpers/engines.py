"""A scriptable fake engine behind ``httpx.MockTransport``, and helpers to run one probe on it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import httpx

from gx10slots.smoke.context import ProbeContext
from gx10slots.smoke.profiles import VLLM, EngineProfile
from gx10slots.smoke.redact import Redactor
from gx10slots.smoke.result import ProbeResult
from gx10slots.smoke.settings import SuiteSettings

BASE = "http://engine.test"

# Everything tiny: no test waits on a real clock for more than a fraction of a second.
FAST = SuiteSettings(
    probe_timeout_s=2.0,
    timeouts={"readiness": 2.0, "identity": 2.0},
    readiness_poll_s=0.001,
    stall_window_s=0.3,
    stall_interval_s=0.02,
    progress_settle_s=0.05,
    burst=3,
)

Handler = Callable[[httpx.Request], Coroutine[Any, Any, httpx.Response]]


def sse(*frames: Any, done: bool = True, comment: bool = False) -> bytes:
    """An event stream: each frame a JSON document (or raw text), then ``data: [DONE]``."""
    out = b": ping\n\n" if comment else b""
    for frame in frames:
        data = frame if isinstance(frame, str | bytes) else json.dumps(frame)
        out += b"data: " + (data.encode() if isinstance(data, str) else data) + b"\n\n"
    if done:
        out += b"data: [DONE]\n\n"
    return out


def chunk(content: str | None = None, finish: str | None = None, **delta: Any) -> dict[str, Any]:
    if content is not None:
        delta["content"] = content
    return {
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }


def usage_chunk(tokens: int, *, with_choices: bool = False) -> dict[str, Any]:
    choices = [{"index": 0, "delta": {}, "finish_reason": "stop"}] if with_choices else []
    return {
        "object": "chat.completion.chunk",
        "choices": choices,
        "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens},
    }


def completion(
    content: str | None = "pong",
    *,
    finish: str | None = "stop",
    tokens: int | None = 1,
    **message: Any,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "object": "chat.completion",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": content, **message},
                "finish_reason": finish,
            }
        ],
    }
    if tokens is not None:
        doc["usage"] = {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}
    return doc


def event_stream(body: bytes | AsyncIterator[bytes]) -> httpx.Response:
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)


async def hang_forever(request: httpx.Request) -> httpx.Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


class FakeEngine:
    """A healthy vLLM-like engine by default; tests override one route or one attribute."""

    def __init__(self, served: str = "m", answer: str = "pong") -> None:
        self.served = served
        self.answer = answer
        self.models: list[dict[str, Any]] = [{"id": served, "max_model_len": 4096}]
        # Readiness answers, served in order; the last one repeats.
        self.health: list[tuple[int, str]] = [(200, "")]
        self.generated = 0.0
        self.running = 0.0
        self.metrics_status = 200
        self.bodies: list[dict[str, Any]] = []
        self.headers: list[httpx.Headers] = []
        self.routes: dict[str, Handler] = {}
        self.tool_mode = "call"  # "call", "leak" or "text"
        # Asked for JSON (response_format): "schema" answers it; "ignore" answers as without it
        # (an engine without guided decoding); any other text is answered as it is.
        self.json_mode = "schema"

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        self.headers.append(request.headers)
        if request.url.path in self.routes:
            return await self.routes[request.url.path](request)
        if request.url.path in ("/health", "/health_generate", "/api/version"):
            status, text = self.health.pop(0) if len(self.health) > 1 else self.health[0]
            return httpx.Response(status, text=text)
        if request.url.path == "/v1/models":
            return httpx.Response(200, json={"object": "list", "data": self.models})
        if request.url.path == "/metrics":
            return httpx.Response(self.metrics_status, text=self.metrics_text())
        if request.url.path == "/v1/chat/completions":
            return self.chat(json.loads(request.content))
        return httpx.Response(404, json={"detail": "Not Found"})

    def metrics_text(self) -> str:
        return (
            "# TYPE vllm:generation_tokens counter\n"
            f'vllm:generation_tokens_total{{model_name="{self.served}"}} {self.generated}\n'
            "# TYPE vllm:num_requests_running gauge\n"
            f'vllm:num_requests_running{{model_name="{self.served}"}} {self.running}\n'
        )

    def chat(self, body: dict[str, Any]) -> httpx.Response:
        self.bodies.append(body)
        if body.get("model") != self.served:
            return httpx.Response(
                404, json={"error": {"message": f"The model `{body.get('model')}` does not exist."}}
            )
        if body.get("tools"):
            return self.tool_answer()
        if body.get("response_format") and self.json_mode != "ignore":
            text = '{"city": "Paris", "temperature_c": 21}'
            text = text if self.json_mode == "schema" else self.json_mode
            self.generated += 8
            return httpx.Response(200, json=completion(text, tokens=8))
        words = self.answer.split(" ")
        self.generated += len(words)
        if body.get("stream"):
            frames: list[Any] = [chunk(role="assistant", content="")]
            frames += [chunk(w if i == 0 else " " + w) for i, w in enumerate(words)]
            frames.append(chunk(finish="stop"))
            if body.get("stream_options", {}).get("include_usage"):
                frames.append(usage_chunk(len(words)))
            return event_stream(sse(*frames))
        return httpx.Response(200, json=completion(self.answer, tokens=len(words)))

    def tool_answer(self) -> httpx.Response:
        self.generated += 10
        if self.tool_mode == "leak":
            text = '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call>'
            return httpx.Response(200, json=completion(text, tokens=10))
        if self.tool_mode == "text":
            return httpx.Response(200, json=completion("It is sunny in Paris.", tokens=10))
        call = {
            "id": "call-1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        }
        return httpx.Response(
            200, json=completion(None, finish="tool_calls", tokens=10, tool_calls=[call])
        )


def run_probe(
    probe: Callable[[ProbeContext], Awaitable[ProbeResult]],
    handler: Handler,
    *,
    profile: EngineProfile = VLLM,
    settings: SuiteSettings = FAST,
    served: str = "m",
    api_key: str | None = None,
    before: Callable[[ProbeContext], Awaitable[None]] | None = None,
) -> tuple[ProbeResult, ProbeContext]:
    """Run one probe against ``handler``; the result and the context (for its stats)."""

    async def go() -> tuple[ProbeResult, ProbeContext]:
        async with httpx.AsyncClient(
            base_url=BASE, transport=httpx.MockTransport(handler)
        ) as client:
            ctx = ProbeContext(client, served, profile, settings, Redactor([api_key]))
            if before is not None:
                await before(ctx)
            return await probe(ctx), ctx

    return asyncio.run(go())
