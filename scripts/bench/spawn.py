"""The measured commands run as separate processes from a small helper (peak RSS, times)."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from .common import BenchError, now

# -- child processes -------------------------------------------------------------------------------


# A child's ru_maxrss starts at the peak RSS of the process that spawned it (the kernel carries
# the pre-exec high-water mark over), so commands spawned straight from this ~100 MiB process
# would all look at least that big. They are spawned from this small helper instead (~10 MiB,
# stdlib only), one at a time; it reports when each started and ended (CLOCK_MONOTONIC, the
# benchmark's clock too), its exit code and its peak RSS from wait4.
_SPAWNER = """
import json, os, sys, time
os.setpriority(os.PRIO_PROCESS, 0, int(sys.argv[1]))  # the commands run at normal priority
for line in sys.stdin:
    req = json.loads(line)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, req["stdout"], flags, 0o600),
        (os.POSIX_SPAWN_OPEN, 2, req["stderr"], flags, 0o600),
    ]
    started = time.clock_gettime(time.CLOCK_MONOTONIC)
    try:
        pid = os.posix_spawn(req["argv"][0], req["argv"], req["env"], file_actions=actions)
    except OSError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        continue
    print(json.dumps({"pid": pid, "started": started}), flush=True)
    _, status, usage = os.wait4(pid, 0)
    ended = time.clock_gettime(time.CLOCK_MONOTONIC)
    code = os.waitstatus_to_exitcode(status)
    cpu = usage.ru_utime + usage.ru_stime
    print(json.dumps({"code": code, "ended": ended, "maxrss_kib": usage.ru_maxrss, "cpu_s": cpu}),
          flush=True)
"""


@dataclass
class Child:
    """A command running as its own process (see :class:`Spawner`)."""

    argv: list[str]
    started: float
    pid: int
    stdout_path: Path
    stderr_path: Path
    stderr_lines: list[tuple[float, str]] = field(default_factory=list)
    ended: float = math.nan
    code: int | None = None
    maxrss_kib: int = 0
    cpu_s: float = (
        math.nan
    )  # user + system CPU time (wait4): what the machine's load does not inflate
    lines: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    reader: threading.Thread | None = None

    def wait(self, timeout: float = 120.0) -> Child:
        if not self.done.wait(timeout):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.done.wait(10.0)
            raise BenchError(f"{' '.join(self.argv[:4])} did not finish in {timeout:g} s")
        if self.reader is not None:
            self.reader.join(10.0)
        return self

    @property
    def wall_s(self) -> float:
        return self.ended - self.started

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def errors(self) -> str:
        if self.lines:
            return "".join(line for _, line in self.stderr_lines)
        return self.stderr_path.read_text(errors="replace")

    def check(self) -> Child:
        if self.code != 0:
            raise BenchError(
                f"`{' '.join(self.argv)}` exited {self.code}:\n{self.errors()[-2000:]}"
                f"{self.output()[-1000:]}"
            )
        return self


class Spawner:
    """Runs the measured commands, one at a time, from the small helper process above."""

    def __init__(self, python: str, directory: Path, nice: int) -> None:
        self.nice = nice
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.count = 0
        self.idle = threading.Event()
        self.idle.set()
        self.proc = subprocess.Popen(
            [python, "-S", "-c", _SPAWNER, str(nice)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
        )

    def _reply(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError("the spawner process died")
        return dict(json.loads(line))

    def spawn(
        self, argv: Sequence[str], env: dict[str, str], *, stderr_lines: bool = False
    ) -> Child:
        """Start ``argv``; with ``stderr_lines`` each stderr line is timestamped on arrival."""
        if not self.idle.wait(300):
            raise BenchError("the previous command never finished")
        self.idle.clear()
        self.count += 1
        out, err = self.dir / f"{self.count}.out", self.dir / f"{self.count}.err"
        lines: list[tuple[float, str]] = []
        reader = None
        if stderr_lines:
            os.mkfifo(err)

            def read() -> None:
                with open(err, "rb") as fifo:  # blocks until the child opens its end
                    for raw in fifo:
                        lines.append((now(), raw.decode(errors="replace")))

            reader = threading.Thread(target=read, daemon=True)
            reader.start()
        request = {
            "argv": [str(a) for a in argv],
            "env": env,
            "stdout": str(out),
            "stderr": str(err),
        }
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        ack = self._reply()
        if "error" in ack:
            self.idle.set()
            raise BenchError(f"cannot start {argv[0]}: {ack['error']}")
        child = Child(
            list(argv), float(ack["started"]), int(ack["pid"]), out, err, lines, lines=stderr_lines
        )
        child.reader = reader

        def finish() -> None:
            end = self._reply()
            child.ended, child.code = float(end["ended"]), int(end["code"])
            child.maxrss_kib = int(end["maxrss_kib"])  # KiB on Linux
            child.cpu_s = float(end["cpu_s"])
            child.done.set()
            self.idle.set()

        threading.Thread(target=finish, daemon=True).start()
        return child

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()  # the helper ends after the command it runs, if any
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
