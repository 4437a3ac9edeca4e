"""`slots deploy` on the sandbox with real model-server processes (issue 6)."""

from __future__ import annotations

import shlex
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest
import yaml

from tests.e2e.conftest import Sandbox, wait_for

pytestmark = pytest.mark.e2e


class ProductionTraffic:
    """A background loop of chat requests through the production endpoint, counting outcomes."""

    def __init__(self, endpoint: str) -> None:
        self.endpoint = endpoint
        self.outcomes: Counter[str] = Counter()
        self.served_by: Counter[str] = Counter()
        self.backends: Counter[str] = Counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        with httpx.Client(timeout=10) as client:
            while not self._stop.is_set():
                try:
                    response = client.post(
                        f"{self.endpoint}/v1/chat/completions",
                        json={
                            "messages": [{"role": "user", "content": "Say pong"}],
                            "max_tokens": 4,
                        },
                    )
                    ok = response.status_code == 200
                    self.outcomes["ok" if ok else f"http {response.status_code}"] += 1
                    if ok:
                        self.served_by[response.json()["model"]] += 1
                        self.backends[response.headers.get("x-gx10-backend", "?")] += 1
                except httpx.HTTPError as exc:
                    self.outcomes[type(exc).__name__] += 1

    def __enter__(self) -> ProductionTraffic:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    @property
    def failures(self) -> int:
        return sum(n for outcome, n in self.outcomes.items() if outcome != "ok")


def test_deploy_smoke_flip_flip_back_park_with_zero_failed_production_requests(
    sandbox: Sandbox,
) -> None:
    with ProductionTraffic(sandbox.info["prod_endpoint"]) as traffic:
        deployed = sandbox.cli(
            "-o",
            "json",
            "deploy",
            "org/model-v2",
            "--served-name",
            "v2",
            "--flip",
            "--format",
            "json,md,junit",
        )
        assert deployed.code == 0, deployed.err
        assert sandbox.production() == "v2"
        assert sandbox.cli("flip-back").code == 0
        assert sandbox.production() == "sandbox-ok"
        # green served before the flip-back: parking that fallback is a deliberate override.
        assert sandbox.cli("park", "--replace-fallback").code == 0
    print(f"production requests during deploy/flip/flip-back/park: {dict(traffic.outcomes)}")
    assert traffic.outcomes["ok"] > 20
    assert traffic.failures == 0, traffic.outcomes
    assert {"sandbox-ok", "v2"} <= set(traffic.served_by)
    doc = deployed.json()
    assert doc["slot"] == "green" and doc["flip"]["to"] == "green"
    assert [p.rsplit(".", 1)[1] for p in doc["reports"]] == ["json", "md", "xml"]


def test_rerunning_a_finished_deploy_converges_without_a_second_entry(sandbox: Sandbox) -> None:
    assert sandbox.cli("deploy", "org/model-v2").code == 0
    again = sandbox.cli("-o", "json", "deploy", "org/model-v2")
    assert again.code == 0, again.err
    assert again.json()["changed"] is False
    assert "going straight to smoke" in again.err
    assert [e["action"] for e in sandbox.history()] == ["deploy"]


def test_dry_run_shows_the_plan_and_changes_nothing(sandbox: Sandbox) -> None:
    before = sandbox.versions()
    result = sandbox.cli(
        "-o",
        "json",
        "deploy",
        "org/model-v2",
        "--env",
        "VLLM_X=1",
        "--memory-gib",
        "58",
        "--dry-run",
    )
    assert result.code == 0, result.err
    plan = result.json()
    assert plan["slot"] == "green"
    assert "replicas 0 -> 1" in plan["changes"]
    assert "memory fits" in plan["memory"]
    assert sandbox.versions() == before


def test_wedged_model_fails_smoke_within_its_timeout(sandbox: Sandbox) -> None:
    sandbox.set_smoke(probe_timeout="2s", deadline="30s")
    started = time.monotonic()
    result = sandbox.cli("deploy", "sandbox/wedge", "--flip")
    elapsed = time.monotonic() - started
    assert result.code == 1, result.err
    assert "smoke failed" in result.err and "known-answer" in result.err
    assert elapsed < 25
    assert sandbox.flag() == "blue"
    assert sandbox.history()[0]["result"] == "failed"


def test_crashing_model_fails_fast_naming_crashloop_and_showing_logs(sandbox: Sandbox) -> None:
    started = time.monotonic()
    result = sandbox.cli("deploy", "sandbox/crash", "--timeout", "5m")
    assert result.code == 1, result.err
    assert time.monotonic() - started < 60
    assert "CrashLoopBackOff" in result.err
    assert "log lines" in result.err and "sandbox/crash" in result.err
    pods = sandbox.kubectl("get", "pods")
    assert "CrashLoopBackOff" in pods.stdout or "Error" in pods.stdout, pods.stdout
    assert sandbox.flag() == "blue"


def test_a_pod_the_quota_refuses_fails_the_deploy_in_seconds_naming_the_quota(
    sandbox: Sandbox,
) -> None:
    """Issue 14: a ResourceQuota that the new slot's pod would exceed. The pod is never created
    (FailedCreate on the ReplicaSet, ReplicaFailure on the Deployment); deploy used to wait its
    whole --timeout saying "no pod yet"."""
    quota = sandbox.dir / "quota.yaml"
    quota.write_text(
        "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: gpu-memory\n"
        "spec:\n  hard:\n    limits.memory: 100Gi\n"
    )
    applied = sandbox.kubectl("apply", "-f", str(quota))
    assert applied.returncode == 0, applied.stderr
    production = sandbox.production()
    started = time.monotonic()
    result = sandbox.cli("deploy", "org/model-v2", "--flip", "--timeout", "20m")
    elapsed = time.monotonic() - started
    assert result.code == 1, result.err
    assert elapsed < 60
    assert "rollout failed: FailedCreate" in result.err
    assert (
        "exceeded quota: gpu-memory" in result.err and "limited: limits.memory=100Gi" in result.err
    )
    assert "raise the quota" in result.err
    assert sandbox.flag() == "blue"
    assert sandbox.production() == production
    entry = sandbox.history()[0]
    assert (entry["action"], entry["to"], entry["result"]) == ("deploy", "green", "failed")
    assert "exceeded quota: gpu-memory" in entry["detail"]
    # kubectl lists the ReplicaSet controller's core/v1 Event and the tool's events.k8s.io/v1 one.
    events = sandbox.kubectl("get", "events")
    assert "FailedCreate" in events.stdout and "DeployFailed" in events.stdout, events.stdout


def test_slow_loading_model_fails_on_the_deadline(sandbox: Sandbox) -> None:
    started = time.monotonic()
    result = sandbox.cli("deploy", "sandbox/loading-30s", "--timeout", "3s")
    elapsed = time.monotonic() - started
    assert result.code == 1, result.err
    assert "not ready after 3 s" in result.err
    assert 3 <= elapsed < 15


def test_model_that_does_not_fit_its_memory_limit_is_oomkilled(sandbox: Sandbox) -> None:
    """When the gate is told a wrong node size (110 GiB configured, 128 GiB real), vLLM's
    0.45 x 128 GiB = 57.6 GiB still does not fit a 50 GiB limit: the rollout says OOMKilled."""
    sandbox.set_config("memory", node_capacity_gib=110, reserve_gib=0)
    result = sandbox.cli("deploy", "org/model-v2", "--memory-gib", "50", "--timeout", "2m")
    assert result.code == 1, result.err
    assert "OOMKilled" in result.err


def test_a_limit_below_the_engines_reservation_is_refused_and_nothing_is_written(
    sandbox: Sandbox,
) -> None:
    """Issue 13: the sandbox's slots run vLLM with --gpu-memory-utilization 0.45 on a 128 GiB
    node, so the engine takes 57.6 GiB whatever the limit: a 56 GiB limit would be OOMKilled."""
    before = sandbox.versions()
    for extra in ((), ("--dry-run",)):
        result = sandbox.cli("deploy", "sandbox/ok", "--memory-gib", "56", *extra)
        assert result.code == 3, result.err
        assert "would reserve --gpu-memory-utilization 0.45 x node 128 GiB = 57.6 GiB" in (
            result.err
        )
        assert "give the slot at least 57.6 GiB (--memory-gib 58)" in result.err
    assert sandbox.versions() == before
    assert sandbox.history() == []


def test_a_budget_larger_than_the_node_is_refused_before_any_write(sandbox: Sandbox) -> None:
    """Issue 19 item 9: `--memory-gib 1000000` used to write `1e+06Gi`, which the API server
    refuses, and ended in exit 4 ("kept changing under us")."""
    before = sandbox.versions()
    result = sandbox.cli("deploy", "sandbox/ok", "--memory-gib", "1000000")
    assert result.code == 3, result.err
    assert "1000000 GiB is larger than the node (128 GiB)" in result.err
    assert sandbox.versions() == before


def test_an_unknown_budget_is_refused_unless_allowed(sandbox: Sandbox) -> None:
    """A standby with no memory limit, request, annotation or vLLM fraction: the gate cannot
    prove it fits, so it refuses; --allow-unknown-memory goes ahead with a warning."""
    green = "/apis/apps/v1/namespaces/gx10/deployments/gx10-green"
    sandbox.api(
        "PATCH",
        green,
        [
            {"op": "remove", "path": "/spec/template/spec/containers/0/resources"},
            {"op": "remove", "path": "/spec/template/spec/containers/0/args"},
        ],
        "application/json-patch+json",
    )
    # The controller writes the status of that change a moment later: settled first, so that
    # any change of resourceVersion after it is the deploy's.
    wait_for(
        lambda: (lambda d: d["status"].get("observedGeneration") == d["metadata"]["generation"])(
            sandbox.get("deployment", "gx10-green")
        ),
        what="the controller to observe the patched template",
    )
    before = sandbox.versions()
    # vLLM (the sandbox's engine) without --gpu-memory-utilization reserves its default 0.9 of
    # the node: known, and too much beside the active slot.
    too_much = sandbox.cli("deploy", "org/model-v2")
    assert too_much.code == 3, too_much.err
    assert "115.2 GiB" in too_much.err
    assert sandbox.versions() == before
    # An engine that reserves nothing of its own: with no limit, the budget is unknown.
    path = sandbox.dir / "slots.yaml"
    config = yaml.safe_load(path.read_text())
    config["engine"] = "openai"
    path.write_text(yaml.safe_dump(config))
    refused = sandbox.cli("deploy", "org/model-v2")
    assert refused.code == 3, refused.err
    assert "memory unknown: slot green has no memory budget" in refused.err
    assert "--allow-unknown-memory" in refused.err
    assert sandbox.versions() == before
    allowed = sandbox.cli("deploy", "org/model-v2", "--allow-unknown-memory", "--dry-run")
    assert allowed.code == 0, allowed.err
    assert "memory not checked (--allow-unknown-memory)" in allowed.err + allowed.out


def test_the_runbooks_deploy_example_passes_the_gate(sandbox: Sandbox) -> None:
    """The example operators copy (docs/runbook.md) must not be one the gate refuses."""
    runbook = (Path(__file__).parents[2] / "docs" / "runbook.md").read_text(encoding="utf-8")
    line = next(
        line for line in runbook.splitlines() if line.startswith("slots deploy Qwen/Qwen3-14B")
    )
    args = shlex.split(line)[1:]
    result = sandbox.cli("-o", "json", *args, "--dry-run")
    assert result.code == 0, result.err
    assert result.json()["memory"].startswith("memory fits: ")


def test_a_fractional_memory_budget_converges_and_a_rerun_writes_nothing(
    sandbox: Sandbox,
) -> None:
    """Issue 14: the API server stores 60.5 GiB as `61952Mi`; the rollout must still be seen as
    done (the revision survives canonical quantities) and a re-run must write nothing."""
    sandbox.set_config("memory", reserve_gib=7.5)  # 60 + 60.5 + 7.5 = 128 GiB
    first = sandbox.cli("deploy", "org/model-v2", "--memory-gib", "60.5", "--timeout", "60s")
    assert first.code == 0, first.err
    green = sandbox.get("deployment", "gx10-green")
    resources = green["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["limits"]["memory"] == resources["requests"]["memory"] == "61952Mi"
    again = sandbox.cli(
        "-o", "json", "deploy", "org/model-v2", "--memory-gib", "60.5", "--timeout", "60s"
    )
    assert again.code == 0, again.err
    assert again.json()["changed"] is False
    after = sandbox.get("deployment", "gx10-green")
    assert after["metadata"]["generation"] == green["metadata"]["generation"]  # no new write
    assert "going straight to smoke" in again.err


def test_park_on_failure_frees_the_standby(sandbox: Sandbox) -> None:
    result = sandbox.cli("deploy", "sandbox/crash", "--park-on-failure")
    assert result.code == 1
    assert "parked" in result.err
    assert sandbox.get("deployment", "gx10-green")["spec"]["replicas"] == 0


def test_bad_env_and_model_names_are_usage_errors(sandbox: Sandbox) -> None:
    before = sandbox.versions()
    assert sandbox.cli("deploy", "org/m", "--env", "NOEQUALS").code == 2
    assert sandbox.cli("deploy", "org/m", "--env", "MODEL=x").code == 2
    assert sandbox.cli("deploy", "org/m; rm -rf /").code == 2
    assert sandbox.cli("deploy", "org/m", "--timeout", "soon").code == 2
    assert sandbox.versions() == before


def test_smoke_records_when_it_can_and_its_verdict_decides_the_exit(sandbox: Sandbox) -> None:
    assert sandbox.cli("deploy", "org/model-v2").code == 0
    # Someone else holds the lease: the suite still runs, its verdict is the exit code.
    sandbox.merge_patch(
        "lease",
        "gx10slots-lock",
        {
            "spec": {
                "holderIdentity": "alice@laptop:42",
                "leaseDurationSeconds": 30,
                "renewTime": _now(),
                "acquireTime": _now(),
            }
        },
    )
    result = sandbox.cli("-o", "json", "smoke", "standby")
    assert result.code == 0, result.err
    doc = result.json()
    assert doc["passed"] is True and doc["recorded"] is False
    assert "not recorded" in result.err and "alice@laptop:42" in result.err


def test_an_unwritable_report_dir_is_refused_before_anything_changes(sandbox: Sandbox) -> None:
    before = sandbox.versions()
    result = sandbox.cli("deploy", "org/model-v2", "--report-dir", "/proc/nope")
    assert result.code == 2
    assert "not writable" in result.err
    assert sandbox.versions() == before
    assert sandbox.cli("smoke", "active", "--report-dir", "/proc/nope").code == 2


def _now() -> str:
    from gx10slots.kube.values import micro_time

    return micro_time()


def test_the_served_name_clients_use_survives_a_swap_by_default(sandbox: Sandbox) -> None:
    result = sandbox.cli("-o", "json", "deploy", "org/model-v2", "--flip")
    assert result.code == 0, result.err
    assert result.json()["served_name"] == "sandbox-ok"
    assert sandbox.production() == "sandbox-ok"
    status = sandbox.cli("-o", "json", "status").json()
    assert status["slots"]["green"]["model"] == "org/model-v2"
