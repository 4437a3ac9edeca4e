"""`slots status`: both slots, the flag, the previous slot and what deserves attention."""

from __future__ import annotations

from typing import Any

from gx10slots.app import App
from gx10slots.ops.read import snapshot
from gx10slots.state import now_utc, role_of, status_warnings


def status(app: App) -> dict[str, Any]:
    config = app.config
    snap = snapshot(app)
    now = now_utc()
    slots = {}
    for name, slot in snap.slots.items():
        doc = slot.to_dict(role_of(slot, snap.flag))
        if slot.smoke is not None:
            age = slot.smoke.age_s(now)
            doc["smoke"]["age_s"] = round(age, 1) if age is not None else None
        slots[name] = doc
    return {
        "namespace": config.namespace,
        "active": snap.flag.active,
        "previous": snap.flag.previous,
        "flag": {
            "kind": config.flag.kind,
            "name": config.flag.name,
            "key": config.flag.key,
            "value": snap.flag.value,
            "endpoint": config.flag.endpoint,
            "changed_at": snap.flag.annotations.get("gx10slots.io/changed-at"),
            "changed_by": snap.flag.annotations.get("gx10slots.io/changed-by"),
            "flux_managed": snap.flag.flux_managed,
        },
        "node_capacity_gib": snap.node_capacity_gib,
        "slots": slots,
        "warnings": status_warnings(
            snap.slots, snap.flag, snap.flag_obj, config, now, snap.deployments
        ),
    }
