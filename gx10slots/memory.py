"""Memory budgets on the GX10's unified memory (pure).

Both slots must fit at once for the old one to stay warm. A slot's declared budget is the
container's memory limit, else its request, else the annotation ``gx10slots.io/memory-gib``; vLLM's
``--gpu-memory-utilization`` times the node's capacity counts when it is larger (vLLM reserves
that fraction of *total* memory at start, whatever the container's limit says).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gx10slots.kube.quantity import QuantityError, canonical, to_bytes

GIB = 1024**3
MIB = 1024**2
# --memory-gib above this is a typo, whatever the node (1 PiB).
MAX_MEMORY_GIB = 1024.0 * 1024


def parse_quantity_bytes(text: str | int | float) -> float:
    """A Kubernetes memory quantity (``128Gi``, ``500M``, ``1e9``, ``61952Mi``) in bytes."""
    try:
        value = to_bytes(text.strip() if isinstance(text, str) else text)
    except QuantityError as exc:
        raise ValueError(f"{text!r} is not a memory quantity such as 64Gi or 500Mi") from exc
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a memory quantity such as 64Gi or 500Mi")
    return value


def memory_quantity(gib_value: float) -> str:
    """The quantity to write for a budget of ``gib_value`` GiB: whole MiB (rounded up, so the
    slot gets at least what was asked), in the API server's canonical form (``60Gi``,
    ``61952Mi``), so what we write is what we read back. Never ``1e+06Gi``."""
    mib = math.ceil(round(gib_value * 1024, 6))
    return canonical(f"{mib}Mi")


def gib(text: str | int | float) -> float:
    return round(parse_quantity_bytes(text) / GIB, 2)


# vLLM's own default when --gpu-memory-utilization is not given.
VLLM_DEFAULT_FRACTION = 0.9


def gpu_memory_utilization(args: Sequence[str]) -> float | None:
    """vLLM's ``--gpu-memory-utilization`` from a container's command/args, if set."""
    for index, arg in enumerate(args):
        for flag in ("--gpu-memory-utilization", "--gpu_memory_utilization"):
            if arg == flag and index + 1 < len(args):
                return _fraction(args[index + 1])
            if arg.startswith(flag + "="):
                return _fraction(arg.split("=", 1)[1])
    return None


def _fraction(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if 0 < value <= 1 else None


@dataclass(frozen=True)
class SlotMemory:
    """What a slot declares and what its engine will take, in GiB (None: unknown)."""

    limit_gib: float | None  # the container's memory limit (the cgroup kills above it)
    declared_gib: float | None  # the limit, else the request, else the memory-gib annotation
    fraction: float | None  # vLLM's --gpu-memory-utilization
    reserved_gib: float | None  # fraction x the node's memory: what vLLM takes at start

    @property
    def budget_gib(self) -> float | None:
        """The most the slot will take: vLLM's reservation counts when it is larger."""
        candidates = [v for v in (self.declared_gib, self.reserved_gib) if v is not None]
        return max(candidates) if candidates else None


def slot_memory(
    deployment: Mapping[str, Any],
    container: Mapping[str, Any] | None,
    node_capacity_gib: float | None,
    engine: str | None = None,
) -> SlotMemory:
    """A slot's memory as its Deployment declares it. vLLM reserves its utilisation fraction of
    the device's *total* memory at start, whatever the container's limit says
    (vllm/v1/worker/gpu_worker.py ``init_device``: ``requested_memory = total_memory *
    gpu_memory_utilization``); on the GX10's unified memory that total is the node's."""
    resources = (container or {}).get("resources") or {}
    if not isinstance(resources, Mapping):
        resources = {}
    found: dict[str, float] = {}
    for section in ("limits", "requests"):
        block = resources.get(section) or {}
        quantity = block.get("memory") if isinstance(block, Mapping) else None
        if quantity is not None:
            try:
                found[section] = gib(quantity)
            except ValueError:
                continue
    declared = found.get("limits", found.get("requests"))
    if declared is None:
        annotation = ((deployment.get("metadata") or {}).get("annotations") or {}).get(
            "gx10slots.io/memory-gib"
        )
        try:
            declared = float(annotation) if annotation is not None else None
        except (TypeError, ValueError):
            declared = None
        if declared is not None and not (math.isfinite(declared) and declared > 0):
            declared = None
    from gx10slots.servednames import container_argv

    # As the process receives them: `$(GMU)` in the args is the container's env value.
    args = container_argv(container)
    fraction = gpu_memory_utilization(args)
    if fraction is None and engine == "vllm":
        # Not on the command line: vLLM reserves its default (vllm/config/cache.py
        # ``gpu_memory_utilization: float = 0.9``), not nothing.
        fraction = VLLM_DEFAULT_FRACTION
    reserved = round(fraction * node_capacity_gib, 2) if fraction and node_capacity_gib else None
    return SlotMemory(found.get("limits"), declared, fraction, reserved)


def slot_budget_gib(
    deployment: Mapping[str, Any],
    container: Mapping[str, Any] | None,
    node_capacity_gib: float | None,
    engine: str | None = None,
) -> float | None:
    """The most the slot will take (see :class:`SlotMemory`)."""
    return slot_memory(deployment, container, node_capacity_gib, engine).budget_gib
