"""`slots deploy MODEL`: new model into the standby, wait for it, smoke it, record; `--flip`.

Never touches the active slot or the flag (unless ``--flip``, which is the same flip as
`slots flip`, under the lease this command already holds). Re-running after an interruption
converges: a standby that already runs the planned revision goes straight to smoke.
"""

from __future__ import annotations

import contextlib
import queue
import time
from dataclasses import dataclass, replace
from typing import Any

from gx10slots import console, notify
from gx10slots.app import App
from gx10slots.config import SLOT_NAMES
from gx10slots.deploy.result import Deployed, DeployPreview, DeployResult
from gx10slots.deploy.rules import (
    DeployPlan,
    memory_gate,
    parse_env_pairs,
    plan_deploy,
    rollout_verdict,
)
from gx10slots.errors import (
    ApiError,
    CheckFailed,
    ClusterError,
    Conflict,
    Interrupted,
    Invalid,
    Refused,
    SlotsError,
)
from gx10slots.fallback import check_fallback
from gx10slots.flip.rules import check_names_kept, clean_reason
from gx10slots.kube.cas import CAS_ATTEMPTS
from gx10slots.kube.client import FIELD_MANAGER, WriteOutcomeUnknown
from gx10slots.kube.lease import Lock, holder_identity
from gx10slots.kube.values import now_utc, rfc3339
from gx10slots.ops.audit import HistoryEntry, append_history, emit_event, new_entry_id, read_history
from gx10slots.ops.engine import probe_access
from gx10slots.ops.lease import hold, protection
from gx10slots.ops.read import Snapshot, read_deployment, snapshot
from gx10slots.progress import LOG_POLL_S, Hooks, PlainHooks
from gx10slots.servednames import identity_name, is_identity
from gx10slots.slots import flux_deploy_blocker, other_slot, revision_of, slot_state

LOG_LINES = 20
# For the engine's load progress: enough lines to see past its access log of health probes.
ENGINE_LOG_LINES = 200


@dataclass(frozen=True)
class DeployRequest:
    model: str
    image: str | None = None
    served_name: str | None = None
    env: tuple[str, ...] = ()
    memory_gib: float | None = None
    slot: str | None = None
    flip: bool = False
    timeout_s: float = 1200.0
    report_dir: str | None = None
    formats: tuple[str, ...] | None = None
    dry_run: bool = False
    park_on_failure: bool = False
    reason: str | None = None
    allow_unknown_memory: bool = False
    # Deploy even into production's protected fallback (recorded in history).
    replace_fallback: bool = False
    # Take over a lease nobody renews within its renew interval.
    break_lock: bool = False
    rename: bool = False  # --rename: let the flip drop names production serves now


def _target(snap: Snapshot, requested: str | None) -> str:
    active = snap.flag.active
    if requested is not None:
        if requested not in SLOT_NAMES:
            raise Refused(f"--slot must be blue or green, got {requested!r}")
        if requested == active:
            raise Refused(
                f"slot {requested} is the active slot: deploy never touches production",
                hint="deploy into the standby, then flip",
            )
        return requested
    if active is None:
        raise Refused(
            "the flag names no slot, so the standby is unknown: name the target with --slot"
        )
    return other_slot(active)


def _served_name(request: DeployRequest, snap: Snapshot) -> str | None:
    """The name clients ask for stays the same across a swap unless --served-name changes it:
    a new default name would turn every client's request into a 404 after the flip."""
    if request.served_name is not None:
        return request.served_name
    active = snap.slots.get(snap.flag.active) if snap.flag.active else None
    return active.served_name if active is not None and active.served_name else None


def _extra_names(snap: Snapshot, slot: str, *, keep: bool = True) -> list[str]:
    """Beside its primary name the slot serves every client-facing name production serves now
    (so a rename keeps old clients working after the flip; ``keep=False``, from --rename, drops
    them) and its own identity name."""
    active = snap.slots.get(snap.flag.active) if snap.flag.active and keep else None
    kept = [n for n in (active.served_names if active else ()) if not is_identity(n)]
    return [*kept, identity_name(slot)]


def _plan_into(
    app: App,
    request: DeployRequest,
    snap: Snapshot,
    slot: str,
    current: dict[str, Any],
    by: str,
) -> DeployPlan:
    """The request applied to ``slot``'s Deployment as read (pure planning, no gates)."""
    return plan_deploy(
        current,
        app.config,
        slot=slot,
        model=request.model,
        image=request.image,
        served_name=_served_name(request, snap),
        env=parse_env_pairs(request.env, app.config),
        memory_gib=request.memory_gib,
        node_capacity_gib=snap.node_capacity_gib,
        by=by,
        now=now_utc(),
        extra_names=_extra_names(snap, slot, keep=not request.rename),
    )


@dataclass(frozen=True)
class Planned:
    plan: DeployPlan
    memory_note: str
    # Set when this deploy replaces production's protected fallback (--replace-fallback).
    replaced_fallback: str | None = None


def _plan(app: App, request: DeployRequest, snap: Snapshot, by: str) -> Planned:
    target = _target(snap, request.slot)
    current = snap.deployments[target]
    if current is None:
        raise Refused(
            f"slot {target}: Deployment {app.config.slot(target).deployment} not found in "
            f"namespace {app.config.namespace}"
        )
    drift = flux_deploy_blocker(current, target)
    if drift:
        raise Refused(drift)
    plan = _plan_into(app, request, snap, target, current, by)
    replaced = None
    if not plan.unchanged:
        # A slot that already runs this revision loses nothing (a re-run goes straight to smoke).
        replaced = check_fallback(
            protection(app, snap.flag, snap.slots),
            target,
            action="deploy",
            replace=request.replace_fallback,
        )
    active = snap.flag.active
    if request.flip and not request.rename and active is not None:
        # Refuse before the standby changes: the flip at the end would refuse anyway.
        planned = slot_state(target, plan.deployment, app.config, snap.node_capacity_gib)
        check_names_kept(snap.slots[active], planned)
    assert plan.memory is not None
    memory_note = memory_gate(
        active_slot=active,
        active_gib=snap.slots[active].memory_gib if active else None,
        new_slot=target,
        new=plan.memory,
        capacity_gib=snap.node_capacity_gib,
        reserve_gib=app.config.memory.reserve_gib,
        allow_unknown=request.allow_unknown_memory,
    )
    return Planned(plan, memory_note, replaced)


def deploy(app: App, request: DeployRequest, hooks: Hooks | None = None) -> DeployResult:
    """``hooks`` hear each phase, what it waits for and the engine's log (live progress)."""
    hooks = hooks if hooks is not None else PlainHooks()
    by = holder_identity()
    why = clean_reason(request.reason) or f"slots deploy {request.model}"
    if request.dry_run:
        planned = _plan(app, request, snapshot(app), by)
        return DeployPreview(
            planned.plan, planned.memory_note, planned.replaced_fallback is not None
        )
    from gx10slots.ops.smoke import check_report_dir

    # Before any change: a smoke whose report cannot be written, or whose engine key cannot be
    # sent, would fail after the rollout.
    check_report_dir(request.report_dir or app.config.smoke.report_dir)
    probe_access(app)
    result: DeployResult | None = None
    try:
        with hold(app, holder=by, break_lock=request.break_lock) as lock:
            result = _deploy_locked(app, request, lock, by, why, hooks)
        return result
    except Interrupted as exc:
        if exc.reported:
            raise
        flipped = result.flip if isinstance(result, Deployed) else None
        if flipped is not None:
            # Stopped while giving back the lease, after the flip: it is done.
            raise Interrupted(
                f"{exc.message}; production is on {flipped.target} (switched, verified and "
                "recorded); the lease expires on its own",
                reported=True,
            ) from exc
        raise Interrupted(
            f"{exc.message}; production untouched (deploy changes only the standby before its flip)"
        ) from exc


def _apply(app: App, request: DeployRequest, lock: Lock, by: str) -> tuple[Planned, bool]:
    """Plan and write with compare-and-swap; returns the plan and whether anything was written."""
    for attempt in range(1, CAS_ATTEMPTS + 1):
        snap = snapshot(app)
        planned = _plan(app, request, snap, by)
        plan = planned.plan
        console.progress(planned.memory_note)
        if planned.replaced_fallback:
            console.progress(planned.replaced_fallback)
        target_state = snap.slots[plan.slot]
        if plan.unchanged and target_state.is_ready:
            console.progress(
                f"slot {plan.slot} already runs revision {plan.revision_after} and is ready; "
                "going straight to smoke"
            )
            return planned, False
        if plan.unchanged:
            console.progress(f"slot {plan.slot} already has this revision; waiting for it")
            return planned, False
        for change in plan.changes:
            console.detail(f"  {change}")
        lock.check()
        name = plan.deployment["metadata"]["name"]
        try:
            app.kube.write(
                f"update Deployment {app.config.namespace}/{name}",
                app.kube.api("apps").replace_namespaced_deployment,
                name,
                app.config.namespace,
                plan.deployment,
                field_manager=FIELD_MANAGER,
            )
        except (ApiError, WriteOutcomeUnknown) as exc:
            # An error answer is not proof that nothing happened: read back, then decide.
            current = read_deployment(app, plan.slot)
            landed = current is not None and revision_of(current) == plan.revision_after
            if not landed and isinstance(exc, Conflict | Invalid):
                console.progress(
                    f"Deployment {name} changed while we planned (attempt {attempt}/"
                    f"{CAS_ATTEMPTS}); planning again"
                )
                continue
            if not landed:
                raise ClusterError(
                    f"the update of {name} failed and did not happen ({exc.message}; read back: "
                    "the standby is unchanged); production untouched",
                    hint=exc.hint or "run the same deploy again",
                ) from exc
            console.progress(f"the update of {name} failed ({exc.message}) but landed (read back)")
        console.progress(
            f"slot {plan.slot}: {request.model} applied (revision {plan.revision_before} -> "
            f"{plan.revision_after}); waiting for the rollout"
        )
        return planned, True
    raise ClusterError(
        "the standby Deployment kept changing under us; nothing was changed by this command"
    )


def _already_in_production(
    app: App, request: DeployRequest, lock: Lock, by: str, why: str
) -> Deployed | None:
    """`deploy MODEL --flip` when production already runs exactly that revision: the intent is
    met (typically a re-run after the earlier run's flip landed). Complete that flip if it was
    left unverified and unrecorded; never deploy into the standby, which holds the slot to flip
    back to."""
    from gx10slots.flip.run import flip
    from gx10slots.flip.unfinished import find_unfinished

    snap = snapshot(app)
    active = snap.flag.active
    current = snap.deployments.get(active) if active else None
    if active is None or current is None:
        return None
    plan = _plan_into(app, request, snap, active, current, by)
    if not plan.unchanged:
        return None
    console.progress(
        f"production (slot {active}) already runs {request.model} at revision "
        f"{plan.revision_after}: nothing to deploy, the standby stays as it is"
    )
    unfinished = find_unfinished(app, snap.flag_obj)
    flipped = None
    if unfinished is not None and unfinished.action == "flip" and unfinished.active == active:
        flipped = flip(app, "flip", force=False, reason=why, dry_run=False, lock=lock)
    return Deployed(
        slot=active,
        model=plan.model,
        served_name=plan.served_name,
        revision=plan.revision_after,
        changed=False,
        already_active=True,
        flip=flipped,
    )


def _log_tail(app: App, pod: str, lines: int = LOG_LINES) -> str:
    """The last ``lines`` lines of the pod's engine container (bounded by the client)."""
    kube = app.kube
    return kube.read_text(
        f"read logs of {pod}",
        kube.api("core").read_namespaced_pod_log,
        pod,
        kube.namespace,
        container=app.config.container,
        tail_lines=lines,
    )


def _pod_logs(app: App, pod: str | None) -> str:
    if not pod:
        return ""
    try:
        text = _log_tail(app, pod)
    except SlotsError as exc:
        return f"(logs unavailable: {exc.message})"
    lines = text.rstrip("\n").splitlines()[-LOG_LINES:]
    return "\n".join("    " + line for line in lines)


def wait_for_rollout(
    app: App, plan: DeployPlan, timeout_s: float, hooks: Hooks | None = None
) -> str:
    """Watch the Deployment and its Pods until the new revision is ready; the ready pod's name.
    While the new pod loads, the tail of its log goes to ``hooks`` every LOG_POLL_S (the engine's
    own load progress)."""
    hooks = hooks if hooks is not None else PlainHooks()
    from gx10slots.kube.watch import Watcher

    config, kube = app.config, app.kube
    name = plan.deployment["metadata"]["name"]
    match = (plan.deployment["spec"].get("selector") or {}).get("matchLabels") or {}
    watcher = Watcher(kube)
    watcher.add(
        "deployment",
        kube.api("apps").list_namespaced_deployment,
        field_selector=f"metadata.name={name}",
    )
    watcher.add(
        "pods",
        kube.api("core").list_namespaced_pod,
        label_selector=",".join(f"{k}={v}" for k, v in match.items()),
    )
    deployment: dict[str, Any] | None = None
    pods: dict[str, dict[str, Any]] = {}
    started = time.monotonic()
    deadline = started + timeout_s
    last_reason = ""
    loading_pod: str | None = None  # the new revision's pod while it is not ready
    next_log_read = started + LOG_POLL_S
    try:
        while True:
            if loading_pod and hooks.wants_engine_log and time.monotonic() >= next_log_read:
                next_log_read = time.monotonic() + LOG_POLL_S
                # Best effort: no container yet, or logs not readable; ask again later.
                with contextlib.suppress(SlotsError):
                    hooks.engine_log(_log_tail(app, loading_pod, ENGINE_LOG_LINES))
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pod = next(iter(pods), None)
                raise CheckFailed(
                    f"slot {plan.slot}: not ready after {timeout_s:g} s (last seen: "
                    f"{last_reason or 'nothing'})\n{_pod_logs(app, pod)}".rstrip(),
                    hint="a large model may need a longer --timeout; production is untouched",
                )
            try:
                event = watcher.events.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if event.type == "ERROR" and event.error is not None:
                raise event.error
            pod_name = event.obj.get("metadata", {}).get("name", "")
            if event.source == "deployment":
                deployment = event.obj if event.type != "DELETED" else None
                if deployment is None:
                    raise CheckFailed(f"Deployment {name} was deleted during the rollout")
            elif event.type == "DELETED":
                pods.pop(pod_name, None)
            else:
                pods[pod_name] = event.obj
            if deployment is None or revision_of(deployment) != plan.revision_after:
                continue
            verdict = rollout_verdict(deployment, list(pods.values()), config.container)
            reason = verdict.reason + (f" [{verdict.pod}]" if verdict.pod else "")
            loading_pod = verdict.pod if verdict.state == "waiting" else None
            if reason != last_reason:
                hooks.waiting(f"{plan.slot}: {reason}")
                last_reason = reason
            if verdict.state == "done":
                return verdict.pod or ""
            if verdict.state == "failed":
                if verdict.reason.startswith("FailedCreate:"):
                    # No pod exists, so there are no logs; the cause is the cluster's refusal.
                    raise CheckFailed(
                        f"slot {plan.slot}: rollout failed: {verdict.reason}",
                        hint="production is untouched; the cluster refused to create the pod "
                        "(a ResourceQuota, an admission policy or webhook): raise the quota or "
                        "lower --memory-gib, then deploy again",
                    )
                logs = _pod_logs(app, verdict.pod)
                raise CheckFailed(
                    f"slot {plan.slot}: rollout failed: {verdict.reason}"
                    + (f"\n  last {LOG_LINES} log lines of {verdict.pod}:\n{logs}" if logs else ""),
                    hint="production is untouched; fix the model or image and deploy again",
                )
    finally:
        watcher.stop()


def _already_recorded(app: App, plan: DeployPlan) -> bool:
    for entry in read_history(app):
        if entry.get("action") == "deploy" and entry.get("to") == plan.slot:
            return bool(
                entry.get("revision") == plan.revision_after and entry.get("result") == "ok"
            )
    return False


def _record(
    app: App,
    plan: DeployPlan,
    by: str,
    why: str,
    result: str,
    detail: str,
    replaced_fallback: str | None = None,
) -> None:
    if replaced_fallback:
        detail += "; " + replaced_fallback
    entry = HistoryEntry(
        at=rfc3339(now_utc()),
        action="deploy",
        from_=None,
        to=plan.slot,
        model=plan.model,
        by=by,
        reason=why,
        result=result,
        detail=detail,
        id=new_entry_id(),
        revision=plan.revision_after,
        replaced_fallback=replaced_fallback is not None,
    )
    notify.entry_event(app.config, entry.to_dict())
    append_history(app, entry)
    emit_event(
        app,
        regarding={
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": plan.deployment["metadata"]["name"]},
        },
        reason="Deployed" if result == "ok" else "DeployFailed",
        action="deploy",
        note=f"{plan.model} into slot {plan.slot} by {by}: {result}; {detail}",
        warning=result != "ok",
        instance=by,
    )


def _park(app: App, plan: DeployPlan, request: DeployRequest) -> str:
    from gx10slots.ops.park import scale_to_zero

    try:
        # --park-on-failure never parks production's protected fallback behind the operator's
        # back (a re-run into a slot that already ran this revision is not refused above).
        now = snapshot(app)
        check_fallback(
            protection(app, now.flag, now.slots),
            plan.slot,
            action="park",
            replace=request.replace_fallback,
        )
    except Refused as exc:
        return f"; not parked: {exc.message}"
    try:
        scale_to_zero(app, plan.slot)
    except SlotsError as exc:
        return f"; parking it failed: {exc.message}"
    return f"; slot {plan.slot} parked (--park-on-failure)"


def _deploy_locked(
    app: App, request: DeployRequest, lock: Lock, by: str, why: str, hooks: Hooks
) -> Deployed:
    from gx10slots.ops.smoke import smoke_slot

    started = time.monotonic()
    if request.flip and request.slot is None:
        done = _already_in_production(app, request, lock, by, why)
        if done is not None:
            return done
    planned, written = _apply(app, request, lock, by)
    plan, replaced = planned.plan, planned.replaced_fallback
    try:
        hooks.phase(f"rollout of {plan.slot}")
        pod = wait_for_rollout(app, plan, request.timeout_s, hooks)
        console.progress(f"slot {plan.slot}: pod {pod} ready; running the smoke suite")
        hooks.phase(f"smoke of {plan.slot}")
        # Under this command's lease: a Lock of its own (same holder) would give the lease back
        # on exit, mid-deploy, for anyone to take before the flip.
        outcome = smoke_slot(
            app, plan.slot, report_dir=request.report_dir, formats=request.formats, lock=lock
        )
    except Interrupted as exc:
        raise Interrupted(
            f"{exc.message}; the standby {plan.slot} was left as it is "
            f"({'updated to' if written else 'running'} {request.model}); production untouched",
            reported=True,
        ) from exc
    except CheckFailed as exc:
        parked = _park(app, plan, request) if request.park_on_failure else ""
        _record(app, plan, by, why, "failed", exc.message.splitlines()[0] + parked, replaced)
        exc.message += parked
        raise
    for note in plan.notes:
        console.progress("warning: " + note)
    if not outcome.passed:
        parked = _park(app, plan, request) if request.park_on_failure else ""
        detail = f"smoke failed: {outcome.failure_summary}"
        _record(app, plan, by, why, "failed", detail + parked, replaced)
        raise CheckFailed(
            f"slot {plan.slot}: {detail}; report {outcome.report_path}{parked}",
            hint="production is untouched; the standby is left running for debugging",
        )
    if written or not _already_recorded(app, plan):
        _record(app, plan, by, why, "ok", f"smoke passed; report {outcome.report_path}", replaced)
    result = Deployed(
        slot=plan.slot,
        model=plan.model,
        served_name=plan.served_name,
        revision=plan.revision_after,
        changed=written,
        smoke_report=outcome.report_path,
        reports=outcome.report_paths,
        duration_s=round(time.monotonic() - started, 3),
        replaced_fallback=replaced is not None,
    )
    if request.flip:
        from gx10slots.flip.run import flip

        console.progress(f"smoke passed; flipping production to {plan.slot}")
        hooks.phase(f"flip to {plan.slot}")
        result = replace(
            result,
            flip=flip(
                app,
                "flip",
                force=False,
                reason=why,
                dry_run=False,
                lock=lock,
                rename=request.rename,
            ),
        )
    return result
