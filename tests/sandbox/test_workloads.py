"""Workload fidelity: ReplicaSets between Deployments and Pods, ResourceQuota admission with
FailedCreate / ReplicaFailure as kube-controller-manager reports them, the controller's lag behind
a change, and the Events kubectl lists."""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from gx10slots.sandbox.controller import REVISION, Controller
from gx10slots.sandbox.resources import DEPLOYMENTS
from tests.helpers.apiserver import NAMESPACE, Sandbox, deployment, wait_for
from tests.helpers.kubectl import Kubectl


def _quota(name: str = "gpu-memory", **hard: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ResourceQuota",
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {"hard": hard},
    }


def _condition(obj: Any, kind: str) -> Any:
    return next((c for c in obj.status.conditions or [] if c.type == kind), None)


def _new_rs(apps: Any, name: str = "blue") -> Any:
    def find() -> Any:
        d = apps.read_namespaced_deployment(name, NAMESPACE)
        revision = (d.metadata.annotations or {}).get("deployment.kubernetes.io/revision")
        for rs in apps.list_namespaced_replica_set(NAMESPACE).items:
            if (rs.metadata.annotations or {}).get("deployment.kubernetes.io/revision") == revision:
                return rs
        return None

    return wait_for(find)


def test_quota_refuses_the_pod_and_the_failure_reaches_the_deployment(apps: Any, core: Any) -> None:
    core.create_namespaced_resource_quota(NAMESPACE, _quota(**{"requests.memory": "1Gi"}))
    apps.create_namespaced_deployment(NAMESPACE, deployment(memory="2Gi"))
    rs = _new_rs(apps)
    rs_name = rs.metadata.name

    def failed() -> Any:
        current = apps.read_namespaced_replica_set(rs_name, NAMESPACE)
        return current if _condition(current, "ReplicaFailure") else None

    rs = wait_for(failed)
    expected = (
        f'pods "{rs_name}-" is forbidden: exceeded quota: gpu-memory, requested: '
        "requests.memory=2Gi, used: requests.memory=0, limited: requests.memory=1Gi"
    )
    cond = _condition(rs, "ReplicaFailure")
    assert (cond.status, cond.reason, cond.message) == ("True", "FailedCreate", expected)
    assert not core.list_namespaced_pod(NAMESPACE).items  # nothing was created
    assert rs.spec.replicas == 1 and rs.status.replicas == 0

    def deployment_failed() -> Any:
        d = apps.read_namespaced_deployment("blue", NAMESPACE)
        return d if _condition(d, "ReplicaFailure") else None

    d = wait_for(deployment_failed)
    copied = _condition(d, "ReplicaFailure")
    assert (copied.status, copied.reason, copied.message) == ("True", "FailedCreate", expected)
    assert copied.last_update_time == copied.last_transition_time == cond.last_transition_time

    events = wait_for(
        lambda: [
            e
            for e in core.list_namespaced_event(
                NAMESPACE, field_selector=f"involvedObject.name={rs_name}"
            ).items
            if e.reason == "FailedCreate"
        ]
    )
    assert len(events) == 1  # repeats are counted on one Event, as the recorder correlates them
    event = events[0]
    assert (event.type, event.message) == ("Warning", f"Error creating: {expected}")
    assert (event.involved_object.kind, event.involved_object.uid) == (
        "ReplicaSet",
        rs.metadata.uid,
    )
    assert event.source.component == "replicaset-controller"
    # The same Event through events.k8s.io/v1 (one storage, as in Kubernetes).
    # (read raw: the typed client cannot decode the null eventTime a core/v1 Event has there)
    raw = client.EventsV1Api(core.api_client).list_namespaced_event(
        NAMESPACE, _preload_content=False
    )
    v1 = json.loads(raw.data)["items"]  # type: ignore[attr-defined]
    assert any(
        e["reason"] == "FailedCreate"
        and e["regarding"]["name"] == rs_name
        and e["note"] == f"Error creating: {expected}"
        for e in v1
    )

    # The quota controller's status shows the usage.
    quota = wait_for(
        lambda: (
            (q := core.read_namespaced_resource_quota("gpu-memory", NAMESPACE)).status
            and q.status.used
            and q
        )
    )
    assert quota.status.hard == {"requests.memory": "1Gi"}
    assert quota.status.used == {"requests.memory": "0"}

    # Raise the quota: the ReplicaSet retries, the pod is created and both conditions go.
    core.patch_namespaced_resource_quota(
        "gpu-memory", NAMESPACE, {"spec": {"hard": {"requests.memory": "4Gi"}}}
    )

    def recovered() -> Any:
        d = apps.read_namespaced_deployment("blue", NAMESPACE)
        return d if (d.status.available_replicas or 0) == 1 else None

    d = wait_for(recovered, timeout=60)
    assert _condition(d, "ReplicaFailure") is None
    assert (
        _condition(apps.read_namespaced_replica_set(rs_name, NAMESPACE), "ReplicaFailure") is None
    )
    pods = core.list_namespaced_pod(NAMESPACE).items
    assert [p.metadata.owner_references[0].name for p in pods] == [rs_name]
    quota = wait_for(
        lambda: (
            (q := core.read_namespaced_resource_quota("gpu-memory", NAMESPACE)).status.used
            == {"requests.memory": "2Gi"}
            and q
        )
    )


def test_a_refused_rollout_runs_out_its_progress_deadline(apps: Any, core: Any) -> None:
    core.create_namespaced_resource_quota(NAMESPACE, _quota(**{"requests.memory": "1Gi"}))
    apps.create_namespaced_deployment(NAMESPACE, deployment(memory="2Gi", deadline=1))

    def timed_out() -> Any:
        d = apps.read_namespaced_deployment("blue", NAMESPACE)
        cond = _condition(d, "Progressing")
        return d if cond and cond.reason == "ProgressDeadlineExceeded" else None

    d = wait_for(timed_out, timeout=15)
    assert _condition(d, "Progressing").status == "False"
    assert _condition(d, "ReplicaFailure").reason == "FailedCreate"
    assert not core.list_namespaced_pod(NAMESPACE).items


def _forbidden(core: Any, pod: dict[str, Any]) -> str:
    """The message of the 403 that creating ``pod`` meets."""
    with pytest.raises(ApiException) as refused:
        core.create_namespaced_pod(NAMESPACE, pod)
    assert refused.value.status == 403
    return str(json.loads(str(refused.value.body))["message"])


def test_quota_refuses_a_pod_created_through_the_api(core: Any) -> None:
    core.create_namespaced_resource_quota(NAMESPACE, _quota(**{"limits.memory": "64Gi"}))
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "big"},
        "spec": {
            "containers": [
                {"name": "engine", "image": "x", "resources": {"limits": {"memory": "80Gi"}}}
            ]
        },
    }
    assert _forbidden(core, pod) == (
        'pods "big" is forbidden: exceeded quota: gpu-memory, requested: limits.memory=80Gi, '
        "used: limits.memory=0, limited: limits.memory=64Gi"
    )
    # A quota on limits.memory makes every container state it (pods.go Constraints).
    no_limit = {**pod, "metadata": {"name": "small"}}
    no_limit["spec"] = {"containers": [{"name": "engine", "image": "x"}]}
    assert _forbidden(core, no_limit) == (
        'pods "small" is forbidden: failed quota: gpu-memory: '
        "must specify limits.memory for: engine"
    )
    fits = {**pod, "metadata": {"name": "fits"}}
    fits["spec"] = {
        "containers": [
            {"name": "engine", "image": "x", "resources": {"limits": {"memory": "60Gi"}}}
        ]
    }
    core.create_namespaced_pod(NAMESPACE, fits)
    assert [p.metadata.name for p in core.list_namespaced_pod(NAMESPACE).items] == ["fits"]
    with pytest.raises(ApiException):  # 60Gi used: another 60Gi no longer fits
        core.create_namespaced_pod(NAMESPACE, {**fits, "metadata": {"name": "second"}})


def test_observed_generation_trails_generation_for_a_moment(apps: Any, sandbox: Sandbox) -> None:
    """The Deployment's status is the controller's, written a moment after each change."""
    apps.create_namespaced_deployment(NAMESPACE, deployment())
    wait_for(lambda: apps.read_namespaced_deployment("blue", NAMESPACE).status.observed_generation)
    written: dict[str, float] = {}
    sub = sandbox.store.subscribe()
    try:
        apps.patch_namespaced_deployment(
            "blue", NAMESPACE, {"spec": {"template": {"metadata": {"labels": {"rev": "2"}}}}}
        )
        deadline = time.monotonic() + 10
        while "observed" not in written and time.monotonic() < deadline:
            event = sub.get(timeout=0.5)
            if event is None or event.storage != DEPLOYMENTS.storage:
                continue
            meta, status = event.object["metadata"], event.object.get("status") or {}
            if meta.get("generation") == 2:
                written.setdefault("generation", time.monotonic())
            if status.get("observedGeneration") == 2:
                written.setdefault("observed", time.monotonic())
    finally:
        sub.close()
    assert written["observed"] - written["generation"] >= sandbox.controller.status_delay * 0.9


def test_deleted_deployment_takes_its_replicasets_and_pods(apps: Any, core: Any) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment())
    wait_for(lambda: core.list_namespaced_pod(NAMESPACE).items)
    assert apps.list_namespaced_replica_set(NAMESPACE).items
    apps.delete_namespaced_deployment("blue", NAMESPACE)
    wait_for(
        lambda: (
            not apps.list_namespaced_replica_set(NAMESPACE).items
            and not core.list_namespaced_pod(NAMESPACE).items
        )
    )


def test_recreate_keeps_the_old_replicaset_at_zero(apps: Any) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment())
    first = _new_rs(apps)
    apps.patch_namespaced_deployment(
        "blue", NAMESPACE, {"spec": {"template": {"metadata": {"labels": {"rev": "2"}}}}}
    )

    def rolled() -> Any:
        d = apps.read_namespaced_deployment("blue", NAMESPACE)
        done = (
            d.status.observed_generation == 2
            and (d.status.updated_replicas or 0) == 1
            and (d.status.available_replicas or 0) == 1
            and (d.status.replicas or 0) == 1
        )
        return d if done else None

    wait_for(rolled, timeout=20)
    second = _new_rs(apps)
    assert second.metadata.name != first.metadata.name
    assert second.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    old = wait_for(
        lambda: (
            (rs := apps.read_namespaced_replica_set(first.metadata.name, NAMESPACE)).spec.replicas
            == 0
            and rs
        )
    )
    assert old.metadata.annotations["deployment.kubernetes.io/revision"] == "1"


# -- with the real kubectl ------------------------------------------------------------------


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_quota_events_and_replicasets(tls_sandbox: Sandbox, kubectl: Kubectl) -> None:
    kubectl.ok(
        "apply",
        "-f",
        "-",
        input=(
            "apiVersion: v1\nkind: ResourceQuota\nmetadata:\n  name: gpu-memory\n"
            "spec:\n  hard:\n    requests.memory: 1Gi\n"
        ),
    )
    tls_sandbox.server.seed(deployment(memory="2Gi"))

    def listed() -> str | None:
        out = kubectl.ok("get", "events")
        return out if "FailedCreate" in out else None

    out = wait_for(listed, timeout=20)
    assert "exceeded quota: gpu-memory" in out
    assert "replicaset/blue-" in out

    def has(args: tuple[str, ...], text: str) -> str | None:
        out = kubectl.ok(*args)
        return out if text in out else None

    rs_table = wait_for(lambda: has(("get", "rs"), "blue-"))
    assert rs_table.split("\n")[0].split()[:4] == ["NAME", "DESIRED", "CURRENT", "READY"]
    reasons = ("get", "deploy", "blue", "-o", "jsonpath={.status.conditions[*].reason}")
    wait_for(lambda: has(reasons, "FailedCreate"))
    quota = kubectl.ok("get", "quota", "gpu-memory", "-o", "jsonpath={.status.used}")
    assert "requests.memory" in quota


@pytest.mark.e2e
@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_rollout_history_and_undo_use_the_replicasets(
    tls_sandbox: Sandbox, kubectl: Kubectl
) -> None:
    """`kubectl rollout history` reads the ReplicaSets' revisions; `rollout undo` copies an old
    ReplicaSet's template back, and the controller brings that ReplicaSet back (FindNewReplicaSet
    compares templates ignoring the hash) under a new revision."""
    tls_sandbox.server.seed(deployment())
    kubectl.ok("rollout", "status", "deploy/blue", "--timeout=30s")
    first = kubectl.ok("get", "rs", "-o", "name").split()
    kubectl.ok("set", "env", "deploy/blue", "MODEL=sandbox/v2")
    kubectl.ok("rollout", "status", "deploy/blue", "--timeout=30s")
    history = kubectl.ok("rollout", "history", "deploy/blue")
    assert [line.split()[0] for line in history.strip().splitlines()[2:]] == ["1", "2"]
    kubectl.ok("rollout", "undo", "deploy/blue")
    kubectl.ok("rollout", "status", "deploy/blue", "--timeout=30s")
    assert len(kubectl.ok("get", "rs", "-o", "name").split()) == 2  # no third ReplicaSet
    revived = first[0].split("/")[-1]
    rs = kubectl.ok(
        "get",
        "rs",
        revived,
        "-o",
        "jsonpath={.spec.replicas} {.metadata.annotations.deployment\\.kubernetes\\.io/revision}",
    )
    assert rs.split() == ["1", "3"]
    pods = kubectl.ok("get", "pods", "-o", "name").split()
    assert len(pods) == 1 and pods[0].startswith(f"pod/{revived}-")


def test_a_restarted_controller_continues_the_revisions_from_the_replicasets() -> None:
    from gx10slots.sandbox.apiserver import ApiServer
    from gx10slots.sandbox.store import Store
    from tests.helpers.apiserver import node

    store = Store()
    server = ApiServer(store)  # not started: used for seeding only
    server.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    server.seed(node())
    server.seed(deployment())

    def change_template(value: str) -> None:
        def change(d: dict[str, Any]) -> dict[str, Any]:
            d["spec"]["template"]["metadata"]["labels"]["rev"] = value
            return d

        store.mutate(DEPLOYMENTS, NAMESPACE, "blue", change)

    def revision() -> str:
        return str(store.get(DEPLOYMENTS, NAMESPACE, "blue")["metadata"]["annotations"][REVISION])

    first = Controller(store, status_delay=0)
    first.reconcile()
    change_template("2")
    first.reconcile()
    assert revision() == "2"
    first.stop()
    second = Controller(store, status_delay=0)  # knows nothing but what the store holds
    change_template("3")
    second.reconcile()
    assert revision() == "3"
    # A garbled revision annotation does not stop the controller.
    store.mutate(
        DEPLOYMENTS,
        NAMESPACE,
        "blue",
        lambda d: {**d, "metadata": {**d["metadata"], "annotations": {REVISION: "x"}}},
    )
    change_template("4")
    second.reconcile()
    assert revision() == "4"
    second.stop()


def test_a_replicaset_of_its_own_keeps_its_replicas(apps: Any, core: Any) -> None:
    template = deployment()["spec"]["template"]
    body = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "solo"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": template["metadata"]["labels"]},
            "template": template,
        },
    }
    apps.create_namespaced_replica_set(NAMESPACE, body)
    pods = wait_for(lambda: len(items := core.list_namespaced_pod(NAMESPACE).items) == 2 and items)
    assert {p.metadata.owner_references[0].name for p in pods} == {"solo"}
    assert all(p.metadata.name.startswith("solo-") for p in pods)
    rs = wait_for(
        lambda: (
            (r := apps.read_namespaced_replica_set("solo", NAMESPACE)).status.ready_replicas == 2
            and r
        )
    )
    assert rs.status.observed_generation == rs.metadata.generation
    apps.patch_namespaced_replica_set("solo", NAMESPACE, {"spec": {"replicas": 0}})
    wait_for(lambda: not core.list_namespaced_pod(NAMESPACE).items)
