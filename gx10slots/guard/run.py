"""`slots guard` as a command: the start gate, the announcement of the watch, the loop over the
cluster ports, and what happens when it trips (history, Event, the report).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from gx10slots import console, scrub
from gx10slots.app import App
from gx10slots.errors import (
    CheckFailed,
    LockHeld,
    Refused,
    SlotsError,
    StateUnknown,
)
from gx10slots.flip.result import FlipResult
from gx10slots.flip.rules import FlipPlan, clean_reason
from gx10slots.flip.run import record_flip
from gx10slots.guard.loop import GuardRequest, Ports, WatchOutcome, watch
from gx10slots.guard.ports import ClusterPorts
from gx10slots.guard.result import GuardResult
from gx10slots.guard.rules import (
    Baseline,
    GuardSettings,
    Target,
    describe,
    resolve_settings,
    start_gate,
    trip_summary,
    ttft_limit_ms,
)
from gx10slots.kube.lease import Lock, holder_identity
from gx10slots.kube.values import now_utc, rfc3339
from gx10slots.ops.lease import GUARD_LEASE, WATCH_UNTIL, hold
from gx10slots.ops.read import read_flag_object, snapshot
from gx10slots.slots import SlotState

# A smoke report is tens of KB; a bigger file under that name is not one of ours.
REPORT_CAP_BYTES = 16 * 1024 * 1024  # as smoke.report.MAX_REPORT_BYTES


def load_baseline(slot: SlotState, report_dir: str) -> tuple[Baseline | None, str]:
    """The slot's passing smoke report for its current revision, and a note saying which."""
    from gx10slots.errors import UsageError
    from gx10slots.smoke import Report, latest_report

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
    make_ports: Callable[[Target, GuardSettings, str], Ports] | None = None,
) -> GuardResult:
    """Run the guard; its result, the report (``result``: passed, stood-down or tripped).

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
        probe_timeout_s=request.probe_timeout_s,
    )
    by = request.by or f"guard:{holder_identity()}"
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
        return GuardResult(
            {
                "action": "guard",
                "result": "stood-down",
                "slot": request.expected,
                "stood_down": gate,
                "checks": 0,
                "started_at": rfc3339(started_at),
                "finished_at": rfc3339(now_utc()),
            }
        )
    target = gate
    report_dir = request.report_dir or config.smoke.report_dir
    baseline, baseline_note = load_baseline(snap.slots[target.guarded], report_dir)
    if ports is None and make_ports is not None:
        ports = make_ports(target, settings, by)
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
    return GuardResult(doc)


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
        "busy_checks": tally.busy_checks,
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
    from gx10slots.smoke import file_timestamp

    folder = Path(report_dir)
    path = folder / f"{file_timestamp(started_at)}-guard-{slot}.json"
    body = {**doc, "report": str(path), "check_log": [r.to_dict() for r in outcome.records]}
    body = scrub.finite_numbers(body)  # an engine's NaN gauge must not make the file unreadable
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
    app: App,
    flip_result: FlipResult,
    window_s: float,
    *,
    report_dir: str | None = None,
    break_lock: bool = False,
) -> GuardResult:
    """`flip|flip-back|deploy --flip --guard DURATION`: guard the slot the flip made active.

    A refusal becomes part of the document (``result: refused``) rather than an error, so the
    flip's own result is not lost; :func:`exit_code` maps it to 3.
    """
    try:
        return guard(
            app,
            GuardRequest(
                window_s=window_s,
                report_dir=report_dir,
                expected=flip_result.target,
                # --break-lock on the flip applies to the lock the guard takes to flip back.
                break_lock=break_lock,
            ),
        )
    except Refused as exc:
        console.progress(f"guard: {exc.message}")
        return GuardResult(
            {
                "action": "guard",
                "result": "refused",
                "slot": flip_result.target,
                "error": exc.to_dict(),
            }
        )


def exit_code(result: GuardResult) -> int:
    return result.exit_code
