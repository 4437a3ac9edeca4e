"""A flag write whose operation never finished: found, so that re-running the command converges.

`flip` and `flip-back` (and the flip of `deploy --flip`, and the guard's automatic revert) write
the flag, then verify through production, then record, then mark the run done. A run killed
(SIGKILL, a lost node) or stopped (SIGTERM, Ctrl-C) between the flag write and that last step
leaves the flag switched but unfinished. Both commands toggle, so re-running one blindly would
switch production *back*.

The evidence is the flag object alone: the flag write itself carries ``gx10slots.io/state:
switching`` with the run's id (``gx10slots.io/run``), its command (``gx10slots.io/action``) and
writer (``changed-by``); the run, once verified and recorded, writes ``gx10slots.io/state: done``
with a second compare-and-swap. The history ConfigMap is only a record: deleted, garbled or
pushed out by 200 newer entries, it never makes a finished run look unfinished. A flag written by
an older version (no state annotation), by hand, or moved by someone else since (its value no
longer the slot the run wrote) is finished: nothing is ever re-verified without evidence.

- Re-running the same command completes it: verify through production (switching back, exit 1, if
  that fails, as the original run would have), record it (under the run's id: a no-op if the run
  got that far), mark it done, exit 0, without switching again.
- Any other command records it as failed ("interrupted after its flag write"), marks it done and
  goes on.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from gx10slots import console
from gx10slots.app import App
from gx10slots.errors import Refused
from gx10slots.flip.result import FlipResult
from gx10slots.flip.rules import FlipPlan, Mode
from gx10slots.kube.lease import Lock
from gx10slots.ops.read import snapshot
from gx10slots.slots import (
    ACTION,
    ACTIVE,
    CHANGED_AT,
    CHANGED_BY,
    REASON,
    RUN_ID,
    RUN_STATE,
    SWITCHING,
    flag_state,
)

# Flag writers, by the action annotation they leave.
FLAG_ACTIONS = ("flip", "flip-back", "revert", "auto-revert")


@dataclass(frozen=True)
class Unfinished:
    action: str
    by: str
    at: str
    active: str
    previous: str | None
    reason: str
    run: str


def find_unfinished(app: App, flag_obj: dict[str, Any]) -> Unfinished | None:
    """The flag's last write, when the flag itself says its run is still switching; None when
    it finished, or was not written by this version of gx10slots, or was moved since."""
    annotations = flag_obj.get("metadata", {}).get("annotations") or {}
    if annotations.get(RUN_STATE) != SWITCHING:
        return None
    action, by, run = annotations.get(ACTION), annotations.get(CHANGED_BY), annotations.get(RUN_ID)
    if action not in FLAG_ACTIONS or not by or not run:
        return None
    flag = flag_state(flag_obj, app.config)
    if flag.active is None or annotations.get(ACTIVE) != flag.value:
        # Someone moved the flag by hand after that write (the annotations were not theirs): the
        # run's switch is gone, there is nothing of it to complete.
        return None
    return Unfinished(
        action=str(action),
        by=str(by),
        at=str(annotations.get(CHANGED_AT) or "?"),
        active=flag.active,
        previous=flag.previous,
        reason=str(annotations.get(REASON) or ""),
        run=str(run),
    )


def settle_unfinished(app: App, mode: Mode, lock: Lock, *, by: str, why: str) -> FlipResult | None:
    """Before a flip-like command switches the flag: complete an unfinished run of the same
    command (its result), or record another command's unfinished run and return None."""
    from gx10slots.flip import run as flip_ops
    from gx10slots.flip.verify import verify

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
        run=unfinished.run,
    )
    switched_what = (
        f"the {unfinished.action} by {unfinished.by} at {unfinished.at} switched production "
        f"{source or 'no slot'} -> {target}"
    )
    if not lock.held:
        # Only the lease tells a run that was stopped from one still verifying: its writer held
        # the lease while it switched, so holding it now means that run is over. Without it,
        # "completing" would record a live run twice (or revert what it is about to verify).
        raise Refused(
            f"{switched_what} and is not finished; without the lease {lock.name} this run "
            "cannot tell whether it is still going; nothing was changed",
            hint="run the command again: it waits for the lease, then completes or records it",
        )
    what = f"{switched_what} but was interrupted before it was verified and recorded"
    verified = ""
    if unfinished.action != mode:
        console.progress(f"{what}; recording it as such")
        result, detail = (
            "failed",
            f"interrupted after its flag write, never verified; recorded by {by}",
        )
    else:
        console.progress(f"{what}: completing it (verify, record) instead of switching again")
        ok, verified = verify(app, target, plan.target_served_name, app.config.flag.verify_window_s)
        if not ok:
            switched = flip_ops.Switched(plan, snap.flag_obj, unfinished.at)
            flip_ops._revert_after_failed_verification(app, lock, switched, by, why, verified)
        result = "ok"
        detail = f"{verified}; completed by {by} after the run by {unfinished.by} was interrupted"
    flip_ops.record_flip(
        app,
        plan,
        action=action,
        by=unfinished.by,
        reason=unfinished.reason,
        result=result,
        detail=detail,
        regarding=snap.flag_obj,
        entry_id=unfinished.run,
    )
    flip_ops.mark_done(app, snap.flag_obj, unfinished.run)
    if result != "ok":
        return None
    return FlipResult.of(
        plan,
        mode,
        changed=False,
        completed=unfinished.by,
        detail=verified,
        duration_s=round(time.monotonic() - started, 3),
    )
