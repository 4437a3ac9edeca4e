"""The controller's pure rules: who may take the leader Lease, and what is left to guard."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gx10slots.config import parse_config
from gx10slots.controller.election import holder_of, may_take, record
from gx10slots.controller.run import FlipSeen, parse_address, window_left_s
from gx10slots.errors import ConfigError, UsageError
from gx10slots.kube.values import parse_micro, rfc3339
from tests.helpers.config import valid

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def lease(holder: str | None, duration: Any = 15, transitions: Any = 2) -> dict[str, Any]:
    return {
        "metadata": {"name": "gx10slots-controller", "resourceVersion": "9"},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": duration,
            "acquireTime": "2026-11-29T11:00:00.000000Z",
            "renewTime": "2026-11-29T11:59:58.000000Z",
            "leaseTransitions": transitions,
        },
    }


def test_a_lease_held_by_another_is_taken_only_after_it_stayed_unchanged_for_its_duration() -> None:
    held = lease("b@host:2")
    assert not may_take(held, me="a@host:1", leading=False, observed_at=100.0, now=114.9)
    assert may_take(held, me="a@host:1", leading=False, observed_at=100.0, now=115.0)


def test_an_empty_or_own_lease_is_taken_at_once() -> None:
    assert may_take(lease(None), me="a", leading=False, observed_at=100.0, now=100.0)
    assert may_take(lease(""), me="a", leading=False, observed_at=100.0, now=100.0)
    assert may_take(lease("a"), me="a", leading=False, observed_at=100.0, now=100.0)


@pytest.mark.parametrize("duration", [None, "15", True, 0, -3])
def test_a_garbled_duration_protects_its_holder_for_one_second_only(duration: Any) -> None:
    held = lease("b", duration=duration)
    assert not may_take(held, me="a", leading=False, observed_at=100.0, now=100.5)
    assert may_take(held, me="a", leading=False, observed_at=100.0, now=101.0)


def test_taking_over_counts_a_transition_and_renewing_keeps_the_acquire_time() -> None:
    old = lease("b", transitions=2)
    taken = record(old, me="a", leading=False, duration_s=15, at=NOW)["spec"]
    assert (taken["holderIdentity"], taken["leaseTransitions"]) == ("a", 3)
    assert parse_micro(taken["acquireTime"]) == NOW == parse_micro(taken["renewTime"])
    renewed = record(lease("a"), me="a", leading=True, duration_s=15, at=NOW)["spec"]
    assert renewed["leaseTransitions"] == 2
    assert renewed["acquireTime"] == "2026-11-29T11:00:00.000000Z"
    created = record(None, me="a", leading=False, duration_s=15, at=NOW)
    assert created["spec"]["leaseTransitions"] == 0
    assert created["metadata"] == {"name": "gx10slots-controller"}


def test_a_hostile_holder_is_bounded() -> None:
    assert holder_of(lease("x" * 10_000)) == "x" * 256
    assert holder_of({"spec": {"holderIdentity": 5}}) == ""
    assert holder_of(None) == ""


def test_what_is_left_of_the_window_after_a_flip() -> None:
    flip = FlipSeen("green", rfc3339(NOW - timedelta(seconds=100)))
    assert window_left_s(flip, 600, NOW) == pytest.approx(500)
    assert window_left_s(flip, 60, NOW) == 0
    # An unreadable or future time: the whole window (better watched too long than not at all).
    assert window_left_s(FlipSeen("green", "yesterday"), 600, NOW) == 600
    assert window_left_s(FlipSeen("green", rfc3339(NOW + timedelta(hours=1))), 600, NOW) == 600


def test_metrics_addresses() -> None:
    assert parse_address("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_address(":0") == ("0.0.0.0", 0)
    assert parse_address("[::1]:9108") == ("::1", 9108)
    for bad in ("9108", "host:", "host:http", "h:70000", "x" * 400 + ":1"):
        with pytest.raises(UsageError, match="--metrics-addr"):
            parse_address(bad)


def test_controller_config_defaults_and_bounds() -> None:
    config = parse_config(valid())
    assert (config.controller.interval_s, config.controller.failures) == (3.0, 2)
    assert config.controller.lease_duration_s == 15.0
    assert config.guard.mode == "act"
    doc = valid()
    doc["guard"] = {"mode": "observe"}
    doc["controller"] = {"interval": "5s", "probe_timeout": "4s", "heartbeat": "1m"}
    config = parse_config(doc)
    assert config.guard.mode == "observe"
    assert (config.controller.interval_s, config.controller.heartbeat_s) == (5.0, 60.0)
    for section, values, key in [
        ("controller", {"interval": "2s", "probe_timeout": "3s"}, "controller.probe_timeout"),
        ("controller", {"lease_duration": "2s"}, "controller.lease_duration"),
        ("guard", {"mode": "yolo"}, "guard.mode"),
    ]:
        doc = valid()
        doc[section] = values
        with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
            parse_config(doc)


def test_a_hostile_changed_at_is_bounded_and_guarded_for_a_whole_window() -> None:
    from gx10slots.controller.run import flip_seen
    from gx10slots.slots import CHANGED_AT, FlagState

    flag = FlagState("green", "green", "blue", "7", annotations={CHANGED_AT: "9" * 100_000})
    snap: Any = type("Snap", (), {"flag": flag})()
    seen = flip_seen(snap)
    assert seen is not None and len(seen.at) <= 64
    assert window_left_s(seen, 600, NOW) == 600


def test_sigterm_while_the_controller_reads_the_slots_stops_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # SIGTERM raises Interrupted wherever the main thread is; the controller's read is guarded
    # by `except SlotsError` (a failed read waits for the next round), which must not swallow it.
    import threading

    from gx10slots.app import App, GlobalOptions
    from gx10slots.controller import run as run_mod
    from gx10slots.controller.metrics import ControllerMetrics
    from gx10slots.errors import Interrupted

    def terminated(app: object) -> None:
        raise Interrupted("terminated by SIGTERM")

    monkeypatch.setattr(run_mod, "snapshot", terminated)
    app = App(GlobalOptions())
    app.__dict__["config"] = parse_config(valid())
    elector: Any = object()  # never started: round() is called directly
    controller = run_mod.Controller(
        app, mode="act", metrics=ControllerMetrics(), stop=threading.Event(), elector=elector
    )
    with pytest.raises(Interrupted):
        controller.round()
