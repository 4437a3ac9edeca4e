"""Live progress: the engine's load progress read from its log, the live line, the heartbeat."""

from __future__ import annotations

import io
import itertools
from datetime import UTC, datetime

import pytest

from gx10slots import console
from gx10slots.progress import HEARTBEAT_S, Reporter, State, engine_progress, live_line


def test_vllm_shard_bar_is_read_as_load_progress() -> None:
    log = (
        "INFO 01-23 15:48:47 [gpu_model_runner.py:2602] Starting to load model /models/x...\n"
        "Loading safetensors checkpoint shards:   0% Completed | 0/20 [00:00<?, ?it/s]\r"
        "Loading safetensors checkpoint shards:  45% Completed | 9/20 [00:10<00:12,  1.20s/it]\r"
    )
    assert engine_progress(log) == "loading weights 45% (9/20 shards)"


def test_llama_server_load_lines_are_read_as_load_progress() -> None:
    log = (
        "main: loading model\n"
        "srv    load_model: loading model '/models/x.gguf'\n"
        "llama_model_loader: loaded meta data with 33 key-value pairs\n"
        "load_tensors: loading model tensors, this can take a while... (mmap = true)\n"
        "load_tensors: offloaded 30/49 layers to GPU\n"
    )
    assert engine_progress(log) == "30/49 layers on GPU"
    assert engine_progress(log + "main: model loaded\n") == "model loaded"


def test_an_unrecognised_or_huge_log_gives_no_progress_and_no_hang() -> None:
    assert engine_progress("") is None
    assert engine_progress("hello\nworld\n") is None
    bar = "Loading safetensors checkpoint shards:  99% Completed | 1/2\x1b[2J\n"
    # Only the tail is read: a bar buried under a megabyte of noise is not found, one at the
    # end is (and its label carries numbers only, never the line's escape sequences).
    assert engine_progress(bar + "x" * 10**6) is None
    assert engine_progress("x" * 10**6 + "\n" + bar) == "loading weights 99% (1/2 shards)"


def test_the_live_line_fits_the_terminal() -> None:
    state = State(started=0.0, phase="rollout of green", waiting="green: Running, not ready [p]")
    state.engine = "loading weights 45% (9/20 shards)"
    line = live_line(state, 83.0, 200)
    assert "rollout of green" in line and "1m23s" in line and "45%" in line
    assert len(live_line(state, 83.0, 40)) < 40


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reporter(clock: _Clock, stream: io.StringIO, *, tty: bool) -> Reporter:
    return Reporter(stream, tty=tty, clock=clock, wall=lambda: datetime(2026, 11, 29, tzinfo=UTC))


def test_on_a_pipe_a_silent_wait_gets_a_still_waiting_line_before_30_s() -> None:
    clock, out = _Clock(), io.StringIO()
    reporter = _reporter(clock, out, tty=False)
    reporter.phase("rollout of green")
    reporter.waiting("green: Running, not ready [gx10-green-1]")
    assert out.getvalue().count("\n") == 1
    printed_at = [clock.now]
    for _ in range(120):  # two minutes of ticks, one a second, nothing else happening
        clock.now += 1
        before = out.getvalue().count("\n")
        reporter.tick()
        if out.getvalue().count("\n") > before:
            printed_at.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise(printed_at)]
    assert printed_at[-1] > 1000 + 100 and max(gaps) <= HEARTBEAT_S < 30
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("2026-11-29T00:00:00Z green: Running, not ready")
    assert "still waiting: green: Running, not ready [gx10-green-1]" in lines[-1]


def test_on_a_pipe_engine_progress_is_a_line_when_it_changes() -> None:
    clock, out = _Clock(), io.StringIO()
    reporter = _reporter(clock, out, tty=False)
    bar = "Loading safetensors checkpoint shards:  40% Completed | 2/5 [00:02<00:03]"
    reporter.engine_log(bar)
    reporter.engine_log(bar)
    assert out.getvalue().count("engine: loading weights 40% (2/5 shards)") == 1
    clock.now += HEARTBEAT_S
    reporter.tick()
    assert "(engine: loading weights 40% (2/5 shards))" in out.getvalue().splitlines()[-1]


def test_on_a_terminal_lines_print_above_the_live_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console, "_verbosity", 0)  # whatever -v/-q an earlier command left
    clock, out = _Clock(), io.StringIO()
    reporter = _reporter(clock, out, tty=True)
    with reporter:
        reporter.phase("rollout of green")
        console.progress("slot green: applied")
        clock.now += 5
        reporter.tick()
    text = out.getvalue()
    assert "\r\x1b[Kslot green: applied\n" in text  # the live line cleared, the line, redrawn
    assert "\r\x1b[K[5s] rollout of green" in text
    assert "2026-" not in text  # no timestamps on a terminal: the live line shows the time
