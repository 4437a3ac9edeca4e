"""`slots status`: both slots, the flag, the previous slot and what deserves attention."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gx10slots.app import App
from gx10slots.errors import ApiError
from gx10slots.fallback import FallbackProtection
from gx10slots.flip.unfinished import find_unfinished
from gx10slots.kube.lease import LEASE_NAME, lease_view
from gx10slots.kube.values import now_utc
from gx10slots.ops.engine import cold_standby_warning
from gx10slots.ops.lease import protection, read_lease
from gx10slots.ops.read import snapshot
from gx10slots.ops.smokesummary import read_last_smoke
from gx10slots.slots import other_slot, role_of, status_warnings
from gx10slots.smoke.summary import configmap_name


@dataclass(frozen=True)
class FlagView:
    """The availability flag as `slots status` shows it."""

    kind: str
    name: str
    key: str | None
    value: str | None  # what the flag object says (a slot name, or whatever someone wrote)
    endpoint: str | None
    changed_at: str | None
    changed_by: str | None
    flux_managed: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "name": self.name,
            "key": self.key,
            "value": self.value,
            "endpoint": self.endpoint,
            "changed_at": self.changed_at,
            "changed_by": self.changed_by,
            "flux_managed": self.flux_managed,
        }


@dataclass(frozen=True)
class StatusResult:
    """What `slots status` shows; ``to_dict`` is the -o json|yaml document (and the one the
    table is drawn from, so that `status --watch` redraws only when it changes)."""

    namespace: str
    active: str | None
    previous: str | None
    flag: FlagView
    node_capacity_gib: float | None
    # Each slot's document: its state (SlotState.to_dict), its role, its protection and its
    # smoke's age, and its last smoke summary kept in the cluster: built by status() below.
    slots: dict[str, dict[str, Any]]
    fallback: FallbackProtection | None
    lock: dict[str, Any] | None  # the lease gx10slots-lock as kube.lease.lease_view shows it
    warnings: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "active": self.active,
            "previous": self.previous,
            "flag": self.flag.to_dict(),
            "node_capacity_gib": self.node_capacity_gib,
            "slots": self.slots,
            "fallback": self.fallback.to_dict() if self.fallback and self.fallback.slot else None,
            "lock": self.lock,
            "warnings": self.warnings,
        }


def _lock(app: App, warnings: list[str]) -> dict[str, Any] | None:
    """Who holds the lock, running what, since when; None when nobody does."""
    try:
        return lease_view(read_lease(app, LEASE_NAME))
    except ApiError as exc:  # e.g. a read-only Role without leases: say so, do not guess
        warnings.append(f"cannot read Lease {LEASE_NAME}: {exc.message}")
        return None


def _last_smoke(
    app: App, slot: str, revision: str | None, now: datetime, warnings: list[str]
) -> dict[str, Any] | None:
    """The summary of the slot's last smoke report kept in the cluster (whichever machine ran
    it), with its age and whether the slot's revision moved since; None when none was kept."""
    last = read_last_smoke(app, slot)
    if last is None:
        return None
    if last.summary is None:
        warnings.append(
            f"slot {slot}: the last smoke summary (ConfigMap {configmap_name(slot)}) is "
            f"unreadable: {last.error}"
        )
    return last.view(revision, now)


def status(app: App) -> StatusResult:
    config = app.config
    snap = snapshot(app)
    now = now_utc()
    extra_warnings: list[str] = []
    lock = _lock(app, extra_warnings)
    try:
        fallback = protection(app, snap.flag, snap.slots)
    except ApiError as exc:
        fallback = None
        extra_warnings.append(
            f"cannot read Lease gx10slots-guard ({exc.message}): whether a guard protects the "
            "fallback is unknown"
        )
    if fallback is not None and fallback.protected and fallback.until is None:
        extra_warnings.append(f"{fallback.describe()}: override with --replace-fallback")
    elif fallback is not None and fallback.note:
        extra_warnings.append(fallback.note)
    unfinished = find_unfinished(app, snap.flag_obj)
    if unfinished is not None and (lock is None or lock.get("expired")):
        # Switched but never verified: production may be on a slot nobody checked.
        finish = (
            f": `slots {unfinished.action}` verifies and records it without switching again"
            if unfinished.action in ("flip", "flip-back")
            else ""
        )
        extra_warnings.append(
            f"the {unfinished.action} by {unfinished.by} at {unfinished.at} switched production "
            f"to {unfinished.active} but did not finish (never verified){finish}"
        )
    standby = snap.slots[other_slot(snap.flag.active)] if snap.flag.active else None
    if standby is not None and standby.is_ready and standby.served_name:
        cold = cold_standby_warning(app, standby.name, standby.served_name)
        if cold is not None:
            extra_warnings.append(cold)
    slots = {}
    for name, slot in snap.slots.items():
        doc = slot.to_dict(role_of(slot, snap.flag))
        doc["protected_until"] = fallback.until_for(name) if fallback else None
        doc["protected"] = bool(fallback and fallback.protected and fallback.slot == name)
        if slot.smoke is not None:
            age = slot.smoke.age_s(now)
            doc["smoke"]["age_s"] = round(age, 1) if age is not None else None
        doc["last_smoke"] = _last_smoke(app, name, slot.revision, now, extra_warnings)
        slots[name] = doc
    return StatusResult(
        namespace=config.namespace,
        active=snap.flag.active,
        previous=snap.flag.previous,
        flag=FlagView(
            kind=config.flag.kind,
            name=config.flag.name,
            key=config.flag.key,
            value=snap.flag.value,
            endpoint=config.flag.endpoint,
            changed_at=snap.flag.annotations.get("gx10slots.io/changed-at"),
            changed_by=snap.flag.annotations.get("gx10slots.io/changed-by"),
            flux_managed=snap.flag.flux_managed,
        ),
        node_capacity_gib=snap.node_capacity_gib,
        slots=slots,
        fallback=fallback,
        lock=lock,
        warnings=status_warnings(
            snap.slots, snap.flag, snap.flag_obj, config, now, snap.deployments
        )
        + extra_warnings,
    )
