"""Polling a condition with a deadline: how a test waits, never a bare sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

import httpx

T = TypeVar("T")

# What a read of a cluster that is still settling may raise before the condition holds.
TRANSIENT: tuple[type[Exception], ...] = (httpx.HTTPError, KeyError, ValueError)


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 20.0,
    what: str = "condition",
    *,
    interval: float = 0.05,
    tolerate: tuple[type[Exception], ...] = (),
) -> T:
    """The predicate's first truthy value, polled until the deadline; then the test fails naming
    ``what``, the last value and the last tolerated error."""
    deadline = time.monotonic() + timeout
    value: T | None = None
    last_error: Exception | None = None
    while True:
        try:
            value = predicate()
            if value:
                return value
        except tolerate as exc:
            last_error = exc
        if time.monotonic() > deadline:
            detail = f"last error: {last_error}" if last_error else f"last value: {value!r}"
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what} ({detail})")
        time.sleep(interval)  # polling a condition with a deadline, not papering over a race


def poll(predicate: Callable[[], T | None], timeout: float, what: str) -> T:
    """``wait_for`` that reads through the transient errors of a cluster still settling."""
    return wait_for(predicate, timeout, what, tolerate=TRANSIENT)
