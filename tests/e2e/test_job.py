"""docs/manifests/job-deploy.yaml rehearsed: applied with kubectl to the sandbox, the Job runs the
installed `slots` inside it with the service account's in-cluster credentials (no kubeconfig),
and succeeds; production is then on the new slot, recorded as the Job's user."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.sandbox import Sandbox
from tests.helpers.wait import wait_for

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]

MANIFESTS = Path(__file__).resolve().parents[2] / "docs" / "manifests"


def _adapted_job_manifest(sandbox: Sandbox, model: str = "org/model-v2") -> str:
    """The manifest with what differs in the sandbox: its slots.yaml (loopback endpoints instead
    of cluster DNS), a model it serves, and a short guard window. Everything else as shipped."""
    docs = list(yaml.safe_load_all((MANIFESTS / "job-deploy.yaml").read_text()))
    config_map = next(d for d in docs if d["kind"] == "ConfigMap")
    job = next(d for d in docs if d["kind"] == "Job")
    config = yaml.safe_load((sandbox.dir / "slots.yaml").read_text())
    config["smoke"]["report_dir"] = "/reports"
    config_map["data"]["slots.yaml"] = yaml.safe_dump(config)
    container = job["spec"]["template"]["spec"]["containers"][0]
    replaced = {
        "Qwen/Qwen3-14B": model,
        "--served-name=qwen3-14b": "--served-name=model-v2",
        "--timeout=25m": "--timeout=2m",
        "--guard=10m": "--guard=2s",
    }
    container["args"] = [replaced.get(a, a) for a in container["args"]]
    assert model in container["args"] and "--guard=2s" in container["args"]
    # A volume over the directory this checkout (and its .venv) lives in, as the manifest's /tmp
    # emptyDir is for a checkout under /tmp: the pod must still run the installed `slots`.
    above = str(Path(__file__).resolve().parents[3])
    if above != "/" and above not in {m["mountPath"] for m in container["volumeMounts"]}:
        container["volumeMounts"].append({"name": "over-the-checkout", "mountPath": above})
        job["spec"]["template"]["spec"]["volumes"].append(
            {"name": "over-the-checkout", "emptyDir": {}}
        )
    return yaml.safe_dump_all(docs)


def _job(sandbox: Sandbox) -> dict[str, Any]:
    out = sandbox.kubectl("get", "job", "gx10slots-deploy", "-o", "json")
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def _apply(sandbox: Sandbox, manifest: Path) -> None:
    for path in (MANIFESTS / "rbac.yaml", manifest):
        applied = sandbox.kubectl("apply", "-f", str(path))
        assert applied.returncode == 0, applied.stderr


def _finished(sandbox: Sandbox) -> dict[str, Any] | None:
    status = _job(sandbox).get("status") or {}
    done = {c["type"] for c in status.get("conditions") or [] if c.get("status") == "True"}
    return status if done & {"Complete", "Failed"} else None


def test_a_failing_slots_run_fails_the_job_with_its_exit_code(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    """`sandbox/crash` never becomes ready (CrashLoopBackOff: slots exits 1): the pod ends with
    slots' exit code, the Job is Failed at once (backoffLimit 0) and production stays."""
    manifest = tmp_path / "job-deploy.yaml"
    manifest.write_text(_adapted_job_manifest(sandbox, model="sandbox/crash"))
    _apply(sandbox, manifest)
    status = wait_for(lambda: _finished(sandbox), timeout=180, what="the Job to finish")
    assert status.get("failed") == 1 and "succeeded" not in status
    failed = next(c for c in status["conditions"] if c["type"] == "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    pods = json.loads(
        sandbox.kubectl("get", "pods", "-l", "job-name=gx10slots-deploy", "-o", "json").stdout
    )["items"]
    assert len(pods) == 1  # never retried
    (container,) = pods[0]["status"]["containerStatuses"]
    assert container["state"]["terminated"]["exitCode"] == 1
    assert pods[0]["status"]["phase"] == "Failed"
    assert sandbox.flag() == "blue"


def test_the_job_manifest_runs_slots_in_the_sandbox_and_succeeds(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    assert sandbox.flag() == "blue"
    manifest = tmp_path / "job-deploy.yaml"
    manifest.write_text(_adapted_job_manifest(sandbox))
    _apply(sandbox, manifest)
    status = wait_for(lambda: _finished(sandbox), timeout=180, what="the Job to finish")
    logs = sandbox.kubectl("logs", "job/gx10slots-deploy").stdout
    assert status.get("succeeded") == 1, logs[-3000:]
    assert {c["type"] for c in status["conditions"]} >= {"Complete", "SuccessCriteriaMet"}
    assert status.get("completionTime")
    table = sandbox.kubectl("get", "job", "gx10slots-deploy").stdout.split()
    assert table[5:8] == ["gx10slots-deploy", "Complete", "1/1"], table
    # What the Job did, seen from outside: production on the new model's slot, verified.
    assert sandbox.flag() == "green"
    assert sandbox.answering_slot() == "green"
    # The result is the JSON document that starts a line; progress lines before it may quote
    # JSON of their own (a tool call's arguments).
    start = 0 if logs.startswith("{\n") else logs.find("\n{\n") + 1
    result = json.loads(logs[start:]) if start > 0 or logs.startswith("{") else {}
    assert result.get("flip", {}).get("verified") is True, logs[-3000:]
    # It ran as the service account through RBAC, recorded as the Job's USER.
    latest = sandbox.history()[0]
    assert latest["action"] == "flip"
    assert latest["by"].startswith("gx10slots-job@gx10slots-deploy-")
