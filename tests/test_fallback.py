"""Production's fallback and its protection: the pure rule (gx10slots.fallback)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gx10slots.errors import Refused
from gx10slots.fallback import (
    FallbackProtection,
    GuardWatch,
    check_fallback,
    fallback_protection,
    guard_watch,
)
from gx10slots.kube.lease import HOLDER_PROCESS, Here, ProcessInfo, ProcessMark
from gx10slots.kube.values import micro_time, rfc3339
from gx10slots.slots import PREVIOUS_REVISION, FlagState

NOW = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
HOUR = 3600.0


def flag(
    previous: str | None = "blue",
    *,
    changed_at: Any = None,
    action: str | None = "flip",
    active: str = "green",
) -> FlagState:
    annotations: dict[str, str] = {}
    if changed_at is not None:
        annotations["gx10slots.io/changed-at"] = changed_at
    if action is not None:
        annotations["gx10slots.io/action"] = action
    return FlagState(
        value=active,
        active=active,
        previous=previous,
        resource_version="1",
        annotations=annotations,
    )


def ago(seconds: float) -> str:
    return rfc3339(NOW - timedelta(seconds=seconds))


@pytest.mark.parametrize("action", ["flip", "flip-back", None])
def test_the_previous_slot_is_protected_for_the_configured_time_after_every_flip(
    action: str | None,
) -> None:
    protection = fallback_protection(flag(changed_at=ago(3), action=action), NOW, HOUR, guard=None)
    assert protection.slot == "blue" and protection.protected
    assert protection.until == NOW - timedelta(seconds=3) + timedelta(hours=1)
    assert protection.until_for("blue") == rfc3339(protection.until)
    assert protection.until_for("green") is None


def test_protection_ends_when_the_time_is_up() -> None:
    protection = fallback_protection(flag(changed_at=ago(HOUR + 1)), NOW, HOUR, guard=None)
    assert not protection.protected
    assert protection.until_for("blue") is None
    assert check_fallback(protection, "blue", action="deploy", replace=False) is None


def test_zero_turns_the_time_based_protection_off() -> None:
    assert not fallback_protection(flag(changed_at=ago(1)), NOW, 0, guard=None).protected


def test_a_slot_left_by_a_failed_verification_is_not_protected() -> None:
    # The revert's previous slot is the one that just failed its verification: it never served.
    protection = fallback_protection(
        flag(changed_at=ago(1), action="revert"), NOW, HOUR, guard=None
    )
    assert not protection.protected
    assert protection.note and "never served" in protection.note


def test_a_slot_the_guard_reverted_from_is_not_protected() -> None:
    # It failed under real traffic: flip-back to it is refused without a fresh smoke anyway.
    protection = fallback_protection(
        flag(changed_at=ago(1), action="auto-revert"), NOW, HOUR, guard=None
    )
    assert not protection.protected
    assert check_fallback(protection, "blue", action="deploy", replace=False) is None


def test_a_fallback_already_replaced_has_nothing_left_to_protect() -> None:
    served = flag(changed_at=ago(1))
    served = FlagState(
        **{**served.__dict__, "annotations": {**served.annotations, PREVIOUS_REVISION: "r1"}}
    )
    assert fallback_protection(served, NOW, HOUR, None, revision="r1").protected
    replaced = fallback_protection(served, NOW, HOUR, None, revision="r2")
    assert not replaced.protected
    assert replaced.note and "no longer runs the revision that served" in replaced.note
    # Not recorded (a flip by an older version, or by hand): protected, fail safe.
    assert fallback_protection(flag(changed_at=ago(1)), NOW, HOUR, None, revision="r2").protected


def test_a_parked_fallback_has_nothing_left_to_protect() -> None:
    protection = fallback_protection(flag(changed_at=ago(1)), NOW, HOUR, guard=None, parked=True)
    assert not protection.protected
    assert protection.note and "parked" in protection.note


def test_with_zero_only_a_guard_protects_and_changed_at_does_not_matter() -> None:
    assert not fallback_protection(flag(changed_at="garbage"), NOW, 0, guard=None).protected
    guard = GuardWatch("guard:alice@gx10:7", NOW + timedelta(minutes=1))
    watched = fallback_protection(flag(changed_at="garbage"), NOW, 0, guard=guard)
    assert watched.protected and watched.until == NOW + timedelta(minutes=1)


def test_no_previous_slot_nothing_to_protect() -> None:
    protection = fallback_protection(flag(previous=None, changed_at=ago(1)), NOW, HOUR, None)
    assert protection.slot is None and not protection.protected


@pytest.mark.parametrize("raw", ["", "garbage", "2026-13-45T99:00:00Z", "x" * 5000, None])
def test_an_unreadable_changed_at_is_protected_with_no_known_end(raw: str | None) -> None:
    protection = fallback_protection(flag(changed_at=raw), NOW, HOUR, guard=None)
    assert protection.protected and protection.until is None
    assert "fail safe" in protection.describe()
    assert protection.until_for("blue") is None
    with pytest.raises(Refused, match="no known end"):
        check_fallback(protection, "blue", action="park", replace=False)


def test_a_changed_at_far_in_the_future_is_a_broken_clock_and_fails_safe() -> None:
    future = rfc3339(NOW + timedelta(days=400))
    protection = fallback_protection(flag(changed_at=future), NOW, HOUR, guard=None)
    assert protection.protected and protection.until is None
    assert "future" in protection.describe()


def test_a_watching_guard_protects_after_the_time_is_up_and_extends_until() -> None:
    window_end = NOW + timedelta(minutes=10)
    guard = GuardWatch("guard:alice@gx10:7", window_end)
    protection = fallback_protection(flag(changed_at=ago(2 * HOUR)), NOW, HOUR, guard=guard)
    assert protection.protected and protection.until == window_end
    assert any("watches production" in r for r in protection.reasons)
    longer = fallback_protection(flag(changed_at=ago(60)), NOW, HOUR, guard=guard)
    assert longer.until == NOW - timedelta(seconds=60) + timedelta(hours=1)


def test_the_refusal_says_until_when_and_the_override() -> None:
    protection = fallback_protection(flag(changed_at=ago(5)), NOW, HOUR, guard=None)
    until = rfc3339(NOW - timedelta(seconds=5) + timedelta(hours=1))
    with pytest.raises(Refused) as info:
        check_fallback(protection, "blue", action="deploy", replace=False)
    assert info.value.exit_code == 3
    assert f"protected until {until}" in info.value.message
    assert "--replace-fallback" in (info.value.hint or "")
    note = check_fallback(protection, "blue", action="deploy", replace=True)
    assert note and "--replace-fallback" in note
    # The other slot (production itself is refused elsewhere) is not the fallback.
    assert check_fallback(protection, "green", action="deploy", replace=False) is None


# -- the guard's lease as a watch -------------------------------------------------------------

HERE = Here(
    host="gx10",
    boot="boot-1",
    pidns="pid:[1]",
    process=lambda pid: ProcessInfo("S", "500") if pid == 7 else None,
)


def guard_lease(
    holder: str = "guard:alice@gx10:7",
    *,
    renewed_ago: float = 1,
    start: str = "500",
    watch_until: str | None = None,
) -> dict[str, Any]:
    annotations = {HOLDER_PROCESS: ProcessMark("boot-1", "pid:[1]", start).encode()}
    if watch_until:
        annotations["gx10slots.io/watch-until"] = watch_until
    return {
        "metadata": {"annotations": annotations},
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 30,
            "renewTime": micro_time(NOW - timedelta(seconds=renewed_ago)),
        },
    }


KEY = "gx10slots.io/watch-until"


def test_a_live_guard_lease_is_a_watch_until_its_window_ends() -> None:
    end = rfc3339(NOW + timedelta(minutes=9))
    watch = guard_watch(guard_lease(watch_until=end), NOW, HERE, KEY)
    assert watch is not None and watch.until == NOW + timedelta(minutes=9)


def test_an_expired_released_or_dead_guard_lease_is_no_watch() -> None:
    assert guard_watch(guard_lease(renewed_ago=31), NOW, HERE, KEY) is None
    assert guard_watch(guard_lease(holder=""), NOW, HERE, KEY) is None
    assert guard_watch(None, NOW, HERE, KEY) is None
    # Same host, pid 7 now belongs to another process (another start time): that guard is gone.
    assert guard_watch(guard_lease(start="499"), NOW, HERE, KEY) is None


def test_a_guard_lease_with_an_unreadable_renew_time_fails_safe() -> None:
    lease = guard_lease()
    lease["spec"]["renewTime"] = "not a time"
    watch = guard_watch(lease, NOW, HERE, KEY)
    assert watch is not None and watch.until is None


def test_protection_to_dict_is_what_status_shows() -> None:
    protection = FallbackProtection("blue", True, NOW, ("x",))
    assert protection.to_dict() == {
        "slot": "blue",
        "protected": True,
        "until": rfc3339(NOW),
        "reasons": ["x"],
        "note": None,
    }
