"""The flag kinds behind one interface: what each reads, and the patch that moves it."""

from __future__ import annotations

from typing import Any

import jsonpatch
import pytest

from gx10slots.config import parse_config
from gx10slots.errors import ConfigError
from gx10slots.flags import KINDS, kind_of
from tests.test_config import valid


def configured(kind: str, **flag: Any) -> Any:
    doc = valid()
    doc["flag"] = {"kind": kind, "name": "router-flag", "endpoint": "http://127.0.0.1:8000"}
    doc["flag"].update(flag)
    return parse_config(doc)


SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "router-flag", "resourceVersion": "7"},
    "spec": {"selector": {"app": "gx10", "gx10slots.io/slot": "blue"}},
}
CONFIGMAP = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {"name": "router-flag", "resourceVersion": "7"},
    "data": {"active-slot": "blue"},
}

HTTPROUTE = {
    "apiVersion": "gateway.networking.k8s.io/v1",
    "kind": "HTTPRoute",
    "metadata": {"name": "router-flag", "resourceVersion": "7"},
    "spec": {
        "rules": [
            {
                "backendRefs": [
                    {"name": "gx10-blue", "port": 8000, "weight": 100},
                    {"name": "green-svc", "port": 8000, "weight": 0},
                ]
            }
        ]
    },
}


@pytest.mark.parametrize(
    ("kind", "obj"),
    [("service-selector", SERVICE), ("configmap", CONFIGMAP), ("httproute", HTTPROUTE)],
)
def test_each_kind_reads_its_slot_and_its_patch_moves_exactly_that_value(
    kind: str, obj: dict[str, Any]
) -> None:
    config = configured(kind)
    flag = kind_of(config)
    assert flag.value(obj, config) == "blue"
    moved = jsonpatch.apply_patch(obj, flag.value_ops(obj, config, "green"))
    assert flag.value(moved, config) == "green"
    # Nothing else of the object changed.
    assert {k: v for k, v in moved.items() if k not in ("spec", "data")} == {
        k: v for k, v in obj.items() if k not in ("spec", "data")
    }


@pytest.mark.parametrize(("kind", "obj"), [("service-selector", SERVICE), ("configmap", CONFIGMAP)])
def test_the_patch_applies_only_to_the_value_that_was_read(kind: str, obj: dict[str, Any]) -> None:
    config = configured(kind)
    flag = kind_of(config)
    ops = flag.value_ops(obj, config, "green")
    moved_meanwhile = jsonpatch.apply_patch(obj, flag.value_ops(obj, config, "green"))
    elsewhere = jsonpatch.apply_patch(moved_meanwhile, flag.value_ops(moved_meanwhile, config, "x"))
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(elsewhere, ops)


def test_a_configmap_without_data_gets_its_key_added() -> None:
    config = configured("configmap")
    empty = {"metadata": {"name": "router-flag", "resourceVersion": "1"}}
    flag = kind_of(config)
    assert flag.value(empty, config) is None
    assert flag.value(jsonpatch.apply_patch(empty, flag.value_ops(empty, config, "green")), config)


def test_hostile_flag_objects_read_as_naming_nothing() -> None:
    for kind, obj in (
        ("service-selector", {"spec": {"selector": ["blue"]}}),
        ("service-selector", {"spec": {"selector": {"gx10slots.io/slot": 3}}}),
        ("configmap", {"data": "blue"}),
        ("configmap", {"data": {"active-slot": None}}),
        ("httproute", {"spec": {"rules": [{"backendRefs": "blue"}]}}),
        ("httproute", {"spec": {"rules": [{"backendRefs": [{"name": 3, "weight": "all"}]}]}}),
    ):
        config = configured(kind)
        assert kind_of(config).value(obj, config) is None


def test_the_config_offers_exactly_the_registered_kinds() -> None:
    for name, kind in KINDS.items():
        assert kind_of(configured(name)) is kind
    with pytest.raises(ConfigError, match="expected one of " + ", ".join(KINDS)):
        configured("selector")


def test_each_kind_checks_its_own_key() -> None:
    with pytest.raises(ConfigError, match="a label key"):
        configured("service-selector", key="not a key!")
    with pytest.raises(ConfigError, match="a ConfigMap key"):
        configured("configmap", key="a/b")
    assert configured("configmap", key="slot").flag.key == "slot"
