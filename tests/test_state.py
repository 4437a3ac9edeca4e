from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

from gx10slots.config import parse_config
from gx10slots.flags import kind_of
from gx10slots.kube.values import now_utc, rfc3339
from gx10slots.memory import gib, gpu_memory_utilization, slot_budget_gib
from gx10slots.slots import (
    flag_state,
    revision_of,
    role_of,
    slot_state,
    status_warnings,
)
from tests.helpers.config import CONFIG
from tests.helpers.objects import deployment, service


def test_revision_changes_with_any_template_change_and_only_then() -> None:
    base = deployment()
    same = copy.deepcopy(base)
    same["status"]["availableReplicas"] = 0
    same["metadata"]["annotations"]["gx10slots.io/smoke-passed"] = "true"
    assert revision_of(base) == revision_of(same)
    changed = deployment(model="org/b")
    assert revision_of(base) != revision_of(changed)


def test_slot_state_reads_model_readiness_and_smoke_for_current_revision_only() -> None:
    d = deployment()
    rev = revision_of(d)
    d["metadata"]["annotations"] = {
        "gx10slots.io/smoke-revision": rev,
        "gx10slots.io/smoke-passed": "true",
        "gx10slots.io/smoke-at": rfc3339(now_utc()),
    }
    slot = slot_state("blue", d, CONFIG, None)
    assert (slot.model, slot.served_name, slot.image) == ("org/a", "a", "vllm:1")
    assert slot.is_ready
    assert slot.smoke is not None and slot.smoke.passed
    d["metadata"]["annotations"]["gx10slots.io/smoke-revision"] = "0123456789ab"
    assert slot_state("blue", d, CONFIG, None).smoke is None


def test_not_ready_when_controller_has_not_observed_the_generation() -> None:
    assert not slot_state("blue", deployment(observed=1), CONFIG, None).is_ready
    assert not slot_state("blue", deployment(available=0), CONFIG, None).is_ready
    assert not slot_state("blue", None, CONFIG, None).is_ready


def test_flag_names_active_and_previous_and_roles() -> None:
    flag = flag_state(service("green", annotations={"gx10slots.io/previous": "blue"}), CONFIG)
    assert (flag.active, flag.previous, flag.resource_version) == ("green", "blue", "7")
    blue = slot_state("blue", deployment(), CONFIG, None)
    parked = slot_state("blue", deployment(replicas=0, available=0), CONFIG, None)
    green = slot_state("green", deployment(), CONFIG, None)
    assert role_of(green, flag) == "active"
    assert role_of(blue, flag) == "standby"
    assert role_of(parked, flag) == "parked"


def test_flag_value_that_is_not_a_slot_is_not_active() -> None:
    flag = flag_state(service("purple"), CONFIG)
    assert flag.active is None and flag.value == "purple"
    slots = {
        "blue": slot_state("blue", deployment(), CONFIG, None),
        "green": slot_state("green", deployment(), CONFIG, None),
    }
    warnings = status_warnings(slots, flag, service("purple"), CONFIG, now_utc())
    assert any("names 'purple', not a slot" in w for w in warnings)


def test_warnings_cold_standby_and_stale_smoke() -> None:
    flag = flag_state(service("blue"), CONFIG)
    cold = {
        "blue": slot_state("blue", deployment(), CONFIG, None),
        "green": slot_state("green", deployment(replicas=0, available=0), CONFIG, None),
    }
    assert any(
        "parked (cold)" in w
        for w in status_warnings(cold, flag, service("blue"), CONFIG, now_utc())
    )
    green = deployment()
    green["metadata"]["annotations"] = {
        "gx10slots.io/smoke-revision": revision_of(green),
        "gx10slots.io/smoke-passed": "true",
        "gx10slots.io/smoke-at": rfc3339(now_utc() - timedelta(hours=2)),
    }
    stale = {"blue": cold["blue"], "green": slot_state("green", green, CONFIG, None)}
    assert any(
        "stale" in w for w in status_warnings(stale, flag, service("blue"), CONFIG, now_utc())
    )


def test_flux_owned_selector_blocks_flip_until_annotated() -> None:
    flux = {
        "kustomize.toolkit.fluxcd.io/name": "apps",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
    }
    blocker = kind_of(CONFIG).flux_blocker(service("blue", labels=flux), CONFIG)
    assert blocker is not None and "kustomize.toolkit.fluxcd.io/ssa: IfNotPresent" in blocker
    for extra in (
        {"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent"},
        {"kustomize.toolkit.fluxcd.io/reconcile": "disabled"},
    ):
        assert (
            kind_of(CONFIG).flux_blocker(service("blue", labels=flux, annotations=extra), CONFIG)
            is None
        )
    assert kind_of(CONFIG).flux_blocker(service("blue"), CONFIG) is None


def test_memory_budget_sources_in_order() -> None:
    assert gib("128Gi") == 128
    assert gib("500Mi") == 0.49
    limit = deployment(resources={"limits": {"memory": "60Gi"}, "requests": {"memory": "50Gi"}})
    assert slot_budget_gib(limit, limit["spec"]["template"]["spec"]["containers"][0], None) == 60
    annotated = deployment(annotations={"gx10slots.io/memory-gib": "42"})
    assert (
        slot_budget_gib(annotated, annotated["spec"]["template"]["spec"]["containers"][0], None)
        == 42
    )
    vllm = deployment(args=["--model", "x", "--gpu-memory-utilization=0.45"])
    assert slot_budget_gib(vllm, vllm["spec"]["template"]["spec"]["containers"][0], 128) == 57.6
    assert gpu_memory_utilization(["--gpu-memory-utilization", "0.3"]) == 0.3
    assert gpu_memory_utilization(["--gpu-memory-utilization", "3"]) is None


def test_flux_owned_slot_deployment_is_a_drift_risk_unless_annotated() -> None:
    from gx10slots.flux import flux_deploy_blocker

    d = deployment()
    assert flux_deploy_blocker(d, "green") is None
    d["metadata"]["labels"] = {
        "kustomize.toolkit.fluxcd.io/name": "apps",
        "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
    }
    blocker = flux_deploy_blocker(d, "green")
    assert blocker is not None and "would revert the model deployed" in blocker
    d["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/ssa"] = "IfNotPresent"
    assert flux_deploy_blocker(d, "green") is None


def test_configmap_flag_warning_respects_flux_opt_outs() -> None:
    config = parse_config(
        {
            "namespace": "gx10",
            "slots": {
                "blue": {"deployment": "gx10-blue", "endpoint": "http://127.0.0.1:1"},
                "green": {"deployment": "gx10-green", "endpoint": "http://127.0.0.1:2"},
            },
            "flag": {"kind": "configmap", "name": "router", "endpoint": "http://127.0.0.1:3"},
        }
    )
    flux = {"kustomize.toolkit.fluxcd.io/name": "a", "kustomize.toolkit.fluxcd.io/namespace": "b"}
    cm: dict[str, Any] = {
        "metadata": {"labels": flux, "annotations": {}},
        "data": {"active-slot": "blue"},
    }
    slots = {n: slot_state(n, deployment(), config, None) for n in ("blue", "green")}
    flag = flag_state(cm, config)
    assert any(
        "must not be declared in Git" in w
        for w in status_warnings(slots, flag, cm, config, now_utc())
    )
    cm["metadata"]["annotations"]["kustomize.toolkit.fluxcd.io/ssa"] = "IfNotPresent"
    assert not any("Git" in w for w in status_warnings(slots, flag, cm, config, now_utc()))


def test_vllm_reservation_counts_when_larger_than_the_declared_limit() -> None:
    d = deployment(
        resources={"limits": {"memory": "20Gi"}}, args=["--gpu-memory-utilization", "0.45"]
    )
    container = d["spec"]["template"]["spec"]["containers"][0]
    assert slot_budget_gib(d, container, 128) == 57.6
    assert slot_budget_gib(d, container, None) == 20


def test_after_a_revert_the_previous_slot_is_said_to_have_failed_not_to_have_changed() -> None:
    # A revert records no trusted revision for the slot it leaves (it just failed): status must
    # not claim that slot "no longer runs the revision that served", which it still does.
    slots = {
        "blue": slot_state("blue", deployment(), CONFIG, None),
        "green": slot_state("green", deployment(), CONFIG, None),
    }
    for action in ("revert", "auto-revert"):
        obj = service(
            "blue",
            annotations={"gx10slots.io/previous": "green", "gx10slots.io/action": action},
        )
        warnings = status_warnings(slots, flag_state(obj, CONFIG), obj, CONFIG, now_utc())
        assert any("green was switched away from after it failed" in w for w in warnings)
        assert not any("no longer runs the revision" in w for w in warnings), warnings
    flipped = service("blue", annotations={"gx10slots.io/previous": "green"})
    warnings = status_warnings(slots, flag_state(flipped, CONFIG), flipped, CONFIG, now_utc())
    assert any("green no longer runs the revision that served" in w for w in warnings)
