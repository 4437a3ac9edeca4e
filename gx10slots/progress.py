"""Live progress of a long command (`slots deploy`): what it does, for how long, what it waits for.

One state, two renderings:

- on a terminal, a live line redrawn every second (phase, elapsed time, what it waits for, the
  engine's own load progress), with the command's ordinary progress lines printed above it;
- on a pipe (a CI log, ``| tee``), plain timestamped lines: one per change, and a
  ``still waiting: ...`` line whenever nothing was printed for :data:`HEARTBEAT_S`, so a log
  never goes silent for 30 s while a large model loads (up to 15 minutes on a GB10).

The rules (what to print, when) are pure functions of the state and the clock; :class:`Reporter`
is the small writer that applies them. The operation reports through :class:`Hooks` only, so it
does not know which rendering (if any) is on the other end.
"""

from __future__ import annotations

import re
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol, TextIO

from gx10slots import console, scrub

# The promise is "no silence over 30 s" on a pipe: a heartbeat after 20 s leaves room for a
# loaded machine (the writer's thread wakes every second, and the reader may be slow too).
HEARTBEAT_S = 20.0
TICK_S = 1.0
# How often the operation reads the tail of the loading pod's log for the engine's progress.
LOG_POLL_S = 5.0
# The engine's log is foreign text: only its tail is scanned, and a label is bounded.
LOG_SCAN_CHARS = 64 * 1024
MAX_LABEL = 80


class Hooks(Protocol):
    """What a long operation tells whoever watches it."""

    # Whether engine_log is worth a read of the pod's log (an API call every LOG_POLL_S).
    wants_engine_log: bool

    def phase(self, text: str) -> None:
        """A new step (``rollout of green``, ``smoke of green``, ``flip to green``)."""

    def waiting(self, what: str) -> None:
        """What the step waits for now (``green: Running, not ready [pod]``), when it changes."""

    def engine_log(self, text: str) -> None:
        """The latest lines of the loading engine's log, for its own load progress."""


class PlainHooks:
    """Hooks for callers without a reporter: the changes as ordinary progress lines."""

    wants_engine_log = False

    def phase(self, text: str) -> None:
        return None

    def waiting(self, what: str) -> None:
        console.progress(what)

    def engine_log(self, text: str) -> None:
        return None


# -- the engine's own load progress, read from its log (pure) ------------------------------------

# vLLM's weight loader shows a tqdm bar; in a pod log its updates are lines (or \r-separated
# segments) such as "Loading safetensors checkpoint shards:  45% Completed | 9/20 [00:10<00:12,
# 1.20s/it]" (vllm/model_executor/model_loader/weight_utils.py, desc
# "Loading safetensors checkpoint shards", bar_format with "{percentage:3.0f}% Completed |").
# llama-server (tools/server/server.cpp, src/llama-model-loader.cpp, src/llama-model.cpp) logs
# its steps by name: "main: loading model", "llama_model_loader: loaded meta data ...",
# "load_tensors: loading model tensors ...", "load_tensors: offloaded 30/49 layers to GPU",
# "llama_context: ...", "common_init_from_params: warming up the model ...", "main: model loaded".
_ENGINE_RULES: tuple[tuple[re.Pattern[str], Callable[[re.Match[str]], str]], ...] = (
    (
        re.compile(r"Loading safetensors checkpoint shards:\s*(\d{1,3})% Completed \| (\d+)/(\d+)"),
        lambda m: f"loading weights {m[1]}% ({m[2]}/{m[3]} shards)",
    ),
    (re.compile(r"Loading weights took ([\d.]+) ?s"), lambda m: f"weights loaded in {m[1]} s"),
    (re.compile(r"Model loading took"), lambda m: "model loaded; starting the engine"),
    (re.compile(r"Capturing CUDA graph"), lambda m: "capturing CUDA graphs"),
    (re.compile(r"Application startup complete"), lambda m: "engine started"),
    (re.compile(r"Starting to load model|Loading model weights"), lambda m: "loading the model"),
    (re.compile(r"main: model loaded"), lambda m: "model loaded"),
    (re.compile(r"warming up the model"), lambda m: "warming up"),
    (re.compile(r"^llama_context:|llama_kv_cache"), lambda m: "creating the context"),
    (re.compile(r"offloaded (\d+)/(\d+) layers to GPU"), lambda m: f"{m[1]}/{m[2]} layers on GPU"),
    (re.compile(r"load_tensors: loading model tensors"), lambda m: "loading tensors"),
    (re.compile(r"llama_model_loader: loaded meta data"), lambda m: "reading the model file"),
    (re.compile(r"load_model: loading model|main: loading model"), lambda m: "loading the model"),
)


def engine_progress(log_text: str) -> str | None:
    """The engine's latest load step in a few words, from the tail of its log; None if it says
    nothing we recognise. The most recent recognised line wins (logs run forward)."""
    tail = log_text[-LOG_SCAN_CHARS:]
    for line in reversed(re.split(r"[\r\n]+", tail)):
        line = line.strip()
        if not line:
            continue
        for pattern, label in _ENGINE_RULES:
            match = pattern.search(line)
            if match:
                return scrub.safe(label(match))[:MAX_LABEL]
    return None


# -- the state and what to print (pure) ----------------------------------------------------------


@dataclass
class State:
    started: float  # monotonic
    phase: str = ""
    phase_started: float = 0.0
    waiting: str = ""
    engine: str | None = None
    last_line: float = 0.0  # monotonic time of the last line printed (pipe)


def elapsed(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def _doing(state: State) -> str:
    what = state.waiting or state.phase or "working"
    return what + (f" (engine: {state.engine})" if state.engine else "")


def live_line(state: State, now: float, width: int) -> str:
    """The terminal's live line: one row, never wider than the terminal (a wrapped row could
    not be redrawn in place), so this one transient line may be cut."""
    # ASCII only: a terminal's encoding is not known to be UTF-8.
    parts = [f"[{elapsed(now - state.started)}] {state.phase or 'working'}"]
    if state.waiting:
        parts.append(state.waiting)
    if state.engine:
        parts.append(f"engine: {state.engine}")
    text = " | ".join(parts)
    limit = max(10, width - 1)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def heartbeat_due(state: State, now: float, every: float = HEARTBEAT_S) -> bool:
    return now - state.last_line >= every


def still_waiting(state: State, now: float) -> str:
    return f"still waiting: {_doing(state)}; {elapsed(now - state.started)} since the start"


def stamped(line: str, at: datetime) -> str:
    return f"{at.astimezone(UTC).strftime('%Y-%m-%dT%H:%M:%SZ')} {line}"


# -- the writer ----------------------------------------------------------------------------------


class Reporter:
    """Applies the rules to a stream (stderr): a live line on a terminal, timestamped lines and
    heartbeats on a pipe. While it runs, every :func:`console.progress` line goes through it
    (above the live line, or timestamped), so the two never garble each other."""

    wants_engine_log = True

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        tty: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], datetime] = lambda: datetime.now(UTC),
        heartbeat_s: float = HEARTBEAT_S,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty() if tty is None else tty
        self.clock, self.wall, self.heartbeat_s = clock, wall, heartbeat_s
        now = clock()
        self.state = State(started=now, phase_started=now, last_line=now)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._live_shown = False

    # Hooks
    def phase(self, text: str) -> None:
        with self._lock:
            self.state.phase = scrub.safe(text)
            self.state.phase_started = self.clock()
            self.state.waiting = ""
            self.state.engine = None
            self._redraw()

    def waiting(self, what: str) -> None:
        what = scrub.safe(what)
        with self._lock:
            if what == self.state.waiting:
                return
            self.state.waiting = what
        self.line(what)

    def engine_log(self, text: str) -> None:
        progress = engine_progress(text)
        with self._lock:
            if progress is None or progress == self.state.engine:
                return
            self.state.engine = progress
            if self.tty:
                self._redraw()
                return
        self.line(f"engine: {progress}")

    # Output
    def line(self, text: str) -> None:
        """One permanent line (already scrubbed by the caller or here)."""
        text = scrub.safe(text)
        with self._lock:
            if self.tty:
                self._clear_live()
                self.stream.write(text + "\n")
                self._redraw()
            else:
                self.stream.write(stamped(text, self.wall()) + "\n")
            self.stream.flush()
            self.state.last_line = self.clock()

    def tick(self) -> None:
        """Called every second: redraw the live line, or print a heartbeat when one is due."""
        with self._lock:
            now = self.clock()
            if self.tty:
                self._redraw()
                return
            if not heartbeat_due(self.state, now, self.heartbeat_s):
                return
            self.stream.write(stamped(still_waiting(self.state, now), self.wall()) + "\n")
            self.stream.flush()
            self.state.last_line = now

    def _redraw(self) -> None:
        if not self.tty:
            return
        width = shutil.get_terminal_size((80, 24)).columns
        self.stream.write("\r\x1b[K" + live_line(self.state, self.clock(), width))
        self.stream.flush()
        self._live_shown = True

    def _clear_live(self) -> None:
        if self._live_shown:
            self.stream.write("\r\x1b[K")
            self._live_shown = False

    # Lifetime
    def _run(self) -> None:
        while not self._stop.wait(TICK_S):
            try:
                self.tick()
            except (OSError, ValueError):  # the stream went away (a closed pipe): stop quietly
                return

    def __enter__(self) -> Reporter:
        console.set_sink(self.line)
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        console.set_sink(None)
        with self._lock:
            try:
                self._clear_live()
                self.stream.flush()
            except (OSError, ValueError):
                pass
