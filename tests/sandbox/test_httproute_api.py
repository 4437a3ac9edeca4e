"""Gateway API HTTPRoutes on the sandbox API server, through the official client's
CustomObjectsApi: discovery, defaulting, validation against the published CRD, CAS writes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from kubernetes import client, watch

from tests.sandbox.conftest import NAMESPACE, Sandbox, wait_for

GROUP, VERSION, PLURAL = "gateway.networking.k8s.io", "v1", "httproutes"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


def http_route(name: str = "prod", blue: int | None = 100, green: int | None = 0) -> dict:
    refs: list[dict[str, Any]] = []
    for slot, weight in (("gx10-blue", blue), ("gx10-green", green)):
        ref: dict[str, Any] = {"name": slot, "port": 8000}
        if weight is not None:
            ref["weight"] = weight
        refs.append(ref)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "HTTPRoute",
        "metadata": {"name": name},
        "spec": {"parentRefs": [{"name": "gx10-gateway"}], "rules": [{"backendRefs": refs}]},
    }


class Routes:
    """CustomObjectsApi, bound to the HTTPRoutes of the test namespace."""

    def __init__(self, api: Any) -> None:
        self.api: Any = client.CustomObjectsApi(api)

    def create(self, body: dict, **kw: Any) -> dict:
        return dict(
            self.api.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, body, **kw)
        )

    def get(self, name: str = "prod") -> dict:
        return dict(self.api.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name))

    def patch(self, patch: Any, name: str = "prod", **kw: Any) -> dict:
        # The client sends merge patches unless told: a list is a JSON Patch.
        if isinstance(patch, list):
            kw.setdefault("_content_type", JSON_PATCH)
        return dict(
            self.api.patch_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, PLURAL, name, patch, **kw
            )
        )

    def replace(self, body: dict, name: str = "prod") -> dict:
        return dict(
            self.api.replace_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, name, body)
        )


@pytest.fixture
def routes(api: Any) -> Iterator[Routes]:
    yield Routes(api)


def _failure(err: client.ApiException) -> dict[str, Any]:
    body = json.loads(err.body or "")
    assert body["kind"] == "Status" and body["code"] == err.status
    return dict(body)


def weights(route: dict) -> list[int]:
    return [r["weight"] for r in route["spec"]["rules"][0]["backendRefs"]]


def test_discovery_lists_httproutes_like_the_crd(api: Any) -> None:
    groups: dict[str, Any] = {g.name: g for g in client.ApisApi(api).get_api_versions().groups}
    assert groups[GROUP].preferred_version.group_version == f"{GROUP}/{VERSION}"
    listing = client.CustomObjectsApi(api).get_api_resources(GROUP, VERSION)
    resources = {r.name: r for r in listing.resources}
    route = resources["httproutes"]
    assert (route.kind, route.namespaced, route.singular_name) == ("HTTPRoute", True, "httproute")
    assert route.categories == ["gateway-api"]
    assert "httproutes/status" in resources


def test_create_applies_the_crd_defaults_and_drops_the_status(routes: Routes) -> None:
    body = http_route(green=None)
    body["status"] = {"parents": []}
    created = routes.create(body)
    assert weights(created) == [100, 1]  # an unset weight is 1 (the CRD's default)
    ref = created["spec"]["rules"][0]["backendRefs"][0]
    assert (ref["group"], ref["kind"]) == ("", "Service")
    assert created["spec"]["rules"][0]["matches"] == [
        {"path": {"type": "PathPrefix", "value": "/"}}
    ]
    assert created["spec"]["parentRefs"][0]["kind"] == "Gateway"
    assert "status" not in created
    assert created["metadata"]["generation"] == 1
    assert routes.get() == created


@pytest.mark.parametrize(
    ("blue", "field", "message"),
    [
        (
            1_000_001,
            "spec.rules[0].backendRefs[0].weight",
            "Invalid value: 1000001: spec.rules[0].backendRefs[0].weight in body should be less "
            "than or equal to 1000000",
        ),
        (
            -1,
            "spec.rules[0].backendRefs[0].weight",
            "Invalid value: -1: spec.rules[0].backendRefs[0].weight in body should be greater "
            "than or equal to 0",
        ),
    ],
)
def test_weights_outside_the_schema_are_refused(
    routes: Routes, blue: int, field: str, message: str
) -> None:
    with pytest.raises(client.ApiException) as info:
        routes.create(http_route(blue=blue))
    status = _failure(info.value)
    assert (info.value.status, status["reason"]) == (422, "Invalid")
    assert status["details"]["causes"] == [
        {"reason": "FieldValueInvalid", "message": message, "field": field}
    ]
    assert status["message"] == (
        f'HTTPRoute.gateway.networking.k8s.io "prod" is invalid: {field}: {message}'
    )


def test_the_schema_limits_hold(routes: Routes) -> None:
    too_many = http_route()
    too_many["spec"]["rules"][0]["backendRefs"] *= 9  # 18 > maxItems 16
    no_port = http_route()
    del no_port["spec"]["rules"][0]["backendRefs"][1]["port"]
    wrong_type = http_route()
    wrong_type["spec"]["rules"][0]["backendRefs"][0]["weight"] = "heavy"
    bad_name = http_route()
    bad_name["spec"]["rules"][0]["backendRefs"][0]["name"] = ""
    expected = {
        "too_many": ("spec.rules[0].backendRefs", "Too many: 18: must have at most 16 items"),
        "no_port": (
            "spec.rules[0].backendRefs[1]",
            'Invalid value: "object": Must have port for Service reference',
        ),
        "wrong_type": (
            "spec.rules[0].backendRefs[0].weight",
            'Invalid value: "heavy": spec.rules[0].backendRefs[0].weight in body must be of type '
            'integer: "string"',
        ),
        "bad_name": (
            "spec.rules[0].backendRefs[0].name",
            'Invalid value: "": spec.rules[0].backendRefs[0].name in body should be at least 1 '
            "chars long",
        ),
    }
    for case, body in {
        "too_many": too_many,
        "no_port": no_port,
        "wrong_type": wrong_type,
        "bad_name": bad_name,
    }.items():
        with pytest.raises(client.ApiException) as info:
            routes.create(body)
        causes = {(c["field"], c["message"]) for c in _failure(info.value)["details"]["causes"]}
        assert expected[case] in causes, (case, causes)
    assert (
        routes.api.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL)["items"] == []
    )


def test_unknown_fields_are_pruned_with_a_warning_or_refused_when_strict(routes: Routes) -> None:
    body = http_route()
    body["spec"]["rules"][0]["backendRefs"][0]["weigth"] = 5
    created, _, headers = routes.api.create_namespaced_custom_object_with_http_info(
        GROUP, VERSION, NAMESPACE, PLURAL, body
    )
    assert "weigth" not in created["spec"]["rules"][0]["backendRefs"][0]
    assert headers.get("Warning") == (
        '299 - "unknown field \\"spec.rules[0].backendRefs[0].weigth\\""'
    )
    body["metadata"]["name"] = "strict"
    with pytest.raises(client.ApiException) as info:
        routes.create(body, field_validation="Strict")
    assert info.value.status == 400
    assert _failure(info.value)["message"] == (
        'HTTPRoute in version "v1" cannot be handled as a HTTPRoute: strict decoding error: '
        'unknown field "spec.rules[0].backendRefs[0].weigth"'
    )


def test_json_patch_with_test_ops_is_a_compare_and_swap_of_the_weights(routes: Routes) -> None:
    rv = routes.create(http_route())["metadata"]["resourceVersion"]
    flip = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "test", "path": "/spec/rules/0/backendRefs/0/weight", "value": 100},
        {"op": "test", "path": "/spec/rules/0/backendRefs/1/weight", "value": 0},
        {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 0},
        {"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 100},
    ]
    flipped = routes.patch(flip)
    assert weights(flipped) == [0, 100]
    assert flipped["metadata"]["generation"] == 2
    # The same patch again: its resourceVersion is stale, nothing changes.
    with pytest.raises(client.ApiException) as info:
        routes.patch(flip)
    assert info.value.status == 422
    assert "testing value /metadata/resourceVersion failed" in str(info.value.body)
    assert weights(routes.get()) == [0, 100]


def test_a_merge_patch_with_a_stale_resource_version_conflicts(routes: Routes) -> None:
    created = routes.create(http_route())
    routes.patch({"metadata": {"labels": {"touched": "yes"}}})
    stale = {
        "metadata": {"resourceVersion": created["metadata"]["resourceVersion"]},
        "spec": {"rules": [{"backendRefs": [{"name": "gx10-green", "port": 8000}]}]},
    }
    with pytest.raises(client.ApiException) as info:
        routes.patch(stale)
    assert (info.value.status, _failure(info.value)["reason"]) == (409, "Conflict")
    assert weights(routes.get()) == [100, 0]


def test_a_merge_patch_is_validated_as_a_create_is(routes: Routes) -> None:
    routes.create(http_route())
    whole_rules = {
        "spec": {"rules": [{"backendRefs": [{"name": "gx10-green", "port": 8000, "weight": -5}]}]}
    }
    with pytest.raises(client.ApiException) as info:
        routes.patch(whole_rules)
    assert info.value.status == 422
    assert weights(routes.get()) == [100, 0]


def test_a_strategic_merge_patch_is_415_as_for_any_custom_resource(routes: Routes) -> None:
    routes.create(http_route())
    with pytest.raises(client.ApiException) as info:
        routes.patch({"metadata": {"labels": {"a": "b"}}}, _content_type=STRATEGIC)
    status = _failure(info.value)
    assert (info.value.status, status["reason"]) == (415, "UnsupportedMediaType")
    assert status["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json-patch+json, application/merge-patch+json"
    )
    assert "labels" not in routes.get()["metadata"]


def test_replace_with_a_stale_resource_version_conflicts(routes: Routes) -> None:
    created = routes.create(http_route())
    routes.patch([{"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 50}])
    created["spec"]["rules"][0]["backendRefs"][1]["weight"] = 100
    with pytest.raises(client.ApiException) as info:
        routes.replace(created)
    assert info.value.status == 409
    current = routes.get()
    current["spec"]["rules"][0]["backendRefs"][1]["weight"] = 100
    assert weights(routes.replace(current)) == [50, 100]


def test_the_status_subresource_is_separate(routes: Routes) -> None:
    routes.create(http_route())
    accepted = {
        "type": "Accepted",
        "status": "True",
        "reason": "Accepted",
        "message": "",
        "lastTransitionTime": "2026-01-01T00:00:00Z",
    }
    parent = {"parentRef": {"name": "gx10-gateway"}, "controllerName": "x.io/y"}
    with pytest.raises(client.ApiException) as info:  # the status is validated too
        routes.api.patch_namespaced_custom_object_status(
            GROUP, VERSION, NAMESPACE, PLURAL, "prod", {"status": {"parents": [parent]}}
        )
    assert "status.parents[0].conditions: Required value" in _failure(info.value)["message"]
    status = {"parents": [{**parent, "conditions": [accepted]}]}
    written = routes.api.patch_namespaced_custom_object_status(
        GROUP, VERSION, NAMESPACE, PLURAL, "prod", {"status": status, "spec": {"hostnames": ["h"]}}
    )
    assert written["status"]["parents"][0]["parentRef"]["kind"] == "Gateway"  # defaulted
    assert "hostnames" not in written["spec"]
    main = routes.patch({"status": {"parents": []}, "spec": {"hostnames": ["gx10.example"]}})
    assert main["status"] == written["status"] and main["spec"]["hostnames"] == ["gx10.example"]


def test_watch_sees_the_weights_change(routes: Routes) -> None:
    created = routes.create(http_route())
    seen: list[dict] = []

    def flip() -> None:
        wait_for(lambda: seen)  # the watch is established once it has seen the route
        routes.patch([{"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 7}])

    writer = threading.Thread(target=flip)
    writer.start()
    w = watch.Watch()
    for event in w.stream(
        routes.api.list_namespaced_custom_object,
        GROUP,
        VERSION,
        NAMESPACE,
        PLURAL,
        resource_version=str(int(created["metadata"]["resourceVersion"]) - 1),
        timeout_seconds=5,
    ):
        seen.append(event)
        if event["type"] == "MODIFIED":
            w.stop()
    writer.join()
    assert [e["type"] for e in seen] == ["ADDED", "MODIFIED"]
    assert weights(seen[-1]["object"]) == [100, 7]


def test_delete(routes: Routes) -> None:
    routes.create(http_route())
    routes.api.delete_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "prod")
    with pytest.raises(client.ApiException) as info:
        routes.get()
    assert info.value.status == 404
    assert _failure(info.value)["message"] == (
        'httproutes.gateway.networking.k8s.io "prod" not found'
    )


def test_the_table_has_the_crd_printer_columns(sandbox: Sandbox, routes: Routes) -> None:
    body = http_route()
    body["spec"]["hostnames"] = ["gx10.example", "llm.example"]
    routes.create(body)
    response = httpx.get(
        f"{sandbox.url}/apis/{GROUP}/{VERSION}/namespaces/{NAMESPACE}/{PLURAL}",
        headers={
            "Authorization": f"Bearer {sandbox.token}",
            "Accept": "application/json;as=Table;v=v1;g=meta.k8s.io",
        },
    )
    table = response.json()
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Hostnames", "Age"]
    assert [c["type"] for c in table["columnDefinitions"]] == ["string", "string", "date"]
    name, hostnames, age = table["rows"][0]["cells"]
    assert (name, hostnames) == ("prod", '["gx10.example","llm.example"]')
    assert age.endswith("s")
