"""The leases as the operations use them: the lock every mutating command holds, the guard's
announcement that it watches, and the record of every takeover.

A takeover (a dead holder's lease taken at once, or ``--break-lock``) is recorded as a history
entry with action ``lock-takeover`` and a Warning Event, both naming whose lease it was and what
that holder was running: the next on-call engineer must be able to see that someone's operation
was cut short. Recording is best effort: an emergency command is never failed because its
takeover could not be written down (it is said on stderr instead).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gx10slots import console
from gx10slots.app import App
from gx10slots.errors import NotFound, SlotsError
from gx10slots.fallback import FallbackProtection, fallback_protection, guard_watch
from gx10slots.kube.lease import LEASE_NAME, Lock, Takeover, here
from gx10slots.kube.values import now_utc, rfc3339
from gx10slots.ops.audit import HistoryEntry, append_history, emit_event, new_entry_id
from gx10slots.slots import FlagState, SlotState

# Held by `slots guard` (and, later, the controller) for as long as it watches production: while
# it is held, production's fallback stays protected (see state.fallback_protection).
GUARD_LEASE = "gx10slots-guard"
WATCH_UNTIL = "gx10slots.io/watch-until"
TAKEOVER_ACTION = "lock-takeover"


def record_takeover(app: App, takeover: Takeover) -> None:
    """History entry and Warning Event for a lease taken from another holder (best effort)."""
    console.progress(takeover.describe())
    entry = HistoryEntry(
        at=rfc3339(now_utc()),
        action=TAKEOVER_ACTION,
        from_=None,
        to=None,
        model=None,
        by=takeover.by,
        reason=takeover.why,
        result="ok",
        detail=takeover.describe(),
        id=new_entry_id(),
    )
    try:
        append_history(app, entry)
    except SlotsError as exc:
        console.progress(f"could not record the takeover in the history: {exc.message}")
    emit_event(
        app,
        regarding={
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": takeover.lease, "namespace": app.config.namespace},
        },
        reason="LeaseTakenOver",
        action=TAKEOVER_ACTION,
        note=takeover.describe(),
        warning=True,
        instance=takeover.by,
    )


def hold(
    app: App,
    *,
    holder: str | None = None,
    break_lock: bool = False,
    name: str = LEASE_NAME,
    on_wait: Callable[[str], None] | None = None,
    annotations: Mapping[str, str] | None = None,
    wait_for_expired: bool = True,
) -> Lock:
    """A :class:`Lock` whose takeovers are recorded (use it as a context manager)."""
    return Lock(
        app.kube,
        holder=holder,
        name=name,
        on_wait=on_wait or console.progress,
        break_lock=break_lock,
        annotations=annotations,
        wait_for_expired=wait_for_expired,
        on_takeover=lambda takeover: record_takeover(app, takeover),
    )


def read_lease(app: App, name: str) -> dict[str, Any] | None:
    """The Lease as stored, or None when it does not exist."""
    kube = app.kube
    try:
        return kube.read(
            f"read Lease {kube.namespace}/{name}",
            kube.api("coordination").read_namespaced_lease,
            name,
            kube.namespace,
        )
    except NotFound:
        return None


def protection(
    app: App, flag: FlagState, slots: Mapping[str, SlotState] | None = None
) -> FallbackProtection:
    """Production's fallback and whether it is protected now (flag, clock, and the guard's lease).

    The guard's lease is read only when there is a fallback to protect; an unreadable one is an
    error (exit 4), never taken as "no guard"."""
    now = now_utc()
    watch = None
    if flag.previous is not None:
        watch = guard_watch(read_lease(app, GUARD_LEASE), now, here(), WATCH_UNTIL)
    previous = (slots or {}).get(flag.previous) if flag.previous else None
    parked = previous is not None and previous.exists and previous.replicas == 0
    return fallback_protection(
        flag,
        now,
        app.config.flip.protect_fallback_for_s,
        watch,
        parked=parked,
        revision=previous.revision if previous is not None else None,
    )
