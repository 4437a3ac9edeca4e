"""A flag write whose operation never finished: found, so that re-running the command converges.

`flip` and `flip-back` (and the flip of `deploy --flip`) write the flag, then verify through
production, then record. A run killed (SIGKILL, a lost node) or stopped (SIGTERM, Ctrl-C) between
the flag write and the record leaves the flag switched but unverified and unrecorded. Both
commands toggle, so re-running one blindly would switch production *back*. Instead, every
flip-like command first reads the flag's annotations (``gx10slots.io/action``, ``changed-by``,
``changed-at``, written in the same patch as the flag) and the history: a flag change with no
history entry by its writer made since is unfinished.

- Re-running the same command completes it: verify through production (switching back, exit 1, if
  that fails, as the original run would have), record it once, exit 0, without switching again.
- Any other command records it as failed ("interrupted after its flag write") and goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gx10slots import console
from gx10slots.app import App
from gx10slots.lock import Lock
from gx10slots.ops.audit import read_history
from gx10slots.ops.read import snapshot
from gx10slots.plan import FlipPlan, Mode
from gx10slots.state import (
    ACTION,
    CHANGED_AT,
    CHANGED_BY,
    REASON,
    flag_state,
    parse_rfc3339,
)

# Flag writers, by the action annotation they leave.
FLAG_ACTIONS = ("flip", "flip-back", "revert", "auto-revert")
# History actions that record a flag write (a revert is recorded with the flip it undid).
RECORDING_ACTIONS = ("flip", "flip-back", "auto-revert")


@dataclass(frozen=True)
class Unfinished:
    action: str
    by: str
    at: str
    active: str
    previous: str | None
    reason: str


def find_unfinished(app: App, flag_obj: dict[str, Any]) -> Unfinished | None:
    """The flag's last write, when its writer recorded nothing since; None when it finished (or
    was made by something other than gx10slots, which leaves no action annotation)."""
    annotations = flag_obj.get("metadata", {}).get("annotations") or {}
    action, by = annotations.get(ACTION), annotations.get(CHANGED_BY)
    at = annotations.get(CHANGED_AT)
    changed = parse_rfc3339(at)
    if action not in FLAG_ACTIONS or not by or changed is None:
        return None
    flag = flag_state(flag_obj, app.config)
    if flag.active is None:
        return None
    for entry in read_history(app):
        if entry.get("by") != by or entry.get("action") not in RECORDING_ACTIONS:
            continue
        recorded = parse_rfc3339(entry.get("at"))
        if recorded is not None and recorded >= changed:
            return None
    return Unfinished(
        action=str(action),
        by=str(by),
        at=str(at),
        active=flag.active,
        previous=flag.previous,
        reason=str(annotations.get(REASON) or ""),
    )


def settle_unfinished(
    app: App, mode: Mode, lock: Lock, *, by: str, why: str
) -> dict[str, Any] | None:
    """Before a flip-like command switches the flag: complete an unfinished run of the same
    command (its result), or record another command's unfinished run and return None."""
    from gx10slots.ops import flip as flip_ops

    started = time.monotonic()
    snap = snapshot(app)
    unfinished = find_unfinished(app, snap.flag_obj)
    if unfinished is None:
        return None
    target, source = unfinished.active, unfinished.previous
    source_state = snap.slots.get(source) if source else None
    action = "auto-revert" if unfinished.action == "revert" else unfinished.action
    plan = FlipPlan(
        mode=mode,
        source=source,
        target=target,
        target_model=snap.slots[target].model,
        source_model=source_state.model if source_state else None,
        target_served_name=snap.slots[target].served_name,
        patch=[],
    )
    what = (
        f"the {unfinished.action} by {unfinished.by} at {unfinished.at} switched production "
        f"{source or 'no slot'} -> {target} but was interrupted before it was verified and recorded"
    )
    if unfinished.action != mode:
        console.progress(f"{what}; recording it as such")
        flip_ops.record_flip(
            app,
            plan,
            action=action,
            by=unfinished.by,
            reason=unfinished.reason,
            result="failed",
            detail=f"interrupted after its flag write, never verified; recorded by {by}",
            regarding=snap.flag_obj,
        )
        return None
    console.progress(f"{what}: completing it (verify, record) instead of switching again")
    ok, detail = flip_ops.verify(
        app, target, plan.target_served_name, app.config.flag.verify_window_s
    )
    switched = flip_ops.Switched(plan, snap.flag_obj, unfinished.at)
    if not ok:
        return flip_ops._revert_after_failed_verification(app, lock, switched, by, why, detail)
    flip_ops.record_flip(
        app,
        plan,
        action=mode,
        by=unfinished.by,
        reason=unfinished.reason,
        result="ok",
        detail=f"{detail}; completed by {by} after the run by {unfinished.by} was interrupted",
        regarding=snap.flag_obj,
    )
    return {
        "action": mode,
        "changed": False,
        "completed": unfinished.by,
        "from": source,
        "to": target,
        "model": plan.target_model,
        "from_model": plan.source_model,
        "verified": True,
        "detail": detail,
        "gates": [],
        "warm": source,
        "duration_s": round(time.monotonic() - started, 3),
    }
