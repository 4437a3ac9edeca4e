"""Kubernetes objects as the pure rules read them: a slot's Deployment and the flag's Service
(for ``CONFIG`` in tests/helpers/config.py); a slot's state as read from them."""

from __future__ import annotations

from typing import Any

from gx10slots.slots import SlotState, SmokeRecord


def deployment(
    model: str = "org/a", replicas: int = 1, available: int = 1, **extra: Any
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "gx10-blue",
            "generation": 2,
            "annotations": extra.get("annotations", {}),
        },
        "spec": {
            "replicas": replicas,
            "template": {
                "metadata": {"labels": {"app": "x"}},
                "spec": {
                    "containers": [
                        {
                            "name": "engine",
                            "image": "vllm:1",
                            "env": [
                                {"name": "MODEL", "value": model},
                                {"name": "SERVED_MODEL_NAME", "value": "a"},
                            ],
                            "resources": extra.get("resources", {}),
                            "args": extra.get("args", []),
                        }
                    ]
                },
            },
        },
        "status": {
            "observedGeneration": extra.get("observed", 2),
            "availableReplicas": available,
            "readyReplicas": available,
        },
    }


def service(
    value: str | None,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> dict[str, Any]:
    selector = {"app": "x"} | ({"gx10slots.io/slot": value} if value is not None else {})
    return {
        "metadata": {
            "name": "gx10-model",
            "resourceVersion": "7",
            "labels": labels or {},
            "annotations": annotations or {},
        },
        "spec": {"selector": selector},
    }


def slot(
    name: str,
    model: str = "m",
    *,
    replicas: int = 1,
    available: int | None = None,
    smoke: SmokeRecord | None = None,
) -> SlotState:
    """A slot that exists, serves ``model`` under that name, with ``available`` of its
    ``replicas`` ready (all of them unless said)."""
    available = replicas if available is None else available
    return SlotState(
        name=name,
        exists=True,
        model=model,
        served_name=model,
        replicas=replicas,
        ready=available,
        available=available,
        generation_observed=True,
        revision=f"rev-{name}",
        smoke=smoke,
    )
