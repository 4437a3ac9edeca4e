"""The deep-liveness probes: each one asks the engine to do real work and judges the answer.

Every probe is an ``async`` function over the suite's :class:`ProbeContext` (an
``httpx.AsyncClient`` aimed at the engine) and a timeout, and returns a :class:`ProbeResult`. A
probe never raises for an engine misbehaving: refused connections, error statuses, wrong shapes,
hostile bodies and hangs all end as a failed result with a precise detail, within the timeout
(``asyncio.timeout`` cancels whatever the engine is doing to us).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    stop_after_delay,
    wait_fixed,
)

from gx10slots.smoke import checks, wire
from gx10slots.smoke._failure import ProbeFailure
from gx10slots.smoke._http import (
    EVIDENCE,
    Phase,
    describe_transport_error,
    open_response,
    read_json,
    read_prefix,
)
from gx10slots.smoke.chat import StreamOutcome, chat_once, stream_chat
from gx10slots.smoke.context import (
    ERROR_BODY_PREFIX,
    Outcome,
    ProbeContext,
    SuiteStats,
    http_error,
    run_probe,
)
from gx10slots.smoke.profiles import readiness_state
from gx10slots.smoke.progress import (
    MetricsUnavailable,
    ProgressSample,
    Verdict,
    sample_of,
    scrape,
    stall_verdict,
)
from gx10slots.smoke.result import ProbeResult
from gx10slots.smoke.settings import GoldenPrompt
from gx10slots.smoke.wire import ChatAnswer

__all__ = [
    "PROBES",
    "ProbeContext",
    "SuiteStats",
    "probe_burst",
    "probe_identity",
    "probe_keep_alive",
    "probe_known_answer",
    "probe_progress",
    "probe_prompt",
    "probe_readiness",
    "probe_streaming",
    "probe_structured_output",
    "probe_tool_call",
    "take_metrics_baseline",
    "watch_for_stall",
]

logger = logging.getLogger(__name__)

MODELS_PATH = "/v1/models"

ProbeFn = Callable[[ProbeContext, float], Awaitable[ProbeResult]]

# The probe functions by name (the names and their order are gx10slots.smoke.catalog's).
PROBES: dict[str, ProbeFn] = {}


_Fn = TypeVar("_Fn", bound=ProbeFn)


def registered(name: str) -> Callable[[_Fn], _Fn]:
    """Register a probe function under its catalog name (its own type kept for direct callers)."""

    def register(fn: _Fn) -> _Fn:
        PROBES[name] = fn
        return fn

    return register


# --- readiness ------------------------------------------------------------------------------


class _StillLoading(Exception):
    """The readiness endpoint says "not yet": worth asking again."""


# Connection-level errors that mean "not listening yet" (the server starts after model load, or
# is restarting). A read timeout is not among them: a server that accepts and never answers is
# not loading, it is stuck.
_NOT_LISTENING_YET = (httpx.ConnectError, httpx.ConnectTimeout, httpx.RemoteProtocolError)


@registered("readiness")
async def probe_readiness(ctx: ProbeContext, timeout: float | None = None) -> ProbeResult:
    """Poll the profile's readiness endpoint until it says ready, it fails, or time runs out."""
    timeout = ctx.settings.timeout_for("readiness") if timeout is None else timeout
    profile, path = ctx.profile, ctx.profile.readiness_path
    attempts = 0
    last = "no answer yet"

    async def attempt() -> int:
        nonlocal attempts
        attempts += 1
        per_request = profile.readiness_request_timeout_s
        try:
            async with asyncio.timeout(per_request):
                async with open_response(ctx.client, "GET", path, timeout=per_request) as response:
                    body = await read_prefix(response, ERROR_BODY_PREFIX)
        except TimeoutError:
            raise ProbeFailure(
                f"{path} accepted the connection but did not answer within {per_request:g} s "
                "(engine stuck?)"
            ) from None
        text = ctx.redact(body.decode("utf-8", errors="replace"))
        state = readiness_state(profile, response.status_code, text)
        if state == "loading":
            raise _StillLoading(f"HTTP {response.status_code} {ctx.redact.clip(text, 120)}")
        if state == "failed":
            raise ProbeFailure(
                f"{path} answered HTTP {response.status_code}: "
                f"{ctx.redact.clip(text, 300) or '(empty body)'}",
                evidence=ctx.redact.clip(text, EVIDENCE),
            )
        return response.status_code

    async def body(phase: Phase) -> Outcome:
        started = time.monotonic()

        def before_sleep(state: RetryCallState) -> None:
            nonlocal last
            exc = state.outcome.exception() if state.outcome else None
            last = (
                describe_transport_error(exc) if isinstance(exc, httpx.TransportError) else str(exc)
            )
            phase.set(f"waiting for {path} to report ready (attempt {attempts}; last: {last})")
            logger.debug(
                "readiness attempt %d (%.1f s of %.0f s): %s",
                attempts,
                time.monotonic() - started,
                timeout,
                last,
            )

        retrying = AsyncRetrying(
            retry=retry_if_exception_type((_StillLoading, *_NOT_LISTENING_YET)),
            wait=wait_fixed(ctx.settings.readiness_poll_s),
            stop=stop_after_delay(timeout),
            before_sleep=before_sleep,
            reraise=True,
        )
        phase.set(f"waiting for {path} to report ready")
        try:
            status: int = await retrying(attempt)
        except _StillLoading as exc:
            raise ProbeFailure(
                f"still loading after {time.monotonic() - started:.1f} s "
                f"({attempts} attempts; last: {exc})"
            ) from None
        except httpx.TransportError as exc:
            raise ProbeFailure(
                f"not ready after {time.monotonic() - started:.1f} s ({attempts} attempt"
                f"{'s' if attempts != 1 else ''}): {describe_transport_error(exc)}"
            ) from None
        waited = time.monotonic() - started
        metrics = {"attempts": float(attempts), "waited_ms": waited * 1000.0}
        detail = (
            f"{path} answered HTTP {status} after {attempts} attempt"
            f"{'s' if attempts != 1 else ''} ({waited:.1f} s)"
        )
        if profile.warmth_path is not None:
            phase.set(f"asking {profile.warmth_path} whether {ctx.served_name!r} is loaded")
            try:
                warm = await _loaded(ctx, timeout)
            except (ProbeFailure, httpx.TransportError) as exc:
                # The server is ready; only whether the model is loaded is unknown (an Ollama
                # older than /api/ps): the keep-alive probe checks it again at the end.
                reason = exc.detail if isinstance(exc, ProbeFailure) else type(exc).__name__
                return Outcome(
                    f"{detail}; whether {ctx.served_name!r} was loaded: {reason}", metrics
                )
            metrics["warm"] = float(warm)
            detail += (
                f"; {ctx.served_name!r} was loaded"
                if warm
                else f"; {ctx.served_name!r} was cold (not listed by {profile.warmth_path})"
            )
        return Outcome(detail, metrics=metrics)

    return await run_probe("readiness", timeout, body, ctx.redact)


async def _loaded(ctx: ProbeContext, timeout: float) -> bool:
    """Whether the engine lists the served model among those loaded in memory now."""
    path = ctx.profile.warmth_path
    assert path is not None
    async with open_response(ctx.client, "GET", path, timeout=timeout) as response:
        if response.status_code != 200:
            raise await http_error(ctx, response)
        doc = await read_json(response, ctx.settings.body_cap_bytes, path, ctx.redact)
    loaded = wire.loaded_models(doc, path)
    return any(ctx.profile.same_model(n, ctx.served_name) for n in loaded)


@registered("keep-alive")
async def probe_keep_alive(ctx: ProbeContext, timeout: float | None = None) -> ProbeResult:
    """Ask an engine that unloads idle models to keep the served one loaded, and check that it
    is: a standby must still be warm when production flips to it."""
    timeout = ctx.settings.timeout_for("keep-alive") if timeout is None else timeout
    profile = ctx.profile

    async def body(phase: Phase) -> Outcome:
        path = profile.keep_alive_path
        if path is None:
            return Outcome(f"not needed: {profile.name} keeps its model loaded", skipped=True)
        phase.set(f"asking {path} to keep {ctx.served_name!r} loaded")
        request = {"model": ctx.served_name, "keep_alive": profile.keep_alive, "stream": False}
        async with open_response(
            ctx.client, "POST", path, timeout=timeout, json_body=request
        ) as response:
            if response.status_code != 200:
                raise await http_error(ctx, response)
            await read_prefix(response, ERROR_BODY_PREFIX)
        detail = f"{ctx.served_name!r} kept loaded (keep_alive {profile.keep_alive})"
        if profile.warmth_path is not None:
            if not await _loaded(ctx, timeout):
                raise ProbeFailure(
                    f"{profile.warmth_path} does not list {ctx.served_name!r} after "
                    f"{path} was asked to keep it loaded: the standby would be cold"
                )
            detail += f", listed by {profile.warmth_path}"
        return Outcome(detail)

    return await run_probe("keep-alive", timeout, body, ctx.redact)


# --- identity -------------------------------------------------------------------------------


@registered("identity")
async def probe_identity(ctx: ProbeContext, timeout: float | None = None) -> ProbeResult:
    """`/v1/models` serves every name the slot claims, and nothing else (for engines that list
    only what they serve); for vLLM also a long enough context."""
    timeout = ctx.settings.timeout_for("identity") if timeout is None else timeout

    async def body(phase: Phase) -> Outcome:
        async with open_response(ctx.client, "GET", MODELS_PATH, timeout=timeout) as response:
            if response.status_code != 200:
                raise await http_error(ctx, response)
            doc = await read_json(response, ctx.settings.body_cap_bytes, MODELS_PATH, ctx.redact)
        entries = wire.parse_models(doc)
        ids = wire.served_ids(entries)
        listed = ctx.redact.clip(repr(ids), 300)
        claimed = list(ctx.claimed_names)
        metrics: dict[str, float] = {"models": float(len(ids))}
        same = ctx.profile.same_model
        missing = [n for n in claimed if not any(same(n, i) for i in ids)]
        # A LoRA adapter card is an extra the slot may serve without claiming it; a model name
        # nobody claimed means the slot's spec and its engine disagree.
        unclaimed = [
            n
            for e in entries
            if not e.adapter
            for n in e.names
            if not any(same(n, c) for c in claimed)
        ]
        exact = ctx.exact_names and not ctx.profile.lists_all_models
        if exact and (missing or unclaimed):
            raise ProbeFailure(f"expected exactly {claimed!r}, /v1/models holds {listed}")
        if missing:
            raise ProbeFailure(
                f"expected {', '.join(repr(n) for n in missing)} among the models, /v1/models "
                f"holds {listed}"
            )
        detail = f"serves {', '.join(repr(n) for n in claimed)}"
        wanted = ctx.settings.max_model_len
        if ctx.profile.reports_max_model_len and wanted is not None:
            entry = _model_card(entries, ctx.served_name)
            if entry.max_model_len is None:
                raise ProbeFailure("/v1/models does not report max_model_len")
            metrics["max_model_len"] = float(entry.max_model_len)
            if entry.max_model_len < wanted:
                raise ProbeFailure(
                    f"max_model_len {entry.max_model_len} is below the configured {wanted}",
                    metrics=metrics,
                )
            detail += f", max_model_len {entry.max_model_len} ≥ {wanted}"
        return Outcome(detail, metrics)

    return await run_probe("identity", timeout, body, ctx.redact)


def _model_card(entries: list[wire.ModelEntry], name: str) -> wire.ModelEntry:
    """The card that says how ``name`` is served: a LoRA adapter's base model's card (an
    adapter card carries no max_model_len), else the card listing ``name``."""
    entry = next(e for e in entries if name in e.names)
    if entry.parent is not None:
        return next((e for e in entries if entry.parent in e.names and not e.adapter), entry)
    return entry


# --- known answer ---------------------------------------------------------------------------


def _answer_evidence(ctx: ProbeContext, content: str | None, reasoning: str | None) -> str:
    parts = []
    if content is not None:
        parts.append(f"content: {content}")
    if reasoning:
        parts.append(f"reasoning: {reasoning}")
    return ctx.redact.clip(" | ".join(parts) or "(no text)", EVIDENCE)


async def _timed_answer(
    ctx: ProbeContext, phase: Phase, prompt: str, max_tokens: int, timeout: float
) -> tuple[wire.ChatAnswer, dict[str, float]]:
    """One non-streamed answer at temperature 0 with the suite's seed, and how long it took."""
    request = wire.chat_body(
        ctx.profile, ctx.served_name, prompt, max_tokens=max_tokens, seed=ctx.settings.seed
    )
    phase.set("waiting for the answer")
    started = time.perf_counter()
    answer = await chat_once(ctx, request, timeout)
    metrics = {"latency_ms": (time.perf_counter() - started) * 1000.0}
    if answer.completion_tokens is not None:
        metrics["completion_tokens"] = float(answer.completion_tokens)
    return answer, metrics


@registered("known-answer")
async def probe_known_answer(ctx: ProbeContext, timeout: float | None = None) -> ProbeResult:
    """Temperature 0, fixed seed, a prompt with one right answer: garbage output fails here."""
    timeout = ctx.settings.timeout_for("known-answer") if timeout is None else timeout
    settings = ctx.settings

    async def body(phase: Phase) -> Outcome:
        answer, metrics = await _timed_answer(
            ctx, phase, settings.prompt, settings.max_tokens, timeout
        )
        latency = metrics["latency_ms"]
        evidence = _answer_evidence(ctx, answer.content, answer.reasoning)
        problems = checks.answer_problems(
            content=answer.content,
            reasoning=answer.reasoning,
            finish_reason=answer.finish_reason,
            completion_tokens=answer.completion_tokens,
            max_tokens=settings.max_tokens,
            expect=settings.expect_pattern,
            expect_display=settings.expect_display,
            reasoning_allowed=settings.reasoning,
            usage_required=True,
            redact=ctx.redact,
        )
        if problems:
            raise ProbeFailure("; ".join(problems), evidence=evidence, metrics=metrics)
        shown = answer.content if answer.content else answer.reasoning
        return Outcome(
            f"answered {ctx.redact.quote(shown)} in {latency:.0f} ms "
            f"(finish_reason {answer.finish_reason})",
            metrics,
            evidence,
        )

    return await run_probe("known-answer", timeout, body, ctx.redact)


# --- golden prompts -------------------------------------------------------------------------

# How much of an answer a golden prompt's expectation is matched against: bounded, whatever the
# engine sends (the chat reader's byte budget bounds it first).
GOLDEN_ANSWER_CHARS = 64 * 1024


async def probe_prompt(ctx: ProbeContext, timeout: float, golden: GoldenPrompt) -> ProbeResult:
    """One of the team's golden prompts (smoke.prompts): temperature 0, fixed seed, the answer
    must match its regular expression (``re.search``)."""
    settings = ctx.settings
    name = f"prompt:{golden.name}"

    async def body(phase: Phase) -> Outcome:
        answer, metrics = await _timed_answer(ctx, phase, golden.prompt, golden.max_tokens, timeout)
        latency = metrics["latency_ms"]
        content = answer.content[:GOLDEN_ANSWER_CHARS] if answer.content is not None else None
        reasoning = answer.reasoning[:GOLDEN_ANSWER_CHARS] if answer.reasoning else None
        evidence = _answer_evidence(ctx, content, reasoning)
        problems = checks.answer_problems(
            content=content,
            reasoning=reasoning,
            finish_reason=answer.finish_reason,
            completion_tokens=answer.completion_tokens,
            max_tokens=golden.max_tokens,
            expect=golden.pattern,
            expect_display=f"/{golden.expect}/",
            reasoning_allowed=settings.reasoning,
            usage_required=False,
            redact=ctx.redact,
        )
        if problems:
            raise ProbeFailure("; ".join(problems), evidence=evidence, metrics=metrics)
        shown = content if content else reasoning
        return Outcome(
            f"answered {ctx.redact.quote(shown)} matching /{ctx.redact.clip(golden.expect, 80)}/ "
            f"in {latency:.0f} ms",
            metrics,
            evidence,
        )

    return await run_probe(name, timeout, body, ctx.redact)


# --- streaming ------------------------------------------------------------------------------


@registered("streaming")
async def probe_streaming(ctx: ProbeContext, timeout: float | None = None) -> ProbeResult:
    """The known answer again, streamed: every frame parses, it ends with [DONE], TTFT measured."""
    timeout = ctx.settings.timeout_for("streaming") if timeout is None else timeout
    settings = ctx.settings

    async def body(phase: Phase) -> Outcome:
        request = wire.chat_body(
            ctx.profile,
            ctx.served_name,
            settings.prompt,
            max_tokens=settings.max_tokens,
            seed=settings.seed,
            stream=True,
        )
        if settings.require_stream_usage:
            # Parity: ask for the usage chunk the active slot sends, whatever the profile says.
            request["stream_options"] = {"include_usage": True}
        out = await stream_chat(ctx, request, phase, timeout)
        ctx.stats.tokens_received += out.completion_tokens or 0
        metrics = {"latency_ms": out.latency_ms, "frames": float(out.frames)}
        if out.ttft_ms is not None:
            ctx.stats.ttft_ms.append(out.ttft_ms)
            metrics["ttft_ms"] = out.ttft_ms
        if out.completion_tokens is not None:
            metrics["completion_tokens"] = float(out.completion_tokens)
        evidence = _answer_evidence(ctx, out.content, out.reasoning)
        problems = []
        if not out.content and not (settings.reasoning and out.reasoning):
            problems.append(f"no content delta in {out.frames} frames")
        problems += checks.answer_problems(
            content=out.content or None,
            reasoning=out.reasoning or None,
            finish_reason=out.finish_reason,
            completion_tokens=out.completion_tokens,
            max_tokens=settings.max_tokens,
            expect=settings.expect_pattern,
            expect_display=settings.expect_display,
            reasoning_allowed=settings.reasoning,
            # Without include_usage support there is no usage chunk to demand, unless production's
            # active slot (same engine) sends one: then the candidate must too (parity).
            usage_required=ctx.profile.stream_usage or settings.require_stream_usage,
            redact=ctx.redact,
        )
        if problems:
            raise ProbeFailure(
                "; ".join(dict.fromkeys(problems)), evidence=evidence, metrics=metrics
            )
        note = " (usage rode on a chunk with choices)" if out.usage_with_choices else ""
        return Outcome(
            f"TTFT {out.ttft_ms or 0:.0f} ms, {out.frames} frames ending in data: [DONE]{note}",
            metrics,
            evidence,
        )

    return await run_probe("streaming", timeout, body, ctx.redact)


# --- tool call ------------------------------------------------------------------------------

# A tool call with its arguments, or a small JSON object, needs more room than the one-word answer.
ROOMY_MAX_TOKENS = 128


async def _ask_roomy(
    ctx: ProbeContext,
    phase: Phase,
    prompt: str,
    timeout: float,
    waiting: str,
    **extra: Any,
) -> tuple[ChatAnswer, dict[str, float], str]:
    """One non-streamed request with room for a structured answer: the answer, its latency and
    the evidence to quote."""
    request = wire.chat_body(
        ctx.profile,
        ctx.served_name,
        prompt,
        max_tokens=max(ctx.settings.max_tokens, ROOMY_MAX_TOKENS),
        seed=ctx.settings.seed,
        **extra,
    )
    phase.set(waiting)
    started = time.perf_counter()
    answer = await chat_once(ctx, request, timeout)
    metrics = {"latency_ms": (time.perf_counter() - started) * 1000.0}
    return answer, metrics, _answer_evidence(ctx, answer.content, answer.reasoning)


@registered("tool-call")
async def probe_tool_call(ctx: ProbeContext, timeout: float | None = None) -> ProbeResult:
    """One function offered with tool_choice auto: a parsed call must come back, not text."""
    timeout = ctx.settings.timeout_for("tool-call") if timeout is None else timeout

    async def body(phase: Phase) -> Outcome:
        answer, metrics, evidence = await _ask_roomy(
            ctx,
            phase,
            ctx.settings.tool_prompt,
            timeout,
            "waiting for the tool call",
            tools=[wire.WEATHER_TOOL],
        )
        problems = checks.tool_call_problems(answer, ctx.redact)
        if problems:
            raise ProbeFailure("; ".join(problems), evidence=evidence, metrics=metrics)
        call = answer.tool_calls[0]
        args = call.arguments if isinstance(call.arguments, str) else repr(call.arguments)
        return Outcome(
            f"called {call.name} with {ctx.redact.clip(args, 120)}",
            metrics,
            ctx.redact.clip(args, EVIDENCE),
        )

    return await run_probe("tool-call", timeout, body, ctx.redact)


# --- structured output ----------------------------------------------------------------------


@registered("structured-output")
async def probe_structured_output(ctx: ProbeContext, timeout: float | None = None) -> ProbeResult:
    """response_format with a small JSON schema: the answer must be JSON matching it."""
    timeout = ctx.settings.timeout_for("structured-output") if timeout is None else timeout

    async def body(phase: Phase) -> Outcome:
        answer, metrics, evidence = await _ask_roomy(
            ctx,
            phase,
            ctx.settings.json_prompt,
            timeout,
            "waiting for the JSON answer",
            response_format=wire.STRUCTURED_RESPONSE_FORMAT,
        )
        problems = checks.structured_output_problems(
            answer.content, answer.finish_reason, wire.WEATHER_REPORT_SCHEMA, ctx.redact
        )
        if problems:
            raise ProbeFailure("; ".join(problems), evidence=evidence, metrics=metrics)
        return Outcome(
            f"answered JSON matching the schema: {ctx.redact.clip(answer.content, 120)}",
            metrics,
            evidence,
        )

    return await run_probe("structured-output", timeout, body, ctx.redact)


# --- burst ----------------------------------------------------------------------------------


@registered("burst")
async def probe_burst(ctx: ProbeContext, timeout: float | None = None) -> ProbeResult:
    """N concurrent streamed requests, all must succeed; latency percentiles and tokens/s."""
    timeout = ctx.settings.timeout_for("burst") if timeout is None else timeout
    settings = ctx.settings
    n = settings.burst

    async def body(phase: Phase) -> Outcome:
        request = wire.chat_body(
            ctx.profile,
            ctx.served_name,
            settings.burst_prompt,
            max_tokens=settings.burst_max_tokens,
            seed=settings.seed,
            stream=True,
        )
        finished = 0
        phase.set(f"waiting for {n} concurrent requests")

        async def one() -> StreamOutcome | str:
            nonlocal finished
            outcome: StreamOutcome | str
            try:
                outcome = await stream_chat(ctx, request, Phase(), timeout)
                if not (outcome.content or outcome.reasoning or outcome.tool_call):
                    outcome = f"no tokens in {outcome.frames} frames"
            except ProbeFailure as failure:
                outcome = failure.detail
            except httpx.TransportError as exc:
                outcome = describe_transport_error(exc)
            finished += 1
            phase.set(f"with {finished} of {n} concurrent requests finished")
            return outcome

        started = time.perf_counter()
        outcomes = await asyncio.gather(*(one() for _ in range(n)))
        wall_s = time.perf_counter() - started
        good = [o for o in outcomes if isinstance(o, StreamOutcome)]
        errors = [o for o in outcomes if isinstance(o, str)]
        tokens = sum(o.tokens for o in good)
        ttfts = [o.ttft_ms for o in good if o.ttft_ms is not None]
        latencies = [o.latency_ms for o in good]
        ctx.stats.ttft_ms.extend(ttfts)
        ctx.stats.tokens_received += sum(o.completion_tokens or 0 for o in good)
        tokens_per_s = tokens / wall_s if wall_s > 0 else 0.0
        metrics = {
            "requests": float(n),
            "failed": float(len(errors)),
            "latency_ms_p50": checks.percentile(latencies, 50),
            "latency_ms_p95": checks.percentile(latencies, 95),
            "ttft_ms_p50": checks.percentile(ttfts, 50),
            "ttft_ms_p95": checks.percentile(ttfts, 95),
            "tokens_per_s": tokens_per_s,
            "tokens": float(tokens),
        }
        if errors:
            distinct = list(dict.fromkeys(errors))
            raise ProbeFailure(
                f"{len(errors)} of {n} requests failed: {distinct[0]}",
                evidence=ctx.redact.clip(" | ".join(distinct), EVIDENCE),
                metrics=metrics,
            )
        ctx.stats.burst_tokens_per_s = tokens_per_s
        ctx.stats.burst_tokens = tokens
        return Outcome(
            f"{n} concurrent requests: latency p50 {metrics['latency_ms_p50']:.0f} ms, "
            f"p95 {metrics['latency_ms_p95']:.0f} ms, TTFT p95 {metrics['ttft_ms_p95']:.0f} ms, "
            f"{tokens_per_s:.1f} tokens/s",
            metrics,
        )

    return await run_probe("burst", timeout, body, ctx.redact)


# --- progress -------------------------------------------------------------------------------


async def take_metrics_baseline(ctx: ProbeContext, timeout: float) -> None:
    """Scrape the counters once before the generation probes, for the progress probe."""
    try:
        async with asyncio.timeout(timeout):
            ctx.stats.metrics_before = await scrape(
                ctx.client,
                ctx.profile,
                cap=ctx.settings.metrics_cap_bytes,
                timeout=timeout,
                redact=ctx.redact,
            )
    except MetricsUnavailable as exc:
        ctx.stats.metrics_unavailable = str(exc)
    except TimeoutError:
        ctx.stats.metrics_unavailable = (
            f"{ctx.profile.metrics_path} did not answer in {timeout:g} s"
        )
    except ProbeFailure as failure:
        ctx.stats.metrics_unavailable = failure.detail
    except httpx.TransportError as exc:
        ctx.stats.metrics_unavailable = describe_transport_error(exc)


async def watch_for_stall(
    ctx: ProbeContext,
    *,
    window_s: float,
    interval_s: float,
    timeout: float,
    keep_busy: bool = True,
    phase: Phase | None = None,
) -> tuple[Verdict, str, list[ProgressSample]]:
    """Sample the counter and the running gauge over ``window_s`` seconds.

    With ``keep_busy`` one streamed request is kept in flight meanwhile, so a healthy engine shows
    progress at once (and the check ends early) while a wedged one shows a running request and a
    flat counter. Reusable by ``slots guard`` with ``keep_busy=False`` over production traffic.
    """
    profile = ctx.profile
    counter = profile.progress_counter or "generation counter"
    gauge = profile.requests_running_metric or "running gauge"
    phase = phase or Phase()
    busy: asyncio.Task[StreamOutcome] | None = None
    if keep_busy:
        request = wire.chat_body(
            profile,
            ctx.served_name,
            ctx.settings.burst_prompt,
            max_tokens=ctx.settings.burst_max_tokens,
            seed=ctx.settings.seed,
            stream=True,
        )
        busy = asyncio.create_task(stream_chat(ctx, request, Phase(), timeout))
    samples: list[ProgressSample] = []
    verdict = stall_verdict(samples, window_s, counter, gauge)
    try:
        while True:
            totals = await scrape(
                ctx.client,
                profile,
                cap=ctx.settings.metrics_cap_bytes,
                timeout=timeout,
                redact=ctx.redact,
            )
            samples.append(sample_of(totals, profile, time.monotonic()))
            verdict = stall_verdict(samples, window_s, counter, gauge)
            # The window is measured between samples (what the verdict judges), not from the start.
            span = samples[-1].at - samples[0].at
            phase.set(f"watching {counter} for a stall ({span:.1f} of {window_s:g} s)")
            if verdict.verdict is Verdict.PROGRESSING or span >= window_s:
                break
            if busy is not None and busy.done() and samples[-1].running == 0:
                break  # our request is over and nothing else runs: nothing can stall
            # A sampling interval, not a wait for some other task to catch up.
            await asyncio.sleep(min(interval_s, window_s - span))
    finally:
        if busy is not None:
            busy.cancel()
            await asyncio.gather(busy, return_exceptions=True)
    return verdict.verdict, verdict.detail, samples


@registered("progress")
async def probe_progress(ctx: ProbeContext, timeout: float | None = None) -> ProbeResult:
    """The token counter advanced by what we received, and no requests sit on a flat counter."""
    timeout = ctx.settings.timeout_for("progress") if timeout is None else timeout
    profile, settings, stats = ctx.profile, ctx.settings, ctx.stats

    async def body(phase: Phase) -> Outcome:
        if profile.metrics_format != "prometheus" or profile.generation_tokens_metric is None:
            return Outcome(f"skipped: {profile.metrics_hint}", skipped=True)
        if stats.metrics_before is None:
            return Outcome(
                f"skipped: {stats.metrics_unavailable or 'no metrics taken before the probes'}",
                skipped=True,
            )
        counter = profile.generation_tokens_metric
        before = stats.metrics_before.get(counter)
        if before is None:
            raise ProbeFailure(
                f"{counter} is not among the engine's metrics (wrong engine profile?)"
            )
        needed = stats.tokens_received
        phase.set(f"waiting for {counter} to count the {needed} tokens received")
        settle_until = time.monotonic() + settings.progress_settle_s
        while True:
            totals = await scrape(
                ctx.client,
                profile,
                cap=settings.metrics_cap_bytes,
                timeout=timeout,
                redact=ctx.redact,
            )
            after = totals.get(counter, 0.0)
            if after < before:
                raise ProbeFailure(
                    f"{counter} went backwards from {before:g} to {after:g} (engine restarted "
                    "during the suite?)"
                )
            if after - before >= needed or time.monotonic() >= settle_until:
                break
            # Engines publish counters a moment after the answer; poll briefly, bounded above.
            await asyncio.sleep(0.1)
        delta = after - before
        metrics = {"counter_delta": delta, "tokens_received": float(needed)}
        if delta < needed:
            raise ProbeFailure(
                f"{counter} advanced by {delta:g}, but the suite received {needed} tokens",
                metrics=metrics,
            )
        detail = f"{counter} advanced by {delta:g} ≥ {needed} tokens received"
        if profile.requests_running_metric is None:
            return Outcome(detail, metrics)
        if profile.progress_counter is None:
            return Outcome(
                f"{detail}; no stall check ({counter} moves only as requests end)", metrics
            )
        verdict, stall_detail, samples = await watch_for_stall(
            ctx,
            window_s=settings.stall_window_s,
            interval_s=settings.stall_interval_s,
            timeout=timeout,
            phase=phase,
        )
        running = [s.running for s in samples if s.running is not None]
        metrics["running_max"] = max(running, default=0.0)
        metrics["stall_samples"] = float(len(samples))
        if verdict is Verdict.STALLED:
            raise ProbeFailure(stall_detail, metrics=metrics)
        return Outcome(f"{detail}; no stall ({stall_detail})", metrics)

    return await run_probe("progress", timeout, body, ctx.redact)
