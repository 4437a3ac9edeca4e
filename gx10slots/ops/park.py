"""`slots park [SLOT]`: scale a non-active slot to zero to free the GX10's memory."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gx10slots.app import App
from gx10slots.config import SLOT_NAMES
from gx10slots.errors import (
    ApiError,
    ClusterError,
    Conflict,
    Interrupted,
    Invalid,
    Refused,
    UsageError,
)
from gx10slots.fallback import check_fallback
from gx10slots.flip.rules import clean_reason
from gx10slots.kube.cas import CAS_ATTEMPTS, patch_until_settled
from gx10slots.kube.client import FIELD_MANAGER, WriteOutcomeUnknown
from gx10slots.kube.lease import Lock, holder_identity
from gx10slots.kube.values import now_utc, parse_rfc3339, rfc3339
from gx10slots.ops.audit import (
    HistoryEntry,
    append_history,
    emit_event,
    new_entry_id,
    read_history,
)
from gx10slots.ops.lease import hold, protection
from gx10slots.ops.read import read_deployment, snapshot
from gx10slots.slots import ANNOTATION_PREFIX, other_slot

PARKED_BY = ANNOTATION_PREFIX + "parked-by"
PARKED_AT = ANNOTATION_PREFIX + "parked-at"
PARKED_REASON = ANNOTATION_PREFIX + "parked-reason"


@dataclass(frozen=True)
class ParkResult:
    """What `slots park` did (or, with --dry-run, would do). ``to_dict`` is the -o json|yaml
    document; ``patch`` and ``unrecorded`` are the operation's own, shown only as noted."""

    slot: str
    model: str | None
    replicas_before: int
    dry_run: bool
    changed: bool
    detail: str  # the human summary
    # Whether the slot was production's protected fallback (None: already parked, not asked).
    replaced_fallback: bool | None = None
    replaced_fallback_note: str | None = None
    patch: list[dict[str, Any]] = field(default_factory=list)  # the scale; shown by --dry-run
    # (holder, reason) of an earlier park that scaled the slot but recorded nothing.
    unrecorded: tuple[str, str] | None = None

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "action": "park",
            "slot": self.slot,
            "model": self.model,
            "replicas_before": self.replicas_before,
            "dry_run": self.dry_run,
            "changed": self.changed,
        }
        if self.replaced_fallback is not None:
            doc["replaced_fallback"] = self.replaced_fallback
        if self.replaced_fallback_note:
            doc["replaced_fallback_note"] = self.replaced_fallback_note
        if self.dry_run and self.patch:
            doc["patch"] = self.patch
        doc["detail"] = self.detail
        return doc


def park(
    app: App,
    slot: str | None,
    *,
    reason: str | None,
    dry_run: bool,
    replace_fallback: bool = False,
    break_lock: bool = False,
) -> ParkResult:
    if slot is not None and slot not in (*SLOT_NAMES, "standby"):
        raise UsageError(f"slot must be blue, green or standby, got {slot!r}")
    by = holder_identity()
    why = clean_reason(reason) or "slots park"
    if dry_run:
        return _decide(app, slot, dry_run=True, by=by, replace_fallback=replace_fallback)
    try:
        with hold(app, holder=by, break_lock=break_lock) as lock:
            return _park_locked(app, slot, lock, by, why, replace_fallback)
    except Interrupted as exc:
        raise Interrupted(
            f"{exc.message}; production untouched (park never touches the active slot)",
            reported=True,
        ) from exc


def _park_locked(
    app: App, slot: str | None, lock: Lock, by: str, why: str, replace_fallback: bool
) -> ParkResult:
    for _ in range(CAS_ATTEMPTS):
        decision = _decide(
            app, slot, dry_run=False, by=by, why=why, replace_fallback=replace_fallback
        )
        if not decision.changed:
            if decision.unrecorded:
                # An earlier park scaled it but was stopped before recording: record it once.
                unrecorded, reason = decision.unrecorded
                _record(
                    app,
                    decision,
                    by=unrecorded,
                    why=reason,
                    detail=f"scaled to 0; recorded by {by} after that run was interrupted",
                )
                return replace(
                    decision,
                    detail=decision.detail
                    + f" (the interrupted park by {unrecorded} recorded now)",
                    unrecorded=None,
                )
            return decision
        lock.check()
        kube, config = app.kube, app.config
        name = config.slot(decision.slot).deployment
        try:
            kube.write(
                f"scale Deployment {config.namespace}/{name} to 0",
                kube.api("apps").patch_namespaced_deployment,
                name,
                config.namespace,
                decision.patch,
                field_manager=FIELD_MANAGER,
            )
        except (ApiError, WriteOutcomeUnknown) as exc:
            # An error answer is not proof that nothing happened: read back, then decide.
            current = read_deployment(app, decision.slot)
            annotations = ((current or {}).get("metadata") or {}).get("annotations") or {}
            landed = (
                current is not None
                and not current["spec"].get("replicas")
                and annotations.get(PARKED_BY) == by
            )
            if not landed and isinstance(exc, Conflict | Invalid):
                continue  # the Deployment or the flag moved: decide again from a fresh read
            if not landed:
                raise ClusterError(
                    f"scaling {name} to 0 failed and did not happen ({exc.message}; read back: "
                    f"slot {decision.slot} still runs); production untouched",
                    hint=exc.hint or "run the command again",
                ) from exc
        replaced = decision.replaced_fallback_note
        try:
            _record(
                app,
                decision,
                by=by,
                why=why,
                detail=f"scaled {name} from {decision.replicas_before} to 0"
                + (f"; {replaced}" if replaced else ""),
            )
        except ClusterError as exc:
            raise ClusterError(
                f"slot {decision.slot} is parked (production untouched), but recording it in "
                f"the history failed: {exc.message}",
                hint="re-run `slots park`: it records the entry",
            ) from exc
        return decision
    raise ClusterError("the slot kept changing under us; nothing was changed", hint="try again")


def _record(app: App, decision: ParkResult, *, by: str, why: str, detail: str) -> None:
    name = app.config.slot(decision.slot).deployment
    entry = HistoryEntry(
        at=rfc3339(now_utc()),
        action="park",
        from_=decision.slot,
        to=None,
        model=decision.model,
        by=by,
        reason=why,
        result="ok",
        detail=detail,
        id=new_entry_id(),
        replaced_fallback=bool(decision.replaced_fallback),
    )
    append_history(app, entry)
    emit_event(
        app,
        regarding={
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, "namespace": app.config.namespace},
        },
        reason="Parked",
        action="park",
        note=f"slot {decision.slot} ({decision.model}) parked by {by}: {why}",
        instance=by,
    )


def _unrecorded_park(app: App, deployment: dict[str, Any]) -> tuple[str, str] | None:
    """(holder, reason) of the park that scaled this Deployment, if it recorded nothing since."""
    annotations = deployment.get("metadata", {}).get("annotations") or {}
    holder, at = annotations.get(PARKED_BY), parse_rfc3339(annotations.get(PARKED_AT))
    if not holder or at is None:
        return None
    for entry in read_history(app):
        recorded = parse_rfc3339(entry.get("at"))
        mine = entry.get("action") == "park" and entry.get("by") == holder
        if mine and recorded is not None and recorded >= at:
            return None
    return str(holder), str(annotations.get(PARKED_REASON) or "slots park")


def scale_to_zero(app: App, slot: str) -> None:
    """Scale a slot to zero with compare-and-swap (the caller holds the lease and checked roles)."""
    kube, config = app.kube, app.config
    name = config.slot(slot).deployment

    def plan(current: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
        if current is None or not current["spec"].get("replicas"):
            return None
        return [{"op": "replace", "path": "/spec/replicas", "value": 0}]

    written = patch_until_settled(
        lambda: read_deployment(app, slot),
        plan,
        lambda ops: kube.write(
            f"scale Deployment {config.namespace}/{name} to 0",
            kube.api("apps").patch_namespaced_deployment,
            name,
            config.namespace,
            ops,
            field_manager=FIELD_MANAGER,
        ),
    )
    if written is None:
        raise ClusterError(f"Deployment {name} kept changing under us; it was not scaled to 0")


def _decide(
    app: App,
    slot: str | None,
    *,
    dry_run: bool,
    by: str,
    why: str = "slots park",
    replace_fallback: bool = False,
) -> ParkResult:
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
    if state.replicas == 0:
        return ParkResult(
            slot=target,
            model=state.model,
            replicas_before=state.replicas,
            dry_run=dry_run,
            changed=False,
            detail=f"slot {target} is already parked",
            unrecorded=None if dry_run else _unrecorded_park(app, deployment),
        )
    # Parking production's fallback would take away the one-step flip-back.
    replaced = check_fallback(
        protection(app, snap.flag, snap.slots), target, action="park", replace=replace_fallback
    )
    # Who parked it and when travel with the scale (one patch): an interrupted park that scaled
    # the slot but recorded nothing is recognised, and recorded, by the next `slots park`.
    marks = {PARKED_BY: by, PARKED_AT: rfc3339(now_utc()), PARKED_REASON: why}
    patch: list[dict[str, Any]] = [
        {
            "op": "test",
            "path": "/metadata/resourceVersion",
            "value": deployment["metadata"]["resourceVersion"],
        },
        {"op": "replace", "path": "/spec/replicas", "value": 0},
    ]
    if deployment["metadata"].get("annotations") is None:
        patch.append({"op": "add", "path": "/metadata/annotations", "value": marks})
    else:
        patch += [
            {"op": "add", "path": "/metadata/annotations/" + key.replace("/", "~1"), "value": v}
            for key, v in marks.items()
        ]
    return ParkResult(
        slot=target,
        model=state.model,
        replicas_before=state.replicas,
        dry_run=dry_run,
        changed=not dry_run,
        detail=f"dry run: would scale slot {target} ({state.model}) to 0; nothing changed"
        if dry_run
        else f"slot {target} ({state.model}) scaled to 0; flip-back to it needs a redeploy",
        replaced_fallback=replaced is not None,
        replaced_fallback_note=replaced or None,
        patch=patch,
    )
