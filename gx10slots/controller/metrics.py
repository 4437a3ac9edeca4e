"""The controller's Prometheus metrics (``gx10slots_`` prefix), on their own registry.

An example alert rule is in docs/controller.md.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from datetime import datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gx10slots.config import SLOT_NAMES
from gx10slots.slots import FlagState, SlotState


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.leader = Gauge("gx10slots_leader", "1 while this replica leads", registry=r)
        self.active = Gauge(
            "gx10slots_active_slot", "1 for the slot the flag names", ["slot"], registry=r
        )
        self.ready = Gauge(
            "gx10slots_slot_ready", "1 when the slot has an available pod", ["slot"], registry=r
        )
        self.smoke_passed = Gauge(
            "gx10slots_last_smoke_passed",
            "1 when the slot's last smoke for its current revision passed, 0 when it failed or "
            "none is recorded",
            ["slot"],
            registry=r,
        )
        self.smoke_age = Gauge(
            "gx10slots_last_smoke_age_seconds",
            "Age of the slot's last smoke for its current revision (absent when none)",
            ["slot"],
            registry=r,
        )
        self.heartbeat_ok = Gauge(
            "gx10slots_heartbeat_ok",
            "1 when the slot's last heartbeat passed",
            ["slot"],
            registry=r,
        )
        self.heartbeat_at = Gauge(
            "gx10slots_heartbeat_timestamp_seconds",
            "When the slot last answered a heartbeat (Unix time)",
            ["slot"],
            registry=r,
        )
        self.flips = Counter(
            "gx10slots_flips", "Changes of the active slot the controller saw", registry=r
        )
        self.reverts = Counter(
            "gx10slots_auto_reverts", "Automatic flip-backs by the controller", registry=r
        )
        self.would_reverts = Counter(
            "gx10slots_would_reverts", "Flip-backs observe mode would have made", registry=r
        )
        self.guarding = Gauge(
            "gx10slots_guard_watching", "1 while a flip is being guarded", registry=r
        )
        self.consecutive = Gauge(
            "gx10slots_guard_consecutive_failures",
            "Failed guard checks in a row on the active slot",
            registry=r,
        )
        self.probe_seconds = Histogram(
            "gx10slots_probe_seconds",
            "Time to first token of the controller's probes through production",
            ["result"],
            buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 5.0, 10.0),
            registry=r,
        )
        for slot in SLOT_NAMES:
            for gauge in (self.active, self.ready, self.smoke_passed, self.heartbeat_ok):
                gauge.labels(slot=slot).set(0)

    def saw(self, slots: Mapping[str, SlotState], flag: FlagState, now: datetime) -> None:
        for name, slot in slots.items():
            self.active.labels(slot=name).set(1 if flag.active == name else 0)
            self.ready.labels(slot=name).set(1 if slot.is_ready else 0)
            record = slot.smoke
            self.smoke_passed.labels(slot=name).set(1 if record and record.passed else 0)
            age = record.age_s(now) if record else None
            if age is not None:
                self.smoke_age.labels(slot=name).set(max(age, 0.0))
            else:
                with contextlib.suppress(KeyError):  # no child for it yet
                    self.smoke_age.remove(name)

    def heartbeat(self, slot: str, passed: bool, at: float) -> None:
        self.heartbeat_ok.labels(slot=slot).set(1 if passed else 0)
        if passed:
            self.heartbeat_at.labels(slot=slot).set(at)
