"""The simulated controllers: deployments, scheduling, endpoints, and the pod runtime seam."""

from __future__ import annotations

import re
import threading
from typing import Any

import pytest
from kubernetes import client

from gx10slots.sandbox.controller import Controller, template_hash
from gx10slots.sandbox.resources import DEPLOYMENTS, PODS, parse_quantity
from gx10slots.sandbox.runtime import PodStatusWriter, tail
from gx10slots.sandbox.store import Obj, Store
from gx10slots.sandbox.tables import pod_status_reason
from tests.helpers.apiserver import NAMESPACE, NODE, Sandbox, deployment, service, wait_for


def _pods(core: Any, **selector: str) -> list[Any]:
    label = ",".join(f"{k}={v}" for k, v in selector.items())
    return core.list_namespaced_pod(NAMESPACE, label_selector=label).items


def _condition(obj: Any, kind: str) -> Any:
    return next((c for c in obj.status.conditions or [] if c.type == kind), None)


def _available(apps: Any, name: str, replicas: int) -> Any:
    def check() -> Any:
        d = apps.read_namespaced_deployment(name, NAMESPACE)
        progressing = _condition(d, "Progressing")
        done = (
            d.status.observed_generation == d.metadata.generation
            and (d.status.available_replicas or 0) == replicas
            and (d.status.updated_replicas or 0) == replicas
            and (d.status.replicas or 0) == replicas
            and progressing is not None
            and progressing.reason == "NewReplicaSetAvailable"
        )
        return d if done else None

    return wait_for(check)


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("128Gi", 128 * 2**30),
        ("60G", 60e9),
        ("512Mi", 512 * 2**20),
        ("1Ki", 1024),
        ("1k", 1000),
        ("1e9", 1e9),
        (2048, 2048),
        ("100m", 0.1),
        ("1Ti", 2**40),
        ("5M", 5e6),
    ],
)
def test_quantities(text: object, value: float) -> None:
    assert parse_quantity(text) == pytest.approx(value)


def test_quantity_errors() -> None:
    with pytest.raises(ValueError):
        parse_quantity("12 GB")


def test_deployment_creates_scheduled_pods_and_reports_available(apps: Any, core: Any) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment(replicas=2))
    d = _available(apps, "blue", 2)
    assert (d.status.ready_replicas, d.status.unavailable_replicas) == (2, None)
    available = _condition(d, "Available")
    assert (available.status, available.reason) == ("True", "MinimumReplicasAvailable")
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    pods = _pods(core, slot="blue")
    assert len(pods) == 2
    pod_hash = pods[0].metadata.labels["pod-template-hash"]
    for pod in pods:
        assert re.fullmatch(rf"blue-{pod_hash}-[a-z0-9]{{5}}", pod.metadata.name)
        assert pod.metadata.labels == {
            "app": "model",
            "slot": "blue",
            "pod-template-hash": pod_hash,
        }
        owner = pod.metadata.owner_references[0]
        assert (owner.kind, owner.name, owner.controller) == (
            "ReplicaSet",
            f"blue-{pod_hash}",
            True,
        )
        assert pod.spec.node_name == NODE
        assert (pod.status.phase, pod.status.pod_ip) == ("Running", "127.0.0.1")
        assert pod.status.container_statuses[0].ready
        assert pod.status.container_statuses[0].restart_count == 0
    # The Deployment owns the ReplicaSet that owns the pods (sync.go getNewReplicaSet).
    rs = apps.read_namespaced_replica_set(f"blue-{pod_hash}", NAMESPACE)
    rs_owner = rs.metadata.owner_references[0]
    assert (rs_owner.kind, rs_owner.uid, rs_owner.controller) == (
        "Deployment",
        d.metadata.uid,
        True,
    )
    assert rs.metadata.annotations["deployment.kubernetes.io/revision"] == "1"
    assert rs.spec.selector.match_labels == {
        "app": "model",
        "slot": "blue",
        "pod-template-hash": pod_hash,
    }
    assert rs.spec.template.metadata.labels["pod-template-hash"] == pod_hash
    assert owner.uid == rs.metadata.uid
    rs = wait_for(lambda: _rs_ready(apps, f"blue-{pod_hash}", 2))
    assert (rs.spec.replicas, rs.status.replicas, rs.status.available_replicas) == (2, 2, 2)


def _rs_ready(apps: Any, name: str, replicas: int) -> Any:
    rs = apps.read_namespaced_replica_set(name, NAMESPACE)
    return rs if (rs.status.ready_replicas or 0) == replicas else None


def test_scale_up_and_down(apps: Any, core: Any) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment(replicas=1))
    _available(apps, "blue", 1)
    apps.patch_namespaced_deployment_scale("blue", NAMESPACE, {"spec": {"replicas": 3}})
    _available(apps, "blue", 3)
    apps.patch_namespaced_deployment_scale("blue", NAMESPACE, {"spec": {"replicas": 0}})
    wait_for(lambda: not _pods(core, slot="blue"))
    d = _available(apps, "blue", 0)
    assert d.status.replicas is None  # zero counts are omitted, as the apiserver's JSON does


def test_template_change_with_recreate(apps: Any, core: Any, sandbox: Sandbox) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment(replicas=2))
    _available(apps, "blue", 2)
    old = {p.metadata.name for p in _pods(core, slot="blue")}
    seen_together = threading.Event()

    def watch_overlap() -> None:
        sub = sandbox.store.subscribe()
        try:
            while not done.is_set():
                if sub.get(timeout=0.05) is None:
                    continue
                names = {p["metadata"]["name"] for p in sandbox.store.list(PODS)[0]}
                if names & old and names - old:
                    seen_together.set()
        finally:
            sub.close()

    done = threading.Event()
    observer = threading.Thread(target=watch_overlap)
    observer.start()
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "engine", "env": [{"name": "MODEL", "value": "sandbox/wedge"}]}
                    ]
                }
            }
        }
    }
    apps.patch_namespaced_deployment("blue", NAMESPACE, patch)
    d = _available(apps, "blue", 2)
    done.set()
    observer.join()
    new = _pods(core, slot="blue")
    assert {p.metadata.name for p in new}.isdisjoint(old)
    assert {p.spec.containers[0].env[0].value for p in new} == {"sandbox/wedge"}
    assert not seen_together.is_set(), "Recreate must not run old and new pods together"
    assert d.metadata.annotations["deployment.kubernetes.io/revision"] == "2"
    assert d.status.observed_generation == 2


def test_rolling_update_that_cannot_fit_stalls(apps: Any, core: Any) -> None:
    apps.create_namespaced_deployment(
        NAMESPACE, deployment(replicas=1, memory="80Gi", strategy="RollingUpdate", deadline=1)
    )
    _available(apps, "blue", 1)
    apps.patch_namespaced_deployment(
        "blue", NAMESPACE, {"spec": {"template": {"metadata": {"labels": {"rev": "2"}}}}}
    )

    def timed_out() -> Any:
        d = apps.read_namespaced_deployment("blue", NAMESPACE)
        cond = _condition(d, "Progressing")
        return d if cond and cond.reason == "ProgressDeadlineExceeded" else None

    d = wait_for(timed_out, timeout=10)
    progressing = _condition(d, "Progressing")
    assert progressing.status == "False"
    assert progressing.message.endswith("has timed out progressing.")
    assert (d.status.replicas, d.status.updated_replicas, d.status.available_replicas) == (2, 1, 1)
    pods = _pods(core, slot="blue")
    pending = [p for p in pods if p.status.phase == "Pending"]
    assert len(pods) == 2 and len(pending) == 1  # the old pod keeps serving (maxUnavailable 0)
    assert "Insufficient memory" in _condition(pending[0], "PodScheduled").message


def test_unschedulable_pod(apps: Any, core: Any) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment("big", memory="200Gi"))
    pod = wait_for(
        lambda: next((p for p in _pods(core, slot="big") if _condition(p, "PodScheduled")), None)
    )
    scheduled = _condition(pod, "PodScheduled")
    assert (scheduled.status, scheduled.reason) == ("False", "Unschedulable")
    assert scheduled.message.startswith("0/1 nodes are available: 1 Insufficient memory.")
    assert pod.status.phase == "Pending" and pod.spec.node_name is None
    d = apps.read_namespaced_deployment("big", NAMESPACE)
    assert d.status.unavailable_replicas == 1
    assert _condition(d, "Available").reason == "MinimumReplicasUnavailable"


def test_memory_is_shared_between_pods_on_the_node(apps: Any, core: Any) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment("blue", memory="60Gi"))
    _available(apps, "blue", 1)
    apps.create_namespaced_deployment(NAMESPACE, deployment("green", memory="70Gi"))
    pod = wait_for(
        lambda: next((p for p in _pods(core, slot="green") if _condition(p, "PodScheduled")), None)
    )
    assert _condition(pod, "PodScheduled").reason == "Unschedulable"
    apps.patch_namespaced_deployment_scale("blue", NAMESPACE, {"spec": {"replicas": 0}})
    _available(apps, "green", 1)  # blue's memory was freed, green fits now


def test_node_selector_is_honoured(apps: Any, core: Any) -> None:
    body = deployment("pinned")
    body["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": "elsewhere"}
    apps.create_namespaced_deployment(NAMESPACE, body)
    pod = wait_for(
        lambda: next((p for p in _pods(core, slot="pinned") if _condition(p, "PodScheduled")), None)
    )
    assert "didn't match Pod's node affinity/selector" in _condition(pod, "PodScheduled").message


def test_deleted_deployment_takes_its_pods(apps: Any, core: Any) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment(replicas=2))
    _available(apps, "blue", 2)
    apps.delete_namespaced_deployment("blue", NAMESPACE)
    wait_for(lambda: not _pods(core, slot="blue"))


def test_deleted_pod_is_replaced(apps: Any, core: Any) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment())
    _available(apps, "blue", 1)
    first = _pods(core, slot="blue")[0].metadata.name
    core.delete_namespaced_pod(first, NAMESPACE)
    wait_for(lambda: [p for p in _pods(core, slot="blue") if p.metadata.name != first])
    _available(apps, "blue", 1)


def test_endpoints_follow_the_service_selector(apps: Any, core: Any, api: Any) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment("blue"))
    core.create_namespaced_service(NAMESPACE, service("prod", selector={"slot": "blue"}))
    _available(apps, "blue", 1)

    def addresses() -> list[tuple[str, int]]:
        ep = core.read_namespaced_endpoints("prod", NAMESPACE)
        return [
            (a.target_ref.name, p.port)
            for s in ep.subsets or []
            for a in s.addresses or []
            for p in s.ports or []
        ]

    blue = _pods(core, slot="blue")[0].metadata.name
    assert wait_for(addresses) == [(blue, 8000)]  # the named targetPort resolved
    slices: Any = client.DiscoveryV1Api(api).list_namespaced_endpoint_slice(
        NAMESPACE, label_selector="kubernetes.io/service-name=prod"
    )
    endpoint = slices.items[0].endpoints[0]
    assert (endpoint.addresses, endpoint.conditions.ready) == (["127.0.0.1"], True)
    apps.create_namespaced_deployment(NAMESPACE, deployment("green"))
    _available(apps, "green", 1)
    core.patch_namespaced_service("prod", NAMESPACE, {"spec": {"selector": {"slot": "green"}}})
    green = _pods(core, slot="green")[0].metadata.name
    wait_for(lambda: addresses() == [(green, 8000)])
    core.delete_namespaced_service("prod", NAMESPACE)
    wait_for(lambda: not core.list_namespaced_endpoints(NAMESPACE).items)


class RecordingRuntime:
    """A runtime that starts pods not ready and lets the test drive their status."""

    def __init__(self, store: Store) -> None:
        self.status = PodStatusWriter(store)
        self.started: list[str] = []
        self.stopped: list[str] = []

    def start(self, pod: Obj) -> None:
        self.started.append(pod["metadata"]["name"])
        self.status.running(pod, ready=False)

    def stop(self, pod: Obj) -> None:
        self.stopped.append(pod["metadata"]["name"])

    def logs(self, pod: Obj, tail_lines: int | None) -> str:
        return tail("one\ntwo\nthree\n", tail_lines)


@pytest.fixture
def driven(sandbox: Sandbox) -> RecordingRuntime:
    """Swap the default runtime for a recording one (before any pod exists)."""
    runtime = RecordingRuntime(sandbox.store)
    sandbox.controller.runtime = runtime
    sandbox.server.log_source = runtime
    return runtime


def _pod(store: Store, slot: str) -> Obj:
    return wait_for(
        lambda: next(
            (
                p
                for p in store.list(PODS, NAMESPACE)[0]
                if p["metadata"]["labels"].get("slot") == slot and p["spec"].get("nodeName")
            ),
            None,
        )
    )


def test_runtime_drives_readiness_crash_loop_and_oom(
    driven: RecordingRuntime, sandbox: Sandbox, apps: Any, core: Any
) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment())
    pod = _pod(sandbox.store, "blue")
    wait_for(lambda: pod["metadata"]["name"] in driven.started)
    name = pod["metadata"]["name"]
    d = apps.read_namespaced_deployment("blue", NAMESPACE)
    assert not d.status.ready_replicas
    driven.status.set_ready(pod, True)
    _available(apps, "blue", 1)
    assert core.read_namespaced_pod_log(name, NAMESPACE, tail_lines=1) == "three\n"

    driven.status.crash_loop(pod, exit_code=1, restart_count=3)
    stored = sandbox.store.get(PODS, NAMESPACE, name)
    assert pod_status_reason(stored) == "CrashLoopBackOff"
    assert stored["status"]["phase"] == "Running"
    cs = stored["status"]["containerStatuses"][0]
    assert (cs["restartCount"], cs["ready"], cs["lastState"]["terminated"]["exitCode"]) == (
        3,
        False,
        1,
    )
    wait_for(
        lambda: apps.read_namespaced_deployment("blue", NAMESPACE).status.available_replicas is None
    )

    driven.status.terminated(pod, reason="OOMKilled", exit_code=137, restart_count=4)
    assert pod_status_reason(sandbox.store.get(PODS, NAMESPACE, name)) == "OOMKilled"

    core.delete_namespaced_pod(name, NAMESPACE)
    wait_for(lambda: name in driven.stopped)
    assert driven.status.running(pod) is None  # a status for a deleted pod is dropped


def test_controller_stop_stops_running_pods(
    sandbox: Sandbox, driven: RecordingRuntime, apps: Any
) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment(replicas=2))
    wait_for(lambda: len(driven.started) == 2)
    sandbox.controller.stop()
    assert sorted(driven.stopped) == sorted(driven.started)


def test_reconcile_without_the_thread() -> None:
    store = Store()
    from gx10slots.sandbox.apiserver import ApiServer
    from tests.helpers.apiserver import node

    server = ApiServer(store)  # not started: used for seeding only
    server.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}})
    server.seed(node())
    server.seed(deployment(replicas=2))
    controller = Controller(store, status_delay=0)  # no thread to wait out the delay
    for _ in range(3):
        controller.reconcile()
    d = store.get(DEPLOYMENTS, NAMESPACE, "blue")
    assert d["status"]["availableReplicas"] == 2
    assert len(store.list(PODS, NAMESPACE)[0]) == 2
    controller.stop()


def test_template_hash_is_stable_and_short() -> None:
    template = deployment()["spec"]["template"]
    assert template_hash(template) == template_hash({**template})
    assert re.fullmatch(r"[bcdfghjklmnpqrstvwxz2456789]{1,10}", template_hash(template))
    changed = {**template, "metadata": {"labels": {"x": "y"}}}
    assert template_hash(changed) != template_hash(template)
