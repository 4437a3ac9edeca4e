"""The ``httproute`` flag kind: which slot an HTTPRoute's weights name, and the CAS patch that
makes them name the other (pure rules over the route's JSON)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import jsonpatch
import pytest

from gx10slots.config import parse_config
from gx10slots.errors import ConfigError, Refused
from gx10slots.flags import KINDS
from gx10slots.flags.httproute import KIND
from gx10slots.flip.rules import flag_patch, plan_flip
from gx10slots.slots import SlotState, SmokeRecord, flag_state


def config_doc(**flag: Any) -> dict[str, Any]:
    return {
        "namespace": "gx10",
        "slots": {
            "blue": {"deployment": "gx10-blue", "endpoint": "http://127.0.0.1:8001"},
            "green": {
                "deployment": "gx10-green",
                "service": "green-svc",
                "port": 9000,
                "endpoint": "http://127.0.0.1:8002",
            },
        },
        "flag": {
            "kind": "httproute",
            "name": "gx10-model",
            "endpoint": "http://127.0.0.1:8000",
            **flag,
        },
    }


CONFIG = parse_config(config_doc())


def ref(name: str, weight: int | None, **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"group": "", "kind": "Service", "name": name, "port": 8000, **more}
    if weight is not None:
        out["weight"] = weight
    return out


def route(*rules: list[dict[str, Any]], rv: str = "7") -> dict[str, Any]:
    return {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "HTTPRoute",
        "metadata": {"name": "gx10-model", "namespace": "gx10", "resourceVersion": rv},
        "spec": {"rules": [{"backendRefs": refs} for refs in rules]},
    }


def blue_active() -> dict[str, Any]:
    return route([ref("gx10-blue", 100), ref("green-svc", 0)])


def weights(obj: dict[str, Any], rule: int = 0) -> list[Any]:
    return [r.get("weight") for r in obj["spec"]["rules"][rule]["backendRefs"]]


def flipped(obj: dict[str, Any], target: str) -> dict[str, Any]:
    ops = KIND.value_ops(obj, CONFIG, target)
    return dict(jsonpatch.JsonPatch(ops).apply(copy.deepcopy(obj)))


def test_the_kind_is_registered_and_accepted_by_the_config() -> None:
    assert KINDS["httproute"] is KIND
    assert CONFIG.flag.kind == "httproute"
    assert CONFIG.flag.key == ""  # no key: the weights are the value
    assert CONFIG.slot("blue").service == "gx10-blue"  # the backendRefs default to these
    with pytest.raises(ConfigError, match=r"flag\.key"):
        parse_config(config_doc(key="weight"))


def test_with_apiserver_proxy_access_the_gateway_service_is_required() -> None:
    doc = config_doc()
    doc["access"] = "apiserver-proxy"
    del doc["flag"]["endpoint"]
    with pytest.raises(ConfigError, match=r"flag\.service: is required"):
        parse_config(doc)
    doc["flag"]["service"] = "gx10-gateway"
    assert parse_config(doc).flag.service == "gx10-gateway"


@pytest.mark.parametrize(
    ("refs", "value"),
    [
        ([ref("gx10-blue", 100), ref("green-svc", 0)], "blue"),
        ([ref("gx10-blue", 0), ref("green-svc", 100)], "green"),
        ([ref("gx10-blue", 1), ref("green-svc", 0)], "blue"),  # any weight above 0 is all of it
        ([ref("gx10-blue", None), ref("green-svc", 0)], "blue"),  # unset is 1
        ([ref("green-svc", 100)], "green"),
        ([ref("gx10-blue", 50), ref("green-svc", 50)], "blue 50, green 50"),
        ([ref("gx10-blue", 0), ref("green-svc", 0)], "no backendRef has a weight above 0"),
        ([ref("gx10-blue", 100), ref("canary", 1)], "blue 100, canary 1"),
        # A Service of the same name in another namespace is not the slot.
        ([ref("gx10-blue", 0), ref("green-svc", 100, namespace="other")], "green-svc 100"),
    ],
)
def test_the_value_is_the_slot_with_all_the_weight(refs: list[Any], value: str) -> None:
    assert KIND.value(route(refs), CONFIG) == value
    assert flag_state(route(refs), CONFIG).active == (value if value in ("blue", "green") else None)


@pytest.mark.parametrize(
    "obj",
    [
        {},
        {"spec": "junk"},
        {"spec": {"rules": "junk"}},
        {"spec": {"rules": [None, {"backendRefs": "x"}, {"backendRefs": [None, 3]}]}},
        route([ref("someone-else", 100)]),
    ],
)
def test_a_route_without_slot_backends_names_nothing_and_does_not_crash(obj: Any) -> None:
    assert KIND.value(obj, CONFIG) is None


def test_rules_that_disagree_are_shown_rule_by_rule() -> None:
    obj = route([ref("gx10-blue", 100)], [ref("green-svc", 100)])
    assert KIND.value(obj, CONFIG) == "rule 0: blue; rule 1: green"


def test_a_flip_sets_100_and_0_after_testing_what_it_replaces() -> None:
    obj = blue_active()
    ops = KIND.value_ops(obj, CONFIG, "green")
    assert ops == [
        {"op": "test", "path": "/spec/rules/0/backendRefs/0/name", "value": "gx10-blue"},
        {"op": "test", "path": "/spec/rules/0/backendRefs/0/weight", "value": 100},
        {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 0},
        {"op": "test", "path": "/spec/rules/0/backendRefs/1/name", "value": "green-svc"},
        {"op": "test", "path": "/spec/rules/0/backendRefs/1/weight", "value": 0},
        {"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 100},
    ]
    after = flipped(obj, "green")
    assert weights(after) == [0, 100]
    assert KIND.value(after, CONFIG) == "green"
    assert KIND.value(flipped(after, "blue"), CONFIG) == "blue"


def test_the_patch_does_not_apply_to_weights_changed_since_they_were_read() -> None:
    read = blue_active()
    ops = KIND.value_ops(read, CONFIG, "green")
    changed = copy.deepcopy(read)
    changed["spec"]["rules"][0]["backendRefs"][1]["weight"] = 30  # someone started a canary
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.JsonPatch(ops).apply(changed)
    reordered = copy.deepcopy(read)
    reordered["spec"]["rules"][0]["backendRefs"].reverse()
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.JsonPatch(ops).apply(reordered)


def test_a_flip_also_zeroes_other_backends_and_covers_every_slot_rule() -> None:
    obj = route(
        [ref("gx10-blue", 100), ref("green-svc", 0), ref("canary", 5)],
        [ref("gx10-blue", None), ref("green-svc", None)],
        [ref("metrics", 1)],  # no slot backend: not the flag's business
    )
    after = flipped(obj, "green")
    assert weights(after, 0) == [0, 100, 0]
    assert weights(after, 1) == [0, 100]
    assert weights(after, 2) == [1]
    assert KIND.value(after, CONFIG) == "green"


def test_a_rule_without_the_target_gets_its_service() -> None:
    after = flipped(route([ref("gx10-blue", 100)]), "green")
    assert after["spec"]["rules"][0]["backendRefs"][1] == {
        "name": "green-svc",
        "port": 9000,
        "weight": 100,
    }
    assert KIND.value(after, CONFIG) == "green"


def _slot(name: str) -> SlotState:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return SlotState(
        name=name,
        exists=True,
        model=f"org/{name}",
        served_name="team-model",  # what production serves, on both slots
        # The identity name: through a Gateway only answers attributed by it prove a flip.
        served_names=("team-model", f"gx10slots/{name}"),
        replicas=1,
        ready=1,
        available=1,
        generation_observed=True,
        revision=f"rev-{name}",
        smoke=SmokeRecord(passed=True, at=now, revision=f"rev-{name}", report=None),
    )


def test_the_flip_plan_is_one_cas_patch_on_the_resource_version_and_the_weights() -> None:
    obj = blue_active()
    plan = plan_flip(
        "flip",
        {"blue": _slot("blue"), "green": _slot("green")},
        flag_state(obj, CONFIG),
        obj,
        CONFIG,
        force=False,
        by="me",
        reason="test",
        now=datetime.now(UTC),
    )
    assert (plan.source, plan.target) == ("blue", "green")
    assert plan.patch[0] == {"op": "test", "path": "/metadata/resourceVersion", "value": "7"}
    after = dict(jsonpatch.JsonPatch(plan.patch).apply(copy.deepcopy(obj)))
    assert weights(after) == [0, 100]
    assert after["metadata"]["annotations"]["gx10slots.io/active"] == "green"
    stale = copy.deepcopy(obj)
    stale["metadata"]["resourceVersion"] = "8"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.JsonPatch(plan.patch).apply(stale)


def test_a_split_route_is_refused_as_naming_no_slot() -> None:
    obj = route([ref("gx10-blue", 50), ref("green-svc", 50)])
    with pytest.raises(Refused, match="blue 50, green 50"):
        plan_flip(
            "flip",
            {"blue": _slot("blue"), "green": _slot("green")},
            flag_state(obj, CONFIG),
            obj,
            CONFIG,
            force=False,
            by="me",
            reason="test",
            now=datetime.now(UTC),
        )
    # flip-back to the recorded previous slot still repairs it (100/0 again).
    ops = flag_patch(
        obj, CONFIG, source=None, target="blue", by="me", reason="r", at=datetime.now(UTC)
    )
    assert weights(dict(jsonpatch.JsonPatch(ops).apply(copy.deepcopy(obj)))) == [100, 0]


def test_flux_applied_routes_are_refused_unless_flux_leaves_them_alone() -> None:
    obj = blue_active()
    obj["metadata"]["labels"] = {
        "kustomize.toolkit.fluxcd.io/name": "apps",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
    }
    assert "atomic list" in str(KIND.flux_blocker(obj, CONFIG))
    obj["metadata"]["annotations"] = {"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent"}
    assert KIND.flux_blocker(obj, CONFIG) is None


def test_a_huge_split_is_shown_bounded() -> None:
    refs = [ref(f"backend-{i:03d}-" + "x" * 50, 1) for i in range(16)]
    obj = route(*[refs] * 16)
    obj["spec"]["rules"][0]["backendRefs"][0] = ref("gx10-blue", 1)
    value = KIND.value(obj, CONFIG)
    assert value is not None and len(value) == 300
    assert value.startswith("blue 1, backend-001-") and value.endswith("…")
