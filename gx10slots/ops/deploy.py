"""`slots deploy MODEL`: new model into the standby, wait for it, smoke it, record; `--flip`.

Never touches the active slot or the flag (unless ``--flip``, which is the same flip as
`slots flip`, under the lease this command already holds). Re-running after an interruption
converges: a standby that already runs the planned revision goes straight to smoke.
"""

from __future__ import annotations

import queue
import time
from dataclasses import dataclass
from typing import Any

from gx10slots import console
from gx10slots.app import App
from gx10slots.config import SLOT_NAMES
from gx10slots.deployplan import (
    DeployPlan,
    check_memory,
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
from gx10slots.kube.client import FIELD_MANAGER, WriteOutcomeUnknown
from gx10slots.lock import Lock, holder_identity
from gx10slots.ops.audit import HistoryEntry, append_history, emit_event, new_entry_id, read_history
from gx10slots.ops.engine import probe_access
from gx10slots.ops.read import Snapshot, read_deployment, snapshot
from gx10slots.plan import clean_reason
from gx10slots.state import flux_deploy_blocker, now_utc, other_slot, revision_of, rfc3339

CAS_ATTEMPTS = 3
LOG_LINES = 20


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
    )


def _plan(app: App, request: DeployRequest, snap: Snapshot, by: str) -> tuple[DeployPlan, str]:
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
    active = snap.flag.active
    memory_note = check_memory(
        active_slot=active,
        active_gib=snap.slots[active].memory_gib if active else None,
        new_slot=target,
        new_gib=plan.memory_gib,
        capacity_gib=snap.node_capacity_gib,
        reserve_gib=app.config.memory.reserve_gib,
    )
    return plan, memory_note


def deploy(app: App, request: DeployRequest) -> dict[str, Any]:
    by = holder_identity()
    why = clean_reason(request.reason) or f"slots deploy {request.model}"
    if request.dry_run:
        plan, memory_note = _plan(app, request, snapshot(app), by)
        return {
            "action": "deploy",
            "dry_run": True,
            "changed": False,
            "memory": memory_note,
            **plan.to_dict(),
        }
    from gx10slots.ops.smoke import check_report_dir

    # Before any change: a smoke whose report cannot be written, or whose engine key cannot be
    # sent, would fail after the rollout.
    check_report_dir(request.report_dir or app.config.smoke.report_dir)
    probe_access(app)
    try:
        with Lock(app.kube, holder=by, on_wait=console.progress) as lock:
            return _deploy_locked(app, request, lock, by, why)
    except Interrupted as exc:
        if "production" in exc.message:
            raise
        raise Interrupted(
            f"{exc.message}; production untouched (deploy changes only the standby before its flip)"
        ) from exc


def _apply(app: App, request: DeployRequest, lock: Lock, by: str) -> tuple[DeployPlan, bool]:
    """Plan and write with compare-and-swap; returns the plan and whether anything was written."""
    for attempt in range(1, CAS_ATTEMPTS + 1):
        snap = snapshot(app)
        plan, memory_note = _plan(app, request, snap, by)
        console.progress(memory_note)
        target_state = snap.slots[plan.slot]
        if plan.unchanged and target_state.is_ready:
            console.progress(
                f"slot {plan.slot} already runs revision {plan.revision_after} and is ready; "
                "going straight to smoke"
            )
            return plan, False
        if plan.unchanged:
            console.progress(f"slot {plan.slot} already has this revision; waiting for it")
            return plan, False
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
        return plan, True
    raise ClusterError(
        "the standby Deployment kept changing under us; nothing was changed by this command"
    )


def _already_in_production(
    app: App, request: DeployRequest, lock: Lock, by: str, why: str
) -> dict[str, Any] | None:
    """`deploy MODEL --flip` when production already runs exactly that revision: the intent is
    met (typically a re-run after the earlier run's flip landed). Complete that flip if it was
    left unverified and unrecorded; never deploy into the standby, which holds the slot to flip
    back to."""
    from gx10slots.ops.flip import flip
    from gx10slots.ops.unfinished import find_unfinished

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
    return {
        "action": "deploy",
        "changed": False,
        "already_active": True,
        "slot": active,
        "model": plan.model,
        "served_name": plan.served_name,
        "revision": plan.revision_after,
        "smoke": None,
        "reports": [],
        "duration_s": 0.0,
        "flip": flipped,
    }


def _pod_logs(app: App, pod: str | None) -> str:
    if not pod:
        return ""
    kube = app.kube
    try:
        text = kube.read_text(
            f"read logs of {pod}",
            kube.api("core").read_namespaced_pod_log,
            pod,
            kube.namespace,
            container=app.config.container,
            tail_lines=LOG_LINES,
        )
    except SlotsError as exc:
        return f"(logs unavailable: {exc.message})"
    lines = text.rstrip("\n").splitlines()[-LOG_LINES:]
    return "\n".join("    " + line for line in lines)


def wait_for_rollout(app: App, plan: DeployPlan, timeout_s: float) -> str:
    """Watch the Deployment and its Pods until the new revision is ready; the ready pod's name."""
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
    try:
        while True:
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
            if reason != last_reason:
                console.progress(f"[{time.monotonic() - started:6.1f}s] {plan.slot}: {reason}")
                last_reason = reason
            if verdict.state == "done":
                return verdict.pod or ""
            if verdict.state == "failed":
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


def _record(app: App, plan: DeployPlan, by: str, why: str, result: str, detail: str) -> None:
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
    )
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


def _park(app: App, plan: DeployPlan) -> str:
    from gx10slots.ops.park import scale_to_zero

    try:
        scale_to_zero(app, plan.slot)
    except SlotsError as exc:
        return f"; parking it failed: {exc.message}"
    return f"; slot {plan.slot} parked (--park-on-failure)"


def _deploy_locked(
    app: App, request: DeployRequest, lock: Lock, by: str, why: str
) -> dict[str, Any]:
    from gx10slots.ops.smoke import smoke_slot

    started = time.monotonic()
    if request.flip and request.slot is None:
        done = _already_in_production(app, request, lock, by, why)
        if done is not None:
            return done
    plan, written = _apply(app, request, lock, by)
    try:
        pod = wait_for_rollout(app, plan, request.timeout_s)
        console.progress(f"slot {plan.slot}: pod {pod} ready; running the smoke suite")
        # Under this command's lease: a Lock of its own (same holder) would give the lease back
        # on exit, mid-deploy, for anyone to take before the flip.
        outcome = smoke_slot(
            app, plan.slot, report_dir=request.report_dir, formats=request.formats, lock=lock
        )
    except Interrupted as exc:
        raise Interrupted(
            f"{exc.message}; the standby {plan.slot} was left as it is "
            f"({'updated to' if written else 'running'} {request.model}); production untouched"
        ) from exc
    except CheckFailed as exc:
        parked = _park(app, plan) if request.park_on_failure else ""
        _record(app, plan, by, why, "failed", exc.message.splitlines()[0] + parked)
        exc.message += parked
        raise
    if not outcome.passed:
        parked = _park(app, plan) if request.park_on_failure else ""
        detail = f"smoke failed: {outcome.failure_summary}"
        _record(app, plan, by, why, "failed", detail + parked)
        raise CheckFailed(
            f"slot {plan.slot}: {detail}; report {outcome.report_path}{parked}",
            hint="production is untouched; the standby is left running for debugging",
        )
    if written or not _already_recorded(app, plan):
        _record(app, plan, by, why, "ok", f"smoke passed; report {outcome.report_path}")
    result: dict[str, Any] = {
        "action": "deploy",
        "changed": written,
        "slot": plan.slot,
        "model": plan.model,
        "served_name": plan.served_name,
        "revision": plan.revision_after,
        "smoke": {"passed": True, "report": outcome.report_path},
        "reports": outcome.report_paths,
        "duration_s": round(time.monotonic() - started, 3),
        "flip": None,
    }
    if request.flip:
        from gx10slots.ops.flip import flip

        console.progress(f"smoke passed; flipping production to {plan.slot}")
        result["flip"] = flip(app, "flip", force=False, reason=why, dry_run=False, lock=lock)
    return result
