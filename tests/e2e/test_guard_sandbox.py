"""`slots guard` on a real sandbox (issue 10): trip and flip back, pass, stand down, refuse.

Windows are seconds, not minutes: the sandbox's slots.yaml gets ``guard: {interval: 1s, ...}`` so
that `--guard` (which takes interval and failures from the config) checks every second.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
import yaml

from tests.e2e.conftest import Sandbox, wait_for

pytestmark = pytest.mark.e2e

# Background traffic: a request hung on a wedged slot counts as failed after this long.
CLIENT_TIMEOUT_S = 2.0


def set_guard(box: Sandbox, **settings: Any) -> None:
    path = box.dir / "slots.yaml"
    config = yaml.safe_load(path.read_text())
    config["guard"] = settings
    path.write_text(yaml.safe_dump(config))


def spawn(box: Sandbox, stderr: IO[str], *args: str) -> subprocess.Popen[str]:
    """`slots ...` as its own process (its own pid, its own signals), stderr into a file."""
    return subprocess.Popen(
        [sys.executable, "-m", "gx10slots", *args],
        env=box.env,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def actions(box: Sandbox) -> list[tuple[str, str | None, str | None, str]]:
    return [(e["action"], e["from"], e["to"], e["result"]) for e in box.history()]


@dataclass
class Traffic:
    """Production clients sending known-answer requests back to back, as real users would."""

    endpoint: str
    workers: int = 2
    results: list[tuple[float, bool, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        for _ in range(self.workers):
            thread = threading.Thread(target=self._run, daemon=True)
            thread.start()
            self._threads.append(thread)

    def _run(self) -> None:
        # No "model": production answers whichever slot serves it (the served names differ).
        body = {"messages": [{"role": "user", "content": "Reply with the single word pong."}]}
        with httpx.Client(base_url=self.endpoint, timeout=CLIENT_TIMEOUT_S) as client:
            while not self._stop.is_set():
                started = time.monotonic()
                try:
                    response = client.post("/v1/chat/completions", json=body)
                    ok = response.status_code == 200
                    detail = str(response.status_code)
                except httpx.HTTPError as exc:
                    ok, detail = False, type(exc).__name__
                self.results.append((started, ok, detail))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=CLIENT_TIMEOUT_S + 5)

    def failures(self) -> list[tuple[float, bool, str]]:
        return [r for r in self.results if not r[1]]


def test_a_wedge_after_the_flip_trips_the_guard_and_production_serves_the_old_slot_again(
    sandbox: Sandbox,
) -> None:
    box = sandbox
    set_guard(box, interval="1s", failures=2)
    traffic = Traffic(box.info["prod_endpoint"])
    traffic.start()
    try:
        result = box.cli(
            "-o",
            "json",
            "deploy",
            "sandbox/wedge-after-5s",
            "--served-name",
            "sandbox-v2",
            "--flip",
            "--guard",
            "30s",
        )
        returned = time.monotonic()
        assert result.code == 1, result.err
        # Requests sent after the guard returned all reach the previous slot and succeed.
        wait_for(
            lambda: sum(1 for r in traffic.results if r[0] > returned and r[1]) >= 4,
            what="requests after the flip-back to succeed",
        )
    finally:
        traffic.stop()
    doc = result.json()
    assert doc["flip"]["to"] == "green"
    guard = doc["guard"]
    assert guard["result"] == "tripped"
    assert guard["elapsed_s"] < 20  # well within the window
    assert guard["error"]["exit_code"] == 1
    assert box.production() == "sandbox-ok"
    assert box.flag() == "blue"

    # Audit: history, annotations, an Event, and the report with the evidence.
    entry = box.history()[0]
    assert (entry["action"], entry["from"], entry["to"], entry["result"]) == (
        "auto-revert",
        "green",
        "blue",
        "ok",
    )
    assert entry["reason"].startswith("slots guard: 2 consecutive failed checks")
    # No first token: the probe timed out, or the engine was seen stalled before it could.
    assert "timed out" in entry["reason"] or "engine stalled" in entry["reason"]
    assert entry["by"].startswith("guard:")
    annotations = box.get("service", "gx10-model")["metadata"]["annotations"]
    assert annotations["gx10slots.io/active"] == "blue"
    assert annotations["gx10slots.io/reason"] == entry["reason"]
    assert "AutoReverted" in box.kubectl("get", "events", "-o", "json").stdout
    report = yaml.safe_load(Path(guard["report"]).read_text())
    assert report["result"] == "tripped"
    assert len(report["check_log"]) == guard["checks"]
    assert [c["passed"] for c in report["check_log"][-2:]] == [False, False]
    assert box.lease_holder() in (None, "")

    # Only requests in flight on the wedged slot failed, and the guard reported how many.
    failed = traffic.failures()
    late = [r for r in failed if r[0] > returned]
    assert late == []
    revert = guard["revert"]
    stranded = revert["in_flight_on_guarded"] - revert["guard_probes_abandoned"]
    assert 1 <= len(failed) <= stranded, (failed, revert)
    assert all(detail == "ReadTimeout" for _, _, detail in failed)


def test_a_healthy_slot_passes_its_window_and_nothing_changes(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    assert box.cli("flip").code == 0
    before = box.versions()
    history = box.history()
    result = box.cli("-o", "json", "guard", "--for", "3s", "--interval", "1s", "--failures", "2")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["result"] == "passed"
    assert doc["checks"] == 4  # at 0, 1, 2 and 3 s
    assert doc["failed_checks"] == 0
    assert doc["baseline"] is not None  # green's smoke report: TTFT is judged
    assert box.versions() == before
    assert box.history() == history
    assert box.production() == "sandbox-v2"


def test_an_operator_flip_during_the_window_makes_the_guard_stand_down(
    two_warm_slots: Sandbox, tmp_path: Path
) -> None:
    box = two_warm_slots
    assert box.cli("flip").code == 0
    log = tmp_path / "guard.err"
    with log.open("w") as err:
        guard = spawn(box, err, "-o", "json", "guard", "--for", "60s", "--interval", "1s")
    try:
        wait_for(lambda: "check 1 " in log.read_text(), what="the guard's first check")
        # The guard holds no lease while it watches: the operator is not blocked.
        back = box.cli("flip-back", "--reason", "operator knows best")
        assert back.code == 0, back.err
        out, _ = guard.communicate(timeout=30)
    finally:
        if guard.poll() is None:
            guard.kill()
            guard.wait()
    assert guard.returncode == 0, log.read_text()
    doc = yaml.safe_load(out)
    assert doc["result"] == "stood-down"
    assert "production is on blue now" in doc["stood_down"]
    assert "operator knows best" in doc["stood_down"]
    assert [a[0] for a in actions(box)][:2] == ["flip-back", "flip"]
    assert box.production() == "sandbox-ok"


def test_ctrl_c_stops_the_guard_and_changes_nothing(
    two_warm_slots: Sandbox, tmp_path: Path
) -> None:
    box = two_warm_slots
    assert box.cli("flip").code == 0
    before = box.versions()
    log = tmp_path / "guard.err"
    with log.open("w") as err:
        guard = spawn(box, err, "guard", "--for", "60s", "--interval", "1s")
    try:
        wait_for(lambda: "check 1 " in log.read_text(), what="the guard's first check")
        guard.send_signal(signal.SIGINT)
        guard.wait(timeout=30)
    finally:
        if guard.poll() is None:
            guard.kill()
            guard.wait()
    assert guard.returncode == 130
    assert "nothing was changed (production stays on green)" in log.read_text()
    assert box.versions() == before


def test_a_flaky_slot_trips_on_its_error_share(sandbox: Sandbox) -> None:
    box = sandbox
    # Five failed checks in a row: only the error-share rule makes that likely at 50% errors.
    set_guard(box, interval="1s", failures=5)
    deployed = box.cli("deploy", "sandbox/flaky-50", "--served-name", "sandbox-v2")
    assert deployed.code == 1  # its smoke fails; the slot is left running
    result = box.cli("-o", "json", "flip", "--force", "--guard", "60s")
    assert result.code == 1, result.err
    guard = result.json()["guard"]
    assert guard["result"] == "tripped"
    assert "error share" in guard["revert"]["reason"]
    assert box.production() == "sandbox-ok"
    entry = box.history()[0]
    assert (entry["action"], entry["to"], entry["result"]) == ("auto-revert", "blue", "ok")
    assert "error share" in entry["reason"]


def test_the_guard_refuses_when_the_previous_slot_is_parked(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    assert box.cli("flip").code == 0
    assert box.cli("park", "blue", "--replace-fallback").code == 0  # the fallback, on purpose
    before = box.versions()
    history = box.history()
    result = box.cli("guard", "--for", "5s", "--interval", "1s")
    assert result.code == 3, result.err
    assert "nothing safe to fall back to" in result.err
    assert "parked" in result.err
    assert box.versions() == before
    assert box.history() == history
