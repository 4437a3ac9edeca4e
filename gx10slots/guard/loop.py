"""`slots guard`: watch the active slot after a flip, and flip back on its own if it fails.

Each check, every interval: is the flag still on the guarded slot (if not, someone else flipped:
stand down, exit 0)? Then one streamed known-answer generation through the production endpoint,
with its own timeout, while the engine's ``/metrics`` are sampled for the progress rule. The
decisions are pure (``gx10slots.guard.rules``); this module does the I/O around them.

The guard holds no lock while it watches, so an operator's `slots flip-back` is never blocked. It
holds only the Lease ``gx10slots-guard``, an announcement that it watches: while that is held,
production's fallback stays protected from `deploy` and `park` (gx10slots.fallback).
When ``--failures`` checks in a row failed it takes the lease and reuses the flip's own steps:
``switch`` (compare-and-swap pinned to the guarded slot, with the readiness gate of the previous
slot), ``verify`` through production, ``record_flip`` (history entry ``auto-revert``, annotations
and a Warning Event with the evidence). Ctrl-C while watching changes nothing.

The loop talks to the world only through :class:`Ports` (clock, wait, flag, observe, revert), so
its tests run on fakes with an injected clock and no sleeping.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import httpx

from gx10slots import console
from gx10slots.app import App
from gx10slots.errors import (
    CheckFailed,
    Interrupted,
    LockHeld,
    Refused,
    SlotsError,
    StateUnknown,
)
from gx10slots.flip.rules import FlipPlan, clean_reason
from gx10slots.flip.run import Switched, mark_done, record_flip, switch, where_production_is
from gx10slots.flip.run import verify as verify_production
from gx10slots.guard.rules import (
    Baseline,
    CheckRecord,
    GuardSettings,
    Observation,
    StallState,
    Tally,
    Target,
    describe,
    judge_check,
    next_check_at,
    progress_verdict,
    resolve_settings,
    stand_down_reason,
    start_gate,
    trip_summary,
    ttft_limit_ms,
)
from gx10slots.kube.lease import Lock, holder_identity
from gx10slots.ops.engine import (
    probe_access,
    production_endpoint,
    quick_probe,
    slot_endpoint,
    suite_settings,
)
from gx10slots.ops.lease import GUARD_LEASE, WATCH_UNTIL, hold
from gx10slots.ops.read import read_flag_object, snapshot
from gx10slots.ops.smoke import invalidate_smoke
from gx10slots.slots import FlagState, SlotState, flag_state, now_utc, rfc3339
from gx10slots.smoke._failure import ProbeFailure
from gx10slots.smoke._http import describe_transport_error
from gx10slots.smoke._transport import as_async_transport
from gx10slots.smoke.context import ProbeContext
from gx10slots.smoke.probes import probe_streaming
from gx10slots.smoke.profiles import EngineProfile, get_profile
from gx10slots.smoke.progress import (
    MetricsUnavailable,
    ProgressSample,
    Verdict,
    parse_prometheus,
    sample_of,
    scrape,
)
from gx10slots.smoke.redact import Redactor
from gx10slots.smoke.result import ProbeResult
from gx10slots.smoke.settings import SuiteSettings

# Reading the wedged slot's running gauge after the flip-back is best effort and quick.
IN_FLIGHT_TIMEOUT_S = 3.0

GuardResult = Literal["passed", "stood-down", "tripped", "refused"]
EXIT_CODES: dict[str, int] = {"passed": 0, "stood-down": 0, "tripped": 1, "refused": 3}


@dataclass(frozen=True)
class GuardRequest:
    window_s: float | None = None  # None: the config's guard.window (default 10m)
    interval_s: float | None = None
    failures: int | None = None
    report_dir: str | None = None  # where the smoke reports are and the guard report goes
    # The slot a flip just made active (`--guard`): if production is elsewhere, stand down.
    expected: str | None = None
    # Take over a stale gx10slots-lock when flipping back (`--break-lock`).
    break_lock: bool = False


# -- the seam --------------------------------------------------------------------------------


class RevertBlocked(Exception):
    """The flip-back cannot happen now (lease held, previous slot not ready): try again later.

    Control flow between the loop and its revert port, never shown to users as such.
    """


@dataclass(frozen=True)
class RevertResult:
    source: str
    target: str
    verified: bool
    detail: str
    stood_down: str | None = None  # production had moved before we could act
    in_flight: float | None = None  # requests still running on the guarded slot after the flip
    recorded: bool = True
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "verified": self.verified,
            "detail": self.detail,
            "in_flight_on_guarded": self.in_flight,
            "recorded": self.recorded,
        }


class Ports(Protocol):
    def clock(self) -> float: ...

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True when asked to stop meanwhile."""
        ...

    def flag(self) -> FlagState: ...

    def observe(self, timeout_s: float) -> Observation: ...

    def revert(self, summary: str, streak: Sequence[CheckRecord]) -> RevertResult:
        """Flip back (or report that production moved); :class:`RevertBlocked` when it cannot."""
        ...


@dataclass
class WatchOutcome:
    result: Literal["passed", "stood-down", "tripped", "blocked"]
    tally: Tally
    records: list[CheckRecord]
    stood_down: str | None = None
    revert: RevertResult | None = None
    blocked: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def streak(self) -> list[CheckRecord]:
        n = self.tally.consecutive
        return self.records[-n:] if n else []


# -- the loop --------------------------------------------------------------------------------


def watch(
    ports: Ports, target: Target, settings: GuardSettings, baseline: Baseline | None
) -> WatchOutcome:
    """Check until the window has passed, production moved, or the guard tripped and acted."""
    tally = Tally(settings.failures)
    records: list[CheckRecord] = []
    warnings: list[str] = []
    start = ports.clock()
    deadline = start + settings.window_s
    next_at: float | None = start
    blocked: str | None = None
    unread_flag = 0
    reverting = False
    try:
        while next_at is not None:
            delay = next_at - ports.clock()
            if delay > 0 and ports.wait(delay):
                raise Interrupted("asked to stop")
            started = ports.clock()
            try:
                flag: FlagState | None = ports.flag()
            except SlotsError as exc:
                flag = None
                unread_flag += 1
                console.progress(
                    f"guard {target.guarded}: cannot read the flag ({exc.message}); checking "
                    "production anyway (a flip-back re-checks the flag under compare-and-swap)"
                )
            moved = stand_down_reason(flag, target.guarded) if flag is not None else None
            if moved is not None:
                console.progress(f"guard {target.guarded}: {moved}")
                return WatchOutcome("stood-down", tally, records, stood_down=moved)
            observation = ports.observe(settings.probe_timeout_s)
            share = tally.add_probe(observation)
            reasons = judge_check(observation, share, settings, baseline)
            tally.add_check(not reasons)
            record = CheckRecord(
                tally.checks, started - start, not reasons, tuple(reasons), observation, share
            )
            records.append(record)
            _progress_line(target, settings, tally, record)
            if tally.tripped:
                streak = records[-tally.consecutive :]
                reverting = True
                try:
                    result = ports.revert(trip_summary(streak), streak)
                except RevertBlocked as exc:
                    blocked = str(exc)
                    console.progress(
                        f"guard {target.guarded}: tripped, but cannot flip back now: {blocked}; "
                        "trying again at the next check"
                    )
                else:
                    if result.stood_down is not None:
                        console.progress(f"guard {target.guarded}: {result.stood_down}")
                        return WatchOutcome(
                            "stood-down", tally, records, stood_down=result.stood_down
                        )
                    return WatchOutcome("tripped", tally, records, revert=result, warnings=warnings)
                reverting = False
            else:
                blocked = None
            next_at = next_check_at(
                started, deadline, settings, tally.consecutive, blocked=blocked is not None
            )
    except (KeyboardInterrupt, Interrupted) as exc:
        if reverting and isinstance(exc, Interrupted):
            raise  # the revert port already said where production is
        raise Interrupted(
            f"interrupted: the guard stopped watching slot {target.guarded} after "
            f"{tally.checks} check(s); nothing was changed (production stays on "
            f"{target.guarded})",
            reported=True,
        ) from None
    if unread_flag:
        warnings.append(f"{unread_flag} check(s) could not read the flag")
    if blocked is not None:
        return WatchOutcome("blocked", tally, records, blocked=blocked, warnings=warnings)
    return WatchOutcome("passed", tally, records, warnings=warnings)


def _progress_line(
    target: Target, settings: GuardSettings, tally: Tally, record: CheckRecord
) -> None:
    obs = record.observation
    head = f"guard {target.guarded}: check {record.number} (+{record.t_s:.1f}s)"
    if record.passed:
        ttft = f", TTFT {obs.ttft_ms:.0f} ms" if obs.ttft_ms is not None else ""
        console.progress(f"{head} ok{ttft}; progress {obs.stall}")
    else:
        console.progress(
            f"{head} FAILED ({tally.consecutive}/{settings.failures} in a row): "
            + "; ".join(record.reasons)
        )


# -- one observation of production -----------------------------------------------------------


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
        try:
            stall, stall_detail, running = await _watch_progress(
                ctx, probe, window_s=stall_window_s, every_s=sample_every_s
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
    )


async def _watch_progress(
    ctx: ProbeContext, probe: asyncio.Task[ProbeResult], *, window_s: float, every_s: float
) -> tuple[StallState, str, float | None]:
    """Sample the counter and the running gauge while the probe is in flight.

    Our own probe keeps a request running, so a healthy engine shows progress at once and the
    sampling ends early; a wedged one shows it running on a flat counter for the window.
    """
    profile = ctx.profile
    counter, gauge = profile.progress_counter, profile.requests_running_metric
    if profile.metrics_format != "prometheus" or counter is None or gauge is None:
        return "unavailable", f"engine {profile.name}: no Prometheus progress metrics", None
    samples: list[ProgressSample] = []
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
        if verdict.verdict in (Verdict.PROGRESSING, Verdict.STALLED) or probe_was_done:
            return state, detail, running
        await asyncio.wait({probe}, timeout=every_s)


_STATES: dict[Verdict, StallState] = {
    Verdict.PROGRESSING: "progressing",
    Verdict.IDLE: "idle",
    Verdict.STALLED: "stalled",
    Verdict.INCONCLUSIVE: "inconclusive",
}


# -- the cluster ports -----------------------------------------------------------------------


class ClusterPorts:
    """The real world: the flag through the API server, production through its endpoint."""

    def __init__(
        self,
        app: App,
        target: Target,
        settings: GuardSettings,
        *,
        by: str,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
        break_lock: bool = False,
    ) -> None:
        self.app = app
        self.break_lock = break_lock
        self.target = target
        self.settings = settings
        self.by = by
        self._clock = clock
        self._wait = wait or threading.Event().wait
        self.profile = get_profile(app.config.engine)
        self.endpoint = production_endpoint(app)
        # The same credentials and transport as every probe (apiserver-proxy needs the cluster's).
        self.api_key, self.transport = probe_access(app)
        self.suite = suite_settings(app, ("streaming",))

    def clock(self) -> float:
        return self._clock()

    def wait(self, seconds: float) -> bool:
        return self._wait(seconds)

    def flag(self) -> FlagState:
        return flag_state(read_flag_object(self.app), self.app.config)

    def observe(self, timeout_s: float) -> Observation:
        settings = dataclasses.replace(
            self.suite, probe_timeout_s=timeout_s, deadline_s=timeout_s * 2
        )
        return observe(
            self.endpoint,
            self.target.served_name or "",
            self.profile,
            settings,
            api_key=self.api_key,
            timeout_s=timeout_s,
            stall_window_s=self.settings.stall_window_s,
            sample_every_s=self.settings.sample_every_s,
            transport=self.transport,
        )

    def _fallback_answers(self) -> str | None:
        """Why the previous slot is no safe place to go (its own quick probe), or None."""
        previous = self.target.previous
        served = self.target.previous_served_name or ""
        verdict = quick_probe(
            self.app,
            slot_endpoint(self.app, previous),
            served,
            timeout_s=self.settings.probe_timeout_s,
        )
        if verdict.passed:
            return None
        return f"the previous slot {previous} failed its own probe: {verdict.detail}"

    def revert(self, summary: str, streak: Sequence[CheckRecord]) -> RevertResult:
        app, guarded = self.app, self.target.guarded
        reason = clean_reason(f"slots guard: {summary}")
        console.progress(
            f"guard {guarded}: tripped ({summary}); taking the lease to flip back to "
            f"{self.target.previous}"
        )
        switched: Switched | None = None
        # A guard that lost sight of production (a network blip on its own side) must not move a
        # healthy production onto a slot that does not answer either.
        unsafe = self._fallback_answers()
        if unsafe is not None:
            raise RevertBlocked(unsafe)
        try:
            with hold(app, holder=self.by, break_lock=self.break_lock) as lock:
                try:
                    switched = switch(
                        app,
                        "auto-revert",
                        lock,
                        force=True,
                        by=self.by,
                        reason=reason,
                        expected_source=guarded,
                        probe=False,
                    )
                except Refused as exc:
                    moved = stand_down_reason(self.flag(), guarded)
                    if moved is not None:
                        return RevertResult(
                            guarded, self.target.previous, False, exc.message, stood_down=moved
                        )
                    raise RevertBlocked(exc.message) from exc
                return self._verify_and_record(lock, switched, reason, summary)
        except LockHeld as exc:
            raise RevertBlocked(exc.message) from exc
        except (KeyboardInterrupt, Interrupted) as exc:
            message = exc.message if isinstance(exc, Interrupted) else "interrupted by Ctrl-C"
            raise Interrupted(
                f"{message} while the guard was flipping back; "
                + where_production_is(app, switched),
                reported=True,
            ) from None
        except SlotsError as exc:
            exc.message = f"the guard tripped ({summary}) and flipping back failed: {exc.message}"
            raise

    def _verify_and_record(
        self, lock: Lock, switched: Switched, reason: str, summary: str
    ) -> RevertResult:
        plan = switched.plan
        console.progress(
            f"flag switched: production {plan.source or 'no slot'} -> {plan.target}; verifying "
            f"through {self.endpoint}"
        )
        ok, detail = verify_production(
            self.app, plan.target, plan.target_served_name, self.app.config.flag.verify_window_s
        )
        in_flight = self._running_on(self.target.guarded)
        stranded = (
            f"; {in_flight:g} request(s) still running on {plan.source}"
            if in_flight is not None
            else ""
        )
        record_detail = (
            f"guard tripped: {summary}{stranded}; "
            + ("verified: " if ok else "verification through production FAILED: ")
            + detail
        )
        warnings: list[str] = []
        recorded = True
        if not invalidate_smoke(
            self.app, plan.source or self.target.guarded, f"guard tripped: {summary}", lock
        ):
            warnings.append(f"could not mark the smoke of {plan.source} as failed")
        try:
            record_flip(
                self.app,
                plan,
                action="auto-revert",
                by=self.by,
                reason=reason,
                result="ok" if ok else "failed",
                detail=record_detail,
                regarding=switched.flag_obj,
            )
            # As every flag writer does: the run is finished only when the flag says so.
            mark_done(self.app, switched.flag_obj, plan.run)
        except SlotsError as exc:
            recorded = False
            warnings.append(f"the flip-back happened but recording it failed: {exc.message}")
            console.progress(warnings[-1])
        return RevertResult(
            source=plan.source or self.target.guarded,
            target=plan.target,
            verified=ok,
            detail=detail,
            in_flight=in_flight,
            recorded=recorded,
            warnings=tuple(warnings),
        )

    def _running_on(self, slot: str) -> float | None:
        """The slot's running-requests gauge, read on the slot itself (requests stranded there)."""

        gauge, path = self.profile.requests_running_metric, self.profile.metrics_path
        if gauge is None or path is None or self.profile.metrics_format != "prometheus":
            return None
        try:
            endpoint = slot_endpoint(self.app, slot)
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            with httpx.Client(
                base_url=endpoint,
                headers=headers,
                timeout=IN_FLIGHT_TIMEOUT_S,
                trust_env=False,
                transport=self.transport,
            ) as client:
                response = client.get(path)
            if response.status_code != 200:
                return None
            return parse_prometheus(response.text[: 4 * 1024 * 1024]).get(gauge)
        except (SlotsError, httpx.HTTPError, ProbeFailure):
            return None  # best effort: reported as unknown


# -- the command -----------------------------------------------------------------------------


# A smoke report is tens of KB; a bigger file under that name is not one of ours.
REPORT_CAP_BYTES = 16 * 1024 * 1024  # as smoke.report.MAX_REPORT_BYTES


def load_baseline(slot: SlotState, report_dir: str) -> tuple[Baseline | None, str]:
    """The slot's passing smoke report for its current revision, and a note saying which."""
    from gx10slots.errors import UsageError
    from gx10slots.smoke.report import Report, latest_report

    folder = Path(report_dir)
    report: Report | None = None
    path = ""
    record = slot.smoke
    if record is not None and record.passed and record.report:
        from gx10slots.fileio import NotReadable, read_bounded

        # The name comes from an annotation: anything (a NUL, a FIFO's name) is possible.
        candidate = folder / Path(record.report).name
        try:
            report = Report.from_json(read_bounded(candidate, REPORT_CAP_BYTES))
            path = str(candidate)
        except (OSError, ValueError, NotReadable, UsageError):
            report = None
    if report is None:
        latest = latest_report(folder, slot.name)
        if latest is not None and latest.revision == (slot.revision or ""):
            report, path = latest, f"{folder}/(latest {slot.name} report)"
    if report is None or not report.passed:
        return None, (
            f"no passing smoke report for {slot.name} revision {slot.revision} in {folder}: "
            "time to first token is not judged"
        )
    if report.summary.ttft_ms_p95 <= 0:
        return None, f"the smoke report {path} measured no TTFT: time to first token not judged"
    return (
        Baseline(report.summary.ttft_ms_p95, path, report.revision),
        f"TTFT baseline p95 {report.summary.ttft_ms_p95:.0f} ms from {path}",
    )


def guard(
    app: App,
    request: GuardRequest,
    *,
    clock: Callable[[], float] = time.monotonic,
    wait: Callable[[float], bool] | None = None,
    ports: Ports | None = None,
) -> dict[str, Any]:
    """Run the guard; the result document (``result``: passed, stood-down or tripped).

    Raises ``Refused`` (exit 3) when there is nothing safe to fall back to, or when it tripped
    and the flip-back stayed blocked until the window ended; ``StateUnknown`` (exit 4) when it
    flipped back but production did not answer from the previous slot.
    """
    config = app.config
    settings = resolve_settings(
        config.guard,
        window_s=request.window_s,
        interval_s=request.interval_s,
        failures=request.failures,
    )
    by = f"guard:{holder_identity()}"
    snap = snapshot(app)
    gate = start_gate(
        snap.slots,
        snap.flag,
        snap.flag_obj,
        config,
        expected=request.expected,
        by=by,
        now=now_utc(),
    )
    started_at = now_utc()
    if isinstance(gate, str):
        console.progress(f"guard: {gate}")
        return {
            "action": "guard",
            "result": "stood-down",
            "slot": request.expected,
            "stood_down": gate,
            "checks": 0,
            "started_at": rfc3339(started_at),
            "finished_at": rfc3339(now_utc()),
        }
    target = gate
    report_dir = request.report_dir or config.smoke.report_dir
    baseline, baseline_note = load_baseline(snap.slots[target.guarded], report_dir)
    if ports is None:
        ports = ClusterPorts(
            app, target, settings, by=by, clock=clock, wait=wait, break_lock=request.break_lock
        )
    console.progress(
        f"guarding {target.guarded} ({target.model}) {describe(settings)} to "
        f"{target.previous} ({target.previous_model}); {baseline_note}"
    )
    announcement = announce_watch(app, by, settings.window_s)
    try:
        began = ports.clock()
        outcome = watch(ports, target, settings, baseline)
        elapsed = ports.clock() - began
    finally:
        if announcement is not None:
            announcement.__exit__(None, None, None)
    doc = _document(outcome, target, settings, baseline, baseline_note, started_at, elapsed)
    doc["report"] = _write_report(doc, outcome, report_dir, target.guarded, started_at)
    if outcome.result == "blocked":
        _record_blocked(app, target, by, outcome)
        raise Refused(
            f"the guard tripped ({trip_summary(outcome.streak)}) but could not flip back before "
            f"the window ended: {outcome.blocked}; production is still on {target.guarded}",
            hint="flip back by hand once possible: `slots flip-back --force`"
            + (f"; evidence in {doc['report']}" if doc["report"] else ""),
        )
    if outcome.result == "tripped" and outcome.revert is not None:
        revert = outcome.revert
        if not revert.verified:
            raise StateUnknown(
                f"the guard tripped ({trip_summary(outcome.streak)}) and switched the flag to "
                f"{revert.target}, but production did not answer from it: {revert.detail}",
                hint="run `slots status` and `slots smoke "
                f"{revert.target}`; evidence in {doc['report'] or 'the history entry'}",
            )
        doc["error"] = CheckFailed(
            f"slot {target.guarded} failed under guard ({trip_summary(outcome.streak)}); flipped "
            f"back: production is on {revert.target} again (verified)",
            hint=f"inspect slot {target.guarded} with `slots smoke {target.guarded}`",
        ).to_dict()
    return doc


def announce_watch(app: App, by: str, window_s: float) -> Lock | None:
    """Hold the Lease gx10slots-guard while watching, saying until when: `deploy` and `park`
    read it and keep production's fallback protected. Best effort: when another guard (or the
    controller) already holds it, the fallback is protected anyway and we watch without it; an
    expired announcement is taken at once (it orders nothing, so no need to wait as for the
    lock)."""
    until = rfc3339(now_utc() + timedelta(seconds=window_s))
    lease = hold(
        app,
        holder=by,
        name=GUARD_LEASE,
        annotations={WATCH_UNTIL: until},
        wait_for_expired=False,
    )
    try:
        lease.__enter__()
    except LockHeld as exc:
        console.progress(f"guard: {exc.message}; it protects the fallback already")
        return None
    except SlotsError as exc:
        console.progress(
            f"guard: could not announce the watch on Lease {GUARD_LEASE} ({exc.message}); "
            "the fallback is protected only for flip.protect_fallback_for"
        )
        return None
    return lease


def _document(
    outcome: WatchOutcome,
    target: Target,
    settings: GuardSettings,
    baseline: Baseline | None,
    baseline_note: str,
    started_at: Any,
    elapsed: float,
) -> dict[str, Any]:
    tally = outcome.tally
    revert = outcome.revert
    warnings = list(outcome.warnings)
    if revert is not None:
        warnings += list(revert.warnings)
    if outcome.result == "passed" and outcome.records and not outcome.records[-1].passed:
        warnings.append("the last check failed")  # cannot happen: an open streak is followed
    doc: dict[str, Any] = {
        "action": "guard",
        "result": "refused" if outcome.result == "blocked" else outcome.result,
        "slot": target.guarded,
        "model": target.model,
        "revision": target.revision,
        "previous": target.previous,
        "previous_model": target.previous_model,
        "settings": settings.to_dict(),
        "started_at": rfc3339(started_at),
        "finished_at": rfc3339(now_utc()),
        "elapsed_s": round(elapsed, 3),
        "checks": tally.checks,
        "failed_checks": tally.failed_checks,
        "consecutive_failures": tally.consecutive,
        "baseline": baseline.to_dict() if baseline else None,
        "baseline_note": baseline_note,
        "ttft_limit_ms": ttft_limit_ms(baseline, settings),
        "stood_down": outcome.stood_down,
        "revert": None,
        "evidence": [r.to_dict() for r in outcome.streak],
        "warnings": warnings,
    }
    if revert is not None:
        doc["revert"] = {
            **revert.to_dict(),
            "guard_probes_abandoned": tally.abandoned_probes,
            "reason": trip_summary(outcome.streak),
        }
    return doc


def _write_report(
    doc: dict[str, Any],
    outcome: WatchOutcome,
    report_dir: str,
    slot: str,
    started_at: Any,
) -> str | None:
    """``<report-dir>/<UTC timestamp>-guard-<slot>.json``: the document and every check."""
    from gx10slots.fileio import atomic_write
    from gx10slots.smoke.report import file_timestamp

    folder = Path(report_dir)
    path = folder / f"{file_timestamp(started_at)}-guard-{slot}.json"
    body = {**doc, "report": str(path), "check_log": [r.to_dict() for r in outcome.records]}
    try:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(path, json.dumps(body, indent=2, ensure_ascii=False) + "\n")
    except OSError as exc:
        console.progress(f"guard: could not write the report to {folder}: {exc}")
        return None
    return str(path)


def _record_blocked(app: App, target: Target, by: str, outcome: WatchOutcome) -> None:
    """History and a Warning Event for a trip that could not flip back (best effort)."""
    plan = FlipPlan(
        mode="auto-revert",
        source=target.guarded,
        target=target.previous,
        target_model=target.previous_model,
        source_model=target.model,
        target_served_name=None,
        patch=[],
    )
    summary = trip_summary(outcome.streak)
    try:
        record_flip(
            app,
            plan,
            action="auto-revert",
            by=by,
            reason=clean_reason(f"slots guard: {summary}"),
            result="failed",
            detail=f"guard tripped ({summary}) but could not flip back: {outcome.blocked}",
            regarding=read_flag_object(app),
        )
    except SlotsError as exc:
        console.progress(f"guard: could not record the blocked flip-back: {exc.message}")


def guard_after_flip(
    app: App, flip_result: dict[str, Any], window_s: float, *, report_dir: str | None = None
) -> dict[str, Any]:
    """`flip|flip-back|deploy --flip --guard DURATION`: guard the slot the flip made active.

    A refusal becomes part of the document (``result: refused``) rather than an error, so the
    flip's own result is not lost; :func:`exit_code` maps it to 3.
    """
    try:
        return guard(
            app,
            GuardRequest(window_s=window_s, report_dir=report_dir, expected=flip_result["to"]),
        )
    except Refused as exc:
        console.progress(f"guard: {exc.message}")
        return {
            "action": "guard",
            "result": "refused",
            "slot": flip_result["to"],
            "error": exc.to_dict(),
        }


def exit_code(doc: dict[str, Any]) -> int:
    return EXIT_CODES.get(str(doc.get("result")), 1)
