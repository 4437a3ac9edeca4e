"""`slots sandbox up|down`: one per directory, nothing left behind even after a kill -9."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from gx10slots.sandbox import cluster
from tests.helpers.cli import run_cli
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except OSError:
        return False


def _children(directory: Path) -> list[int]:
    return [int(p.read_text().split()[0]) for p in (directory / "pids").glob("*.pid")]


def test_up_twice_is_refused_and_down_leaves_no_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "sb"
    up = run_cli(capsys, "-o", "json", "sandbox", "up", "--dir", str(directory), "--detach")
    assert up.code == 0, up.err
    info = up.json()
    assert {"apiserver", "prod_endpoint", "slots", "pid"} <= info.keys()
    for name in ("kubeconfig", "slots.yaml", "sandbox.json"):
        assert (directory / name).is_file()
    children = _children(directory)
    assert children and all(_alive(pid) for pid in children)
    again = run_cli(capsys, "sandbox", "up", "--dir", str(directory), "--detach")
    assert again.code == 2 and "already running" in again.err
    down = run_cli(capsys, "sandbox", "down", "--dir", str(directory))
    assert down.code == 0 and "stopped" in down.out
    assert not _alive(info["pid"])
    wait_for(lambda: not any(_alive(pid) for pid in children), what="model servers gone")
    assert not (directory / "sandbox.json").exists()


def test_model_servers_do_not_outlive_a_killed_sandbox(tmp_path: Path) -> None:
    directory = tmp_path / "sb"
    info = cluster.start_detached(directory, engine="fake")
    children = _children(directory)
    assert children
    os.kill(info["pid"], signal.SIGKILL)
    wait_for(lambda: not _alive(info["pid"]), what="the sandbox to die")
    # The kernel (PR_SET_PDEATHSIG) takes the children with it; `down` reaps any survivor.
    result = cluster.stop(directory)
    assert result["stopped"] is False
    wait_for(lambda: not any(_alive(pid) for pid in children), what="orphans gone")
    assert cluster.start_detached(directory, engine="fake")["pid"] != info["pid"]
    cluster.stop(directory)
