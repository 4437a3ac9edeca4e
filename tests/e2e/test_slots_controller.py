"""`slots controller` on a real sandbox: a wedge after a flip is reverted within 15 s, observe
mode changes nothing, and a killed leader is replaced."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import yaml

from gx10slots.sandbox.rehearsal import controller_manifest
from tests.helpers.sandbox import NS, Sandbox
from tests.helpers.wait import wait_for
from tests.helpers.webhooks import Receiver, receiver

pytestmark = pytest.mark.e2e

WEDGE_AFTER_S = 40  # long enough for deploy, smoke and flip to finish on a loaded machine
PROMISE_S = 15.0


class Controller:
    def __init__(self, box: Sandbox, log: Path, *args: str) -> None:
        self.log = log
        with log.open("w") as err:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gx10slots",
                    "controller",
                    "--metrics-addr",
                    "127.0.0.1:0",
                    *args,
                ],
                env=box.env,
                stdout=subprocess.DEVNULL,
                stderr=err,
                text=True,
            )

    def text(self) -> str:
        return self.log.read_text()

    @property
    def metrics_url(self) -> str:
        found = wait_for(
            lambda: re.search(r"metrics at (http://\S+/metrics)", self.text()),
            what="the metrics address",
        )
        return str(found.group(1))

    def metric(self, name: str) -> float | None:
        body = httpx.get(self.metrics_url, timeout=5).text
        found = re.search(rf"^{re.escape(name)} (\S+)$", body, re.M)
        return float(found.group(1)) if found else None

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


@pytest.fixture
def team() -> Iterator[Receiver]:
    """The team's webhook receiver on 127.0.0.1."""
    with receiver() as made:
        yield made


@pytest.fixture
def controllers(sandbox: Sandbox, tmp_path: Path) -> Iterator[list[Controller]]:
    started: list[Controller] = []
    yield started
    for controller in started:
        controller.stop()


def engine_started_at(box: Sandbox, deployment: str) -> float:
    pods = box.api("GET", f"/api/v1/namespaces/{NS}/pods")["items"]
    for pod in pods:
        if pod["metadata"]["name"].startswith(deployment + "-") and not pod["metadata"].get(
            "deletionTimestamp"
        ):
            state = pod["status"]["containerStatuses"][0]["state"]
            if "running" in state:
                # Second precision, rounded down: the wedge is computed no later than it is.
                return datetime.fromisoformat(state["running"]["startedAt"]).timestamp()
    raise AssertionError(f"no running pod of {deployment}")


def test_a_wedge_after_a_flip_is_back_on_the_fallback_within_15_s(
    sandbox: Sandbox, controllers: list[Controller], team: Receiver, tmp_path: Path
) -> None:
    box = sandbox
    box.set_config("notify", webhooks=[{"url": team.url}])
    controller = Controller(box, tmp_path / "controller.err")
    controllers.append(controller)
    wait_for(lambda: "leading" in controller.text(), timeout=60, what="the controller to lead")
    result = box.cli(
        "deploy", f"sandbox/wedge-after-{WEDGE_AFTER_S}s", "--served-name", "sandbox-v2", "--flip"
    )
    assert result.code == 0, result.err
    assert box.flag() == "green"
    wedged_at = engine_started_at(box, "gx10-green") + WEDGE_AFTER_S
    assert time.time() < wedged_at, "deploy took longer than the wedge delay: nothing to measure"
    # Back: the flag names blue again and production answers from blue's pods.
    wait_for(
        lambda: box.flag() == "blue" and box.answering_slot() == "blue",
        timeout=WEDGE_AFTER_S + 30,
        what="production back on blue",
    )
    back_at = time.time()
    assert back_at - wedged_at <= PROMISE_S, controller.text()
    assert box.production() == "sandbox-ok"
    # Recorded once verified through production (after the flag's switch).
    entry = wait_for(
        lambda: next((e for e in box.history() if e["action"] == "auto-revert"), None),
        what="the auto-revert's history entry",
    )
    assert (entry["action"], entry["from"], entry["to"], entry["result"]) == (
        "auto-revert",
        "green",
        "blue",
        "ok",
    )
    assert entry["by"].startswith("controller:")
    # The team heard of the flip and of the revert (the controller's, by its own name).
    wait_for(lambda: "auto-revert" in team.events(), what="the auto-revert's notification")
    assert "flip" in team.events()
    (revert,) = team.bodies("auto-revert")
    assert revert["by"] == entry["by"]
    assert controller.metric("gx10slots_auto_reverts_total") == 1
    # The gauges follow at the controller's next read of the flag.
    wait_for(
        lambda: controller.metric('gx10slots_active_slot{slot="blue"}') == 1,
        what="the active-slot gauge to follow",
    )
    assert controller.stop() == 0
    assert "Traceback" not in controller.text()


# sandbox/one-slot-<pace>: one generation at a time, as llama-server --parallel 1 serves.
PACE_S = 0.02
# One streamed generation of this many tokens holds the slot for LONG_TOKENS x PACE_S = 24 s:
# several times the controller's interval x failures (3 s x 2), every one of its probes queued.
LONG_TOKENS = 1200


def _checks(controller: Controller, slot: str) -> int:
    return len(re.findall(rf"guard {slot}: check \d+", controller.text()))


def test_a_long_streaming_generation_on_a_one_slot_engine_is_never_reverted(
    sandbox: Sandbox, controllers: list[Controller], tmp_path: Path
) -> None:
    """The controller's probes wait behind a healthy long generation on an engine that serves one
    request at a time: busy, not wedged (its token counter moves). Production stays on the slot."""
    box = sandbox
    # The sandbox's blue is a concurrent engine: next to it, a one-slot engine's burst is a
    # regression by design. The smoke's live comparison is not this test's subject.
    box.set_smoke(baseline={"live": False})
    controller = Controller(box, tmp_path / "controller.err")
    controllers.append(controller)
    wait_for(lambda: "leading" in controller.text(), timeout=60, what="the controller to lead")
    model = f"sandbox/one-slot-{PACE_S * 1000:g}ms"
    result = box.cli("deploy", model, "--served-name", "sandbox-v2", "--flip")
    assert result.code == 0, result.err
    assert box.flag() == "green"
    wait_for(lambda: _checks(controller, "green") >= 1, timeout=60, what="the guard's first check")
    body = {
        "model": "sandbox-v2",
        "messages": [{"role": "user", "content": "Tell me a long story."}],
        "max_tokens": LONG_TOKENS,
        "ignore_eos": True,
        "stream": True,
    }
    checks_before = _checks(controller, "green")
    started = time.monotonic()
    tokens = 0
    with httpx.stream(
        "POST", f"{box.info['prod_endpoint']}/v1/chat/completions", json=body, timeout=120
    ) as response:
        assert response.status_code == 200
        for line in response.iter_lines():
            if line.startswith("data: {"):
                delta = json.loads(line.removeprefix("data: "))["choices"][0]["delta"]
                tokens += len((delta.get("content") or "").split())
    took = time.monotonic() - started
    log_at_end = len(controller.text())
    checks_during = _checks(controller, "green") - checks_before
    assert tokens == LONG_TOKENS
    assert took >= LONG_TOKENS * PACE_S * 0.9, f"the generation took only {took:.1f} s"
    # Production never moved: the flag, the history and the metric agree...
    assert box.flag() == "green", controller.text()
    assert box.production() == "sandbox-v2"
    assert all(e["action"] != "auto-revert" for e in box.history()), box.history()
    assert controller.metric("gx10slots_auto_reverts_total") == 0
    # ...while the controller kept checking all along (a check every 3 s at most).
    assert checks_during >= 4, controller.text()
    # Its probes answer again once the generation is over.
    wait_for(
        lambda: re.search(r"guard green: check \d+ \S+ ok", controller.text()[log_at_end:]),
        timeout=30,
        what="a passing check after the generation",
    )
    assert box.flag() == "green"
    assert controller.stop() == 0
    assert "Traceback" not in controller.text()


def test_observe_mode_says_what_it_would_do_and_changes_nothing(
    sandbox: Sandbox, controllers: list[Controller], team: Receiver, tmp_path: Path
) -> None:
    box = sandbox
    box.set_config("notify", webhooks=[{"url": team.url}])
    controller = Controller(box, tmp_path / "controller.err", "--mode", "observe")
    controllers.append(controller)
    wait_for(lambda: "leading" in controller.text(), timeout=60, what="the controller to lead")
    result = box.cli("deploy", "sandbox/wedge-after-30s", "--served-name", "sandbox-v2", "--flip")
    assert result.code == 0, result.err
    wait_for(
        lambda: "would flip back from green to blue" in controller.text(),
        timeout=60,
        what="the would-revert",
    )
    assert box.flag() == "green"
    assert box.history()[0]["action"] == "flip"
    assert controller.metric("gx10slots_would_reverts_total") == 1
    wait_for(lambda: "would-revert" in team.events(), what="the would-revert notification")
    assert controller.metric("gx10slots_auto_reverts_total") == 0


def test_only_one_replica_leads_and_a_killed_leader_is_replaced_by_one_that_guards(
    sandbox: Sandbox, controllers: list[Controller], tmp_path: Path
) -> None:
    box = sandbox
    box.set_config("controller", lease_duration="6s")
    first = Controller(box, tmp_path / "first.err")
    controllers.append(first)
    wait_for(lambda: "leading" in first.text(), timeout=60, what="the first replica to lead")
    second = Controller(box, tmp_path / "second.err")
    controllers.append(second)
    wait_for(
        lambda: "waiting to lead" in second.text(), timeout=60, what="the second replica to start"
    )
    assert second.metric("gx10slots_leader") == 0
    assert first.metric("gx10slots_leader") == 1
    os.kill(first.process.pid, signal.SIGKILL)  # no release: the lease must expire
    killed = time.monotonic()
    wait_for(lambda: "leading" in second.text(), timeout=30, what="the second replica to lead")
    # Taken once the record stayed unchanged for the lease duration on the follower's clock
    # (observed up to one retry period late, tried every retry period).
    assert time.monotonic() - killed <= 6 + 2 * 2 + 1
    holder = box.get("lease", "gx10slots-controller")["spec"]["holderIdentity"]
    assert holder.endswith(f":{second.process.pid}")
    # ...and the new leader guards: a wedge after the next flip is flipped back, by it.
    result = box.cli(
        "deploy", f"sandbox/wedge-after-{WEDGE_AFTER_S}s", "--served-name", "sandbox-v2", "--flip"
    )
    assert result.code == 0, result.err
    entry = wait_for(
        lambda: next((e for e in box.history() if e["action"] == "auto-revert"), None),
        timeout=WEDGE_AFTER_S + 60,
        what="the new leader's auto-revert",
    )
    assert entry["by"] == holder
    assert box.flag() == "blue"


MANIFESTS = Path(__file__).resolve().parents[2] / "docs" / "manifests"


def _adapted_controller_manifest(box: Sandbox) -> str:
    """docs/manifests/controller.yaml as a rehearsal applies it (gx10slots.sandbox.rehearsal),
    with a volume over the directory this checkout (and its .venv) lives in, as in test_job.py:
    the pod must still run the installed `slots`."""
    docs = controller_manifest(
        (MANIFESTS / "controller.yaml").read_text(),
        (MANIFESTS / "job-deploy.yaml").read_text(),
        (box.dir / "slots.yaml").read_text(),
    )
    deployment = next(d for d in docs if d["kind"] == "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    above = str(Path(__file__).resolve().parents[3])
    if above != "/" and above not in {m["mountPath"] for m in container["volumeMounts"]}:
        container["volumeMounts"].append({"name": "over-the-checkout", "mountPath": above})
        pod["volumes"].append({"name": "over-the-checkout", "emptyDir": {}})
    return yaml.safe_dump_all(docs)


def test_the_controller_manifest_runs_in_the_sandbox_and_reverts_a_wedge(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """Rehearsal: the shipped Deployment, applied with kubectl, runs `slots controller` as a pod
    with its service account's in-cluster credentials, leads, and flips a wedge back."""
    box = sandbox
    manifest = tmp_path / "controller.yaml"
    manifest.write_text(_adapted_controller_manifest(box))
    applied = box.kubectl("apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr

    def holder() -> str:
        try:
            return str(box.get("lease", "gx10slots-controller")["spec"].get("holderIdentity"))
        except httpx.HTTPStatusError:
            return ""

    wait_for(
        lambda: holder().startswith("controller:gx10slots-controller@gx10slots-controller-"),
        timeout=120,
        what="the controller pod to lead",
    )
    result = box.cli(
        "deploy", f"sandbox/wedge-after-{WEDGE_AFTER_S}s", "--served-name", "sandbox-v2", "--flip"
    )
    assert result.code == 0, result.err
    assert box.flag() == "green"
    wait_for(
        lambda: box.flag() == "blue", timeout=WEDGE_AFTER_S + 60, what="the controller's revert"
    )
    entry = wait_for(
        lambda: next((e for e in box.history() if e["action"] == "auto-revert"), None),
        what="the auto-revert's history entry",
    )
    assert (entry["action"], entry["to"], entry["result"]) == ("auto-revert", "blue", "ok")
    assert entry["by"] == holder()  # the pod that leads, as the controller records itself
