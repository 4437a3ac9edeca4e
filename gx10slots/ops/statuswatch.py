"""`slots status --watch`: status again on every change of what it shows, until interrupted.

It watches (kube/watch.py) exactly the objects `status` reads: both slot Deployments, the flag
object (Service or ConfigMap), the two Leases (the lock and the guard's) and the slots' smoke
summary ConfigMaps, each by name (a
``metadata.name`` field selector, which RBAC can restrict to those names). A burst of events
(a rollout, a flip) is one redraw: events are gathered for SETTLE_S first. Smoke ages move on
with no event, so it also redraws every REFRESH_S; when a watch cannot run (a Role without
``watch``), it says so once and redraws every POLL_S instead.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Callable
from typing import Any

from gx10slots import console
from gx10slots.app import App
from gx10slots.flags import kind_of
from gx10slots.kube.lease import LEASE_NAME
from gx10slots.kube.watch import Watcher
from gx10slots.ops.lease import GUARD_LEASE
from gx10slots.ops.status import status
from gx10slots.smoke.summary import configmap_name

SETTLE_S = 0.3
REFRESH_S = 30.0
POLL_S = 5.0


def _sources(app: App) -> list[tuple[str, Any, str]]:
    """(what, list function, object name) for every object the status shows."""
    config, kube = app.config, app.kube
    apps = kube.api("apps")
    sources: list[tuple[str, Any, str]] = [
        (f"deployment {slot.deployment}", apps.list_namespaced_deployment, slot.deployment)
        for slot in config.slots.values()
    ]
    flag_list = kind_of(config).lister(app)
    if flag_list is not None:
        sources.append((f"{config.flag.kind} {config.flag.name}", flag_list, config.flag.name))
    leases = kube.api("coordination").list_namespaced_lease
    sources += [(f"lease {name}", leases, name) for name in (LEASE_NAME, GUARD_LEASE)]
    # The last smoke summary of each slot (written just after the Deployment's record).
    configmaps = kube.api("core").list_namespaced_config_map
    sources += [
        (f"configmap {configmap_name(slot)}", configmaps, configmap_name(slot))
        for slot in config.slots
    ]
    return sources


def watch_status(
    app: App,
    draw: Callable[[dict[str, Any]], None],
    *,
    stop: Callable[[], bool] = lambda: False,
) -> None:
    """Draw the status now, then after every change, until ``stop()`` or an interruption
    (Interrupted, from Ctrl-C, propagates to the caller: nothing here needs undoing)."""
    watcher = Watcher(app.kube)
    for what, list_fn, name in _sources(app):
        watcher.add(what, list_fn, field_selector=f"metadata.name={name}")
    refresh = REFRESH_S
    try:
        draw(status(app))
        while not stop():
            try:
                event = watcher.events.get(timeout=refresh)
            except queue.Empty:
                draw(status(app))
                continue
            events = [event]
            deadline = time.monotonic() + SETTLE_S
            while (left := deadline - time.monotonic()) > 0:
                try:
                    events.append(watcher.events.get(timeout=left))
                except queue.Empty:
                    break
            for failed in (e for e in events if e.type == "ERROR" and e.error is not None):
                assert failed.error is not None
                console.progress(
                    f"warning: cannot watch {failed.source} ({failed.error.message}); "
                    f"redrawing every {POLL_S:g} s instead"
                )
                refresh = POLL_S
            draw(status(app))
    finally:
        watcher.stop()
