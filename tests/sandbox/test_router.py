"""The sandbox's production router: follows the API through a delay line, or never (stuck)."""

from __future__ import annotations

import time

import pytest

from gx10slots.errors import UsageError
from gx10slots.sandbox.cluster import parse_router_lag
from gx10slots.sandbox.dataplane import Router


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_router_applies_a_change_only_after_its_lag(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(time, "monotonic", clock)
    wanted = [("blue-pod",)]
    router = Router[tuple[str, ...]](lambda: wanted[0], 1.0, ())
    router.go_live()
    assert router.current() == ("blue-pod",)  # before going live it follows at once
    wanted[0] = ("green-pod",)
    router.step()
    clock.now += 0.9
    router.step()
    assert router.current() == ("blue-pod",)
    clock.now += 0.2
    router.step()
    assert router.current() == ("green-pod",)


def test_a_stuck_router_never_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(time, "monotonic", clock)
    wanted = [("blue-pod",)]
    router = Router[tuple[str, ...]](lambda: wanted[0], None, ())
    router.go_live()
    wanted[0] = ("green-pod",)
    for _ in range(5):
        clock.now += 100
        router.step()
    assert router.current() == ("blue-pod",)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("never", None), ("NEVER", None), ("1s", 1.0), ("0.5", 0.5), ("250ms", 0.25)],
)
def test_router_lag_reads_a_duration_or_never(text: str, seconds: float | None) -> None:
    assert parse_router_lag(text) == seconds


@pytest.mark.parametrize("text", ["soon", "-1s", "2h"])
def test_router_lag_refuses_anything_else(text: str) -> None:
    with pytest.raises(UsageError, match="--router-lag"):
        parse_router_lag(text)


def test_the_router_reports_each_routing_once_it_is_in_force(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = _Clock()
    monkeypatch.setattr(time, "monotonic", clock)
    wanted = [("blue-pod",)]
    reported: list[tuple[str, ...]] = []
    router = Router[tuple[str, ...]](lambda: wanted[0], 1.0, (), reported.append)
    router.go_live()
    assert reported == [("blue-pod",)]
    wanted[0] = ("green-pod",)
    router.step()
    clock.now += 0.5
    router.step()
    assert reported == [("blue-pod",)]  # not before the lag
    clock.now += 0.6
    router.step()
    router.step()
    assert reported == [("blue-pod",), ("green-pod",)]  # once, when applied
