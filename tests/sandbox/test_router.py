"""The sandbox's production router: follows the API through a delay line, or never (stuck)."""

from __future__ import annotations

import time

import pytest

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
    router = Router(lambda: wanted[0], 1.0)
    router.go_live()
    assert router.backends() == ["blue-pod"]  # before going live it follows at once
    wanted[0] = ("green-pod",)
    router.step()
    clock.now += 0.9
    router.step()
    assert router.backends() == ["blue-pod"]
    clock.now += 0.2
    router.step()
    assert router.backends() == ["green-pod"]


def test_a_stuck_router_never_follows(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    monkeypatch.setattr(time, "monotonic", clock)
    wanted = [("blue-pod",)]
    router = Router(lambda: wanted[0], None)
    router.go_live()
    wanted[0] = ("green-pod",)
    for _ in range(5):
        clock.now += 100
        router.step()
    assert router.backends() == ["blue-pod"]
