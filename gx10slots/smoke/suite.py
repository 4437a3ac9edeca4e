"""Run the deep-liveness suite against one engine endpoint and return its report.

Order (gx10slots.smoke.catalog): readiness → identity → known-answer → streaming → tool-call →
structured-output → prompt:<name>... → burst → progress → baseline.
Nothing can hang: each probe has its own timeout, capped by what is left of the suite deadline.
When the engine is not ready, or a generation timed out (a wedge), the probes that would only wait
out their own timeouts are reported "not run" with the reason instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import signal
import ssl
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, TypeVar

import httpx

from gx10slots.errors import Interrupted
from gx10slots.smoke import checks
from gx10slots.smoke._transport import as_async_transport
from gx10slots.smoke.catalog import GENERATING, PROBE_NAMES, PROMPT_PREFIX
from gx10slots.smoke.context import ProbeContext
from gx10slots.smoke.probes import PROBES, ProbeFn, probe_prompt, take_metrics_baseline
from gx10slots.smoke.profiles import EngineProfile
from gx10slots.smoke.redact import Redactor
from gx10slots.smoke.report import NOT_MEASURED, Baseline, Report, Summary
from gx10slots.smoke.result import ProbeResult, not_applicable, not_run
from gx10slots.smoke.settings import SuiteSettings

__all__ = [
    "LiveTarget",
    "SuiteSettings",
    "cancel_on_sigterm",
    "confirm_baseline",
    "regression_seen",
    "run_suite",
    "run_suite_async",
]

T = TypeVar("T")

logger = logging.getLogger(__name__)

# How long the metrics snapshot before the generation probes may take.
_METRICS_SNAPSHOT_S = 10.0


def run_suite(
    endpoint: str,
    served_name: str,
    profile: EngineProfile,
    settings: SuiteSettings,
    *,
    api_key: str | None = None,
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    on_probe: Callable[[ProbeResult], None] | None = None,
    baseline: Baseline | None = None,
    slot: str = "",
    model: str | None = None,
    revision: str = "",
    served_names: Sequence[str] = (),
    exact_names: bool = True,
    live: LiveTarget | None = None,
    on_active_probe: Callable[[ProbeResult], None] | None = None,
) -> Report:
    """Run the suite to completion (at most ``settings.deadline_s``) and return the report.

    ``api_key`` is sent as a bearer token and never appears in the report. ``on_probe`` sees each
    result as it lands (for progress output). ``baseline``: production's active slot measured
    just before (capability parity: what it does, this engine must do; its figures judge the
    baseline probe). ``live``: that slot again, measured in this run interleaved with this
    engine (its streaming and burst next to ours); its figures then replace the baseline's, and
    ``on_active_probe`` sees its results. ``slot``, ``model`` (default ``served_name``) and
    ``revision`` only label the report. From async code, await :func:`run_suite_async`.
    """
    return asyncio.run(
        cancel_on_sigterm(
            run_suite_async(
                endpoint,
                served_name,
                profile,
                settings,
                api_key=api_key,
                transport=transport,
                on_probe=on_probe,
                baseline=baseline,
                slot=slot,
                model=model,
                revision=revision,
                served_names=served_names,
                exact_names=exact_names,
                live=live,
                on_active_probe=on_active_probe,
            )
        )
    )


async def cancel_on_sigterm(work: Awaitable[T]) -> T:
    """``work``, cancelled at once on SIGTERM or Ctrl-C, which then raises :class:`Interrupted`.

    The CLI's own handlers (SIGTERM and SIGINT both raise ``Interrupted``) raise wherever the
    main thread happens to be; inside the event loop that is some probe's code, whose ``except
    Exception`` (a probe must never crash the suite) took it for a failed probe, and the suite
    went on for minutes. Cancelling the task unwinds every probe at once (CancelledError is no
    Exception). The previous handlers are restored afterwards (asyncio would reset them to the
    defaults, which kill without cleanup). A SIGINT ignored by whoever started us stays ignored.
    """
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    received: list[str] = []
    names = {signal.SIGTERM: "terminated by SIGTERM", signal.SIGINT: "interrupted by Ctrl-C"}
    previous: dict[int, Any] = {}

    def stop(signum: int) -> None:
        from gx10slots import stopping

        stopping.requested()
        received.append(names[signal.Signals(signum)])
        if task is not None:
            task.cancel()

    for signum in names:
        handler = signal.getsignal(signum)
        if handler is signal.SIG_IGN:
            continue
        try:
            loop.add_signal_handler(signum, stop, signum)
        except (RuntimeError, ValueError, NotImplementedError):
            break  # not the main thread (a guard's worker), or no signals here
        previous[signum] = handler
    try:
        return await work
    except asyncio.CancelledError:
        if received:
            raise Interrupted(f"{received[0]} during the probes") from None
        raise
    finally:
        for installed, handler in previous.items():
            loop.remove_signal_handler(installed)
            signal.signal(installed, handler if handler is not None else signal.SIG_DFL)


async def run_suite_async(
    endpoint: str,
    served_name: str,
    profile: EngineProfile,
    settings: SuiteSettings,
    *,
    api_key: str | None = None,
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None = None,
    on_probe: Callable[[ProbeResult], None] | None = None,
    baseline: Baseline | None = None,
    slot: str = "",
    model: str | None = None,
    revision: str = "",
    served_names: Sequence[str] = (),
    exact_names: bool = True,
    live: LiveTarget | None = None,
    on_active_probe: Callable[[ProbeResult], None] | None = None,
) -> Report:
    started_at = datetime.now(UTC)
    settings = with_parity(settings, baseline)
    redact = Redactor([api_key])
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    results: list[ProbeResult] = []
    active_results: list[ProbeResult] = []

    def record(result: ProbeResult) -> None:
        result = _redacted(result, redact)
        results.append(result)
        if on_probe is not None:
            on_probe(result)

    def record_active(result: ProbeResult) -> None:
        result = _redacted(result, redact)
        active_results.append(result)
        if on_active_probe is not None:
            on_active_probe(result)

    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(_client(endpoint, headers, transport))
        active: ProbeContext | None = None
        # An active slot whose reference run got no token (wedged, or not generating) is not
        # measured again: each of its probes would only spend the candidate's time on a timeout.
        if live is not None and baseline is not None and baseline.ttft_ms_p50 is not None:
            active = ProbeContext(
                await stack.enter_async_context(_client(live.endpoint, headers, transport)),
                live.served_name,
                profile,
                settings,
                redact,
                exact_names=False,
            )
        ctx = ProbeContext(
            client,
            served_name,
            profile,
            settings,
            redact,
            served_names=tuple(served_names),
            exact_names=exact_names,
        )
        blocked = await _run_probes(ctx, record, baseline, active, record_active)
        if active is not None and baseline is not None and active_results:
            baseline = _measured_live(baseline, active, active_results)
        summary = _summary(ctx, results)
        if "baseline" in settings.probes:
            if blocked:
                record(not_run("baseline", blocked))
            else:
                record(_baseline_result(summary, baseline, settings, ctx.stats.burst_tokens))
            summary = dataclasses.replace(summary, failures=_failures(results))

    report = Report(
        slot=slot,
        model=model if model is not None else served_name,
        served_name=served_name,
        revision=revision,
        endpoint=endpoint,
        engine=profile.name,
        started_at=started_at,
        finished_at=datetime.now(UTC),
        passed=all(r.passed for r in results),
        probes=tuple(results),
        summary=summary,
        baseline=baseline,
    )
    # A last net: nothing a server echoed may carry the key into any report format.
    return _redacted_report(report, redact)


@dataclasses.dataclass(frozen=True)
class LiveTarget:
    """Production's active slot, to measure in the same run as the candidate (the live baseline)."""

    endpoint: str
    served_name: str


# The probes that measure speed run against the active slot too, next to the candidate's: the
# active slot's streaming right after the candidate's, its burst right before the candidate's
# (candidate, active, active, candidate), so that both slots see the same moments of a machine
# whose load changes (another job's burst lands on both, not on one) and neither always goes first.
_ACTIVE_AFTER = "streaming"
_ACTIVE_BEFORE = "burst"


def _client(
    endpoint: str,
    headers: dict[str, str],
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None,
) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=endpoint,
        headers=headers,
        transport=as_async_transport(transport),
        verify=_tls_context(),
        # Engines are cluster-internal: a proxy from the environment would be wrong (and would
        # see the key).
        trust_env=False,
        follow_redirects=False,
    )


def _measured_live(
    baseline: Baseline, active: ProbeContext, results: list[ProbeResult]
) -> Baseline:
    """The active slot's figures as measured interleaved with the candidate (None: not
    measured); what failed of it joins the reference run's detail."""
    s = _summary(active, results)
    failed = [f"{r.name}: {r.detail}" for r in results if not r.passed and not r.skipped]
    return dataclasses.replace(
        baseline,
        ttft_ms_p50=s.ttft_ms_p50 if s.ttft_ms_p50 > 0 else None,
        ttft_ms_p95=s.ttft_ms_p95 if s.ttft_ms_p95 > 0 else None,
        tokens_per_s=s.tokens_per_s if s.tokens_per_s > 0 else None,
        passed=baseline.passed and not failed,
        detail="; ".join(d for d in (baseline.detail, *failed) if d)[:1000],
    )


async def _measure_active(
    name: str, active: ProbeContext, deadline: float, record: Callable[[ProbeResult], None]
) -> None:
    """One measuring probe against the active slot, within what is left of the suite."""
    remaining = deadline - time.monotonic()
    timeout = max(min(active.settings.timeout_for(name), remaining), 0.001)
    record(await _run_one(name, PROBES[name], active, timeout))


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """The context ``verify=True`` would build (CA bundle, no environment), made once a process.

    httpx builds it for every client, ~20 ms of loading the CA bundle each time, although most
    engine endpoints are plain HTTP; a flip probes twice or more (pre-flip, verification).
    """
    return httpx.create_ssl_context(trust_env=False)


def with_parity(settings: SuiteSettings, baseline: Baseline | None) -> SuiteSettings:
    """Capability parity: what production's active slot does, the candidate must do too."""
    if baseline is None:
        return settings
    return dataclasses.replace(
        settings,
        tool_call=settings.tool_call or baseline.tool_calls,
        require_stream_usage=settings.require_stream_usage or baseline.stream_usage,
        structured_output=settings.structured_output or baseline.structured_output,
    )


def _parity_note(name: str, result: ProbeResult, baseline: Baseline | None) -> ProbeResult:
    """A failure of a capability the active slot has says so: the reason it was required."""
    if baseline is None or result.passed or result.skipped:
        return result
    does = {
        "tool-call": (baseline.tool_calls, "makes tool calls"),
        "streaming": (baseline.stream_usage, "streams with usage"),
        "structured-output": (baseline.structured_output, "returns JSON matching a schema"),
    }
    has, what = does.get(name, (False, ""))
    if not has:
        return result
    return dataclasses.replace(
        result,
        detail=f"{result.detail} (capability parity: the active slot {baseline.slot} "
        f"({baseline.model}) {what})",
    )


async def _run_probes(
    ctx: ProbeContext,
    record: Callable[[ProbeResult], None],
    baseline: Baseline | None = None,
    active: ProbeContext | None = None,
    record_active: Callable[[ProbeResult], None] = lambda _: None,
) -> str:
    """Run the planned probes in order; why the rest could not run ("" when all could). With
    ``active``, the measuring probes also run against it, interleaved (see ``_ACTIVE_AFTER``)."""
    settings = ctx.settings
    deadline = time.monotonic() + settings.deadline_s
    blocked = ""  # why the remaining probes cannot run
    generation_blocked = ""  # why the remaining generation probes cannot run
    snapshot_taken = "progress" not in settings.probes
    for name in PROBE_NAMES:
        if name not in settings.probes or name == "baseline":
            continue
        if name == "tool-call" and not settings.tool_call:
            record(not_applicable(name, "tool calls are not enabled (smoke tool_call)"))
            continue
        if name == "structured-output" and not settings.structured_output:
            # Required only where production's active slot does it: not every engine (or model)
            # can constrain its output, and one that cannot is no regression against itself.
            why = "no active slot measured" if baseline is None else "the active slot does not"
            record(not_applicable(name, f"structured output is not required ({why})"))
            continue
        # The golden prompts run one by one, each its own probe; the others run once.
        runs: list[tuple[str, ProbeFn]] = (
            [
                (f"{PROMPT_PREFIX}{golden.name}", functools.partial(probe_prompt, golden=golden))
                for golden in settings.prompts
            ]
            if name == "prompts"
            else [(name, PROBES[name])]
        )
        for shown, probe in runs:
            if time.monotonic() >= deadline:
                blocked = blocked or f"the suite deadline of {settings.deadline_s:g} s was reached"
            if blocked:
                record(not_run(shown, blocked))
                continue
            if name in GENERATING and generation_blocked:
                record(not_run(shown, generation_blocked))
                continue
            if name in GENERATING and not snapshot_taken:
                # Counters before any generation of ours, for the progress probe.
                snapshot_taken = True
                budget = min(_METRICS_SNAPSHOT_S, deadline - time.monotonic())
                await take_metrics_baseline(ctx, max(budget, 0.001))
            if active is not None and name == _ACTIVE_BEFORE:
                await _measure_active(name, active, deadline, record_active)
            remaining = deadline - time.monotonic()
            own = settings.timeout_for(name)
            result = await _run_one(shown, probe, ctx, max(min(own, remaining), 0.001))
            if own > remaining and result.detail.startswith("timed out"):
                result = dataclasses.replace(
                    result, detail=f"{result.detail} (suite deadline of {settings.deadline_s:g} s)"
                )
            record(_parity_note(name, result, baseline))
            if active is not None and name == _ACTIVE_AFTER:
                await _measure_active(name, active, deadline, record_active)
            if name == "readiness" and not result.passed:
                blocked = "engine not ready"
            if name in GENERATING and result.detail.startswith("timed out"):
                generation_blocked = f"{shown} timed out; the engine looks wedged"
    return blocked


async def _run_one(name: str, probe: ProbeFn, ctx: ProbeContext, timeout: float) -> ProbeResult:
    try:
        return await probe(ctx, timeout)
    except Interrupted:
        raise  # a signal, not a probe's failure
    except Exception as exc:
        # A bug of ours on some input we did not foresee: the suite must still produce a report,
        # and the traceback goes to the log rather than vanishing.
        logger.exception("probe %s crashed", name)
        return ProbeResult(
            name, False, 0.0, f"internal error in the {name} probe: {type(exc).__name__}: {exc}"
        )


def _failures(results: list[ProbeResult]) -> int:
    return sum(1 for r in results if not r.passed and not r.skipped)


def _summary(ctx: ProbeContext, results: list[ProbeResult]) -> Summary:
    stats = ctx.stats
    return Summary(
        ttft_ms_p50=checks.percentile(stats.ttft_ms, 50),
        ttft_ms_p95=checks.percentile(stats.ttft_ms, 95),
        tokens_per_s=stats.burst_tokens_per_s,
        requests=stats.requests,
        failures=_failures(results),
    )


def _baseline_result(
    summary: Summary, baseline: Baseline | None, settings: SuiteSettings, burst_tokens: int
) -> ProbeResult:
    name = "baseline"
    if baseline is None:
        return not_applicable(name, "no active slot measured in this run")
    against = f"active slot {baseline.slot} ({baseline.model})"
    if baseline.ttft_ms_p95 is None and baseline.tokens_per_s is None:
        # Production's own slot failing its run must not block deploying the fix for it.
        return not_applicable(
            name, f"the {against} measured nothing: {baseline.detail or 'no figures'}"
        )
    if summary.tokens_per_s <= 0 or summary.ttft_ms_p95 <= 0:
        return not_applicable(name, "this run measured no TTFT or tokens/s (burst did not pass)")
    metrics = {
        "ttft_ms_p95": summary.ttft_ms_p95,
        "tokens_per_s": summary.tokens_per_s,
        "ttft_ratio": settings.baseline_ttft_ratio,
        "tokens_ratio": settings.baseline_tokens_ratio,
        "margin_ms": settings.baseline_margin_ms,
    }
    if baseline.ttft_ms_p95 is not None:
        metrics["baseline_ttft_ms_p95"] = baseline.ttft_ms_p95
    if baseline.tokens_per_s is not None:
        metrics["baseline_tokens_per_s"] = baseline.tokens_per_s
    problems = checks.baseline_problems(
        ttft_p95_ms=summary.ttft_ms_p95,
        tokens_per_s=summary.tokens_per_s,
        burst_tokens=burst_tokens,
        baseline_ttft_p95_ms=baseline.ttft_ms_p95,
        baseline_tokens_per_s=baseline.tokens_per_s,
        ttft_ratio=settings.baseline_ttft_ratio,
        tokens_ratio=settings.baseline_tokens_ratio,
        margin_ms=settings.baseline_margin_ms,
    )
    if problems:
        return ProbeResult(name, False, 0.0, f"{'; '.join(problems)} ({against})", metrics)

    return ProbeResult(
        name,
        True,
        0.0,
        f"TTFT p95 {summary.ttft_ms_p95:.0f} ms "
        f"(active {_figure(baseline.ttft_ms_p95, '.1f', ' ms')}), "
        f"{summary.tokens_per_s:.1f} tokens/s (active {_figure(baseline.tokens_per_s, '.1f')}) "
        f"({against})",
        metrics,
    )


def _figure(value: float | None, spec: str, unit: str = "") -> str:
    """A figure of the active slot; ``n/a`` when it was not measured (never 0)."""
    return NOT_MEASURED if value is None else f"{value:{spec}}{unit}"


def regression_seen(report: Report) -> bool:
    """The baseline probe ran and failed: worth measuring both slots again to confirm."""
    return any(p.name == "baseline" and not p.passed and not p.skipped for p in report.probes)


def confirm_baseline(
    report: Report, active_again: Baseline, candidate_again: Report, settings: SuiteSettings
) -> Report:
    """The baseline verdict after both slots were measured again, back to back (a burst each).

    On a loaded machine one burst can take a second longer than the next; a regression counts
    when it shows again with both slots measured under the same conditions. A re-measurement
    that measured nothing keeps the first verdict.
    """
    burst = next((p for p in candidate_again.probes if p.name == "burst"), None)
    s = candidate_again.summary
    if burst is None or not burst.passed or s.ttft_ms_p95 <= 0 or s.tokens_per_s <= 0:
        return report
    if active_again.ttft_ms_p95 is None and active_again.tokens_per_s is None:
        return report
    problems = checks.baseline_problems(
        ttft_p95_ms=s.ttft_ms_p95,
        tokens_per_s=s.tokens_per_s,
        burst_tokens=int(burst.metrics.get("tokens", 0.0)),
        baseline_ttft_p95_ms=active_again.ttft_ms_p95,
        baseline_tokens_per_s=active_again.tokens_per_s,
        ttft_ratio=settings.baseline_ttft_ratio,
        tokens_ratio=settings.baseline_tokens_ratio,
        margin_ms=settings.baseline_margin_ms,
    )

    def rejudged(p: ProbeResult) -> ProbeResult:
        if p.name != "baseline":
            return p
        metrics = {
            **p.metrics,
            "confirm_ttft_ms_p95": s.ttft_ms_p95,
            "confirm_tokens_per_s": s.tokens_per_s,
        }
        if active_again.ttft_ms_p95 is not None:
            metrics["confirm_baseline_ttft_ms_p95"] = active_again.ttft_ms_p95
        if active_again.tokens_per_s is not None:
            metrics["confirm_baseline_tokens_per_s"] = active_again.tokens_per_s
        if problems:
            detail = (
                f"{p.detail}; confirmed when measured again back to back: {'; '.join(problems)}"
            )
            return dataclasses.replace(p, detail=detail, metrics=metrics)
        detail = (
            f"not confirmed: measured again back to back, TTFT p95 {s.ttft_ms_p95:.0f} ms "
            f"(active {_figure(active_again.ttft_ms_p95, '.0f', ' ms')}), "
            f"{s.tokens_per_s:.1f} tokens/s (active {_figure(active_again.tokens_per_s, '.1f')}); "
            f"first measurement: {p.detail}"
        )
        return dataclasses.replace(p, passed=True, detail=detail, metrics=metrics)

    probes = tuple(rejudged(p) for p in report.probes)
    return dataclasses.replace(
        report,
        probes=probes,
        passed=all(p.passed for p in probes),
        summary=dataclasses.replace(report.summary, failures=_failures(list(probes))),
    )


def _redacted(result: ProbeResult, redact: Redactor) -> ProbeResult:
    return dataclasses.replace(
        result, detail=redact(result.detail), evidence=redact(result.evidence)
    )


def _redacted_report(report: Report, redact: Redactor) -> Report:
    return dataclasses.replace(
        report,
        slot=redact(report.slot),
        model=redact(report.model),
        served_name=redact(report.served_name),
        revision=redact(report.revision),
        endpoint=redact(report.endpoint),
        probes=tuple(_redacted(p, redact) for p in report.probes),
    )
