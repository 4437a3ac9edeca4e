"""`slots flip` and `slots flip-back`: switch the flag with compare-and-swap, verify, keep warm.

Order of events, each step able to stop the flip with production untouched:
lease → read → gates (pure) → pre-flip probe → CAS write (JSON Patch with `test`s; it also
writes ``gx10slots.io/state: switching`` and the run's id) → verify through the production
endpoint → record (history entry with the run's id) → mark the run done on the flag
(``gx10slots.io/state: done``, CAS again). A conflict at the write means someone else moved the
flag: read again and re-check every gate. A failed verification switches back (CAS again).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

from gx10slots import console, notify
from gx10slots.app import App
from gx10slots.errors import (
    ApiError,
    CheckFailed,
    ClusterError,
    Conflict,
    Interrupted,
    Invalid,
    Refused,
    SlotsError,
    StateUnknown,
)
from gx10slots.flags import kind_of
from gx10slots.flip.result import FlipResult
from gx10slots.flip.rules import FlipPlan, Mode, clean_reason, plan_flip
from gx10slots.flip.verify import STOOD_DOWN, verify
from gx10slots.kube.cas import CAS_ATTEMPTS
from gx10slots.kube.client import WriteOutcomeUnknown
from gx10slots.kube.lease import Lock, holder_identity
from gx10slots.kube.values import annotation_pointer, now_utc, rfc3339
from gx10slots.ops.audit import HistoryEntry, append_history, emit_event, new_entry_id
from gx10slots.ops.engine import keep_loaded, production_endpoint, quick_probe, slot_endpoint
from gx10slots.ops.lease import hold
from gx10slots.ops.read import read_flag_object, snapshot
from gx10slots.slots import (
    ACTION,
    ACTIVE,
    CHANGED_AT,
    CHANGED_BY,
    DONE,
    PREVIOUS,
    PREVIOUS_REVISION,
    RUN_ID,
    RUN_STATE,
    SWITCHING,
    flag_state,
)

PRE_FLIP_PROBE_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Switched:
    plan: FlipPlan
    flag_obj: dict[str, Any]
    at: str
    before: Mapping[str, Any] | None = None  # the flag object as read before the write


def _write_flag(app: App, plan: FlipPlan) -> dict[str, Any]:
    return kind_of(app.config).patch(app, plan.patch, "")


def _settle_by_reading_back(app: App, plan: FlipPlan, by: str, at: str) -> dict[str, Any] | None:
    """After a write whose answer was lost: the object if our write landed, None if it did not."""
    try:
        obj = read_flag_object(app)
    except Interrupted:
        raise
    except SlotsError as exc:
        raise StateUnknown(
            f"the flag write to {plan.target} failed and reading it back failed too "
            f"({exc.message}); production is on {plan.source} or {plan.target}",
            hint="run `slots status` to see which; the lease expires on its own",
        ) from exc
    annotations = obj.get("metadata", {}).get("annotations") or {}
    landed = (
        flag_state(obj, app.config).value == plan.target
        and annotations.get(CHANGED_BY) == by
        and annotations.get(CHANGED_AT) == at
    )
    return obj if landed else None


def _run_marker(obj: Mapping[str, Any]) -> tuple[str | None, str | None]:
    annotations = obj.get("metadata", {}).get("annotations") or {}
    return annotations.get(RUN_ID), annotations.get(RUN_STATE)


def mark_done(
    app: App, flag_obj: Mapping[str, Any], run: str, also: Mapping[str, str] | None = None
) -> None:
    """The second compare-and-swap of a run: ``gx10slots.io/state: done`` on the flag object,
    once the run has verified (or reverted) and recorded. Without it, re-running the command
    completes the run instead of switching again.

    Pinned by ``test`` ops to this run still being the flag's last writer: if someone else has
    written the flag since, their marker is theirs, and there is nothing of ours left to mark.
    Raises ``ClusterError`` when the cluster keeps refusing (the run stays "switching": a re-run
    verifies and records it again, which is a no-op for the record). ``also``: annotations to
    set in the same patch."""
    obj: Mapping[str, Any] = flag_obj
    config = app.config
    for attempt in range(1, CAS_ATTEMPTS + 1):
        marker, state = _run_marker(obj)
        if not run or marker != run or state != SWITCHING:
            return  # done already, or another run wrote the flag since
        annotations = obj.get("metadata", {}).get("annotations") or {}
        if flag_state(obj, config).value != annotations.get(ACTIVE):
            # Someone moved the flag by hand since (the annotations are still ours): what this
            # run switched is gone, and "done" must not be written over their change.
            return
        patch = [
            {
                "op": "test",
                "path": "/metadata/resourceVersion",
                "value": obj["metadata"]["resourceVersion"],
            },
            {"op": "test", "path": annotation_pointer(RUN_ID), "value": run},
            {"op": "replace", "path": annotation_pointer(RUN_STATE), "value": DONE},
            *(
                {"op": "add", "path": annotation_pointer(key), "value": value}
                for key, value in (also or {}).items()
            ),
        ]
        try:
            kind_of(config).patch(app, patch, f" (mark run {run} done)")
            return
        except (ApiError, WriteOutcomeUnknown) as exc:
            # Landed with a lost answer, or the object moved (409/422): read back and decide.
            obj = read_flag_object(app)
            if _run_marker(obj) == (run, DONE):
                return
            if isinstance(exc, Conflict | Invalid) and attempt < CAS_ATTEMPTS:
                continue
            raise ClusterError(
                f"marking the run {run} done on the flag failed: {exc.message}"
            ) from exc
    raise ClusterError(f"marking the run {run} done on the flag failed: the flag kept changing")


def switch(
    app: App,
    mode: Mode,
    lock: Lock,
    *,
    force: bool,
    by: str,
    reason: str,
    expected_source: str | None = None,
    probe: bool = True,
    rename: bool = False,
) -> Switched:
    """Gates, probe and the CAS write, re-evaluated from a fresh read after any conflict."""
    run = new_entry_id()
    for attempt in range(1, CAS_ATTEMPTS + 1):
        snap = snapshot(app)
        now = now_utc()
        plan = plan_flip(
            mode,
            snap.slots,
            snap.flag,
            snap.flag_obj,
            app.config,
            force=force,
            by=by,
            reason=reason,
            now=now,
            expected_source=expected_source,
            run=run,
            rename=rename,
        )
        if probe and not force:
            served = plan.target_served_name or ""
            verdict = quick_probe(
                app,
                slot_endpoint(app, plan.target),
                served,
                timeout_s=PRE_FLIP_PROBE_TIMEOUT_S,
                served_names=plan.target_served_names,  # the slot's whole list must answer
            )
            if not verdict.passed:
                raise Refused(
                    f"pre-flip probe of slot {plan.target} failed: {verdict.detail}",
                    hint="production is unchanged; `slots smoke "
                    f"{plan.target}` shows the full picture (--force skips this probe)",
                )
            console.detail(f"pre-flip probe of {plan.target}: {verdict.detail}")
        lock.check()
        at = rfc3339(now)
        try:
            written = _write_flag(app, plan)
        except (ApiError, WriteOutcomeUnknown) as exc:
            # An error answer is not proof that nothing happened (a 5xx or a lost answer can
            # follow a write that landed): read back, then decide.
            console.progress(f"the flag write failed ({exc.message}); reading it back to settle it")
            landed = _settle_by_reading_back(app, plan, by, at)
            if landed is None and isinstance(exc, Conflict | Invalid):
                console.progress(
                    f"the flag changed while we checked (attempt {attempt}/{CAS_ATTEMPTS}); "
                    "reading it again and re-checking every gate"
                )
                continue
            if landed is None:
                raise ClusterError(
                    f"the flag write failed and did not happen ({exc.message}; read back: "
                    f"production still on {plan.source}); nothing changed",
                    hint=exc.hint or "run the command again",
                ) from exc
            written = landed
        return Switched(plan, written, at, snap.flag_obj)
    raise ClusterError(
        f"the flag object kept changing under us ({CAS_ATTEMPTS} attempts); nothing was changed "
        "by this command",
        hint="someone else is changing it: run `slots status`",
    )


def record_flip(
    app: App,
    plan: FlipPlan,
    *,
    action: str,
    by: str,
    reason: str,
    result: str,
    detail: str,
    regarding: Mapping[str, Any],
    entry_id: str = "",
) -> list[str]:
    """Notification, history entry, then Event; the notification's warnings. ``entry_id`` (a
    run's id) makes recording a run twice, as a re-run that completes it may, a no-op."""
    entry = HistoryEntry(
        at=rfc3339(now_utc()),
        action=action,
        from_=plan.source,
        to=plan.target,
        model=plan.target_model,
        from_model=plan.source_model,
        by=by,
        reason=reason,
        result=result,
        detail=detail,
        # A failure is recorded under an id of its own: the run may still be completed (and
        # verified) later, and that record, under the run's id, must not be taken for a repeat.
        id=entry_id or (plan.run if result == "ok" else "") or new_entry_id(),
    )
    # First: the flip has happened, and must be told even when recording it fails.
    warnings = notify.entry_event(app.config, entry.to_dict())
    append_history(app, entry)
    emit_event(
        app,
        regarding=regarding,
        reason={"flip": "Flipped", "flip-back": "FlippedBack", "auto-revert": "AutoReverted"}.get(
            action, "FlipFailed"
        )
        if result == "ok"
        else "FlipFailed",
        action=action,
        note=(
            f"production {plan.source or 'no slot'} ({plan.source_model or '?'}) -> {plan.target} "
            f"({plan.target_model or '?'}) by {by}: {result}; {detail}; reason: {reason}"
        ),
        warning=result != "ok" or action == "auto-revert",
        instance=by,
    )
    return warnings


def flip(
    app: App,
    mode: Mode,
    *,
    force: bool,
    reason: str | None,
    dry_run: bool,
    lock: Lock | None = None,
    break_lock: bool = False,
    rename: bool = False,
) -> FlipResult:
    """Flip or flip back; ``lock`` lets `deploy --flip` flip under the lease it already holds;
    ``break_lock`` takes over a lease nobody renews (see gx10slots.kube.lease); ``rename`` lets
    the flip drop names production serves now."""
    by = lock.holder if lock else holder_identity()
    why = clean_reason(reason) or f"slots {mode}"
    if dry_run:
        snap = snapshot(app)
        plan = plan_flip(
            mode,
            snap.slots,
            snap.flag,
            snap.flag_obj,
            app.config,
            force=force,
            by=by,
            reason=why,
            now=now_utc(),
            rename=rename,
        )
        return FlipResult.of(plan, mode, dry_run=True)
    if lock is None:
        try:
            with hold(app, holder=by, break_lock=break_lock) as own:
                return _flip_locked(app, mode, own, force=force, by=by, why=why, rename=rename)
        except (Interrupted, KeyboardInterrupt) as exc:
            if isinstance(exc, Interrupted) and exc.reported:
                raise
            message = exc.message if isinstance(exc, Interrupted) else "interrupted by Ctrl-C"
            # Stopped while taking (or giving back) the lease: say where production is.
            raise Interrupted(
                message + "; " + where_production_is(app, None), reported=True
            ) from exc
    return _flip_locked(app, mode, lock, force=force, by=by, why=why, rename=rename)


def _flip_locked(
    app: App, mode: Mode, lock: Lock, *, force: bool, by: str, why: str, rename: bool = False
) -> FlipResult:
    from gx10slots.flip.unfinished import settle_unfinished

    started = time.monotonic()
    switched: Switched | None = None
    verified = recorded = done = False
    try:
        completed = settle_unfinished(app, mode, lock, by=by, why=why)
        if completed is not None:
            return completed
        switched = switch(app, mode, lock, force=force, by=by, reason=why, rename=rename)
        plan = switched.plan
        console.progress(
            f"flag switched: production {plan.source or 'no slot'} -> {plan.target}; verifying "
            f"through {production_endpoint(app)}"
        )
        ok, detail = verify(
            app, plan.target, plan.target_served_name, app.config.flag.verify_window_s
        )
        if not ok:
            return _revert_after_failed_verification(app, lock, switched, by, why, detail)
        verified = True
        record_flip(
            app,
            plan,
            action=mode,
            by=by,
            reason=why,
            result="ok",
            detail=detail,
            regarding=switched.flag_obj,
        )
        recorded = True
        mark_done(app, switched.flag_obj, plan.run)
        done = True
    except (Interrupted, KeyboardInterrupt) as exc:
        # Ctrl-C and SIGTERM alike (the CLI turns both into Interrupted; KeyboardInterrupt still
        # arrives when this runs outside the CLI): say where production is, read back.
        message = exc.message if isinstance(exc, Interrupted) else "interrupted by Ctrl-C"
        if done:  # stopped on the way out: the run is finished
            raise Interrupted(
                f"{message}; production is on {plan.target} (switched, verified and recorded)",
                reported=True,
            ) from exc
        where = where_production_is(app, switched, verified=verified)
        raise Interrupted(
            message + "; " + where, hint=_after_interruption(mode, switched), reported=True
        ) from exc
    except ClusterError as exc:
        if not verified:
            raise
        # Done and verified, only the record (or the done marker) is missing: say so (exit 4,
        # state known). The flag still says "switching" for this run, so re-running the command
        # verifies and records it without flipping again.
        raise ClusterError(
            f"production is on {plan.target} (switched and verified), but "
            + ("marking the run done on the flag" if recorded else "recording it in the history")
            + f" failed: {exc.message}",
            hint=f"re-run `slots {mode}`: it records the entry without switching again",
        ) from exc
    if plan.source is not None:
        # The fallback stays warm: an engine that unloads idle models is asked to keep it.
        try:
            kept = keep_loaded(app, plan.source)
        except (Interrupted, KeyboardInterrupt) as exc:
            # The run is finished: a stop now must not read as "production untouched" to a
            # caller (`deploy --flip`) that cannot tell it came after the flip.
            message = exc.message if isinstance(exc, Interrupted) else "interrupted by Ctrl-C"
            raise Interrupted(
                f"{message}; production is on {plan.target} (switched, verified and recorded); "
                f"slot {plan.source} was not asked to keep its model loaded",
                reported=True,
            ) from exc
        if kept is not None:
            console.progress(kept)
    elapsed = time.monotonic() - started
    return FlipResult.of(plan, mode, detail=detail, duration_s=round(elapsed, 3))


def _after_interruption(mode: Mode, switched: Switched | None) -> str | None:
    if switched is None:
        return None
    return (
        f"`slots {mode}` again finishes this run (verifies through production and records it, "
        "without switching again); `slots status` shows both slots"
    )


def where_production_is(app: App, switched: Switched | None, *, verified: bool = False) -> str:
    """What is known after an interruption, read back rather than assumed (a write may have
    been in flight when the signal came)."""
    try:
        value = flag_state(read_flag_object(app), app.config).value
    except (SlotsError, Interrupted, KeyboardInterrupt):
        if switched is None:
            return "the flag could not be read back: run `slots status`"
        state = "verified" if verified else "unverified"
        return f"the flag was switched to {switched.plan.target} ({state}); run `slots status`"
    if switched is None or value != switched.plan.target:
        return f"production is on {value} (flag read back)"
    state = "verified, not recorded" if verified else "not verified"
    return f"production is on {value} (flag read back, {state})"


def _revert_after_failed_verification(
    app: App, lock: Lock, switched: Switched, by: str, reason: str, detail: str
) -> NoReturn:
    """Never returns: switched back (CheckFailed), or not, saying where production is."""
    plan = switched.plan
    if detail.startswith(STOOD_DOWN):
        # Someone else moved the flag after our write: never fight them, never call it verified.
        moved = _moved_by_someone_else(app, plan)
        if moved is not None:
            _stand_down_after_outside_move(app, switched, by, reason, detail, moved)
        where = where_production_is(app, None)
        _record_failed(app, plan, by, reason, f"not verified: {detail}; {where}", switched.flag_obj)
        raise CheckFailed(
            f"the flip to {plan.target} was not verified: {detail}; {where}",
            hint="find out who moved it (`slots history`, `kubectl get events`), then run "
            "`slots status`",
        )
    console.progress(f"verification through production failed: {detail}; switching back")
    try:
        back = switch(
            app,
            "revert",
            lock,
            force=True,
            by=by,
            reason=f"verification of {plan.target} failed",
            expected_source=plan.target,
            probe=False,
        )
    except Interrupted:
        raise
    except SlotsError as exc:
        moved = _moved_by_someone_else(app, plan) if isinstance(exc, Refused) else None
        if moved is not None:
            _stand_down_after_outside_move(app, switched, by, reason, detail, moved)
        _record_failed(
            app,
            plan,
            by,
            reason,
            f"verification failed: {detail}; switching back failed: {exc.message}",
            switched.flag_obj,
        )
        raise StateUnknown(
            f"verification of {plan.target} failed ({detail}) and switching back to "
            f"{plan.source} failed too: {exc.message}",
            hint="flip back by hand: `slots flip-back --force`",
        ) from exc
    _record_failed(
        app,
        plan,
        by,
        reason,
        f"verification failed: {detail}; reverted to {back.plan.target}",
        back.flag_obj,
        entry_id=back.plan.run,
    )
    try:
        mark_done(app, back.flag_obj, back.plan.run)
    except SlotsError as exc:
        # Harmless: the next flip-like command records the revert (a no-op, same id) and marks it.
        console.progress(f"could not mark the switch back done on the flag: {exc.message}")
    raise CheckFailed(
        f"production did not answer from {plan.target} ({detail}); switched back: production is "
        f"on {back.plan.target} again",
        hint=f"inspect slot {plan.target} with `slots smoke {plan.target}`",
    )


def _record_failed(
    app: App,
    plan: FlipPlan,
    by: str,
    reason: str,
    detail: str,
    regarding: Mapping[str, Any],
    entry_id: str = "",
) -> None:
    """This run's flip did not end where it meant to: recorded as failed, under its mode."""
    record_flip(
        app,
        plan,
        action=plan.mode,
        by=by,
        reason=reason,
        result="failed",
        detail=detail,
        regarding=regarding,
        entry_id=entry_id,
    )


def _moved_by_someone_else(app: App, plan: FlipPlan) -> dict[str, Any] | None:
    """The flag as read back, when it no longer names the slot this run switched to: someone
    else (a person with kubectl, another tool) moved it while we verified."""
    try:
        obj = read_flag_object(app)
    except Interrupted:
        raise
    except SlotsError:
        return None
    return obj if flag_state(obj, app.config).value != plan.target else None


def _stand_down_after_outside_move(
    app: App,
    switched: Switched,
    by: str,
    reason: str,
    detail: str,
    flag_obj: dict[str, Any],
) -> NoReturn:
    """Verification failed and the flag no longer names our target: someone else moved it. We
    do not fight them (no switch back over their change); we record it and say where production
    is, read back."""
    plan = switched.plan
    value = flag_state(flag_obj, app.config).value
    where = f"production is on {value} (flag read back)"
    # Back where it was before our write: so are the annotations (active, previous and the
    # revision flip-back trusts), or the next flip-back would aim at the wrong slot.
    before = (switched.before or {}).get("metadata", {}).get("annotations") or {}
    restore = (
        {
            key: str(before.get(key) or "")
            for key in (ACTIVE, PREVIOUS, PREVIOUS_REVISION, CHANGED_AT, ACTION)
        }
        if value == plan.source and before.get(ACTIVE) == value
        else {}
    )
    _record_failed(
        app,
        plan,
        by,
        reason,
        f"verification failed: {detail}; someone else moved the flag meanwhile ({where})",
        flag_obj,
    )
    try:
        mark_done(app, flag_obj, plan.run, also=restore)
    except SlotsError as exc:
        console.progress(f"could not mark the run done on the flag: {exc.message}")
    if value == plan.source:
        raise CheckFailed(
            f"production did not answer from {plan.target} ({detail}): someone else moved the "
            f"flag back meanwhile; {where}, not switching again",
            hint="find out who moved it (`slots history`, `kubectl get events`) before flipping",
        )
    raise StateUnknown(
        f"verification of {plan.target} failed ({detail}) and someone else moved the flag "
        f"meanwhile: {where}; not touching it",
        hint="run `slots status`; find out who moved it before flipping",
    )
