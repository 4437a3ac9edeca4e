"""`slots flip` and `slots flip-back`: switch the flag with compare-and-swap, verify, keep warm.

Order of events, each step able to stop the flip with production untouched:
lease → read → gates (pure) → pre-flip probe → CAS write (JSON Patch with `test`s) → verify
through the production endpoint → record. A conflict at the write means someone else moved the
flag: read again and re-check every gate. A failed verification switches back (CAS again).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gx10slots import console
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
from gx10slots.kube.client import FIELD_MANAGER, WriteOutcomeUnknown
from gx10slots.lock import Lock, holder_identity
from gx10slots.ops.audit import HistoryEntry, append_history, emit_event, new_entry_id
from gx10slots.ops.engine import production_endpoint, quick_probe, slot_endpoint
from gx10slots.ops.read import read_flag_object, snapshot
from gx10slots.plan import FlipPlan, Mode, clean_reason, plan_flip
from gx10slots.state import CHANGED_AT, CHANGED_BY, flag_state, now_utc, rfc3339

CAS_ATTEMPTS = 3
PRE_FLIP_PROBE_TIMEOUT_S = 15.0
VERIFY_PROBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Switched:
    plan: FlipPlan
    flag_obj: dict[str, Any]
    at: str


def _write_flag(app: App, plan: FlipPlan) -> dict[str, Any]:
    config, kube = app.config, app.kube
    core = kube.api("core")
    if config.flag.kind == "service-selector":
        fn, what = core.patch_namespaced_service, "Service"
    else:
        fn, what = core.patch_namespaced_config_map, "ConfigMap"
    return kube.write(
        f"patch {what} {config.namespace}/{config.flag.name}",
        fn,
        config.flag.name,
        config.namespace,
        plan.patch,
        field_manager=FIELD_MANAGER,
        _content_type="application/json-patch+json",
    )


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
) -> Switched:
    """Gates, probe and the CAS write, re-evaluated from a fresh read after any conflict."""
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
        )
        if probe and not force:
            served = plan.target_served_name or ""
            verdict = quick_probe(
                app, slot_endpoint(app, plan.target), served, timeout_s=PRE_FLIP_PROBE_TIMEOUT_S
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
        return Switched(plan, written, at)
    raise ClusterError(
        f"the flag object kept changing under us ({CAS_ATTEMPTS} attempts); nothing was changed "
        "by this command",
        hint="someone else is changing it: run `slots status`",
    )


def _endpoints_on(app: App, slot: str) -> tuple[bool, str]:
    """For a selector flag: the production Service's endpoints are the target's pods only."""
    config, kube = app.config, app.kube
    try:
        endpoints = kube.read(
            f"read Endpoints {config.namespace}/{config.flag.service}",
            kube.api("core").read_namespaced_endpoints,
            config.flag.service,
            config.namespace,
        )
    except Interrupted:
        raise
    except SlotsError as exc:
        return False, f"cannot read the production endpoints: {exc.message}"
    prefix = config.slot(slot).deployment + "-"
    names = [
        (address.get("targetRef") or {}).get("name", "")
        for subset in endpoints.get("subsets") or []
        for address in subset.get("addresses") or []
    ]
    if not names:
        return False, "the production Service has no ready endpoints"
    strangers = [n for n in names if not n.startswith(prefix)]
    if strangers:
        return False, f"the production Service still routes to {', '.join(strangers)}"
    return True, f"endpoints are {slot}'s pods ({', '.join(names)})"


def verify(app: App, slot: str, served_name: str | None, window_s: float) -> tuple[bool, str]:
    """Production answers from ``slot``: its pods behind the Service and its model answering."""
    deadline = time.monotonic() + window_s
    detail = "not checked"
    endpoint = production_endpoint(app)
    while True:
        ok = True
        if app.config.flag.kind == "service-selector":
            ok, detail = _endpoints_on(app, slot)
        if ok:
            verdict = quick_probe(
                app, endpoint, served_name or "", timeout_s=VERIFY_PROBE_TIMEOUT_S
            )
            ok, detail = verdict.passed, verdict.detail
        if ok:
            return True, detail
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False, detail
        # Endpoints and routers follow a selector change asynchronously: look again shortly.
        time.sleep(min(0.2, remaining))


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
) -> None:
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
        id=new_entry_id(),
    )
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


def flip(
    app: App,
    mode: Mode,
    *,
    force: bool,
    reason: str | None,
    dry_run: bool,
    lock: Lock | None = None,
) -> dict[str, Any]:
    """Flip or flip back; ``lock`` lets `deploy --flip` flip under the lease it already holds."""
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
        )
        return {"action": mode, "dry_run": True, "changed": False, **plan.to_dict()}
    if lock is None:
        try:
            with Lock(app.kube, holder=by, on_wait=console.progress) as own:
                return _flip_locked(app, mode, own, force=force, by=by, why=why)
        except Interrupted as exc:
            if "production" in exc.message:
                raise
            # Stopped while taking (or giving back) the lease: say where production is.
            raise Interrupted(exc.message + "; " + where_production_is(app, None)) from exc
    return _flip_locked(app, mode, lock, force=force, by=by, why=why)


def _flip_locked(
    app: App, mode: Mode, lock: Lock, *, force: bool, by: str, why: str
) -> dict[str, Any]:
    from gx10slots.ops.unfinished import settle_unfinished

    started = time.monotonic()
    switched: Switched | None = None
    verified = False
    try:
        completed = settle_unfinished(app, mode, lock, by=by, why=why)
        if completed is not None:
            return completed
        switched = switch(app, mode, lock, force=force, by=by, reason=why)
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
    except Interrupted as exc:
        where = where_production_is(app, switched, verified=verified)
        raise Interrupted(exc.message + "; " + where) from exc
    except ClusterError as exc:
        if not verified:
            raise
        # Done and verified, only the record is missing: say so (exit 4, state known). The flag's
        # annotations hold the record; re-running the command records it without flipping again.
        raise ClusterError(
            f"production is on {plan.target} (switched and verified), but recording it in the "
            f"history failed: {exc.message}",
            hint=f"re-run `slots {mode}`: it records the entry without switching again",
        ) from exc
    elapsed = time.monotonic() - started
    return {
        "action": mode,
        "changed": True,
        "from": plan.source,
        "to": plan.target,
        "model": plan.target_model,
        "from_model": plan.source_model,
        "verified": True,
        "detail": detail,
        "gates": plan.gates,
        "warm": plan.source,
        "duration_s": round(elapsed, 3),
    }


def where_production_is(app: App, switched: Switched | None, *, verified: bool = False) -> str:
    """What is known after an interruption, read back rather than assumed (a write may have
    been in flight when the signal came)."""
    try:
        value = flag_state(read_flag_object(app), app.config).value
    except (SlotsError, KeyboardInterrupt):
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
) -> dict[str, Any]:
    plan = switched.plan
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
    except SlotsError as exc:
        record_flip(
            app,
            plan,
            action=plan.mode,
            by=by,
            reason=reason,
            result="failed",
            detail=f"verification failed: {detail}; switching back failed: {exc.message}",
            regarding=switched.flag_obj,
        )
        raise StateUnknown(
            f"verification of {plan.target} failed ({detail}) and switching back to "
            f"{plan.source} failed too: {exc.message}",
            hint="flip back by hand: `slots flip-back --force`",
        ) from exc
    record_flip(
        app,
        plan,
        action=plan.mode,
        by=by,
        reason=reason,
        result="failed",
        detail=f"verification failed: {detail}; reverted to {back.plan.target}",
        regarding=back.flag_obj,
    )
    raise CheckFailed(
        f"production did not answer from {plan.target} ({detail}); switched back: production is "
        f"on {back.plan.target} again",
        hint=f"inspect slot {plan.target} with `slots smoke {plan.target}`",
    )
