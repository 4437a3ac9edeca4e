"""The report that gated a flip kept in the cluster: any on-call sees it from `slots status`,
whichever machine ran the smoke (issue 15)."""

from __future__ import annotations

import functools
import json
import queue
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.sandbox import Sandbox, clean_env
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e

SUMMARY_CM = "gx10slots-smoke-green"


def _elsewhere(sandbox: Sandbox, tmp_path: Path) -> Path:
    """Another operator's machine: its own config directory, home and (empty) report directory,
    the same cluster."""
    other = tmp_path / "on-call"
    other.mkdir()
    shutil.copy(sandbox.dir / "kubeconfig", other / "kubeconfig")
    config = yaml.safe_load((sandbox.dir / "slots.yaml").read_text())
    config.setdefault("smoke", {})["report_dir"] = str(other / "reports")
    (other / "slots.yaml").write_text(yaml.safe_dump(config))
    return other


def _slots(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gx10slots", *args],
        env=clean_env(directory),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _status(directory: Path) -> dict[str, Any]:
    done = _slots(directory, "status", "-o", "json")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    return dict(json.loads(done.stdout))


def test_a_deploys_verdict_is_seen_from_another_machine_and_goes_stale_with_the_slot(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    other = _elsewhere(sandbox, tmp_path)
    assert _status(other)["slots"]["green"]["last_smoke"] is None

    deployed = sandbox.cli("-o", "json", "deploy", "sandbox/ok", "--served-name", "v2")
    assert deployed.code == 0, deployed.err
    report_file = Path(deployed.json()["smoke"]["report"]).name

    status = _status(other)
    green = status["slots"]["green"]
    last = green["last_smoke"]
    assert last["readable"] is True and last["passed"] is True
    assert last["revision"] == green["revision"] == deployed.json()["revision"]
    assert last["stale"] is False and last["recorded"] is True
    assert last["model"] == "sandbox/ok" and last["report"] == report_file
    assert "@" in last["by"] and last["command"].startswith("slots")
    assert last["probes"] and all(p["result"] in ("pass", "skip") for p in last["probes"])
    # Both slots' figures: the candidate's and production's active slot measured in the run.
    assert last["candidate"]["ttft_ms_p50"] is not None
    assert last["baseline"]["slot"] == "blue" and last["baseline"]["ttft_ms_p50"] is not None
    assert not (other / "reports").exists()  # nothing of it came from this machine's files
    assert status["warnings"] == [w for w in status["warnings"] if "summary" not in w]

    # The slot's template changes (a restart is a new revision): the verdict is stale.
    restarted = sandbox.kubectl("rollout", "restart", "deployment/gx10-green")
    assert restarted.returncode == 0, restarted.stderr
    green = _status(other)["slots"]["green"]
    assert green["last_smoke"]["stale"] is True and green["smoke"] is None
    assert green["last_smoke"]["revision"] != green["revision"]
    table = _slots(other, "status")
    assert table.returncode == 0, table.stderr
    assert "stale: passed" in table.stdout


def test_a_failed_smoke_is_kept_as_failed_with_both_slots_figures(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    other = _elsewhere(sandbox, tmp_path)
    failed = sandbox.cli("deploy", "sandbox/no-tools")
    assert failed.code == 1, failed.err

    green = _status(other)["slots"]["green"]
    last = green["last_smoke"]
    assert last["passed"] is False and last["model"] == "sandbox/no-tools"
    assert last["revision"] == green["revision"] and last["stale"] is False
    results = {p["name"]: p["result"] for p in last["probes"]}
    assert "fail" in results.values(), results
    assert last["baseline"]["slot"] == "blue"
    assert last["baseline"]["capabilities"]["tool_calls"] is True
    wide = _slots(other, "status", "-o", "wide")
    assert wide.returncode == 0, wide.stderr
    line = next(x for x in wide.stdout.splitlines() if x.startswith("last smoke of green"))
    assert "FAILED" in line and "active blue" in line


def test_a_garbled_or_oversized_summary_leaves_status_working_and_the_next_smoke_rewrites_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    other = _elsewhere(sandbox, tmp_path)
    assert sandbox.cli("deploy", "sandbox/ok", "--served-name", "v2").code == 0
    garbled = sandbox.kubectl(
        "patch", "configmap", SUMMARY_CM, "--type", "merge", "-p",
        json.dumps({"data": {"summary.json": '{"schema": "gx10slots.io/smoke-summary/v1", \x1b'}}),
    )  # fmt: skip
    assert garbled.returncode == 0, garbled.stderr
    status = _status(other)
    assert status["slots"]["green"]["last_smoke"] == {
        "readable": False,
        "error": "key summary.json is not valid JSON",
    }
    assert any("unreadable" in w and SUMMARY_CM in w for w in status["warnings"])
    table = _slots(other, "status")
    assert table.returncode == 0 and "Traceback" not in table.stderr
    # The gate's record on the Deployment is untouched: flip still has its evidence.
    assert "passed" in table.stdout and status["slots"]["green"]["smoke"]["passed"] is True

    oversized = tmp_path / "oversized.json"
    oversized.write_text(json.dumps({"data": {"summary.json": "x" * 900_000, "foreign": "?"}}))
    big = sandbox.kubectl(
        "patch", "configmap", SUMMARY_CM, "--type", "merge", "--patch-file", str(oversized)
    )  # fmt: skip
    assert big.returncode == 0, big.stderr
    last = _status(other)["slots"]["green"]["last_smoke"]
    assert last["readable"] is False and "oversized" in last["error"]

    # A ConfigMap the API server will not give (an error every time): status goes on.
    sandbox.fault(action="error", verb="get", resource="configmaps", name=SUMMARY_CM, count=50)
    status = _status(other)
    assert status["slots"]["green"]["last_smoke"]["readable"] is False
    assert (
        "cannot read ConfigMap gx10slots-smoke-green"
        in status["slots"]["green"]["last_smoke"]["error"]
    )
    assert status["active"] == "blue" and status["slots"]["green"]["smoke"]["passed"] is True
    sandbox.clear_faults()

    # The next smoke (from the other machine this time) writes the summary whole again.
    assert _slots(other, "smoke", "green").returncode == 0
    last = _status(sandbox.dir)["slots"]["green"]["last_smoke"]
    assert last["readable"] is True and last["passed"] is True
    assert set(sandbox.get("configmap", SUMMARY_CM)["data"]) == {"summary.json"}


def test_a_summary_that_cannot_be_written_warns_and_never_fails_the_deploy(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    other = _elsewhere(sandbox, tmp_path)
    # The first ConfigMap this deploy creates is the summary (history is written after it); a
    # create carries no name in its path, so the rule cannot name it.
    sandbox.fault(action="error", verb="create", resource="configmaps", count=1)
    deployed = sandbox.cli("deploy", "sandbox/ok", "--served-name", "v2")
    assert deployed.code == 0, deployed.err
    assert f"was not kept in ConfigMap {SUMMARY_CM}" in deployed.err
    green = _status(other)["slots"]["green"]
    assert green["last_smoke"] is None
    # The gate's record was written: flip has what it needs.
    assert green["smoke"]["passed"] is True
    # Once the summary exists, a refused update warns the same way and changes nothing.
    assert _slots(other, "smoke", "green").returncode == 0
    kept = sandbox.get("configmap", SUMMARY_CM)
    sandbox.fault(action="error", verb="patch", resource="configmaps", name=SUMMARY_CM, count=5)
    smoked = _slots(other, "smoke", "green")
    assert smoked.returncode == 0, smoked.stderr
    assert f"was not kept in ConfigMap {SUMMARY_CM}" in smoked.stderr
    assert sandbox.get("configmap", SUMMARY_CM)["data"] == kept["data"]


def test_status_watch_redraws_when_a_smoke_summary_changes(sandbox: Sandbox) -> None:
    assert sandbox.cli("deploy", "sandbox/ok", "--served-name", "v2").code == 0
    proc = sandbox.spawn("status", "--watch")
    lines: queue.Queue[str] = queue.Queue()
    stdout = proc.stdout
    assert stdout is not None

    def read() -> None:
        for line in stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    seen: list[str] = []

    def shows(text: str) -> bool:
        while not lines.empty():
            seen.append(lines.get())
        return any(text in line for line in seen)

    try:
        wait_for(lambda: shows("lock: free"), 30, "the first status")
        # Twice: the second change comes when the watch's first redraws are long over, so only
        # a watch on the ConfigMap itself redraws within 15 s (the periodic redraw is every 30 s).
        for garbage, says in (("garbage", "not valid JSON"), ("{}", "not a gx10slots smoke")):
            garbled = sandbox.kubectl(
                "patch", "configmap", SUMMARY_CM, "--type", "merge", "-p",
                json.dumps({"data": {"summary.json": garbage}}),
            )  # fmt: skip
            assert garbled.returncode == 0, garbled.stderr
            wait_for(functools.partial(shows, says), 15, f"a redraw saying {says!r}")
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=90)
