"""Running one probe: its context, its bounded time, and the one way its outcome is recorded."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from gx10slots.smoke import wire
from gx10slots.smoke._failure import ProbeFailure
from gx10slots.smoke._http import (
    EVIDENCE,
    Phase,
    describe_transport_error,
    parse_json_text,
    read_prefix,
)
from gx10slots.smoke.profiles import EngineProfile
from gx10slots.smoke.redact import Redactor
from gx10slots.smoke.result import ProbeResult
from gx10slots.smoke.settings import SuiteSettings

# How much of an error body we read to quote it.
ERROR_BODY_PREFIX = 16 * 1024


@dataclass
class SuiteStats:
    """What the probes measured, for the summary and for the progress and baseline probes."""

    requests: int = 0
    tokens_received: int = 0
    ttft_ms: list[float] = field(default_factory=list)
    burst_tokens_per_s: float = 0.0
    burst_tokens: int = 0
    # Prometheus samples taken before our first generation; None (with the reason) if unavailable.
    metrics_before: dict[str, float] | None = None
    metrics_unavailable: str = ""


@dataclass
class ProbeContext:
    client: httpx.AsyncClient
    served_name: str
    profile: EngineProfile
    settings: SuiteSettings
    redact: Redactor = field(default_factory=Redactor)
    stats: SuiteStats = field(default_factory=SuiteStats)
    # Every name the slot claims to serve (primary first); empty means just `served_name`.
    served_names: tuple[str, ...] = ()
    # False: /v1/models may list more than the claimed names (a quick probe that knows only the
    # primary name of a slot that also serves aliases).
    exact_names: bool = True

    @property
    def claimed_names(self) -> tuple[str, ...]:
        if self.served_name in self.served_names:
            return self.served_names
        return (self.served_name, *self.served_names)


@dataclass
class Outcome:
    """A probe body's verdict when nothing went wrong enough to raise."""

    detail: str
    metrics: dict[str, float] = field(default_factory=dict)
    evidence: str = ""
    passed: bool = True
    skipped: bool = False


ProbeBody = Callable[[Phase], Awaitable[Outcome]]


async def run_probe(name: str, timeout: float, body: ProbeBody, redact: Redactor) -> ProbeResult:
    """Run ``body`` within ``timeout`` and turn whatever happens into a result."""
    phase = Phase()
    started = time.perf_counter()

    def result(
        passed: bool,
        detail: str,
        metrics: dict[str, float],
        evidence: str = "",
        skipped: bool = False,
    ) -> ProbeResult:
        return ProbeResult(
            name=name,
            passed=passed,
            duration_ms=(time.perf_counter() - started) * 1000.0,
            detail=redact(detail),
            metrics=metrics,
            evidence=redact(evidence),
            skipped=skipped,
        )

    try:
        async with asyncio.timeout(timeout):
            outcome = await body(phase)
    except TimeoutError:
        return result(False, f"timed out after {timeout:.1f} s {phase.text}", phase.metrics)
    except ProbeFailure as failure:
        return result(False, failure.detail, {**phase.metrics, **failure.metrics}, failure.evidence)
    except httpx.TransportError as exc:
        return result(False, describe_transport_error(exc), phase.metrics)
    return result(
        outcome.passed,
        outcome.detail,
        {**phase.metrics, **outcome.metrics},
        outcome.evidence,
        outcome.skipped,
    )


async def http_error(ctx: ProbeContext, response: httpx.Response) -> ProbeFailure:
    """A failure quoting an error status and the engine's own message."""
    raw = await read_prefix(response, ERROR_BODY_PREFIX)
    text = ctx.redact(raw.decode("utf-8", errors="replace"))
    message = None
    with contextlib.suppress(ProbeFailure):  # not JSON: quote the raw text instead
        message = wire.error_message(parse_json_text(text, "error body", ctx.redact))
    quoted = ctx.redact.clip(message if message is not None else text, 300) or "(empty body)"
    return ProbeFailure(
        f"{response.request.url.path} answered HTTP {response.status_code}: {quoted}",
        evidence=ctx.redact.clip(text, EVIDENCE),
    )
