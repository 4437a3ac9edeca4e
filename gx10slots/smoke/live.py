"""One live look at a serving engine: a streamed known-answer generation, with the engine's
progress counters sampled while it runs.

The guard (and the controller) judge production through this; the smoke suite's own probes and
metrics readers do the work, so what "answers" and "progresses" mean is defined once.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx

from gx10slots.smoke._failure import ProbeFailure
from gx10slots.smoke._http import describe_transport_error, request_bounded
from gx10slots.smoke._transport import as_async_transport
from gx10slots.smoke.context import ProbeContext
from gx10slots.smoke.probes import probe_streaming
from gx10slots.smoke.profiles import EngineProfile
from gx10slots.smoke.progress import (
    MetricsUnavailable,
    ProgressSample,
    StallVerdict,
    Verdict,
    parse_prometheus,
    sample_of,
    scrape,
    stall_verdict,
    with_aliases,
)
from gx10slots.smoke.redact import Redactor
from gx10slots.smoke.result import ProbeResult
from gx10slots.smoke.settings import SuiteSettings

# A metrics page is a few KB; reading the gauge never needs more than this.
MAX_GAUGE_READ_BYTES = 4 * 1024 * 1024

StallState = Literal["progressing", "idle", "stalled", "inconclusive", "unavailable"]


@dataclass(frozen=True)
class Observation:
    """One look at production: the known-answer probe and the progress rule."""

    passed: bool
    detail: str
    ttft_ms: float | None = None
    timed_out: bool = False
    stall: StallState = "unavailable"
    stall_detail: str = ""
    running: float | None = None  # the engine's running-requests gauge at the last sample
    # How far the progress counter moved over the last stall window before the probe ended
    # (None: not measured). Work the engine did while the probe waited: see guard.rules.busy.
    recent_advance: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "detail": self.detail,
            "ttft_ms": None if self.ttft_ms is None else round(self.ttft_ms, 1),
            "timed_out": self.timed_out,
            "progress": self.stall,
            "progress_detail": self.stall_detail,
            "running": self.running,
            "recent_advance": self.recent_advance,
        }


def progress_verdict(
    samples: Sequence[ProgressSample], window_s: float, counter: str, gauge: str
) -> StallVerdict:
    """The progress rule over one check's samples (oldest first).

    A moving counter anywhere is progress. Otherwise only the trailing run of samples with
    requests running counts: the first sample may be taken before the probe reached the engine
    (nothing running yet), and that must not hide a wedge that follows.
    """
    overall = stall_verdict(samples, window_s, counter, gauge)
    if overall.verdict is not Verdict.IDLE:
        return overall
    trailing: list[ProgressSample] = []
    for sample in samples:
        trailing = [] if sample.running == 0 else [*trailing, sample]
    if not trailing:
        return overall
    return stall_verdict(trailing, window_s, counter, gauge)


def recent_advance(samples: Sequence[ProgressSample], window_s: float) -> float | None:
    """How far the counter moved over the last ``window_s`` of ``samples`` (oldest first): from
    the latest sample at least ``window_s`` older than the last one (or the first sample) to the
    last. None with fewer than two samples of the counter, and None when the counter cannot be
    read as progress over that window: it went backwards (an engine restart resets it, and two
    pods behind one Service give two counters in turn) or was not a finite number. A wedged
    engine must not look busy because its counter misbehaves."""
    counted = [s.generated for s in samples if s.generated is not None]
    times = [s.at for s in samples if s.generated is not None]
    if len(counted) < 2:
        return None
    first = 0
    for i, at in enumerate(times):
        if at <= times[-1] - window_s:
            first = i
    window = counted[first:]
    if not all(math.isfinite(v) for v in window):
        return None
    if any(later < earlier for earlier, later in itertools.pairwise(window)):
        return None
    return window[-1] - window[0]


def observe(
    endpoint: str,
    served_name: str,
    profile: EngineProfile,
    settings: SuiteSettings,
    *,
    api_key: str | None,
    timeout_s: float,
    stall_window_s: float,
    sample_every_s: float,
    transport: httpx.AsyncBaseTransport | httpx.BaseTransport | None = None,
) -> Observation:
    """One streamed known-answer generation through ``endpoint``, with the progress rule."""
    from gx10slots.smoke.suite import cancel_on_sigterm

    # SIGTERM cancels the observation at once rather than landing inside its code.
    return asyncio.run(
        cancel_on_sigterm(
            _observe(
                endpoint,
                served_name,
                profile,
                settings,
                api_key=api_key,
                timeout_s=timeout_s,
                stall_window_s=stall_window_s,
                sample_every_s=sample_every_s,
                transport=transport,
            )
        )
    )


async def _observe(
    endpoint: str,
    served_name: str,
    profile: EngineProfile,
    settings: SuiteSettings,
    *,
    api_key: str | None,
    timeout_s: float,
    stall_window_s: float,
    sample_every_s: float,
    transport: httpx.AsyncBaseTransport | httpx.BaseTransport | None,
) -> Observation:
    redact = Redactor([api_key])
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    async with httpx.AsyncClient(
        base_url=endpoint,
        headers=headers,
        transport=as_async_transport(transport),
        trust_env=False,
        follow_redirects=False,
    ) as client:
        ctx = ProbeContext(client, served_name, profile, settings, redact)
        probe = asyncio.create_task(probe_streaming(ctx, timeout_s))
        samples: list[ProgressSample] = []
        try:
            stall, stall_detail, running = await _watch_progress(
                ctx, probe, samples, window_s=stall_window_s, every_s=sample_every_s
            )
            if stall == "stalled" and not probe.done():
                # Requests running on a flat counter for the stall window is the wedge itself:
                # waiting for the probe's own timeout would only delay the verdict.
                return Observation(
                    passed=False,
                    detail="no answer: the engine stalled while the probe waited",
                    timed_out=True,  # abandoned: the engine may still count it as running
                    stall=stall,
                    stall_detail=stall_detail,
                    running=running,
                    recent_advance=recent_advance(samples, stall_window_s),
                )
            result = await probe
        finally:
            if not probe.done():
                probe.cancel()
                await asyncio.gather(probe, return_exceptions=True)
    ttft = result.metrics.get("ttft_ms")
    return Observation(
        passed=result.passed,
        detail=result.detail,
        ttft_ms=ttft,
        timed_out=result.detail.startswith("timed out"),
        stall=stall,
        stall_detail=stall_detail,
        running=running,
        recent_advance=recent_advance(samples, stall_window_s),
    )


async def _watch_progress(
    ctx: ProbeContext,
    probe: asyncio.Task[ProbeResult],
    samples: list[ProgressSample],
    *,
    window_s: float,
    every_s: float,
) -> tuple[StallState, str, float | None]:
    """Sample the counter and the running gauge into ``samples`` while the probe is in flight.

    A healthy engine answers our probe at once and the sampling ends with it; a wedged one shows
    requests running on a flat counter for the window, which ends it early. Progress does not end
    it: a probe queued behind a long generation (an engine serving one request at a time) is
    watched until it ends, so that what the engine did meanwhile is known (``recent_advance``).
    """
    profile = ctx.profile
    counter, gauge = profile.progress_counter, profile.requests_running_metric
    if profile.metrics_format != "prometheus" or counter is None or gauge is None:
        return "unavailable", f"engine {profile.name}: no Prometheus progress metrics", None
    running: float | None = None
    state: StallState = "inconclusive"
    detail = "no sample taken"
    while True:
        probe_was_done = probe.done()
        try:
            async with asyncio.timeout(every_s + 2.0):
                totals = await scrape(
                    ctx.client,
                    profile,
                    cap=ctx.settings.metrics_cap_bytes,
                    timeout=every_s + 2.0,
                    redact=ctx.redact,
                )
        except MetricsUnavailable as exc:
            return "unavailable", str(exc), running
        except TimeoutError:
            return state, f"{profile.metrics_path} did not answer in time; {detail}", running
        except ProbeFailure as failure:
            return state, f"metrics unreadable ({failure.detail}); {detail}", running
        except httpx.TransportError as exc:
            return state, f"metrics unreadable ({describe_transport_error(exc)})", running
        sample = sample_of(totals, profile, time.monotonic())
        samples.append(sample)
        running = sample.running
        verdict = progress_verdict(samples, window_s, counter, gauge)
        state, detail = _STATES[verdict.verdict], verdict.detail
        if verdict.verdict is Verdict.STALLED or probe_was_done:
            return state, detail, running
        await asyncio.wait({probe}, timeout=every_s)


_STATES: dict[Verdict, StallState] = {
    Verdict.PROGRESSING: "progressing",
    Verdict.IDLE: "idle",
    Verdict.STALLED: "stalled",
    Verdict.INCONCLUSIVE: "inconclusive",
}


def running_requests(
    endpoint: str,
    profile: EngineProfile,
    *,
    api_key: str | None,
    timeout_s: float,
    transport: httpx.BaseTransport | None = None,
) -> float | None:
    """The engine's running-requests gauge, read once; None when it cannot be read (best
    effort: the engine has no such gauge, does not answer, or answers something else)."""
    gauge, path = profile.requests_running_metric, profile.metrics_path
    if gauge is None or path is None or profile.metrics_format != "prometheus":
        return None
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        with httpx.Client(
            base_url=endpoint,
            headers=headers,
            timeout=timeout_s,
            trust_env=False,
            transport=transport,
        ) as client:
            # Bounded: this is the slot the guard just left, which may be the broken one.
            answer = request_bounded(
                client, "GET", path, timeout_s=timeout_s, cap=MAX_GAUGE_READ_BYTES
            )
        if answer.status != 200:
            return None
        totals = parse_prometheus(answer.body.decode("utf-8", errors="replace"))
        return with_aliases(totals, profile).get(gauge)
    except (httpx.HTTPError, ProbeFailure):
        return None
