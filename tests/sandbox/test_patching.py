"""Merge, JSON and strategic merge patches as the apiserver applies them."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gx10slots.sandbox.patching import (
    APPLY_PATCH,
    JSON_PATCH,
    MERGE_PATCH,
    STRATEGIC_MERGE_PATCH,
    PatchError,
    apply_patch,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)

DEPLOYMENT: dict[str, Any] = {
    "metadata": {"name": "blue", "labels": {"app": "model", "slot": "blue"}},
    "spec": {
        "replicas": 1,
        "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%"}},
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "engine",
                        "image": "vllm:1",
                        "args": ["--a", "--b"],
                        "env": [
                            {"name": "MODEL", "value": "m1"},
                            {"name": "SERVED_MODEL_NAME", "value": "gx10"},
                        ],
                        "ports": [{"name": "http", "containerPort": 8000}],
                        "volumeMounts": [{"name": "cache", "mountPath": "/cache"}],
                    },
                    {"name": "sidecar", "image": "proxy:1"},
                ],
                "volumes": [{"name": "cache", "emptyDir": {}}],
            }
        },
    },
}


def _container(doc: dict, name: str) -> dict:
    containers = doc["spec"]["template"]["spec"]["containers"]
    return next(c for c in containers if c["name"] == name)


def test_merge_patch_merges_maps_and_null_deletes() -> None:
    patched = merge_patch(
        DEPLOYMENT, {"metadata": {"labels": {"slot": None, "flag": "on"}}, "spec": {"replicas": 0}}
    )
    assert patched["metadata"]["labels"] == {"app": "model", "flag": "on"}
    assert patched["spec"]["replicas"] == 0
    assert DEPLOYMENT["metadata"]["labels"]["slot"] == "blue"  # the original is untouched


def test_merge_patch_replaces_lists() -> None:
    patch = {"spec": {"template": {"spec": {"containers": [{"name": "only"}]}}}}
    patched = merge_patch(DEPLOYMENT, patch)
    assert patched["spec"]["template"]["spec"]["containers"] == [{"name": "only"}]


def test_json_patch_with_passing_test() -> None:
    ops = [
        {"op": "test", "path": "/metadata/labels/slot", "value": "blue"},
        {"op": "replace", "path": "/metadata/labels/slot", "value": "green"},
    ]
    assert json_patch(DEPLOYMENT, ops)["metadata"]["labels"]["slot"] == "green"


def test_json_patch_failing_test_is_422() -> None:
    ops = [
        {"op": "test", "path": "/metadata/labels/slot", "value": "green"},
        {"op": "replace", "path": "/metadata/labels/slot", "value": "blue"},
    ]
    with pytest.raises(PatchError) as info:
        json_patch(DEPLOYMENT, ops)
    assert info.value.code == 422
    assert info.value.reason == "Invalid"
    assert info.value.causes == ["testing value /metadata/labels/slot failed: test failed"]


def test_json_patch_on_a_missing_path_is_422() -> None:
    with pytest.raises(PatchError) as info:
        json_patch(DEPLOYMENT, [{"op": "remove", "path": "/metadata/annotations/x"}])
    assert info.value.code == 422


@pytest.mark.parametrize("body", [{"op": "add"}, [{"op": "frobnicate", "path": "/a"}], "x"])
def test_malformed_json_patch_is_400(body: object) -> None:
    with pytest.raises(PatchError) as info:
        json_patch(DEPLOYMENT, body)
    assert info.value.code == 400


def test_strategic_patch_merges_container_env_by_name() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "engine", "env": [{"name": "MODEL", "value": "m2"}]},
                    ]
                }
            }
        }
    }
    patched = strategic_merge_patch(DEPLOYMENT, patch)
    engine = _container(patched, "engine")
    assert engine["env"] == [
        {"name": "MODEL", "value": "m2"},
        {"name": "SERVED_MODEL_NAME", "value": "gx10"},
    ]
    assert engine["image"] == "vllm:1"
    assert _container(patched, "sidecar") == {"name": "sidecar", "image": "proxy:1"}
    assert engine["args"] == ["--a", "--b"]


def test_strategic_patch_adds_items_and_replaces_plain_lists() -> None:
    patch = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "engine",
                            "args": ["--c"],
                            "env": [{"name": "NEW", "value": "1"}],
                            "ports": [{"containerPort": 9000, "name": "metrics"}],
                        },
                    ],
                    "volumes": [{"name": "models", "hostPath": {"path": "/models"}}],
                }
            }
        }
    }
    patched = strategic_merge_patch(DEPLOYMENT, patch)
    engine = _container(patched, "engine")
    assert engine["args"] == ["--c"]
    assert [e["name"] for e in engine["env"]] == ["MODEL", "SERVED_MODEL_NAME", "NEW"]
    assert [p["containerPort"] for p in engine["ports"]] == [8000, 9000]
    assert [v["name"] for v in patched["spec"]["template"]["spec"]["volumes"]] == [
        "cache",
        "models",
    ]


def test_strategic_patch_directives() -> None:
    delete_env = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "engine", "env": [{"name": "MODEL", "$patch": "delete"}]},
                        {"name": "sidecar", "$patch": "delete"},
                    ]
                }
            }
        }
    }
    patched = strategic_merge_patch(DEPLOYMENT, delete_env)
    assert [c["name"] for c in patched["spec"]["template"]["spec"]["containers"]] == ["engine"]
    assert _container(patched, "engine")["env"] == [{"name": "SERVED_MODEL_NAME", "value": "gx10"}]

    replace_list = {
        "spec": {"template": {"spec": {"volumes": [{"$patch": "replace"}, {"name": "x"}]}}}
    }
    assert strategic_merge_patch(DEPLOYMENT, replace_list)["spec"]["template"]["spec"][
        "volumes"
    ] == [{"name": "x"}]

    replace_map = {"metadata": {"labels": {"$patch": "replace", "only": "this"}}}
    assert strategic_merge_patch(DEPLOYMENT, replace_map)["metadata"]["labels"] == {"only": "this"}

    retain = {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}
    assert strategic_merge_patch(DEPLOYMENT, retain)["spec"]["strategy"] == {"type": "Recreate"}

    null_deletes = {"metadata": {"labels": {"slot": None}}}
    assert strategic_merge_patch(DEPLOYMENT, null_deletes)["metadata"]["labels"] == {"app": "model"}


def test_strategic_patch_merges_service_ports_by_port() -> None:
    svc = {"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8000}]}}
    patched = strategic_merge_patch(svc, {"spec": {"ports": [{"port": 80, "targetPort": 9000}]}})
    assert patched["spec"]["ports"] == [{"name": "http", "port": 80, "targetPort": 9000}]


def test_apply_patch_dispatches_on_content_type() -> None:
    body = json.dumps({"spec": {"replicas": 3}}).encode()
    for content_type in (MERGE_PATCH, STRATEGIC_MERGE_PATCH + "; charset=utf-8"):
        assert apply_patch(DEPLOYMENT, body, content_type)["spec"]["replicas"] == 3
    ops = json.dumps([{"op": "replace", "path": "/spec/replicas", "value": 2}]).encode()
    assert apply_patch(DEPLOYMENT, ops, JSON_PATCH)["spec"]["replicas"] == 2


@pytest.mark.parametrize("content_type", [APPLY_PATCH, "application/json", "text/plain", None])
def test_unsupported_patch_types_are_415(content_type: str | None) -> None:
    with pytest.raises(PatchError) as info:
        apply_patch(DEPLOYMENT, b"{}", content_type)
    assert info.value.code == 415
    assert info.value.reason == "UnsupportedMediaType"


def test_undecodable_patch_is_400() -> None:
    with pytest.raises(PatchError) as info:
        apply_patch(DEPLOYMENT, b"{not json", MERGE_PATCH)
    assert info.value.code == 400
