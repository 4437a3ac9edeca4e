from __future__ import annotations

import math
from typing import Any

import pytest

from gx10slots.deployplan import check_memory, parse_env_pairs, plan_deploy, rollout_verdict
from gx10slots.errors import Refused, UsageError
from gx10slots.sandbox.seed import slot_deployment
from gx10slots.state import now_utc, revision_of
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
    old_pod = pod("old", current(1)["spec"]["template"], ready=True)
    old_pod["spec"] = {"containers": [{"name": "engine", "image": "other", "env": []}]}
    assert rollout_verdict(d, [old_pod], "engine").state == "waiting"
