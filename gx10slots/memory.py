"""Memory budgets on the GX10's unified memory (pure).

Both slots must fit at once for the old one to stay warm. A slot's declared budget is the
container's memory limit, else its request, else the annotation ``gx10slots.io/memory-gib``; vLLM's
``--gpu-memory-utilization`` times the node's capacity counts when it is larger (vLLM reserves
that fraction of *total* memory at start, whatever the container's limit says).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

GIB = 1024**3
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|k|M|G|T|P|m)?$")
_FACTORS = {
    None: 1,
    "m": 0.001,
    "k": 1000,
    "M": 1000**2,
    "G": 1000**3,
    "T": 1000**4,
    "P": 1000**5,
    "Ki": 1024,
    "Mi": 1024**2,
    "Gi": 1024**3,
    "Ti": 1024**4,
    "Pi": 1024**5,
}


def parse_quantity_bytes(text: str | int | float) -> float:
    """A Kubernetes memory quantity (``128Gi``, ``500M``, ``1e9`` is not accepted) in bytes."""
    match = _QUANTITY.match(str(text).strip())
    if not match:
        raise ValueError(f"{text!r} is not a memory quantity such as 64Gi or 500Mi")
    return float(match.group(1)) * _FACTORS[match.group(2)]


def gib(text: str | int | float) -> float:
    return round(parse_quantity_bytes(text) / GIB, 2)


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


def slot_budget_gib(
    deployment: Mapping[str, Any],
    container: Mapping[str, Any] | None,
    node_capacity_gib: float | None,
) -> float | None:
    """The most the slot will take. vLLM reserves its utilisation fraction of the *whole* node
    whatever the container's limit says, so that fraction counts when it is larger."""
    declared: float | None = None
    resources = (container or {}).get("resources") or {}
    for section in ("limits", "requests"):
        quantity = (resources.get(section) or {}).get("memory")
        if quantity is not None:
            try:
                declared = gib(quantity)
                break
            except ValueError:
                continue
    if declared is None:
        annotation = (deployment.get("metadata", {}).get("annotations") or {}).get(
            "gx10slots.io/memory-gib"
        )
        try:
            declared = float(annotation) if annotation is not None else None
        except ValueError:
            declared = None
    args = [*((container or {}).get("command") or []), *((container or {}).get("args") or [])]
    fraction = gpu_memory_utilization([str(a) for a in args])
    reserved = round(fraction * node_capacity_gib, 2) if fraction and node_capacity_gib else None
    candidates = [v for v in (declared, reserved) if v is not None]
    return max(candidates) if candidates else None
