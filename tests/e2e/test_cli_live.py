"""The CLI as an operator watches it: live deploy progress through a pipe, `status --watch`,
kubectl's output conventions, against a real sandbox."""

from __future__ import annotations

import itertools
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from typing import IO

import pytest
import yaml

from tests.helpers.sandbox import Sandbox
from tests.helpers.wait import wait_for

SILENCE_LIMIT_S = 30.0
STAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ ")


def _lines_as_they_arrive(stream: IO[str], into: queue.Queue[tuple[float, str]]) -> None:
    """Each line with the moment it was read (the reader's clock, not the writer's claim)."""
    for line in stream:
        into.put((time.monotonic(), line.rstrip("\n")))
    into.put((time.monotonic(), ""))  # EOF


def _spawn(box: Sandbox, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gx10slots", *args],
        env=box.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _deploy_through_a_pipe(box: Sandbox, *args: str) -> tuple[int, str, str, list[float]]:
    """Exit code, stdout, stderr lines, and when each stderr line arrived (the start first)."""
    started = time.monotonic()
    proc = _spawn(box, "deploy", *args)
    arrived: queue.Queue[tuple[float, str]] = queue.Queue()
    reader = threading.Thread(target=_lines_as_they_arrive, args=(proc.stderr, arrived))
    reader.start()
    # Not communicate(): it would read stderr too, taking lines from under the reader.
    proc.wait(timeout=240)
    reader.join(timeout=10)
    assert proc.stdout is not None
    out = proc.stdout.read()  # the summary: small, so waiting first cannot fill the pipe
    times, lines = [started], []
    while not arrived.empty():
        at, line = arrived.get()
        times.append(at)
        if line:
            lines.append(line)
    return proc.returncode, out, "\n".join(lines), times


@pytest.mark.parametrize("engine_log", ["readable", "unreadable"])
def test_a_slow_loading_deploy_through_a_pipe_is_never_silent_for_30_s(
    sandbox: Sandbox, engine_log: str
) -> None:
    box = sandbox
    if engine_log == "unreadable":
        # No engine progress to show: the heartbeat alone must keep the log alive.
        box.fault(action="error", verb="get", resource="pods/log", count=10_000)
    code, out, log, times = _deploy_through_a_pipe(
        box, "sandbox/loading-45s", "--served-name", "slow", "--timeout", "3m"
    )
    assert code == 0, log
    assert times[-1] - times[0] > 45, "the model loads for 45 s: long enough to need progress"
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert max(gaps) <= SILENCE_LIMIT_S, f"{max(gaps):.1f} s of silence:\n{log}"
    # A pipe gets plain timestamped lines (no terminal control).
    assert all(STAMP.match(line) for line in log.splitlines() if "Running" in line), log
    assert "\x1b" not in log and "\r" not in log
    if engine_log == "readable":  # the engine's own progress, read from the pod's log
        assert re.search(r"engine: loading weights \d+% \(\d/5 shards\)", log), log
    else:
        assert "engine:" not in log
        assert re.search(r"still waiting: green: Running, not ready \[gx10-green-", log), log
    # And it did deploy: the standby runs the slow model, production untouched.
    doc = box.cli("status", "-o", "json").json()
    assert doc["slots"]["green"]["model"] == "sandbox/loading-45s"
    assert doc["active"] == "blue" and "deployed sandbox/loading-45s" in out


def test_status_watch_redraws_on_a_flip_and_ctrl_c_exits_0(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    proc = _spawn(box, "status", "--watch")
    arrived: queue.Queue[tuple[float, str]] = queue.Queue()
    assert proc.stdout is not None
    threading.Thread(target=_lines_as_they_arrive, args=(proc.stdout, arrived), daemon=True).start()
    seen: list[str] = []

    def shows(pattern: str) -> bool:
        while not arrived.empty():
            seen.append(arrived.get()[1])
        return any(re.match(pattern, line) for line in seen)

    wait_for(lambda: shows(r"^blue\s+active\b"), 30, "the first status")
    assert not shows(r"^green\s+active\b")
    assert box.cli("flip").code == 0
    wait_for(lambda: shows(r"^green\s+active\b"), 15, "a redraw after the flip")
    assert shows(r"^--- \d{4}-"), "on a pipe each redraw is stamped"
    proc.send_signal(signal.SIGINT)
    # Generous: on a loaded machine the interpreter's own shutdown (the kubernetes client's many
    # modules) can take seconds after the command has returned.
    proc.wait(timeout=90)
    assert proc.stderr is not None
    err = proc.stderr.read()
    assert proc.returncode == 0, err
    assert "Traceback" not in err and "error" not in err


def test_status_output_formats_after_the_subcommand(sandbox: Sandbox) -> None:
    as_json = sandbox.cli("status", "-o", "json").json()
    as_yaml = yaml.safe_load(sandbox.cli("status", "-o", "yaml").out)
    assert as_json["active"] == as_yaml["active"] == "blue"
    assert as_yaml["slots"].keys() == as_json["slots"].keys()
    table, wide = sandbox.cli("status").out, sandbox.cli("status", "-o", "wide").out
    assert "IMAGE" in wide.splitlines()[0] and "IMAGE" not in table.splitlines()[0]
    assert all(len(line) <= 80 for line in table.split("\n\n")[0].splitlines()), table
    assert "lock: free" in table and "fallback: " in table


def test_status_with_a_ready_standby_loads_no_http_client_of_the_probes(
    two_warm_slots: Sandbox,
) -> None:
    """`slots status` reads the cluster only: the probes' HTTP client (httpx, ~150 ms of
    imports) is for engines whose standby warmth can be asked (Ollama), not for vLLM's."""
    box = two_warm_slots
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "gx10slots", "status"],
        env=box.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"^green\s+standby\b.*\b1/1\b", proc.stdout, re.M), proc.stdout
    imported = {line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines()}
    assert "httpx" not in imported
    assert "kubernetes" not in imported
