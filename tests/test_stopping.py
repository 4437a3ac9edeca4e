"""A process asked to stop ends within its grace period, even when its main thread does not
unwind: the watchdog says where it was, runs the give-back, and ends it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

STUCK = textwrap.dedent(
    """
    import signal, sys, time
    from gx10slots import stopping
    from gx10slots.cli import _on_sigterm

    def swallowed(signum, frame):
        # The CLI's own handler, whose Interrupted somebody takes for something else.
        try:
            _on_sigterm(signum, frame)
        except BaseException:
            pass

    signal.signal(signal.SIGTERM, swallowed)
    stopping.exit_within(GRACE, lambda: print("lease given back", file=sys.stderr))
    print("ready", flush=True)
    while True:
        time.sleep(0.05)
    """
)


def _start(grace: float | None) -> subprocess.Popen[str]:
    script = STUCK.replace("GRACE", repr(grace))
    if grace is None:
        script = script.replace("stopping.exit_within(", "(lambda *a: None)(")
    process = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None and process.stderr is not None
    line = process.stdout.readline()
    assert line == "ready\n", (line, process.stderr.read() if process.poll() is not None else "")
    return process


def test_a_stuck_main_thread_still_ends_within_the_grace_period() -> None:
    process = _start(grace=1.0)
    asked = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=15)
    assert process.returncode == 0, err
    assert time.monotonic() - asked < 10
    assert "still running 1 s after being asked to stop; where it was:" in err
    assert 'File "<string>"' in err  # the stuck main thread's own frame
    assert err.index("lease given back") < err.index("stopped by its watchdog")


def test_without_a_grace_period_a_stop_request_arms_nothing() -> None:
    process = _start(grace=None)
    try:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=2.5)
    except subprocess.TimeoutExpired:
        pass  # still running: nothing ended it (a command unwinds on its own)
    else:
        raise AssertionError(f"ended with {process.returncode}: {process.stderr}")
    finally:
        process.kill()
        process.communicate()
