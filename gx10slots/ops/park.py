"""`slots park [SLOT]`: scale a non-active slot to zero to free the GX10's memory."""

from __future__ import annotations

from typing import Any

from gx10slots.app import App
from gx10slots.config import SLOT_NAMES
from gx10slots.errors import ClusterError, Conflict, Invalid, Refused, UsageError
from gx10slots.kube.client import FIELD_MANAGER
from gx10slots.lock import Lock, holder_identity
from gx10slots.ops.audit import HistoryEntry, append_history, emit_event, new_entry_id
from gx10slots.ops.read import read_deployment, snapshot
from gx10slots.plan import clean_reason
from gx10slots.state import now_utc, other_slot, rfc3339

CAS_ATTEMPTS = 3


def park(app: App, slot: str | None, *, reason: str | None, dry_run: bool) -> dict[str, Any]:
    if slot is not None and slot not in (*SLOT_NAMES, "standby"):
        raise UsageError(f"slot must be blue, green or standby, got {slot!r}")
    by = holder_identity()
    why = clean_reason(reason) or "slots park"
    if dry_run:
        return _decide(app, slot, dry_run=True)
    with Lock(app.kube, holder=by) as lock:
        for _ in range(CAS_ATTEMPTS):
            decision = _decide(app, slot, dry_run=False)
            if not decision["changed"]:
                return decision
            lock.check()
            kube, config = app.kube, app.config
            name = config.slot(decision["slot"]).deployment
            try:
                kube.write(
                    f"scale Deployment {config.namespace}/{name} to 0",
                    kube.api("apps").patch_namespaced_deployment,
                    name,
                    config.namespace,
                    decision["patch"],
                    field_manager=FIELD_MANAGER,
                    _content_type="application/json-patch+json",
                )
            except (Conflict, Invalid):
                continue  # the Deployment or the flag moved: decide again from a fresh read
            decision.pop("patch")
            entry = HistoryEntry(
                at=rfc3339(now_utc()),
                action="park",
                from_=decision["slot"],
                to=None,
                model=decision["model"],
                by=by,
                reason=why,
                result="ok",
                detail=f"scaled {name} from {decision['replicas_before']} to 0",
                id=new_entry_id(),
            )
            append_history(app, entry)
            emit_event(
                app,
                regarding={
                    "apiVersion": "apps/v1",
                    "kind": "Deployment",
                    "metadata": {"name": name, "namespace": config.namespace},
                },
                reason="Parked",
                action="park",
                note=f"slot {decision['slot']} ({decision['model']}) parked by {by}: {why}",
                instance=by,
            )
            return decision
    raise ClusterError("the slot kept changing under us; nothing was changed", hint="try again")


def scale_to_zero(app: App, slot: str) -> None:
    """Scale a slot to zero with compare-and-swap (the caller holds the lease and checked roles)."""
    kube, config = app.kube, app.config
    name = config.slot(slot).deployment
    for _ in range(CAS_ATTEMPTS):
        current = read_deployment(app, slot)
        if current is None or not current["spec"].get("replicas"):
            return
        try:
            kube.write(
                f"scale Deployment {config.namespace}/{name} to 0",
                kube.api("apps").patch_namespaced_deployment,
                name,
                config.namespace,
                [
                    {
                        "op": "test",
                        "path": "/metadata/resourceVersion",
                        "value": current["metadata"]["resourceVersion"],
                    },
                    {"op": "replace", "path": "/spec/replicas", "value": 0},
                ],
                field_manager=FIELD_MANAGER,
                _content_type="application/json-patch+json",
            )
            return
        except (Conflict, Invalid):
            continue
    raise ClusterError(f"Deployment {name} kept changing under us; it was not scaled to 0")


def _decide(app: App, slot: str | None, *, dry_run: bool) -> dict[str, Any]:
    snap = snapshot(app)
    if slot in (None, "standby"):
        if snap.flag.active is None:
            raise Refused("the flag names no slot, so there is no standby to park; name the slot")
        target = other_slot(snap.flag.active)
    else:
        target = slot
    if target == snap.flag.value:
        raise Refused(
            f"slot {target} is the active slot: parking it would leave production without a backend"
        )
    state = snap.slots[target]
    deployment = snap.deployments[target]
    if deployment is None:
        raise Refused(f"slot {target}: Deployment {app.config.slot(target).deployment} not found")
    result: dict[str, Any] = {
        "action": "park",
        "slot": target,
        "model": state.model,
        "replicas_before": state.replicas,
        "dry_run": dry_run,
        "changed": state.replicas != 0,
    }
    if state.replicas == 0:
        result["detail"] = f"slot {target} is already parked"
        return result
    result["patch"] = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": deployment["metadata"]["resourceVersion"],
        },
        {"op": "replace", "path": "/spec/replicas", "value": 0},
    ]
    if dry_run:
        result["changed"] = False
    result["detail"] = (
        f"slot {target} ({state.model}) scaled to 0; flip-back to it needs a redeploy"
    )
    return result
