"""Is the engine making progress? Token counters and running-request gauges from /metrics.

A wedged engine keeps answering `/health` and `/v1/models`; what gives it away is requests that
stay "running" while the generation-token counter stays flat. The verdict logic here is pure and
reusable (``slots guard`` samples the active slot the same way); :func:`scrape` is the one I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import httpx
from prometheus_client.parser import text_string_to_metric_families

from gx10slots.smoke._failure import ProbeFailure
from gx10slots.smoke._http import decode_text, open_response, read_capped
from gx10slots.smoke.profiles import EngineProfile
from gx10slots.smoke.redact import Redactor


class MetricsUnavailable(Exception):
    """The engine has no readable metrics endpoint (not a failure of the engine)."""


def parse_prometheus(text: str) -> dict[str, float]:
    """Sample name → value summed over all label sets (per-engine, per-model series)."""
    totals: dict[str, float] = {}
    try:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + float(sample.value)
    except (ValueError, TypeError, IndexError, KeyError) as exc:
        # prometheus_client's parser raises these for malformed exposition text.
        raise ProbeFailure(f"metrics are not valid Prometheus text: {exc}") from None
    return totals


def with_aliases(totals: dict[str, float], profile: EngineProfile) -> dict[str, float]:
    """``totals`` with each of the profile's metric names filled in from an older name the
    engine exports instead (EngineProfile.metric_aliases)."""
    for name, older in profile.metric_aliases.items():
        if name not in totals:
            found = next((totals[o] for o in older if o in totals), None)
            if found is not None:
                totals[name] = found
    return totals


@dataclass(frozen=True)
class ProgressSample:
    at: float  # monotonic seconds
    generated: float | None  # the progress counter (EngineProfile.progress_counter)
    running: float | None  # requests-running gauge


def sample_of(totals: dict[str, float], profile: EngineProfile, at: float) -> ProgressSample:
    def pick(name: str | None) -> float | None:
        return totals.get(name) if name else None

    return ProgressSample(at, pick(profile.progress_counter), pick(profile.requests_running_metric))


async def scrape(
    client: httpx.AsyncClient,
    profile: EngineProfile,
    *,
    cap: int,
    timeout: float,
    redact: Redactor,
) -> dict[str, float]:
    """The engine's Prometheus samples; :class:`MetricsUnavailable` when it exports none."""
    if profile.metrics_path is None or profile.metrics_format != "prometheus":
        raise MetricsUnavailable(profile.metrics_hint)
    async with open_response(client, "GET", profile.metrics_path, timeout=timeout) as response:
        if response.status_code == 404:
            raise MetricsUnavailable(
                f"{profile.metrics_path} answered 404 ({profile.metrics_hint})"
            )
        body = await read_capped(response, cap, redact)
        if response.status_code != 200:
            raise ProbeFailure(
                f"{profile.metrics_path} answered HTTP {response.status_code}",
                evidence=redact.clip(body, 300),
            )
    return with_aliases(parse_prometheus(decode_text(body, profile.metrics_path, redact)), profile)


class Verdict(Enum):
    PROGRESSING = "progressing"  # the counter moved
    IDLE = "idle"  # nothing was running at some point, so nothing could stall
    STALLED = "stalled"  # requests ran for the whole window and the counter stayed flat
    INCONCLUSIVE = "inconclusive"  # not enough time observed, or metrics missing


@dataclass(frozen=True)
class StallVerdict:
    verdict: Verdict
    detail: str


def stall_verdict(
    samples: Sequence[ProgressSample], window_s: float, counter: str, gauge: str
) -> StallVerdict:
    """Judge a series of samples (oldest first) taken over at least ``window_s`` seconds."""
    usable = [s for s in samples if s.generated is not None and s.running is not None]
    if len(usable) < 2:
        return StallVerdict(Verdict.INCONCLUSIVE, f"fewer than two samples of {counter}/{gauge}")
    first, last = usable[0], usable[-1]
    generated = [s.generated for s in usable if s.generated is not None]
    if max(generated) > generated[0]:
        return StallVerdict(
            Verdict.PROGRESSING,
            f"{counter} advanced by {max(generated) - generated[0]:g} in "
            f"{last.at - first.at:.1f} s",
        )
    if any(s.running == 0 for s in usable):
        return StallVerdict(Verdict.IDLE, f"{gauge} dropped to 0: nothing left running")
    span = last.at - first.at
    if span < window_s:
        return StallVerdict(Verdict.INCONCLUSIVE, f"observed {span:.1f} s of {window_s:g} s")
    running = min(s.running for s in usable if s.running is not None)
    return StallVerdict(
        Verdict.STALLED,
        f"stall: {gauge} stayed at {running:g} or more while {counter} stayed flat at "
        f"{generated[0]:g} for {span:.1f} s (engine wedged)",
    )
