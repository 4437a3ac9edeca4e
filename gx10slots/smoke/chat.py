"""Talking to `/v1/chat/completions`: one answer, or one stream read frame by frame."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gx10slots.smoke import wire
from gx10slots.smoke._failure import ProbeFailure
from gx10slots.smoke._http import (
    EVIDENCE,
    Phase,
    iter_sse_data,
    open_response,
    parse_json_text,
    read_json,
    read_prefix,
)
from gx10slots.smoke.context import ProbeContext, http_error

CHAT_PATH = "/v1/chat/completions"


async def chat_once(ctx: ProbeContext, body: dict[str, Any], timeout: float) -> wire.ChatAnswer:
    """One non-streamed chat completion, read defensively."""
    ctx.stats.requests += 1
    async with open_response(
        ctx.client, "POST", CHAT_PATH, timeout=timeout, json_body=body
    ) as response:
        if response.status_code != 200:
            raise await http_error(ctx, response)
        doc = await read_json(response, ctx.settings.body_cap_bytes, "the response", ctx.redact)
    answer = wire.parse_chat_completion(doc, ctx.profile.reasoning_fields)
    if answer.completion_tokens:
        ctx.stats.tokens_received += answer.completion_tokens
    return answer


@dataclass
class StreamOutcome:
    ttft_ms: float | None = None
    latency_ms: float = 0.0
    frames: int = 0
    delta_frames: int = 0
    content: str = ""
    reasoning: str = ""
    tool_call: bool = False
    finish_reason: str | None = None
    completion_tokens: int | None = None
    usage_with_choices: bool = False

    @property
    def tokens(self) -> int:
        """Tokens received: the usage count, or the delta frames when the engine sent none."""
        return self.completion_tokens if self.completion_tokens is not None else self.delta_frames


async def stream_chat(
    ctx: ProbeContext, body: dict[str, Any], phase: Phase, timeout: float
) -> StreamOutcome:
    """One streamed chat completion, every frame checked; truncation is a failure."""
    out = StreamOutcome()
    ctx.stats.requests += 1
    started = time.perf_counter()
    phase.set("waiting for the response headers")
    async with open_response(
        ctx.client, "POST", CHAT_PATH, timeout=timeout, json_body=body
    ) as response:
        if response.status_code != 200:
            raise await http_error(ctx, response)
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            raise ProbeFailure(
                "asked for a stream, got a single application/json answer",
                evidence=ctx.redact.clip(await read_prefix(response, EVIDENCE), EVIDENCE),
            )
        phase.set("waiting for the first token")
        done = False
        async for data in iter_sse_data(response, ctx.settings.stream_cap_bytes, ctx.redact):
            if data.strip() == "[DONE]":
                done = True
                break
            out.frames += 1
            doc = parse_json_text(data, f"stream frame {out.frames}", ctx.redact)
            delta = wire.parse_chunk(doc, ctx.profile.reasoning_fields, out.frames)
            if delta.content or delta.reasoning or delta.tool_call:
                out.delta_frames += 1
                if out.ttft_ms is None:
                    out.ttft_ms = (time.perf_counter() - started) * 1000.0
                    phase.metrics["ttft_ms"] = out.ttft_ms
            out.content += delta.content
            out.reasoning += delta.reasoning
            out.tool_call = out.tool_call or delta.tool_call
            if delta.finish_reason is not None:
                out.finish_reason = delta.finish_reason
            if delta.completion_tokens is not None:
                out.completion_tokens = delta.completion_tokens
                out.usage_with_choices = out.usage_with_choices or delta.has_choices
            phase.set(f"reading the stream after {out.frames} frames (no data: [DONE] yet)")
    out.latency_ms = (time.perf_counter() - started) * 1000.0
    if not done:
        raise ProbeFailure(
            f"the stream ended after {out.frames} frames without data: [DONE] (truncated)",
            evidence=ctx.redact.clip(out.content or out.reasoning, EVIDENCE),
        )
    return out
