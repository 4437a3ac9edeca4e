"""The sandbox API server through the official Kubernetes Python client."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import urllib3
from kubernetes import client, watch

from gx10slots.sandbox.faults import FaultRule
from tests.helpers.apiserver import NAMESPACE, Sandbox, deployment, service, wait_for

MERGE = "application/merge-patch+json"


def _status(err: client.ApiException) -> dict[str, Any]:
    body = json.loads(err.body or "")
    assert body["kind"] == "Status" and body["apiVersion"] == "v1"
    assert body["status"] == "Failure" and body["code"] == err.status
    return body


def _raw_response(
    sandbox: Sandbox, method: str, path: str, body: Any = None, **headers: str
) -> tuple[Any, Any]:
    """A plain HTTP request (for what the typed client cannot express): (JSON, headers)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(sandbox.url + path, data=data, method=method)
    request.add_header("Authorization", f"Bearer {sandbox.token}")
    request.add_header("Content-Type", "application/json")
    for name, value in headers.items():
        request.add_header(name.replace("_", "-"), value)
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.loads(response.read()), response.headers


def _raw(sandbox: Sandbox, method: str, path: str, body: Any = None, **headers: str) -> Any:
    return _raw_response(sandbox, method, path, body, **headers)[0]


def _configmap(name: str, labels: dict[str, str] | None = None, **data: str) -> dict:
    return {"metadata": {"name": name, "labels": labels or {}}, "data": data}


# -- discovery, CRUD, selectors ---------------------------------------------------------------


def test_discovery_and_version(api: Any) -> None:
    assert client.CoreApi(api).get_api_versions().versions == ["v1"]
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "coordination.k8s.io", "events.k8s.io", "discovery.k8s.io"} <= groups
    resources = client.AppsV1Api(api).get_api_resources().resources
    names = {r.name: r for r in resources}
    assert names["deployments"].short_names == ["deploy"]
    assert {"deployments/status", "deployments/scale"} <= set(names)
    assert names["deployments/scale"].kind == "Scale"
    assert client.VersionApi(api).get_code().git_version.startswith("v1.32")


def test_get_and_list_with_label_selectors(core: Any) -> None:
    core.create_namespaced_config_map(NAMESPACE, _configmap("a", {"slot": "blue", "tier": "x"}))
    core.create_namespaced_config_map(NAMESPACE, _configmap("b", {"slot": "green"}))
    core.create_namespaced_config_map(NAMESPACE, _configmap("c"))

    def names(**kw: Any) -> list[str]:
        return [cm.metadata.name for cm in core.list_namespaced_config_map(NAMESPACE, **kw).items]

    assert names() == ["a", "b", "c"]
    assert names(label_selector="slot=blue") == ["a"]
    assert names(label_selector="slot!=blue") == ["b", "c"]
    assert names(label_selector="slot in (blue,green)") == ["a", "b"]
    assert names(label_selector="slot notin (blue)") == ["b", "c"]
    assert names(label_selector="slot,!tier") == ["b"]
    assert names(field_selector="metadata.name=c") == ["c"]
    listing = core.list_namespaced_config_map(NAMESPACE)
    assert int(listing.metadata.resource_version) >= 3
    assert core.read_namespaced_config_map("b", NAMESPACE).metadata.labels == {"slot": "green"}
    everywhere = core.list_config_map_for_all_namespaces(label_selector="slot")
    assert {(cm.metadata.namespace, cm.metadata.name) for cm in everywhere.items} == {
        (NAMESPACE, "a"),
        (NAMESPACE, "b"),
    }
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_config_map(NAMESPACE, label_selector="slot in blue")
    assert info.value.status == 400 and _status(info.value)["reason"] == "BadRequest"
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_config_map(NAMESPACE, field_selector="data.x=1")
    assert info.value.status == 400


def test_create_conflicts_not_found_and_generate_name(core: Any) -> None:
    created = core.create_namespaced_config_map(NAMESPACE, _configmap("cfg", k="v"))
    assert created.metadata.uid and created.metadata.creation_timestamp
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_config_map(NAMESPACE, _configmap("cfg"))
    body = _status(info.value)
    assert (info.value.status, body["reason"]) == (409, "AlreadyExists")
    assert body["message"] == 'configmaps "cfg" already exists'
    with pytest.raises(client.ApiException) as info:
        core.read_namespaced_config_map("nope", NAMESPACE)
    body = _status(info.value)
    assert (body["reason"], body["details"]) == ("NotFound", {"name": "nope", "kind": "configmaps"})
    generated = core.create_namespaced_config_map(
        NAMESPACE, {"metadata": {"generateName": "audit-"}}
    )
    assert generated.metadata.name.startswith("audit-") and len(generated.metadata.name) == 11
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_config_map("no-such-ns", _configmap("x"))
    assert info.value.status == 404


def test_delete_returns_status_or_object_and_namespace_cascades(core: Any) -> None:
    core.create_namespaced_config_map(NAMESPACE, _configmap("cfg"))
    gone = core.delete_namespaced_config_map("cfg", NAMESPACE)
    assert (gone["kind"], gone["status"], gone["details"]["name"]) == ("Status", "Success", "cfg")
    core.create_namespace({"metadata": {"name": "scratch"}})
    core.create_namespaced_config_map("scratch", _configmap("x"))
    core.create_namespaced_service("scratch", service("svc") | {"metadata": {"name": "svc"}})
    deleted_svc = core.delete_namespaced_service("svc", "scratch")
    assert (deleted_svc.kind, deleted_svc.metadata.name) == ("Service", "svc")
    core.delete_namespace("scratch")
    assert (
        core.list_config_map_for_all_namespaces(field_selector="metadata.namespace=scratch").items
        == []
    )


# -- patches and optimistic concurrency -------------------------------------------------------


def test_merge_patch(core: Any) -> None:
    core.create_namespaced_service(NAMESPACE, service())
    patched = core.patch_namespaced_service(
        "blue",
        NAMESPACE,
        {"spec": {"selector": {"slot": None, "color": "blue"}}},
        _content_type=MERGE,
    )
    assert patched.spec.selector == {"color": "blue"}
    assert patched.spec.ports[0].port == 80


def test_json_patch_test_operation(core: Any) -> None:
    core.create_namespaced_service(NAMESPACE, service())
    failing = [
        {"op": "test", "path": "/spec/selector/slot", "value": "green"},
        {"op": "replace", "path": "/spec/selector/slot", "value": "blue2"},
    ]
    with pytest.raises(client.ApiException) as info:
        core.patch_namespaced_service("blue", NAMESPACE, failing)
    body = _status(info.value)
    assert (info.value.status, body["reason"]) == (422, "Invalid")
    assert "testing value /spec/selector/slot failed" in body["details"]["causes"][0]["message"]
    assert core.read_namespaced_service("blue", NAMESPACE).spec.selector == {"slot": "blue"}
    passing = [
        {"op": "test", "path": "/spec/selector/slot", "value": "blue"},
        {"op": "replace", "path": "/spec/selector/slot", "value": "green"},
    ]
    assert core.patch_namespaced_service("blue", NAMESPACE, passing).spec.selector == {
        "slot": "green"
    }


def test_strategic_patch_of_container_env(apps: Any) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment())
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [{"name": "engine", "env": [{"name": "MODEL", "value": "m2"}]}]
                }
            }
        }
    }
    patched = apps.patch_namespaced_deployment("blue", NAMESPACE, patch)
    engine = patched.spec.template.spec.containers[0]
    assert engine.image == "vllm/vllm-openai:v0.9"
    assert [(e.name, e.value) for e in engine.env] == [("MODEL", "m2")]
    assert engine.ports[0].container_port == 8000


def test_replace_with_stale_resource_version_conflicts(core: Any) -> None:
    svc = core.create_namespaced_service(NAMESPACE, service())
    stale = svc.metadata.resource_version
    core.patch_namespaced_service("blue", NAMESPACE, {"metadata": {"labels": {"moved": "yes"}}})
    svc.spec.selector = {"slot": "green"}
    with pytest.raises(client.ApiException) as info:
        core.replace_namespaced_service("blue", NAMESPACE, svc)
    body = _status(info.value)
    assert (info.value.status, body["reason"]) == (409, "Conflict")
    assert body["message"] == (
        'Operation cannot be fulfilled on services "blue": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )
    fresh = core.read_namespaced_service("blue", NAMESPACE)
    assert fresh.spec.selector == {"slot": "blue"} and fresh.metadata.resource_version != stale
    fresh.spec.selector = {"slot": "green"}
    replaced = core.replace_namespaced_service("blue", NAMESPACE, fresh)
    assert replaced.spec.selector == {"slot": "green"}
    assert replaced.spec.cluster_ip == fresh.spec.cluster_ip


def test_patch_carrying_a_stale_resource_version_conflicts(core: Any) -> None:
    svc = core.create_namespaced_service(NAMESPACE, service())
    stale = svc.metadata.resource_version
    core.patch_namespaced_service("blue", NAMESPACE, {"metadata": {"labels": {"x": "1"}}})
    cas = {"metadata": {"resourceVersion": stale}, "spec": {"selector": {"slot": "green"}}}
    with pytest.raises(client.ApiException) as info:
        core.patch_namespaced_service("blue", NAMESPACE, cas, _content_type=MERGE)
    assert info.value.status == 409 and _status(info.value)["reason"] == "Conflict"
    current = core.read_namespaced_service("blue", NAMESPACE)
    cas["metadata"]["resourceVersion"] = current.metadata.resource_version
    assert (
        core.patch_namespaced_service("blue", NAMESPACE, cas, _content_type=MERGE).spec.selector[
            "slot"
        ]
        == "green"
    )


def test_name_change_on_update_is_rejected(core: Any) -> None:
    core.create_namespaced_config_map(NAMESPACE, _configmap("cfg"))
    with pytest.raises(client.ApiException) as info:
        core.patch_namespaced_config_map("cfg", NAMESPACE, {"metadata": {"name": "other"}})
    assert info.value.status == 400
    assert "does not match the name on the URL" in _status(info.value)["message"]


def test_dry_run_does_not_persist(core: Any) -> None:
    core.create_namespaced_config_map(NAMESPACE, _configmap("dry"), dry_run="All")
    core.create_namespaced_config_map(NAMESPACE, _configmap("cfg", k="1"))
    answered = core.patch_namespaced_config_map(
        "cfg", NAMESPACE, {"data": {"k": "2"}}, dry_run="All"
    )
    assert answered.data == {"k": "2"}
    core.delete_namespaced_config_map("cfg", NAMESPACE, dry_run="All")
    assert [c.metadata.name for c in core.list_namespaced_config_map(NAMESPACE).items] == ["cfg"]
    assert core.read_namespaced_config_map("cfg", NAMESPACE).data == {"k": "1"}


# -- validation and status rules --------------------------------------------------------------


def test_invalid_objects_are_422_with_causes(apps: Any, core: Any, sandbox: Sandbox) -> None:
    bad = deployment()
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    del bad["spec"]["template"]["spec"]["containers"][0]["image"]
    with pytest.raises(client.ApiException) as info:
        apps.create_namespaced_deployment(NAMESPACE, bad)
    body = _status(info.value)
    assert (info.value.status, body["reason"]) == (422, "Invalid")
    assert body["message"].startswith('Deployment.apps "blue" is invalid: [')
    causes = {c["field"]: c for c in body["details"]["causes"]}
    assert (
        "`selector` does not match template `labels`"
        in (causes["spec.template.metadata.labels"]["message"])
    )
    assert causes["spec.template.spec.containers[0].image"]["reason"] == "FieldValueRequired"

    no_ports = service()
    del no_ports["spec"]["ports"]
    with pytest.raises(client.ApiException) as info:
        core.create_namespaced_service(NAMESPACE, no_ports)
    assert _status(info.value)["details"]["causes"] == [
        {"reason": "FieldValueRequired", "message": "Required value", "field": "spec.ports"}
    ]

    wrong_type = deployment()
    wrong_type["spec"]["replicas"] = "two"  # the typed client refuses this, so send it raw
    with pytest.raises(urllib.error.HTTPError) as raw:
        _raw(sandbox, "POST", f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments", wrong_type)
    assert raw.value.code == 422
    causes = json.loads(raw.value.read())["details"]["causes"]
    assert [(c["field"], c["reason"]) for c in causes] == [
        ("spec.replicas", "FieldValueTypeInvalid")
    ]


def test_unknown_fields_are_dropped_with_a_warning_or_rejected_when_strict(
    sandbox: Sandbox,
) -> None:
    path = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    body = {"metadata": {"name": "cfg", "labelz": {"a": "b"}}, "data": {"k": "v"}, "dataa": {}}
    created, headers = _raw_response(sandbox, "POST", path, body)
    assert "dataa" not in created and "labelz" not in created["metadata"]
    assert headers.get_all("Warning") == [
        '299 - "unknown field \\"dataa\\""',
        '299 - "unknown field \\"metadata.labelz\\""',
    ]
    with pytest.raises(urllib.error.HTTPError) as info:
        _raw(sandbox, "POST", path + "?fieldValidation=Strict", {**body, "metadata": {"name": "x"}})
    status = json.loads(info.value.read())
    assert (info.value.code, status["reason"]) == (400, "BadRequest")
    assert status["message"] == (
        'ConfigMap in version "v1" cannot be handled as a ConfigMap: strict decoding error: '
        'unknown field "dataa"'
    )


def test_generation_follows_spec_changes_only(apps: Any, sandbox: Sandbox) -> None:
    sandbox.controller.stop()  # only this test writes
    created = apps.create_namespaced_deployment(NAMESPACE, deployment())
    assert created.metadata.generation == 1
    labelled = apps.patch_namespaced_deployment(
        "blue", NAMESPACE, {"metadata": {"labels": {"x": "1"}}}
    )
    assert labelled.metadata.generation == 1
    scaled = apps.patch_namespaced_deployment("blue", NAMESPACE, {"spec": {"replicas": 2}})
    assert scaled.metadata.generation == 2
    status = apps.patch_namespaced_deployment_status(
        "blue", NAMESPACE, {"status": {"observedGeneration": 7}}
    )
    assert status.metadata.generation == 2
    same = apps.patch_namespaced_deployment("blue", NAMESPACE, {"spec": {"replicas": 2}})
    assert same.metadata.generation == 2
    assert same.metadata.resource_version == status.metadata.resource_version  # no-op write


def test_status_subresource_separation(apps: Any, sandbox: Sandbox) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment())
    wait_for(lambda: apps.read_namespaced_deployment("blue", NAMESPACE).status.ready_replicas)
    sandbox.controller.stop()  # nobody rewrites status behind our back from here
    main = apps.patch_namespaced_deployment(
        "blue", NAMESPACE, {"spec": {"replicas": 3}, "status": {"readyReplicas": 42}}
    )
    assert main.spec.replicas == 3 and main.status.ready_replicas == 1
    status = apps.patch_namespaced_deployment_status(
        "blue", NAMESPACE, {"spec": {"replicas": 9}, "status": {"readyReplicas": 42}}
    )
    assert status.spec.replicas == 3 and status.status.ready_replicas == 42


def test_scale_subresource(apps: Any) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment(replicas=1))
    scale = apps.read_namespaced_deployment_scale("blue", NAMESPACE)
    assert (scale.kind, scale.spec.replicas) == ("Scale", 1)
    assert scale.status.selector == "app=model,slot=blue"
    scaled = apps.patch_namespaced_deployment_scale("blue", NAMESPACE, {"spec": {"replicas": 0}})
    assert scaled.spec.replicas == 0
    assert apps.read_namespaced_deployment("blue", NAMESPACE).spec.replicas == 0


def test_events_k8s_io_validation_and_shared_storage(api: Any, core: Any, sandbox: Sandbox) -> None:
    events: Any = client.EventsV1Api(api)
    good = {
        "metadata": {"name": "flip-1"},
        "eventTime": "2025-01-01T00:00:00.000000Z",
        "type": "Normal",
        "reason": "Flipped",
        "action": "Flip",
        "reportingController": "gx10slots.io/slots",
        "reportingInstance": "ci-runner",
        "regarding": {"kind": "Service", "name": "gx10-model", "namespace": NAMESPACE},
        "note": "blue -> green",
    }
    for broken, field in (
        ({"reportingController": None}, "reportingController"),
        ({"action": None}, "action"),
        ({"reason": "r" * 129}, "reason"),
        ({"note": "n" * 1025}, "message"),
        ({"type": "Info"}, "type"),
        ({"eventTime": None}, "eventTime"),
    ):
        body = {k: v for k, v in {**good, **broken}.items() if v is not None}
        # Raw: the typed client would refuse some of these before sending.
        with pytest.raises(urllib.error.HTTPError) as info:
            _raw(sandbox, "POST", f"/apis/events.k8s.io/v1/namespaces/{NAMESPACE}/events", body)
        assert info.value.code == 422, broken
        causes = json.loads(info.value.read())["details"]["causes"]
        assert field in {c["field"] for c in causes}, (broken, causes)
    created = events.create_namespaced_event(NAMESPACE, good)
    assert created.note == "blue -> green"
    legacy = core.read_namespaced_event("flip-1", NAMESPACE)
    assert (legacy.message, legacy.involved_object.name) == ("blue -> green", "gx10-model")


def test_lease_compare_and_swap(api: Any) -> None:
    leases: Any = client.CoordinationV1Api(api)
    lease = leases.create_namespaced_lease(
        NAMESPACE,
        {
            "metadata": {"name": "gx10slots-lock"},
            "spec": {"holderIdentity": "a", "leaseDurationSeconds": 30},
        },
    )
    lease.spec.holder_identity = "b"
    taken = leases.replace_namespaced_lease("gx10slots-lock", NAMESPACE, lease)
    lease.spec.holder_identity = "c"  # still the old resourceVersion
    with pytest.raises(client.ApiException) as info:
        leases.replace_namespaced_lease("gx10slots-lock", NAMESPACE, lease)
    assert info.value.status == 409
    assert taken.spec.holder_identity == "b"


def test_unauthorized(sandbox: Sandbox) -> None:
    for token in ("wrong", ""):
        with sandbox.api_client(token=token) as api:
            with pytest.raises(client.ApiException) as info:
                client.CoreV1Api(api).list_namespaced_pod(NAMESPACE)
            assert info.value.status == 401
            assert _status(info.value)["reason"] == "Unauthorized"


def test_pod_logs_come_from_the_runtime(core: Any, apps: Any, sandbox: Sandbox) -> None:
    class Logs:
        def logs(self, pod: dict, tail_lines: int | None) -> str:
            lines = [f"{pod['metadata']['name']} line {i}\n" for i in range(5)]
            return "".join(lines[-tail_lines:] if tail_lines else lines)

    sandbox.server.log_source = Logs()
    apps.create_namespaced_deployment(NAMESPACE, deployment())
    pod = wait_for(lambda: core.list_namespaced_pod(NAMESPACE).items)[0]
    wait_for(lambda: core.read_namespaced_pod(pod.metadata.name, NAMESPACE).status.pod_ip)
    text = core.read_namespaced_pod_log(pod.metadata.name, NAMESPACE, tail_lines=2)
    assert text == f"{pod.metadata.name} line 3\n{pod.metadata.name} line 4\n"


def test_table_for_kubectl_get(sandbox: Sandbox, apps: Any) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment())
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    table = wait_for(
        lambda: (
            (t := _raw(sandbox, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods", Accept=accept))
            and t["rows"]
            and t
        )
    )
    assert table["kind"] == "Table"
    columns = [c["name"] for c in table["columnDefinitions"] if c["priority"] == 0]
    assert columns == ["Name", "Ready", "Status", "Restarts", "Age"]
    row = table["rows"][0]
    assert row["object"]["kind"] == "PartialObjectMetadata"
    wait_for(
        lambda: (
            _raw(sandbox, "GET", f"/api/v1/namespaces/{NAMESPACE}/pods", Accept=accept)["rows"][0][
                "cells"
            ][1:3]
            == ["1/1", "Running"]
        )
    )


# -- watch ------------------------------------------------------------------------------------


def test_watch_sees_patch_and_delete(core: Any) -> None:
    created = core.create_namespaced_config_map(NAMESPACE, _configmap("cfg", k="1"))
    seen: list[tuple[str, dict]] = []

    def change() -> None:
        wait_for(lambda: seen)  # the watch is established once the first event arrived
        core.patch_namespaced_config_map("cfg", NAMESPACE, {"data": {"k": "2"}})
        core.delete_namespaced_config_map("cfg", NAMESPACE)

    w = watch.Watch()
    writer = threading.Thread(target=change)
    writer.start()
    core.create_namespaced_config_map(NAMESPACE, _configmap("other"))
    for event in w.stream(
        core.list_namespaced_config_map,
        NAMESPACE,
        resource_version=created.metadata.resource_version,
        timeout_seconds=5,
    ):
        seen.append((event["type"], event["raw_object"]))
        if event["type"] == "DELETED":
            w.stop()
    writer.join()
    kinds = [(kind, obj["metadata"]["name"]) for kind, obj in seen]
    assert kinds == [("ADDED", "other"), ("MODIFIED", "cfg"), ("DELETED", "cfg")]
    assert seen[1][1]["data"] == {"k": "2"}


def test_watch_with_selector_and_initial_state(core: Any) -> None:
    core.create_namespaced_config_map(NAMESPACE, _configmap("a", {"slot": "blue"}))
    core.create_namespaced_config_map(NAMESPACE, _configmap("b", {"slot": "green"}))
    w = watch.Watch()
    events = []
    for event in w.stream(
        core.list_namespaced_config_map, NAMESPACE, label_selector="slot=blue", timeout_seconds=1
    ):
        events.append((event["type"], event["object"].metadata.name))
        if len(events) == 1:
            core.patch_namespaced_config_map(
                "a", NAMESPACE, {"metadata": {"labels": {"slot": "x"}}}
            )
        if len(events) == 2:
            w.stop()
    assert events == [("ADDED", "a"), ("DELETED", "a")]


def test_watch_from_a_compacted_resource_version_is_410(core: Any, sandbox: Sandbox) -> None:
    old = core.create_namespaced_config_map(NAMESPACE, _configmap("cfg")).metadata.resource_version
    core.patch_namespaced_config_map("cfg", NAMESPACE, {"data": {"k": "v"}})
    sandbox.store.compact()
    with pytest.raises(client.ApiException) as info:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, NAMESPACE, resource_version=old
        ):
            pass
    assert info.value.status == 410
    assert "Expired" in info.value.reason


# -- fault injection --------------------------------------------------------------------------


def test_fault_conflict(core: Any, sandbox: Sandbox) -> None:
    core.create_namespaced_service(NAMESPACE, service())
    sandbox.server.faults.add(FaultRule("conflict", verb="patch", resource="services", name="blue"))
    with pytest.raises(client.ApiException) as info:
        core.patch_namespaced_service("blue", NAMESPACE, {"metadata": {"labels": {"x": "1"}}})
    assert info.value.status == 409 and _status(info.value)["reason"] == "Conflict"
    assert core.read_namespaced_service("blue", NAMESPACE).metadata.labels == {"app": "model"}
    core.patch_namespaced_service("blue", NAMESPACE, {"metadata": {"labels": {"x": "1"}}})
    assert sandbox.server.faults.fired == 1


def test_fault_throttle_with_retry_after(core: Any, sandbox: Sandbox) -> None:
    sandbox.server.faults.add(FaultRule("throttle", verb="list", resource="configmaps", seconds=3))
    with pytest.raises(client.ApiException) as info:
        core.list_namespaced_config_map(NAMESPACE)
    assert info.value.status == 429
    assert (info.value.headers or {})["Retry-After"] == "3"
    body = _status(info.value)
    assert (body["reason"], body["details"]["retryAfterSeconds"]) == ("TooManyRequests", 3)
    core.list_namespaced_config_map(NAMESPACE)


def test_fault_error(core: Any, sandbox: Sandbox) -> None:
    sandbox.server.faults.add(FaultRule("error", verb="*", resource="configmaps", count=2))
    for _ in range(2):
        with pytest.raises(client.ApiException) as info:
            core.list_namespaced_config_map(NAMESPACE)
        assert info.value.status == 500 and _status(info.value)["reason"] == "InternalError"
    core.list_namespaced_config_map(NAMESPACE)


def test_fault_hang_outlasts_the_client_timeout(core: Any, sandbox: Sandbox) -> None:
    sandbox.server.faults.add(FaultRule("hang", verb="get", resource="configmaps", seconds=30))
    started = time.monotonic()
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.read_namespaced_config_map("x", NAMESPACE, _request_timeout=0.5)
    assert time.monotonic() - started < 5


def test_fault_drop(core: Any, sandbox: Sandbox) -> None:
    core.create_namespaced_service(NAMESPACE, service())
    sandbox.server.faults.add(FaultRule("drop", verb="patch", resource="services"))
    with pytest.raises(urllib3.exceptions.HTTPError):
        core.patch_namespaced_service("blue", NAMESPACE, {"metadata": {"labels": {"x": "1"}}})
    assert core.read_namespaced_service("blue", NAMESPACE).metadata.labels == {"app": "model"}


@pytest.mark.parametrize("action", ["drop", "hang", "error"])
def test_fault_after_applies_the_write(core: Any, sandbox: Sandbox, action: str) -> None:
    core.create_namespaced_service(NAMESPACE, service())
    sandbox.server.faults.add(
        FaultRule(action, verb="patch", resource="services", when="after", seconds=30)
    )
    with pytest.raises((urllib3.exceptions.HTTPError, client.ApiException)):
        core.patch_namespaced_service(
            "blue", NAMESPACE, {"spec": {"selector": {"slot": "green"}}}, _request_timeout=0.5
        )
    assert core.read_namespaced_service("blue", NAMESPACE).spec.selector == {"slot": "green"}


def test_fault_on_a_subresource(apps: Any, sandbox: Sandbox) -> None:
    apps.create_namespaced_deployment(NAMESPACE, deployment())
    sandbox.server.faults.add(FaultRule("error", verb="get", resource="deployments/scale"))
    apps.read_namespaced_deployment("blue", NAMESPACE)
    with pytest.raises(client.ApiException) as info:
        apps.read_namespaced_deployment_scale("blue", NAMESPACE)
    assert info.value.status == 500


def test_fault_control_api(sandbox: Sandbox, core: Any) -> None:
    rule = {"action": "conflict", "verb": "patch", "resource": "services", "count": 2}
    assert _raw(sandbox, "POST", "/_sandbox/faults", rule)["count"] == 2
    snapshot = _raw(sandbox, "GET", "/_sandbox/faults")
    assert snapshot["fired"] == 0 and snapshot["rules"][0]["action"] == "conflict"
    core.create_namespaced_service(NAMESPACE, service())
    with pytest.raises(client.ApiException):
        core.patch_namespaced_service("blue", NAMESPACE, {"metadata": {"labels": {"x": "1"}}})
    snapshot = _raw(sandbox, "GET", "/_sandbox/faults")
    assert snapshot["fired"] == 1 and snapshot["rules"][0]["count"] == 1
    assert _raw(sandbox, "DELETE", "/_sandbox/faults") == {"rules": [], "fired": 0}
    with pytest.raises(urllib.error.HTTPError) as info:
        _raw(sandbox, "POST", "/_sandbox/faults", {"action": "explode"})
    assert info.value.code == 400
    unauthenticated = urllib.request.Request(sandbox.url + "/_sandbox/faults")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(unauthenticated, timeout=5)
    assert info.value.code == 401


def test_stop_ends_open_watches(sandbox: Sandbox) -> None:
    with sandbox.api_client() as api:
        core = client.CoreV1Api(api)
        done = threading.Event()

        def watch_forever() -> None:
            try:
                for _ in watch.Watch().stream(
                    core.list_namespaced_config_map, NAMESPACE, timeout_seconds=60
                ):
                    pass
            except urllib3.exceptions.HTTPError:
                pass
            done.set()

        threading.Thread(target=watch_forever, daemon=True).start()
        wait_for(lambda: sandbox.store.subscriptions >= 2)
        sandbox.server.stop()
        assert done.wait(5)


def test_quantities_are_stored_in_canonical_form(apps: Any, core: Any, sandbox: Sandbox) -> None:
    """As kube-apiserver: a quantity comes back canonical (k8s.io/apimachinery resource.Quantity),
    in the Deployment's template and in the pods made from it; a write of the same amount in
    another spelling is no change."""
    d = deployment(memory="1.5Gi")
    d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {
        "memory": "1.5Gi",
        "cpu": "0.5",
    }
    created = apps.create_namespaced_deployment(NAMESPACE, d)
    resources = created.spec.template.spec.containers[0].resources
    assert (resources.requests, resources.limits) == (
        {"memory": "1536Mi"},
        {"memory": "1536Mi", "cpu": "500m"},
    )
    read = apps.read_namespaced_deployment("blue", NAMESPACE)
    assert read.spec.template.spec.containers[0].resources.requests == {"memory": "1536Mi"}
    pods = wait_for(lambda: core.list_namespaced_pod(NAMESPACE, label_selector="slot=blue").items)
    assert pods[0].spec.containers[0].resources.limits == {"memory": "1536Mi", "cpu": "500m"}

    generation = read.metadata.generation
    # The controller writes status a moment after each change: read-modify-replace once it has
    # settled, or the replace may meet its write (409 Conflict, as on a real cluster).
    settled = wait_for(
        lambda: (
            (r := apps.read_namespaced_deployment("blue", NAMESPACE)).status.observed_generation
            == generation
            and (r.status.available_replicas or 0) == 1
            and r
        )
    )
    body = client.ApiClient().sanitize_for_serialization(settled)
    body["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["memory"] = "1.5Gi"
    replaced = apps.replace_namespaced_deployment("blue", NAMESPACE, body)
    assert replaced.metadata.generation == generation  # the same amount: no new generation

    patched = apps.patch_namespaced_deployment(
        "blue",
        NAMESPACE,
        [
            {
                "op": "replace",
                "path": "/spec/template/spec/containers/0/resources/requests/memory",
                "value": "1.25Gi",
            }
        ],
    )
    assert patched.spec.template.spec.containers[0].resources.requests == {"memory": "1280Mi"}


def test_a_malformed_quantity_is_refused_as_the_apiserver_refuses_it(
    apps: Any, sandbox: Sandbox
) -> None:
    """`1e+06Gi` (what `--memory-gib 1000000` used to write): a POST/PUT body that does not
    decode is 400; a JSON patch whose result does not decode is 422 on the field `patch`."""
    regexp = "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
    with pytest.raises(urllib.error.HTTPError) as raw:
        _raw(sandbox, "POST", path, deployment(memory="1e+06Gi"))
    status = json.loads(raw.value.read())
    assert (raw.value.code, status["reason"]) == (400, "BadRequest")
    assert status["message"] == (
        'Deployment in version "v1" cannot be handled as a Deployment: quantities must match '
        f"the regular expression {regexp}"
    )
    apps.create_namespaced_deployment(NAMESPACE, deployment())
    with pytest.raises(client.ApiException) as info:
        apps.patch_namespaced_deployment(
            "blue",
            NAMESPACE,
            [
                {
                    "op": "replace",
                    "path": "/spec/template/spec/containers/0/resources/requests/memory",
                    "value": "1e+06Gi",
                }
            ],
        )
    body = _status(info.value)
    assert (info.value.status, body["reason"]) == (422, "Invalid")
    assert [c["field"] for c in body["details"]["causes"]] == ["patch"]
    assert body["message"].endswith(f"quantities must match the regular expression {regexp}")
    stored = apps.read_namespaced_deployment("blue", NAMESPACE)
    assert stored.spec.template.spec.containers[0].resources.requests == {"memory": "1Gi"}
