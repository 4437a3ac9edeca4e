"""Compare-and-swap writes: plan against exactly what was read, and let the API server refuse
the write if the object changed since.

Every JSON Patch the tool sends starts with a ``test`` of the object's resourceVersion; the
API server answers 422 (a failed ``test``) or 409 when the object moved, and the caller reads,
re-checks its rules and plans again, a bounded number of times.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from gx10slots.errors import Conflict, Invalid

# Three reads and plans: a busy object (a controller writing status) settles within them; an
# object that keeps changing is someone else's fight, reported rather than joined.
CAS_ATTEMPTS = 3

Patch = list[dict[str, Any]]


def resource_version_test(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The first operation of every patch: the object is still the one that was read."""
    return {
        "op": "test",
        "path": "/metadata/resourceVersion",
        "value": obj["metadata"]["resourceVersion"],
    }


def annotation_ops(obj: Mapping[str, Any], annotations: Mapping[str, str]) -> Patch:
    """Operations that set ``annotations`` on ``obj`` (JSON Patch cannot add a key to a map that
    does not exist: then the map is added whole)."""
    from gx10slots.kube.values import annotation_pointer

    if (obj.get("metadata") or {}).get("annotations") is None:
        return [{"op": "add", "path": "/metadata/annotations", "value": dict(annotations)}]
    return [
        {"op": "add", "path": annotation_pointer(key), "value": value}
        for key, value in annotations.items()
    ]


def patch_until_settled(
    read: Callable[[], Mapping[str, Any] | None],
    plan: Callable[[Mapping[str, Any] | None], Patch | None],
    write: Callable[[Patch], object],
    *,
    attempts: int = CAS_ATTEMPTS,
) -> bool | None:
    """Read, plan, write with the resourceVersion test, again after a conflict.

    ``plan`` returns the operations for what it read, or None when there is nothing to do (the
    object is gone, or already as wanted): then False. True once written; None when the object
    kept changing for every attempt."""
    for _ in range(attempts):
        current = read()
        ops = plan(current)
        if ops is None or current is None:
            return False
        try:
            write([resource_version_test(current), *ops])
        except (Conflict, Invalid):
            continue
        return True
    return None
