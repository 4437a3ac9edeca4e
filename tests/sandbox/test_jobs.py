"""batch/v1 Jobs in the sandbox API: validated and defaulted like a real server's, and the job
controller's pods and status (the process kubelet's side runs in tests/e2e/test_job.py)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gx10slots.sandbox.jobs import JobController
from gx10slots.sandbox.resources import JOBS, PODS
from gx10slots.sandbox.runtime import PodStatusWriter
from tests.helpers.apiserver import NAMESPACE, TOKEN, Sandbox, wait_for

JOBS_PATH = f"/apis/batch/v1/namespaces/{NAMESPACE}/jobs"


def _job(name: str = "once", *, restart_policy: str = "Never", backoff: int = 0) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff,
            "template": {
                "spec": {
                    "restartPolicy": restart_policy,
                    "containers": [{"name": "slots", "image": "x", "command": ["slots"]}],
                }
            },
        },
    }


def _api(sandbox: Sandbox, method: str, path: str, body: Any = None) -> httpx.Response:
    return httpx.request(
        method,
        f"{sandbox.url}{path}",
        headers={"Authorization": f"Bearer {TOKEN}"},
        content=json.dumps(body) if body is not None else None,
        timeout=10,
    )


def test_batch_v1_is_discovered_and_a_job_is_defaulted(sandbox: Sandbox) -> None:
    resources = _api(sandbox, "GET", "/apis/batch/v1").json()["resources"]
    assert "jobs" in [r["name"] for r in resources]
    created = _api(sandbox, "POST", JOBS_PATH, _job())
    assert created.status_code == 201, created.text
    job = created.json()
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["batch.kubernetes.io/job-name"] == "once"
    uid = labels["batch.kubernetes.io/controller-uid"]
    assert job["spec"]["selector"] == {"matchLabels": {"batch.kubernetes.io/controller-uid": uid}}
    assert job["spec"]["completions"] == 1 and job["spec"]["parallelism"] == 1
    assert job["metadata"]["generation"] == 1


def test_a_job_whose_pods_restart_always_is_invalid(sandbox: Sandbox) -> None:
    refused = _api(sandbox, "POST", JOBS_PATH, _job(restart_policy="Always"))
    assert refused.status_code == 422
    assert "spec.template.spec.restartPolicy" in refused.text
    assert sandbox.store.find(JOBS, NAMESPACE, "once") is None


def test_a_jobs_pod_template_is_immutable(sandbox: Sandbox) -> None:
    job = _api(sandbox, "POST", JOBS_PATH, _job()).json()
    job["spec"]["template"]["spec"]["containers"][0]["command"] = ["other"]
    refused = _api(sandbox, "PUT", f"{JOBS_PATH}/once", job)
    assert refused.status_code == 422
    assert "field is immutable" in refused.text


def _pods_of(sandbox: Sandbox, job: str) -> list[dict[str, Any]]:
    pods, _ = sandbox.store.list(PODS)
    return [p for p in pods if p["metadata"]["labels"].get("batch.kubernetes.io/job-name") == job]


def _exit(sandbox: Sandbox, pod: dict[str, Any], code: int) -> None:
    """The container exits, once the (instant) kubelet has started it."""
    meta = pod["metadata"]

    def running() -> dict[str, Any] | None:
        current = sandbox.store.find(PODS, NAMESPACE, meta["name"]) or {}
        return current if (current.get("status") or {}).get("phase") == "Running" else None

    pod = wait_for(running)
    PodStatusWriter(sandbox.store).terminated(
        pod, reason="Completed" if code == 0 else "Error", exit_code=code
    )


def _status(sandbox: Sandbox, name: str) -> dict[str, Any]:
    job = sandbox.store.find(JOBS, NAMESPACE, name)
    assert job is not None
    return dict(job.get("status") or {})


def _types(status: dict[str, Any]) -> list[str]:
    return [c["type"] for c in status.get("conditions") or []]


@pytest.mark.parametrize("backoff", [0, 1])
def test_a_failed_pod_is_retried_up_to_the_backoff_limit_then_the_job_fails(
    sandbox: Sandbox, backoff: int
) -> None:
    _api(sandbox, "POST", JOBS_PATH, _job("flaky", backoff=backoff))
    jobs = JobController(sandbox.store)
    jobs.reconcile()
    (pod,) = _pods_of(sandbox, "flaky")
    owner = pod["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("Job", "flaky", True)
    assert _status(sandbox, "flaky")["active"] == 1
    for attempt in range(backoff + 1):
        (live,) = [
            p
            for p in _pods_of(sandbox, "flaky")
            if (p.get("status") or {}).get("phase") not in ("Failed", "Succeeded")
        ]
        _exit(sandbox, live, 1)
        jobs.reconcile()
        assert len(_pods_of(sandbox, "flaky")) == min(attempt + 2, backoff + 1)
    status = _status(sandbox, "flaky")
    assert status["failed"] == backoff + 1
    assert _types(status) == ["FailureTarget", "Failed"]
    assert status["conditions"][-1]["reason"] == "BackoffLimitExceeded"
    assert "succeeded" not in status and "completionTime" not in status


def test_a_pod_that_exits_0_completes_the_job(sandbox: Sandbox) -> None:
    _api(sandbox, "POST", JOBS_PATH, _job("done"))
    jobs = JobController(sandbox.store)
    jobs.reconcile()
    _exit(sandbox, _pods_of(sandbox, "done")[0], 0)
    jobs.reconcile()
    jobs.reconcile()  # a finished Job is left alone: no new pod, no second condition
    status = _status(sandbox, "done")
    assert status["succeeded"] == 1 and "active" not in status
    assert _types(status) == ["SuccessCriteriaMet", "Complete"]
    assert status["completionTime"] and status["startTime"]
    assert len(_pods_of(sandbox, "done")) == 1


def test_deleting_a_job_deletes_its_pods(sandbox: Sandbox) -> None:
    _api(sandbox, "POST", JOBS_PATH, _job("gone"))
    jobs = JobController(sandbox.store)
    jobs.reconcile()
    assert len(_pods_of(sandbox, "gone")) == 1
    assert _api(sandbox, "DELETE", f"{JOBS_PATH}/gone").status_code == 200
    jobs.reconcile()
    assert _pods_of(sandbox, "gone") == []
