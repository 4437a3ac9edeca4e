from __future__ import annotations

import math
from typing import Any

import pytest

from gx10slots.deploy.rules import (
    check_memory,
    memory_gate,
    parse_env_pairs,
    plan_deploy,
    rollout_verdict,
)
from gx10slots.errors import Refused, UsageError
from gx10slots.kube.values import now_utc
from gx10slots.memory import SlotMemory
from gx10slots.sandbox.seed import slot_deployment
from gx10slots.slots import revision_of
from tests.test_state import CONFIG


def current(replicas: int = 0) -> dict[str, Any]:
    d = slot_deployment("green", model="org/old", served_name="old", replicas=replicas)
    d["metadata"].update(resourceVersion="7", generation=3)
    return d


def plan(**kw: Any) -> Any:
    args: dict[str, Any] = dict(
        slot="green",
        model="org/new",
        image=None,
        served_name=None,
        env={},
        memory_gib=None,
        node_capacity_gib=128,
        by="me",
        now=now_utc(),
    )
    args.update(kw)
    return plan_deploy(current(args.pop("replicas", 0)), CONFIG, **args)


def test_plan_sets_model_served_name_env_memory_and_one_replica() -> None:
    p = plan(image="vllm:2", served_name="new", env={"VLLM_X": "1"}, memory_gib=50)
    container = p.deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"MODEL": "org/new", "SERVED_MODEL_NAME": "new", "VLLM_X": "1"}
    assert container["image"] == "vllm:2"
    assert container["resources"]["limits"]["memory"] == "50Gi"
    assert p.deployment["spec"]["replicas"] == 1
    assert p.deployment["metadata"]["resourceVersion"] == "7"  # the PUT is a compare-and-swap
    assert p.revision_after != p.revision_before == revision_of(current())
    assert p.deployment["metadata"]["annotations"]["gx10slots.io/model"] == "org/new"


def test_same_model_on_a_running_slot_is_no_change() -> None:
    running = current(1)
    p = plan_deploy(
        running,
        CONFIG,
        slot="green",
        model="org/old",
        image=None,
        served_name="old",
        env={},
        memory_gib=None,
        node_capacity_gib=128,
        by="me",
        now=now_utc(),
    )
    assert p.unchanged and p.revision_after == p.revision_before


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"model": "org/m;rm"}, "shell metacharacters"),
        ({"model": "a b"}, "without whitespace"),
        ({"model": "x" * 300}, "at most 253"),
        ({"served_name": ""}, "--served-name: empty"),
        ({"image": " "}, "--image"),
        ({"memory_gib": math.nan}, "--memory-gib nan"),
        ({"memory_gib": 2e6}, "more than 1048576 GiB"),
    ],
)
def test_bad_inputs_are_usage_errors(kw: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        plan(**kw)


def test_env_pairs() -> None:
    assert parse_env_pairs(["A=1", "B=x=y"], CONFIG) == {"A": "1", "B": "x=y"}
    for bad in ("A", "1A=2", "MODEL=x"):
        with pytest.raises(UsageError):
            parse_env_pairs([bad], CONFIG)


def test_memory_gate_numbers_and_ways_out() -> None:
    assert "fits" in check_memory(
        active_slot="blue",
        active_gib=60,
        new_slot="green",
        new_gib=60,
        capacity_gib=128,
        reserve_gib=8,
    )
    with pytest.raises(Refused) as info:
        check_memory(
            active_slot="blue",
            active_gib=60,
            new_slot="green",
            new_gib=70,
            capacity_gib=128,
            reserve_gib=8,
        )
    assert "60 GiB + new green 70 GiB + reserve 8 GiB = 138 GiB of 128 GiB" in info.value.message
    assert info.value.hint is not None and "at most 60 GiB" in info.value.hint
    assert "not checked" in check_memory(
        active_slot="blue",
        active_gib=60,
        new_slot="green",
        new_gib=None,
        capacity_gib=128,
        reserve_gib=8,
    )


def pod(
    name: str, template: dict[str, Any], *, ready: bool = False, **status: Any
) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": template["spec"],
        "status": {
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
            **status,
        },
    }


def rolled(**status: Any) -> dict[str, Any]:
    d = current(1)
    d["status"] = {"observedGeneration": 3, "updatedReplicas": 1, "availableReplicas": 1, **status}
    return d


def test_rollout_verdicts() -> None:
    d = rolled()
    template = d["spec"]["template"]
    assert rollout_verdict(d, [pod("p", template, ready=True)], "engine").state == "done"
    assert rollout_verdict(d, [pod("p", template)], "engine").state == "waiting"
    crash = pod(
        "p",
        template,
        containerStatuses=[
            {
                "name": "engine",
                "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            }
        ],
    )
    verdict = rollout_verdict(d, [crash], "engine")
    assert (verdict.state, verdict.pod) == ("failed", "p") and "CrashLoopBackOff" in verdict.reason
    oom = pod(
        "p",
        template,
        containerStatuses=[
            {
                "name": "engine",
                "restartCount": 0,
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
            }
        ],
    )
    assert "OOMKilled" in rollout_verdict(d, [oom], "engine").reason
    pull = pod(
        "p",
        template,
        containerStatuses=[
            {
                "name": "engine",
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}},
            }
        ],
    )
    assert "ImagePullBackOff" in rollout_verdict(d, [pull], "engine").reason
    unschedulable = pod("p", template)
    unschedulable["status"]["conditions"] = [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "memory"}
    ]
    assert "Unschedulable" in rollout_verdict(d, [unschedulable], "engine").reason
    stuck = rolled(
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "slow",
            }
        ]
    )
    assert "ProgressDeadlineExceeded" in rollout_verdict(stuck, [], "engine").reason
    refused = rolled(
        conditions=[
            {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"},
            {
                "type": "ReplicaFailure",
                "status": "True",
                "reason": "FailedCreate",
                "message": 'pods "gx10-green-5d4f-" is forbidden: exceeded quota: gpu-memory, '
                "requested: limits.memory=80Gi, used: limits.memory=0, limited: "
                "limits.memory=64Gi",
            },
        ]
    )
    verdict = rollout_verdict(refused, [], "engine")
    assert verdict.state == "failed"
    assert verdict.reason.startswith("FailedCreate: pods")
    assert "exceeded quota: gpu-memory" in verdict.reason
    old_pod = pod("old", current(1)["spec"]["template"], ready=True)
    old_pod["spec"] = {"containers": [{"name": "engine", "image": "other", "env": []}]}
    assert rollout_verdict(d, [old_pod], "engine").state == "waiting"


def test_a_replica_failure_is_read_only_for_the_current_generation_and_bounded() -> None:
    failure = {
        "type": "ReplicaFailure",
        "status": "True",
        "reason": "FailedCreate",
        "message": "exceeded quota\n" + "x" * 5000,
    }
    stale = rolled(observedGeneration=2, conditions=[failure])  # describes the previous spec
    assert rollout_verdict(stale, [], "engine").state == "waiting"
    verdict = rollout_verdict(rolled(conditions=[failure]), [], "engine")
    assert verdict.state == "failed"
    assert "\n" not in verdict.reason and len(verdict.reason) < 600
    cleared = rolled(conditions=[{**failure, "status": "False"}])
    assert rollout_verdict(cleared, [], "engine").state == "waiting"
    deleting = rolled(conditions=[{**failure, "reason": "FailedDelete"}])  # not our pod
    assert rollout_verdict(deleting, [], "engine").state == "waiting"


@pytest.mark.parametrize(
    ("gib", "written"),
    [(50, "50Gi"), (60.5, "61952Mi"), (1.5, "1536Mi"), (57.6, "58983Mi"), (1e6, "1000000Gi")],
)
def test_memory_is_written_as_whole_mib_in_canonical_form(gib: float, written: str) -> None:
    """Never `1e+06Gi` (which the API server refuses), and what the server will store back."""
    resources = plan(memory_gib=gib).deployment["spec"]["template"]["spec"]["containers"][0][
        "resources"
    ]
    assert resources["limits"]["memory"] == resources["requests"]["memory"] == written


def test_same_memory_in_another_spelling_is_no_change() -> None:
    running = current(1)
    container = running["spec"]["template"]["spec"]["containers"][0]
    container["resources"] = {"requests": {"memory": "61440Mi"}, "limits": {"memory": "60Gi"}}
    p = plan_deploy(
        running,
        CONFIG,
        slot="green",
        model="org/old",
        image=None,
        served_name="old",
        env={},
        memory_gib=60,
        node_capacity_gib=128,
        by="me",
        now=now_utc(),
    )
    assert p.unchanged


def test_revision_survives_the_api_servers_canonical_quantities() -> None:
    """A real apiserver stores 60.5Gi as 61952Mi: the revision of what we wrote must equal the
    revision of what we read back, or the rollout waits forever and re-runs write again."""
    sent = current(1)
    sent["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"memory": "60.5Gi"},
        "limits": {"memory": "60.5Gi", "cpu": "1.5"},
    }
    stored = current(1)
    stored["spec"]["template"]["spec"]["containers"][0]["resources"] = {
        "requests": {"memory": "61952Mi"},
        "limits": {"memory": "61952Mi", "cpu": "1500m"},
    }
    assert revision_of(sent) == revision_of(stored)
    stored["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "62Gi"
    assert revision_of(sent) != revision_of(stored)


def slot(limit: float | None, fraction: float | None = 0.45, node: float = 128) -> SlotMemory:
    reserved = round(fraction * node, 2) if fraction else None
    return SlotMemory(limit, limit, fraction, reserved)


def gate(new: SlotMemory, **kw: Any) -> str:
    args: dict[str, Any] = dict(
        active_slot="blue", active_gib=60, new_slot="green", capacity_gib=128, reserve_gib=8
    )
    args.update(kw)
    return memory_gate(new=new, **args)


def test_gate_refuses_an_engine_reservation_above_the_limit() -> None:
    """The runbook's old example: 0.45 x 128 GiB = 57.6 GiB reserved by vLLM in a 56 GiB limit."""
    with pytest.raises(Refused) as info:
        gate(slot(56))
    assert "57.6 GiB" in info.value.message and "limit of 56 GiB" in info.value.message
    assert info.value.hint is not None
    assert "at least 57.6 GiB (--memory-gib 58)" in info.value.hint
    assert "--gpu-memory-utilization to 0.43 or less" in info.value.hint
    # A limit that holds the reservation, and both slots plus the reserve fit 128 GiB.
    assert gate(slot(60)).startswith("memory fits: ")


def test_gate_refuses_a_budget_larger_than_the_node() -> None:
    with pytest.raises(Refused) as info:
        gate(slot(1_000_000))
    assert "1000000 GiB is larger than the node (128 GiB)" in info.value.message
    assert info.value.hint is not None and "--memory-gib 60" in info.value.hint


def test_gate_refuses_two_slots_that_do_not_fit() -> None:
    with pytest.raises(Refused, match="memory budget exceeded"):
        gate(slot(64))


@pytest.mark.parametrize(
    ("new", "capacity", "what"),
    [
        (SlotMemory(None, None, None, None), 128, "slot green has no memory budget"),
        (slot(60), None, "the node's memory is unknown"),
    ],
)
def test_gate_refuses_the_unknown_unless_allowed(
    new: SlotMemory, capacity: float | None, what: str
) -> None:
    with pytest.raises(Refused) as info:
        gate(new, capacity_gib=capacity)
    assert what in info.value.message
    assert info.value.hint is not None and "--allow-unknown-memory" in info.value.hint
    note = gate(new, capacity_gib=capacity, allow_unknown=True)
    assert note.startswith("warning: memory not checked") and what in note


def test_a_stale_progress_deadline_is_not_the_new_rollouts_failure() -> None:
    """Right after a write the status still describes the previous rollout (observedGeneration
    trails generation): its ProgressDeadlineExceeded must not fail the new one."""
    stale = rolled(
        observedGeneration=2,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "the previous rollout timed out",
            }
        ],
    )
    verdict = rollout_verdict(stale, [], "engine")
    assert verdict.state == "waiting", verdict


def test_the_old_revisions_oomkilled_pod_is_not_the_new_rollout() -> None:
    """After `--memory-gib` alone changed, the old pod (same image and env, old limit) that was
    OOMKilled is not the new revision failing."""
    d = rolled()
    template = d["spec"]["template"]
    old_template = current(1)["spec"]["template"]
    old_template["spec"]["containers"][0]["resources"]["limits"]["memory"] = "56Gi"
    oom = pod(
        "old",
        old_template,
        containerStatuses=[
            {
                "name": "engine",
                "restartCount": 0,
                "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}},
            }
        ],
    )
    assert rollout_verdict(d, [oom], "engine").state == "waiting"
    assert rollout_verdict(d, [pod("new", template, ready=True)], "engine").state == "done"


def _vllm_container(args: list[str], env: list[dict[str, str]] | None = None) -> dict[str, Any]:
    return {
        "name": "engine",
        "command": ["vllm"],
        "args": ["serve", "$(MODEL)", *args],
        "env": [{"name": "MODEL", "value": "org/m"}, *(env or [])],
        "resources": {"limits": {"memory": "56Gi"}, "requests": {"memory": "56Gi"}},
    }


def test_vllm_without_a_fraction_reserves_its_default_not_nothing() -> None:
    """vLLM's default --gpu-memory-utilization is 0.9: 115.2 GiB of a 128 GiB node, far above a
    56 GiB limit; with the fraction unknown the gate must not say "fits"."""
    from gx10slots.memory import slot_memory

    memory = slot_memory({}, _vllm_container([]), 128, "vllm")
    assert memory.reserved_gib == 115.2
    with pytest.raises(Refused, match=r"115\.2 GiB"):
        gate(memory)
    # Another engine takes what its limit says.
    assert slot_memory({}, _vllm_container([]), 128, "sglang").reserved_gib is None


def test_a_fraction_given_through_an_env_reference_is_read() -> None:
    from gx10slots.memory import slot_memory

    container = _vllm_container(
        ["--gpu-memory-utilization", "$(GMU)"], [{"name": "GMU", "value": "0.45"}]
    )
    assert slot_memory({}, container, 128, "vllm").reserved_gib == 57.6
