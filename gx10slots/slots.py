"""What the cluster's objects say about the slots: pure functions over the API's JSON.

Nothing here does I/O, so every rule (roles, revisions, smoke freshness, readiness, Flux risk) is
tested on plain dicts.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gx10slots.config import SLOT_NAMES, Config
from gx10slots.flags import kind_of
from gx10slots.flux import flux_deploy_blocker, is_flux_managed
from gx10slots.kube.quantity import canonical_pod_spec
from gx10slots.kube.values import parse_rfc3339
from gx10slots.memory import slot_budget_gib
from gx10slots.servednames import identity_name, served_names

ANNOTATION_PREFIX = "gx10slots.io/"
ACTIVE = ANNOTATION_PREFIX + "active"
PREVIOUS = ANNOTATION_PREFIX + "previous"
PREVIOUS_REVISION = ANNOTATION_PREFIX + "previous-revision"
CHANGED_AT = ANNOTATION_PREFIX + "changed-at"
CHANGED_BY = ANNOTATION_PREFIX + "changed-by"
REASON = ANNOTATION_PREFIX + "reason"
# Which operation wrote the flag (flip, flip-back, revert, auto-revert): with changed-by it lets
# a re-run tell an operation that was interrupted after its flag write from one that finished.
ACTION = ANNOTATION_PREFIX + "action"
# Where the run that wrote the flag got to, on the flag object itself: "switching" is written in
# the same compare-and-swap patch as the flag, "done" by a second one once that run verified
# through production and recorded it. Only these say whether a run is unfinished: the history is
# a record, never evidence (it can be deleted, garbled, or pushed out by 200 newer entries).
# ``run`` names the run (its history entry id), so recording it again is a no-op.
RUN_STATE = ANNOTATION_PREFIX + "state"
RUN_ID = ANNOTATION_PREFIX + "run"
SWITCHING = "switching"
DONE = "done"
SMOKE_REVISION = ANNOTATION_PREFIX + "smoke-revision"
SMOKE_PASSED = ANNOTATION_PREFIX + "smoke-passed"
SMOKE_AT = ANNOTATION_PREFIX + "smoke-at"
SMOKE_REPORT = ANNOTATION_PREFIX + "smoke-report"
MEMORY_GIB = ANNOTATION_PREFIX + "memory-gib"


# A smoke recorded this far ahead of our clock is "dated in the future" (clock skew beyond it).
FUTURE_SMOKE_TOLERANCE_S = 120.0


def revision_of(deployment: Mapping[str, Any]) -> str:
    """A stable hash of the pod template: any change to image, env or args is a new revision.

    Quantities are hashed in the API server's canonical form: a real apiserver stores ``60.5Gi``
    as ``61952Mi``, so a hash of the text we sent would never match what we read back (the
    rollout would wait forever and every re-run would write again)."""
    template = copy.deepcopy(deployment.get("spec", {}).get("template", {}))
    if isinstance(template, dict):
        canonical_pod_spec(template.get("spec"))
    canonical = json.dumps(template, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:12]


def container_of(deployment: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    containers = (
        deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    )
    for container in containers:
        if container.get("name") == name:
            return dict(container)
    return dict(containers[0]) if len(containers) == 1 else None


def env_value(container: Mapping[str, Any] | None, name: str) -> str | None:
    for item in (container or {}).get("env", []) or []:
        if item.get("name") == name:
            value = item.get("value")
            return str(value) if value is not None else None
    return None


@dataclass(frozen=True)
class SmokeRecord:
    passed: bool
    at: str | None
    revision: str
    report: str | None

    def age_s(self, now: datetime) -> float | None:
        at = parse_rfc3339(self.at)
        return (now - at).total_seconds() if at else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "at": self.at,
            "revision": self.revision,
            "report": self.report,
        }


def smoke_record(deployment: Mapping[str, Any]) -> SmokeRecord | None:
    """The last smoke result recorded on the slot, whatever revision it was for."""
    annotations = deployment.get("metadata", {}).get("annotations") or {}
    revision = annotations.get(SMOKE_REVISION)
    if not revision:
        return None
    return SmokeRecord(
        passed=annotations.get(SMOKE_PASSED) == "true",
        at=annotations.get(SMOKE_AT),
        revision=str(revision),
        report=annotations.get(SMOKE_REPORT),
    )


@dataclass(frozen=True)
class SlotState:
    name: str
    exists: bool
    model: str | None = None
    served_name: str | None = None
    # Every name the engine serves (primary first), read from what its container passes it.
    served_names: tuple[str, ...] = ()
    image: str | None = None
    replicas: int = 0
    ready: int = 0
    available: int = 0
    generation_observed: bool = False
    revision: str | None = None
    memory_gib: float | None = None
    smoke: SmokeRecord | None = None  # only when recorded for the current revision

    @property
    def identity(self) -> str | None:
        """The name only this slot serves (gx10slots/<slot>), when it is wired."""
        name = identity_name(self.name)
        return name if name in self.served_names else None

    @property
    def is_ready(self) -> bool:
        """Ready to take production: available replicas and the controller caught up."""
        return self.exists and self.available >= 1 and self.generation_observed

    def to_dict(self, role: str) -> dict[str, Any]:
        return {
            "role": role,
            "exists": self.exists,
            "model": self.model,
            "served_name": self.served_name,
            "served_names": list(self.served_names),
            "image": self.image,
            "replicas": self.replicas,
            "ready": self.ready,
            "available": self.available,
            "revision": self.revision,
            "memory_gib": self.memory_gib,
            "smoke": self.smoke.to_dict() if self.smoke else None,
        }


def slot_state(
    name: str, deployment: Mapping[str, Any] | None, config: Config, node_capacity_gib: float | None
) -> SlotState:
    if deployment is None:
        return SlotState(name=name, exists=False)
    spec = deployment.get("spec", {})
    status = deployment.get("status", {}) or {}
    container = container_of(deployment, config.container)
    revision = revision_of(deployment)
    record = smoke_record(deployment)
    generation = deployment.get("metadata", {}).get("generation")
    observed = status.get("observedGeneration")
    names = served_names(container, config.engine, config.served_name_env, config.model_env)
    return SlotState(
        name=name,
        exists=True,
        model=env_value(container, config.model_env),
        # `served_name` stays the first of `served_names` (the contract's status shape).
        served_name=names[0] if names else env_value(container, config.served_name_env),
        served_names=tuple(names),
        image=(container or {}).get("image"),
        replicas=int(spec.get("replicas", 1) if spec.get("replicas") is not None else 1),
        ready=int(status.get("readyReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        generation_observed=generation is not None
        and observed is not None
        and observed >= generation,
        revision=revision,
        memory_gib=slot_budget_gib(deployment, container, node_capacity_gib, config.engine),
        smoke=record if record and record.revision == revision else None,
    )


@dataclass(frozen=True)
class FlagState:
    """The availability flag as read: which slot it names, and the object's audit annotations."""

    value: str | None
    active: str | None  # value when it names a known slot
    previous: str | None
    resource_version: str | None
    annotations: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    flux_managed: bool = False


def flag_state(obj: Mapping[str, Any], config: Config) -> FlagState:
    metadata = obj.get("metadata", {})
    annotations = metadata.get("annotations") or {}
    labels = metadata.get("labels") or {}
    value = kind_of(config).value(obj, config)
    previous = annotations.get(PREVIOUS)
    return FlagState(
        value=value,
        active=value if value in SLOT_NAMES else None,
        previous=previous if previous in SLOT_NAMES and previous != value else None,
        resource_version=metadata.get("resourceVersion"),
        annotations=annotations,
        labels=labels,
        flux_managed=is_flux_managed(obj),
    )


def other_slot(name: str) -> str:
    return SLOT_NAMES[1] if name == SLOT_NAMES[0] else SLOT_NAMES[0]


def role_of(slot: SlotState, flag: FlagState) -> str:
    if flag.active == slot.name:
        return "active"
    return "standby" if slot.exists and slot.replicas >= 1 else "parked"


def status_warnings(
    slots: Mapping[str, SlotState],
    flag: FlagState,
    flag_obj: Mapping[str, Any],
    config: Config,
    now: datetime,
    deployments: Mapping[str, Mapping[str, Any] | None] | None = None,
) -> list[str]:
    warnings: list[str] = []
    if flag.active is None:
        shown = "nothing" if flag.value is None else repr(flag.value)
        warnings.append(
            f"the flag {kind_of(config).describe(config)} names {shown}, "
            f"not a slot ({' or '.join(SLOT_NAMES)})"
        )
    for name, slot in slots.items():
        if not slot.exists:
            warnings.append(f"slot {name}: Deployment {config.slot(name).deployment} not found")
    active = slots.get(flag.active) if flag.active else None
    if active is not None and active.exists and not active.is_ready:
        warnings.append(
            f"active slot {active.name} is not ready ({active.ready}/{active.replicas})"
        )
    if flag.active:
        standby = slots[other_slot(flag.active)]
        if standby.exists and standby.replicas == 0:
            warnings.append(
                f"standby {standby.name} is parked (cold): flip-back needs a cold start"
            )
        elif standby.exists and not standby.is_ready:
            warnings.append(f"standby {standby.name} is not ready: flip-back would be refused")
        elif standby.exists:
            record = standby.smoke
            if record is None:
                warnings.append(f"standby {standby.name}: no smoke result for its current revision")
            elif not record.passed:
                warnings.append(f"standby {standby.name}: last smoke failed")
            else:
                age = record.age_s(now)
                if age is not None and age < -FUTURE_SMOKE_TOLERANCE_S:
                    warnings.append(
                        f"standby {standby.name}: smoke result is dated in the future "
                        f"({record.at}): a clock is wrong; flip would refuse it"
                    )
                elif age is None or age > config.smoke.max_age_s:
                    warnings.append(f"standby {standby.name}: smoke result is stale")
    if flag.previous and slots[flag.previous].exists:
        served = flag.annotations.get(PREVIOUS_REVISION) or None
        if served is None and flag.annotations.get(ACTION) in ("revert", "auto-revert"):
            # A revert records no trusted revision on purpose (flip.rules): the slot it left
            # just failed, whatever it runs.
            warnings.append(
                f"previous slot {flag.previous} was switched away from after it failed: "
                "flip-back needs a fresh smoke"
            )
        elif served != slots[flag.previous].revision:
            warnings.append(
                f"previous slot {flag.previous} no longer runs the revision that served "
                f"production ({served or 'not recorded'}): flip-back needs a fresh smoke"
            )
    for name, deployment in (deployments or {}).items():
        drift = flux_deploy_blocker(deployment, name) if deployment else None
        if drift:
            warnings.append("Flux drift risk: " + drift)
    kind = kind_of(config)
    risk = kind.flux_blocker(flag_obj, config) or kind.flux_warning(flag_obj, config)
    if risk:
        warnings.append("Flux drift risk: " + risk)
    return warnings
