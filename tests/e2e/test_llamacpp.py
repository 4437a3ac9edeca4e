"""The full flow on llama.cpp's own llama-server (issue 15): tiny-pong deploys and flips with
readiness from /health and progress from the llamacpp: metrics, tiny-babble never reaches
production, and the llama-server profile holds against the real server: /health 503 while loading,
a long healthy generation is progress (n_decode_total moves, tokens_predicted_total does not),
aliases, the API key."""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import signal
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from gx10slots.config import ControllerConfig, GuardConfig
from gx10slots.guard.loop import RevertResult, watch
from gx10slots.guard.rules import CheckRecord, GateReading, Target, resolve_settings
from gx10slots.sandbox import llamacpp
from gx10slots.sandbox.kubelet import free_port
from gx10slots.sandbox.tinymodels import ensure_tiny_model
from gx10slots.slots import FlagState
from gx10slots.smoke.live import Observation, observe, progress_verdict
from gx10slots.smoke.profiles import LLAMA_SERVER
from gx10slots.smoke.progress import ProgressSample, Verdict, parse_prometheus, sample_of
from gx10slots.smoke.report import Baseline
from gx10slots.smoke.settings import SuiteSettings
from gx10slots.smoke.suite import run_suite
from tests.helpers.sandbox import Sandbox
from tests.helpers.traffic import ProductionTraffic

pytestmark = pytest.mark.e2e

DECODES = "llamacpp:n_decode_total"
PREDICTED = "llamacpp:tokens_predicted_total"
PROCESSING = "llamacpp:requests_processing"
# fcntl(2) F_SETLEASE (F_LINUX_SPECIFIC_BASE + 0); Python names it from 3.13 on.
F_SETLEASE = getattr(fcntl, "F_SETLEASE", 1024)
# One long request: thousands of decode steps on one thread (seconds, not milliseconds).
GENERATED = 7000


def _names(endpoint: str) -> list[str]:
    """Every id and alias the server at ``endpoint`` lists."""
    response = httpx.get(f"{endpoint}/v1/models", timeout=10)
    response.raise_for_status()
    return llamacpp.model_names(response.json())


def test_tiny_pong_deploys_and_flips_keeping_the_old_name_with_zero_failed_requests(
    llama_sandbox: Sandbox,
) -> None:
    box = llama_sandbox
    with ProductionTraffic(box.info["prod_endpoint"]) as traffic:
        result = box.cli(
            "-o",
            "json",
            "deploy",
            "tiny-pong",
            "--served-name",
            "pong-v1",
            "--flip",
            "--format",
            "json,md,junit",
        )
        assert result.code == 0, result.err
        # llama-server serves several names (one comma-separated --alias): the new name, the
        # old one its clients still ask for, and the slot's identity.
        assert set(_names(box.info["prod_endpoint"])) == {
            "pong-v1",
            "sandbox-ok",
            "gx10slots/green",
        }
        assert box.flag() == "green"
        assert box.cli("flip-back").code == 0
        assert box.flag() == "blue"
        # blue's fake imitates llama-server: it answers as its alphabetically first name.
        assert box.production() == "gx10slots/blue"
    print(f"production requests: {dict(traffic.outcomes)}")
    assert traffic.failures == 0, traffic.outcomes
    # Every llama-server answer names its alphabetically first alias; count pods instead.
    assert len(traffic.backends) == 2, traffic.backends
    reports = result.json()["reports"]
    report = json.loads(Path(reports[0]).read_text())
    assert report["passed"] and report["engine"] == "llama-server"
    probes = {p["name"]: p for p in report["probes"]}
    assert "pong" in probes["known-answer"]["detail"]
    # Progress is judged on llama-server's own counters, not skipped.
    progress = probes["progress"]
    assert progress["passed"] and not progress.get("skipped"), progress
    assert PREDICTED in progress["detail"] and DECODES in progress["detail"], progress["detail"]
    suite = ET.parse(reports[2]).getroot()
    assert int(suite.get("tests", "0")) == len(report["probes"])
    assert int(suite.get("failures", "0")) == 0
    assert "Smoke passed" in Path(reports[1]).read_text()


def test_tiny_babble_is_refused_by_smoke_and_production_never_sees_it(
    llama_sandbox: Sandbox,
) -> None:
    box = llama_sandbox
    with ProductionTraffic(box.info["prod_endpoint"]) as traffic:
        result = box.cli(
            "deploy", "tiny-babble", "--served-name", "babble", "--flip", "--format", "json,junit"
        )
    assert result.code == 1, result.err
    assert "smoke failed" in result.err and "known-answer" in result.err
    assert box.flag() == "blue"
    assert traffic.failures == 0 and len(traffic.backends) == 1, traffic.backends
    # The standby really ran llama-server with babble's names (the smoke talked to it).
    assert "babble" in _names(box.info["slots"]["green"])
    report_json = sorted((box.dir / "reports").glob("*-green.json"))[-1]
    report = json.loads(report_json.read_text())
    known = next(p for p in report["probes"] if p["name"] == "known-answer")
    assert not known["passed"] and "expected /pong/i" in known["detail"]
    assert known["evidence"]
    junit = ET.parse(report_json.with_suffix(".xml")).getroot()
    assert int(junit.get("failures", "0")) >= 1
    status = box.cli("-o", "json", "status").json()
    assert status["slots"]["green"]["smoke"]["passed"] is False


# ------------------------------------------------- the guard against a one-slot llama-server


class _RealServerPorts:
    """The guard's loop on the real server: production is the server itself, the flag stays on
    green, and a flip-back is only recorded (the loop and the rules are what is under test)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.reverted: list[str] = []
        self.observations: list[Observation] = []
        self._stop = threading.Event()

    def clock(self) -> float:
        return time.monotonic()

    def wait(self, seconds: float) -> bool:
        return self._stop.wait(seconds)

    def flag(self) -> FlagState:
        return FlagState(
            value="green", active="green", previous="blue", resource_version="1", annotations={}
        )

    def observe(self, timeout_s: float) -> Observation:
        from gx10slots.smoke.settings import SuiteSettings

        observation = observe(
            self.base,
            "pong",
            LLAMA_SERVER,
            SuiteSettings(probes=("streaming",), probe_timeout_s=timeout_s),
            api_key=None,
            timeout_s=timeout_s,
            stall_window_s=CONTROLLER.stall_window_s,
            sample_every_s=CONTROLLER.sample_every_s,
        )
        self.observations.append(observation)
        return observation

    def gates(self) -> tuple[GateReading, ...]:
        return ()

    def revert(self, summary: str, streak: Sequence[CheckRecord]) -> RevertResult:
        self.reverted.append(summary)
        return RevertResult("green", "blue", True, "recorded by the test")


# The controller's defaults: a check every 3 s, 2 failed in a row flip back, a 3 s probe.
CONTROLLER = resolve_settings(
    GuardConfig(),
    window_s=12.0,
    interval_s=ControllerConfig.interval_s,
    failures=ControllerConfig.failures,
    probe_timeout_s=ControllerConfig.probe_timeout_s,
)
PONG_TARGET = Target("green", "blue", "tiny-pong", "pong", None, "sandbox-ok")


def test_the_guard_never_reverts_a_one_slot_server_busy_with_a_long_generation(
    tmp_path: Path, start_server: Any
) -> None:
    """llama-server with one slot (--parallel 1) serves one generation at a time: the guard's
    probes wait behind a long streamed generation and time out, while llamacpp:n_decode_total
    moves at every decode step. The controller's checks call that busy, never a wedge; the same
    server stopped mid-generation (SIGSTOP) is still left within two checks."""
    model = ensure_tiny_model(tmp_path / "models", "tiny-pong")
    server = start_server(model, ["pong"], extra=("--context-shift", "--parallel", "1"))
    llamacpp.wait_until_ready(server.base, process=server.process, served_name="pong")
    # ignore_eos: tiny-pong would say " pong" and stop; the long generation runs until we hang up.
    body = {
        "model": "pong",
        "messages": [{"role": "user", "content": "ping"}],
        "max_tokens": 10**7,
        "ignore_eos": True,
        "stream": True,
    }
    ports = _RealServerPorts(server.base)
    assert ports.observe(3.0).passed  # idle, the server answers at once
    stream = _Stream(server.base, body).start()
    try:
        outcome = watch(ports, PONG_TARGET, CONTROLLER, None)
        still_generating = not stream.done.is_set()
        deferred = _metrics(server).get("llamacpp:requests_deferred", 0.0)
    finally:
        stream.stop()
    assert still_generating, "the long generation ended before the guard's window"
    assert outcome.result == "passed" and ports.reverted == [], outcome.records
    # The probes really were queued: they timed out on a server that answers in milliseconds,
    # each check judged busy on the decode counter (the request-end counter never moved).
    queued = [r for r in outcome.records[1:] if not r.observation.passed]
    assert len(queued) >= 3, [r.to_dict() for r in outcome.records]
    assert all(r.busy and r.passed for r in queued), [r.to_dict() for r in queued]
    assert deferred >= 1  # llama-server says so too: requests wait for the one slot
    # Once the generation is over, the probe answers again.
    assert ports.observe(3.0).passed

    # The same server stopped mid-generation: nothing moves, nothing answers.
    stream = _Stream(server.base, body).start()
    os.kill(server.process.pid, signal.SIGSTOP)
    try:
        stopped = watch(ports, PONG_TARGET, CONTROLLER, None)
    finally:
        os.kill(server.process.pid, signal.SIGCONT)
        stream.stop()
    assert stopped.result == "tripped", [r.to_dict() for r in stopped.records]
    assert len(ports.reverted) == 1
    assert [r.busy for r in stopped.streak] == [False, False]


# --------------------------------------------------------------------------- the server itself


class _Stream:
    """One streamed chat completion in a thread: its frames counted; :meth:`stop` hangs up,
    which ends the generation on the server."""

    def __init__(self, base: str, body: dict[str, Any]) -> None:
        self.base, self.body = base, body
        self.frames: list[int] = []
        self.done = threading.Event()
        self._hang_up = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            url = f"{self.base}/v1/chat/completions"
            with httpx.stream("POST", url, json=self.body, timeout=120) as response:
                for line in response.iter_lines():
                    if line.startswith("data:"):
                        self.frames.append(len(line))
                    if self._hang_up.is_set():
                        return
        finally:
            self.done.set()

    def start(self) -> _Stream:
        """Start it and wait for its first frame (or its end)."""
        self.thread.start()
        while not self.frames and not self.done.is_set():
            self.done.wait(0.01)
        return self

    def stop(self) -> None:
        self._hang_up.set()
        self.thread.join(timeout=60)


class _Server:
    def __init__(self, process: Any, base: str, log: Path) -> None:
        self.process, self.base, self.log = process, base, log


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Any]:
    started: list[_Server] = []

    def start(
        model: Path, names: list[str], *, api_key: str | None = None, extra: tuple[str, ...] = ()
    ) -> _Server:
        port = free_port()
        log = tmp_path / f"server-{len(started)}.log"
        process = llamacpp.launch(
            tmp_path, model, names, port, log=log, api_key=api_key, extra=extra
        )
        server = _Server(process, f"http://127.0.0.1:{port}", log)
        started.append(server)
        return server

    try:
        yield start
    finally:
        for server in started:
            llamacpp.stop_server(server.process)


def _metrics(server: _Server, api_key: str | None = None) -> dict[str, float]:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    response = httpx.get(f"{server.base}/metrics", headers=headers, timeout=10)
    assert response.status_code == 200, response.text
    return parse_prometheus(response.text)


def test_aliases_and_the_api_key_on_the_real_server(tmp_path: Path, start_server: Any) -> None:
    model = ensure_tiny_model(tmp_path / "models", "tiny-pong")
    server = start_server(model, ["pong-v1", "sandbox-ok", "gx10slots/green"], api_key="k3y")
    doc = llamacpp.wait_until_ready(
        server.base, process=server.process, served_name="pong-v1", api_key="k3y"
    )
    (card,) = doc["data"]
    assert sorted(card["aliases"]) == ["gx10slots/green", "pong-v1", "sandbox-ok"]
    # The id is the alphabetically first alias (a std::set), not the first given.
    assert card["id"] == "gx10slots/green"
    # Without the key: 401 everywhere but /health.
    for path in ("/v1/models", "/metrics"):
        assert httpx.get(server.base + path, timeout=10).status_code == 401, path
    body = {"model": "pong-v1", "messages": [{"role": "user", "content": "ping"}]}
    chat = f"{server.base}/v1/chat/completions"
    assert httpx.post(chat, json=body, timeout=30).status_code == 401
    bad = httpx.post(chat, json=body, headers={"Authorization": "Bearer nope"}, timeout=30)
    assert bad.status_code == 401
    ok = httpx.post(chat, json=body, headers={"Authorization": "Bearer k3y"}, timeout=30)
    assert ok.status_code == 200
    assert ok.json()["choices"][0]["message"]["content"] == " pong"
    assert httpx.get(f"{server.base}/health", timeout=10).status_code == 200


@contextlib.contextmanager
def _model_file_held(path: Path) -> Iterator[list[int]]:
    """Hold a Linux write lease on ``path``: any other process's open() of it blocks until the
    lease is released (fcntl(2) F_SETLEASE), as a model on slow storage keeps a loader waiting.
    Yields the list the SIGIO handler appends to when an open() is waiting."""
    waiting: list[int] = []
    previous = signal.signal(signal.SIGIO, lambda *_: waiting.append(1))
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.fcntl(fd, F_SETLEASE, fcntl.F_WRLCK)
        yield waiting
    finally:
        with contextlib.suppress(OSError):
            fcntl.fcntl(fd, F_SETLEASE, fcntl.F_UNLCK)
        os.close(fd)
        signal.signal(signal.SIGIO, previous)


def test_health_is_503_while_the_model_loads_then_200(tmp_path: Path, start_server: Any) -> None:
    model = ensure_tiny_model(tmp_path / "models", "tiny-pong")
    with httpx.Client(timeout=5) as client, _model_file_held(model) as waiting:
        server = start_server(model, ["tiny-pong"])
        # The server listens before it loads; its load waits on the model file we hold.
        deadline = time.monotonic() + 60
        first: httpx.Response | None = None
        while first is None and time.monotonic() < deadline and server.process.poll() is None:
            with contextlib.suppress(httpx.TransportError):  # not listening yet
                first = client.get(f"{server.base}/health")
        assert first is not None, server.log.read_text(errors="replace")[-2000:]
        assert first.status_code == 503, first.text
        assert first.json()["error"]["message"] == "Loading model"
        # Every endpoint says so while loading (the smoke's readiness reads it as "loading").
        assert client.get(f"{server.base}/v1/models").status_code == 503
        assert waiting, "the server never tried to open the model file"
    # Released: the load goes on and /health turns 200.
    llamacpp.wait_until_ready(server.base, process=server.process, served_name="tiny-pong")
    assert httpx.get(f"{server.base}/health", timeout=5).json() == {"status": "ok"}
    assert 503 in LLAMA_SERVER.loading_statuses and LLAMA_SERVER.answers_while_loading


def test_a_long_healthy_generation_is_progress_not_a_wedge(
    tmp_path: Path, start_server: Any
) -> None:
    """One streamed request generating thousands of tokens: the request-end counter stays flat
    the whole time, the decode counter moves, and the guard's rule calls it progress."""
    model = ensure_tiny_model(tmp_path / "models", "tiny-babble")
    # The server caps a slot's context at the model's training context (512): context shift lets
    # the one generation run on past it, to max_tokens.
    server = start_server(model, ["babble"], extra=("--context-shift", "--parallel", "1"))
    llamacpp.wait_until_ready(server.base, process=server.process, served_name="babble")
    body = {
        "model": "babble",
        "messages": [{"role": "user", "content": "talk"}],
        "max_tokens": GENERATED,
        "stream": True,
    }
    stream = _Stream(server.base, body).start()
    samples: list[ProgressSample] = []
    totals: list[dict[str, float]] = []
    # Sample while the one request runs (the stream has started: its first chunk arrived).
    done = stream.done
    while not done.is_set():
        metrics = _metrics(server)
        if metrics.get(PROCESSING) == 1.0:
            totals.append(metrics)
            samples.append(sample_of(metrics, LLAMA_SERVER, time.monotonic()))
        done.wait(0.02)
    stream.thread.join(timeout=60)
    assert len(samples) >= 3, f"the generation ended after {len(samples)} samples"
    span = samples[-1].at - samples[0].at
    # The request-end counter never moved while the request ran...
    assert {t[PREDICTED] for t in totals} == {totals[0][PREDICTED]}
    # ...the decode counter did, and the rule (with a window the samples cover) sees progress.
    assert totals[-1][DECODES] > totals[0][DECODES]
    verdict = progress_verdict(samples, span, LLAMA_SERVER.progress_counter or "", PROCESSING)
    assert verdict.verdict is Verdict.PROGRESSING, verdict.detail
    # Judged by the request-end counter, the same healthy generation would have been a wedge.
    flat = [
        ProgressSample(s.at, t[PREDICTED], s.running) for s, t in zip(samples, totals, strict=True)
    ]
    wrong = progress_verdict(flat, span, PREDICTED, PROCESSING)
    assert wrong.verdict is Verdict.STALLED
    # Once it ends, the request-end counter catches up with everything generated (babble never
    # stops by itself: it runs to max_tokens).
    after = _metrics(server)
    assert after[PREDICTED] - totals[0][PREDICTED] == GENERATED


def test_structured_output_is_learned_as_missing_from_llama_server_and_not_required(
    tmp_path: Path, start_server: Any
) -> None:
    """The tiny models' vocabulary cannot build a JSON schema's grammar: llama-server answers 400
    (server-common.cpp builds the grammar from response_format.json_schema.schema). The reference
    run learns "no structured output", so a candidate on the same engine is not asked for it."""
    model = ensure_tiny_model(tmp_path / "models", "tiny-pong")
    server = start_server(model, ["tiny-pong"])
    llamacpp.wait_until_ready(server.base, process=server.process, served_name="tiny-pong")
    settings = SuiteSettings(
        probes=("readiness", "known-answer", "structured-output"),
        structured_output=True,
        timeouts={"readiness": 30.0},
        readiness_poll_s=0.05,
    )
    active = run_suite(server.base, "tiny-pong", LLAMA_SERVER, settings, slot="blue")
    probes = {p.name: p for p in active.probes}
    assert probes["known-answer"].passed, probes["known-answer"].detail
    structured = probes["structured-output"]
    assert not structured.passed and "HTTP 400" in structured.detail, structured.detail
    baseline = Baseline.of(active)
    assert not baseline.structured_output
    candidate = run_suite(
        server.base,
        "tiny-pong",
        LLAMA_SERVER,
        dataclasses.replace(settings, structured_output=False),
        baseline=baseline,
        slot="green",
    )
    assert candidate.passed, [(p.name, p.detail) for p in candidate.probes if not p.passed]
    assert {p.name: p for p in candidate.probes}["structured-output"].skipped
