"""A stop that is certain: a process that must end within a grace period once asked to stop.

SIGTERM and Ctrl-C unwind the main thread as :class:`~gx10slots.errors.Interrupted`, wherever
it is, and `finally` blocks give back what it holds. That is enough for a command. The
controller runs for days and a kubelet kills it 30 s after SIGTERM (its Lease then outlives it
for a whole lease duration); if its main thread ever fails to unwind (a stop taken for an error
somewhere, a call that does not return), it must still end. So when it was asked to stop and is
still running after its grace period, a watchdog says where the main thread was (so the cause
can be found and fixed), gives the leader Lease back, and ends the process.
"""

from __future__ import annotations

import faulthandler
import os
import sys
import threading
from collections.abc import Callable

_grace: tuple[float, Callable[[], None]] | None = None
_armed = threading.Event()


def exit_within(seconds: float, before_exit: Callable[[], None]) -> None:
    """From now on, a stop request ends the process at most ``seconds`` later; ``before_exit``
    (best effort, bounded by the caller) runs first."""
    global _grace
    _grace = (seconds, before_exit)


def requested() -> None:
    """Called where a stop is received (the CLI's signal handlers, the smoke suite's asyncio
    ones); arms the watchdog once, when a grace period is set."""
    if _grace is None or _armed.is_set():
        return
    _armed.set()
    seconds, before_exit = _grace
    threading.Thread(
        target=_watchdog, args=(seconds, before_exit), name="stop-watchdog", daemon=True
    ).start()


def _watchdog(seconds: float, before_exit: Callable[[], None]) -> None:
    threading.Event().wait(seconds)
    try:
        sys.stderr.write(
            f"slots: still running {seconds:g} s after being asked to stop; where it was:\n"
        )
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        before_exit()
        sys.stderr.write("slots: stopped by its watchdog\n")
        sys.stderr.flush()
    finally:
        os._exit(0)
