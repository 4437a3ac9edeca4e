"""Reading the objects every operation starts from."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gx10slots.app import App
from gx10slots.config import SLOT_NAMES
from gx10slots.errors import ApiError, NotFound
from gx10slots.flags import kind_of
from gx10slots.memory import gib
from gx10slots.slots import FlagState, SlotState, flag_state, slot_state


@dataclass(frozen=True)
class Snapshot:
    """The slots and the flag as read in one pass (each object at its own resourceVersion)."""

    deployments: dict[str, dict[str, Any] | None]
    slots: dict[str, SlotState]
    flag_obj: dict[str, Any]
    flag: FlagState
    node_capacity_gib: float | None


def read_flag_object(app: App) -> dict[str, Any]:
    config = app.config
    try:
        return kind_of(config).read(app)
    except NotFound as exc:
        exc.hint = (
            f"the flag object named in {config.source} (flag.name) must exist in namespace "
            f"{config.namespace}; check the config and -n"
        )
        raise


def read_deployment(app: App, slot: str) -> dict[str, Any] | None:
    config, kube = app.config, app.kube
    name = config.slot(slot).deployment
    try:
        return kube.read(
            f"read Deployment {config.namespace}/{name}",
            kube.api("apps").read_namespaced_deployment,
            name,
            config.namespace,
        )
    except NotFound:
        return None


def node_capacity_gib(app: App, deployments: list[dict[str, Any] | None]) -> float | None:
    """Configured capacity, else the allocatable memory of the node the slots are pinned to."""
    config = app.config
    if config.memory.node_capacity_gib:
        return config.memory.node_capacity_gib
    node = config.memory.node
    for deployment in deployments:
        if node or deployment is None:
            continue
        pod_spec = deployment.get("spec", {}).get("template", {}).get("spec", {})
        node = (pod_spec.get("nodeSelector") or {}).get("kubernetes.io/hostname") or pod_spec.get(
            "nodeName"
        )
    if not node:
        return None
    try:
        obj = app.kube.read(f"read Node {node}", app.kube.api("core").read_node, node)
    except ApiError:
        return None  # nodes are cluster-scoped; a namespaced Role may not read them
    memory = (obj.get("status", {}).get("allocatable") or {}).get("memory")
    try:
        return gib(memory) if memory else None
    except ValueError:
        return None


def snapshot(app: App) -> Snapshot:
    deployments = {name: read_deployment(app, name) for name in SLOT_NAMES}
    flag_obj = read_flag_object(app)
    capacity = node_capacity_gib(app, list(deployments.values()))
    slots = {name: slot_state(name, deployments[name], app.config, capacity) for name in SLOT_NAMES}
    return Snapshot(deployments, slots, flag_obj, flag_state(flag_obj, app.config), capacity)
