"""What Flux does to the objects the tool writes: pure rules over their JSON.

Flux's kustomize-controller re-applies what Git declares. A live change it does not know about
survives only where Git leaves it alone: an object annotated ``ssa: IfNotPresent`` (or
``Ignore``), reconcile disabled, or a field Git does not declare (docs/flux.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

FLUX_NAME_LABEL = "kustomize.toolkit.fluxcd.io/name"
FLUX_NAMESPACE_LABEL = "kustomize.toolkit.fluxcd.io/namespace"
FLUX_RECONCILE = "kustomize.toolkit.fluxcd.io/reconcile"
FLUX_SSA = "kustomize.toolkit.fluxcd.io/ssa"


def is_flux_managed(obj: Mapping[str, Any]) -> bool:
    metadata = obj.get("metadata", {})
    labels = metadata.get("labels") or {}
    if FLUX_NAME_LABEL in labels and FLUX_NAMESPACE_LABEL in labels:
        return True
    return any(
        entry.get("manager") == "kustomize-controller"
        for entry in metadata.get("managedFields") or []
    )


def flux_protected(obj: Mapping[str, Any]) -> bool:
    """Flux leaves this object's live changes alone (or does not manage it at all)."""
    if not is_flux_managed(obj):
        return True
    annotations = obj.get("metadata", {}).get("annotations") or {}
    return annotations.get(FLUX_RECONCILE) == "disabled" or annotations.get(FLUX_SSA) in (
        "IfNotPresent",
        "Ignore",
    )


def flux_deploy_blocker(deployment: Mapping[str, Any], slot: str) -> str | None:
    """Why Flux would undo a deploy into this slot's Deployment, or None."""
    if flux_protected(deployment):
        return None
    name = deployment.get("metadata", {}).get("name")
    return (
        f"Deployment {name} (slot {slot}) is applied by Flux: the next reconcile would revert "
        f"the model deployed into it. Annotate it in Git with {FLUX_SSA}: IfNotPresent "
        f"(or {FLUX_RECONCILE}: disabled)"
    )
