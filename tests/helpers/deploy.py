"""A deploy planned on paper: green, parked on org/old served as old, gets a new model."""

from __future__ import annotations

from typing import Any

from gx10slots.config import Config
from gx10slots.deploy.rules import DeployPlan, plan_deploy
from gx10slots.kube.values import now_utc
from gx10slots.sandbox.seed import slot_deployment
from tests.helpers.config import CONFIG


def current(replicas: int = 0) -> dict[str, Any]:
    """green's Deployment as read: org/old served as old, ``replicas`` of it."""
    d = slot_deployment("green", model="org/old", served_name="old", replicas=replicas)
    d["metadata"].update(resourceVersion="7", generation=3)
    return d


def plan(
    *, deployment: dict[str, Any] | None = None, config: Config = CONFIG, **kw: Any
) -> DeployPlan:
    """``plan_deploy`` of org/new into green (``kw`` overrides, ``replicas``: of ``current``)."""
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
    replicas = args.pop("replicas", 0)
    return plan_deploy(deployment or current(replicas), config, **args)
