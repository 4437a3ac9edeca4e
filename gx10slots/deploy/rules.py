"""`slots deploy` as data: the new Deployment, the memory preflight and the rollout verdict (pure).

The plan is the whole Deployment as it will be written (a PUT carrying the resourceVersion read,
so it applies to exactly what was planned on); ``--dry-run`` shows its changes. The rollout
verdict reads a Deployment and its Pods and says: done, still waiting (and on what), or failed
(and why) — the fast failures an operator would otherwise wait twenty minutes to see.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from gx10slots.config import Config
from gx10slots.errors import Refused, UsageError
from gx10slots.kube.quantity import canonical_or_same
from gx10slots.kube.values import rfc3339
from gx10slots.memory import MAX_MEMORY_GIB, SlotMemory, memory_quantity, slot_memory
from gx10slots.servednames import (
    COMMA_SEPARATED,
    alias_blocker,
    is_identity,
    served_names,
    with_names,
)
from gx10slots.slots import ANNOTATION_PREFIX, container_of, revision_of

MODEL_ANNOTATION = ANNOTATION_PREFIX + "model"
DEPLOYED_AT = ANNOTATION_PREFIX + "deployed-at"
DEPLOYED_BY = ANNOTATION_PREFIX + "deployed-by"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_MODEL_CHARS = 253
CRASH_RESTARTS = 2
IMAGE_FAILURES = ("ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull")
CONFIG_FAILURES = ("CreateContainerConfigError", "CreateContainerError", "RunContainerError")


def parse_env_pairs(pairs: Sequence[str], config: Config) -> dict[str, str]:
    env: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not _ENV_NAME.match(key):
            raise UsageError(f"--env {pair!r}: expected KEY=VALUE with KEY a variable name")
        if key in (config.model_env, config.served_name_env):
            raise UsageError(
                f"--env {key}: set by slots itself (the MODEL argument and --served-name)"
            )
        env[key] = value
    return env


def check_model_name(model: str, what: str = "MODEL") -> str:
    if not model or len(model) > MAX_MODEL_CHARS or any(c.isspace() for c in model):
        raise UsageError(
            f"{what} {model[:60]!r}: expected a non-empty name without whitespace, at most "
            f"{MAX_MODEL_CHARS} characters"
        )
    if model.startswith("-"):
        # It would read as an option on the engine's command line.
        raise UsageError(f"{what} {model[:60]!r}: a name cannot start with '-'")
    if not model.isprintable():
        # Control and format characters: an escape sequence, or a right-to-left override (U+202E)
        # or zero-width character that makes a name read as another in every table and log.
        raise UsageError(
            f"{what} {model[:60]!r}: control or invisible formatting characters (such as a "
            "right-to-left override) are not allowed in a name"
        )
    if any(ord(c) < 32 or c in "`$;|&<>\\\"'" for c in model):
        raise UsageError(f"{what} {model[:60]!r}: shell metacharacters are not allowed in a name")
    return model


@dataclass(frozen=True)
class DeployPlan:
    slot: str
    deployment: dict[str, Any]  # the full object to PUT
    changes: list[str]
    revision_before: str
    revision_after: str
    model: str
    served_name: str
    memory_gib: float | None
    scale_only: bool = False
    notes: list[str] = field(default_factory=list)
    memory: SlotMemory | None = None  # what the new template declares and the engine takes

    @property
    def unchanged(self) -> bool:
        return not self.changes

    def to_dict(self) -> dict[str, Any]:
        spec = self.deployment["spec"]
        return {
            "slot": self.slot,
            "deployment": self.deployment["metadata"]["name"],
            "model": self.model,
            "served_name": self.served_name,
            "memory_gib": self.memory_gib,
            "revision_before": self.revision_before,
            "revision_after": self.revision_after,
            "changes": self.changes,
            "notes": self.notes,
            "replicas": spec.get("replicas"),
            "template": spec["template"],
        }


def _set_env(container: dict[str, Any], name: str, value: str) -> bool:
    env = container.setdefault("env", [])
    for item in env:
        if item.get("name") == name:
            if item.get("value") == value and "valueFrom" not in item:
                return False
            item.clear()
            item.update(name=name, value=value)
            return True
    env.append({"name": name, "value": value})
    return True


def plan_deploy(
    current: Mapping[str, Any],
    config: Config,
    *,
    slot: str,
    model: str,
    image: str | None,
    served_name: str | None,
    env: Mapping[str, str],
    memory_gib: float | None,
    node_capacity_gib: float | None,
    by: str,
    now: datetime,
    extra_names: Sequence[str] = (),
) -> DeployPlan:
    """``extra_names``: names the slot serves beside ``served_name`` (the names production
    serves now, so that clients keep them, and the slot's identity name), written after the
    engine's served-name option where the container can take them (gx10slots/servednames.py)."""
    check_model_name(model)
    if served_name is not None and not served_name.strip():
        raise UsageError("--served-name: empty; leave it out to keep the default")
    if image is not None and (not image.strip() or any(c.isspace() for c in image)):
        raise UsageError(f"--image {image!r}: expected an image reference without whitespace")
    if memory_gib is not None and not (math.isfinite(memory_gib) and memory_gib > 0):
        raise UsageError(f"--memory-gib {memory_gib}: expected a number of GiB")
    if memory_gib is not None and memory_gib > MAX_MEMORY_GIB:
        raise UsageError(
            f"--memory-gib {memory_gib:.0f}: more than {MAX_MEMORY_GIB:.0f} GiB (1 PiB); "
            "expected the GiB the slot may use"
        )
    served = check_model_name(served_name or model, "--served-name")
    if "," in served and config.engine in COMMA_SEPARATED:
        raise UsageError(f"--served-name {served!r}: {config.engine} separates names with ','")
    new = copy.deepcopy(dict(current))
    new.pop("status", None)
    new["metadata"].pop("managedFields", None)
    container = container_of(new, config.container)
    if container is None:
        raise Refused(
            f"slot {slot}: Deployment {new['metadata']['name']} has no container named "
            f"{config.container} (config key `container`)"
        )
    # container_of returns a copy: find the real one to edit.
    containers = new["spec"]["template"]["spec"]["containers"]
    target = next(c for c in containers if c.get("name") == container.get("name"))
    changes: list[str] = []
    if image and target.get("image") != image:
        changes.append(f"image {target.get('image')} -> {image}")
        target["image"] = image
    for name, value in ((config.model_env, model), (config.served_name_env, served), *env.items()):
        before = next(
            (e.get("value") for e in target.get("env", []) if e.get("name") == name), None
        )
        if _set_env(target, name, value):
            changes.append(f"env {name} {before!r} -> {value!r}")
    if memory_gib is not None:
        # Whole MiB in canonical form: what the API server will store, so what we read back.
        quantity = memory_quantity(memory_gib)
        resources = target.setdefault("resources", {})
        for section in ("requests", "limits"):
            block = resources.setdefault(section, {})
            if canonical_or_same(block.get("memory")) != quantity:
                changes.append(f"{section}.memory {block.get('memory')} -> {quantity}")
                block["memory"] = quantity
    notes: list[str] = []
    extras = [n for n in extra_names if n != served]
    blocker = alias_blocker(target, config.engine, config.served_name_env)
    if extras and blocker is None:
        before_names = served_names(target, config.engine, config.served_name_env, config.model_env)
        if with_names(target, config.engine, config.served_name_env, extras):
            after_names = [served, *dict.fromkeys(extras)]
            changes.append(f"served names {before_names} -> {after_names}")
    elif extras:
        clients = [n for n in extras if not is_identity(n)]
        if clients:
            notes.append(
                f"slot {slot} cannot also serve {', '.join(clients)} ({blocker}): `slots flip` "
                "will refuse unless --rename"
            )
    scale_only = not changes and int(new["spec"].get("replicas") or 0) < 1
    if int(new["spec"].get("replicas") or 0) != 1:
        changes.append(f"replicas {new['spec'].get('replicas')} -> 1")
        new["spec"]["replicas"] = 1
    annotations = new["metadata"].setdefault("annotations", {})
    if changes:
        annotations[MODEL_ANNOTATION] = model
        annotations[DEPLOYED_AT] = rfc3339(now)
        annotations[DEPLOYED_BY] = by
    memory = slot_memory(new, target, node_capacity_gib, config.engine)
    return DeployPlan(
        slot=slot,
        deployment=new,
        changes=changes,
        revision_before=revision_of(current),
        revision_after=revision_of(new),
        model=model,
        served_name=served,
        memory_gib=memory.budget_gib,
        scale_only=scale_only,
        memory=memory,
        notes=notes,
    )


def _g(gib: float) -> str:
    """GiB for a message: at most two decimals, never an exponent (1000000, not 1e+06)."""
    return f"{gib:.2f}".rstrip("0").rstrip(".")


def check_memory(
    *,
    active_slot: str | None,
    active_gib: float | None,
    new_slot: str,
    new_gib: float | None,
    capacity_gib: float | None,
    reserve_gib: float,
) -> str:
    """Both slots must fit at once, so the old one stays warm; ``Refused`` with the numbers."""
    if capacity_gib is None:
        return "memory not checked: node capacity unknown (set memory.node_capacity_gib)"
    if new_gib is None:
        return (
            f"memory not checked: no budget for slot {new_slot} (use --memory-gib or a memory "
            "limit)"
        )
    used = (active_gib or 0.0) + new_gib + reserve_gib
    summary = (
        f"active {active_slot or '-'} {_g(active_gib or 0)} GiB + new {new_slot} {_g(new_gib)} "
        f"GiB + reserve {_g(reserve_gib)} GiB = {_g(used)} GiB of {_g(capacity_gib)} GiB"
    )
    if used > capacity_gib + 1e-9:
        room = capacity_gib - reserve_gib - (active_gib or 0.0)
        raise Refused(
            f"memory budget exceeded: {summary}",
            hint=(
                f"give slot {new_slot} at most {_g(max(room, 0))} GiB (--memory-gib "
                f"{max(math.floor(room), 0)}), or lower vLLM's --gpu-memory-utilization so both "
                "fractions sum below ~0.9, or park the standby first if no warm flip-back is "
                "needed"
            ),
        )
    if active_gib is None:
        return f"memory: active slot budget unknown; {summary}"
    return f"memory fits: {summary}"


def memory_gate(
    *,
    active_slot: str | None,
    active_gib: float | None,
    new_slot: str,
    new: SlotMemory,
    capacity_gib: float | None,
    reserve_gib: float,
    allow_unknown: bool = False,
) -> str:
    """`deploy`'s memory gate (contract: "Memory is refused, not guessed"): ``Refused`` (exit 3,
    before anything is written, in --dry-run too) when the node's memory or the new slot's
    budget is unknown (unless ``allow_unknown``: then a warning), when the budget is larger than
    the node, when the engine would reserve more than the container's limit, or when both slots
    and the reserve do not fit. Returns the line to show."""
    unknown: tuple[str, str] | None = None
    if capacity_gib is None:
        unknown = (
            f"the node's memory is unknown, so slot {new_slot}'s budget cannot be checked",
            "set memory.node_capacity_gib in slots.yaml (or memory.node: the Node whose "
            "allocatable memory slots reads, which needs permission to get Nodes)",
        )
    elif new.budget_gib is None:
        unknown = (
            f"slot {new_slot} has no memory budget (no memory limit or request, no "
            "gx10slots.io/memory-gib annotation)",
            "give it one with --memory-gib N",
        )
    if unknown is not None:
        what, fix = unknown
        if not allow_unknown:
            raise Refused(
                f"memory unknown: {what}",
                hint=f"{fix}; or pass --allow-unknown-memory to deploy without the check",
            )
        return f"warning: memory not checked (--allow-unknown-memory): {what}"
    assert capacity_gib is not None and new.budget_gib is not None
    room = max(capacity_gib - reserve_gib - (active_gib or 0.0), 0.0)
    if new.budget_gib > capacity_gib + 1e-9:
        raise Refused(
            f"slot {new_slot}'s memory budget {_g(new.budget_gib)} GiB is larger than the node "
            f"({_g(capacity_gib)} GiB)",
            hint=f"give it at most {_g(room)} GiB (--memory-gib {math.floor(room)})",
        )
    limit, reserved, fraction = new.limit_gib, new.reserved_gib, new.fraction
    if limit is not None and reserved is not None and fraction and reserved > limit + 1e-9:
        most = math.floor(limit / capacity_gib * 100) / 100
        need = math.ceil(reserved)
        raise Refused(
            f"vLLM in slot {new_slot} would reserve --gpu-memory-utilization {fraction:g} x "
            f"node {_g(capacity_gib)} GiB = {_g(reserved)} GiB, more than the container's "
            f"memory limit of {_g(limit)} GiB: the engine would be OOMKilled",
            hint=(
                f"give the slot at least {_g(reserved)} GiB (--memory-gib {need}) or lower "
                f"--gpu-memory-utilization to {most:g} or less"
                + (
                    ""
                    if need <= room
                    else f" (beside the active slot and the reserve only {_g(room)} GiB fit, so "
                    "lower the fraction)"
                )
            ),
        )
    return check_memory(
        active_slot=active_slot,
        active_gib=active_gib,
        new_slot=new_slot,
        new_gib=new.budget_gib,
        capacity_gib=capacity_gib,
        reserve_gib=reserve_gib,
    )


# -- rollout verdict -------------------------------------------------------------------------


# The longest cause quoted from a cluster object's message (it is the cluster's text, unbounded).
MAX_CAUSE = 500


@dataclass(frozen=True)
class Rollout:
    state: str  # "done", "waiting", "failed"
    reason: str
    pod: str | None = None  # the pod the reason is about (for its logs)


def _pod_matches(pod: Mapping[str, Any], template: Mapping[str, Any], container_name: str) -> bool:
    """A pod of the new revision: our container's image, env and memory limit as in the
    template (the limit too: after a `--memory-gib` change, the old revision's OOMKilled pod
    has the same image and env, and is not the new rollout failing)."""

    def key(spec: Mapping[str, Any]) -> tuple[Any, Any, Any]:
        for c in spec.get("containers") or []:
            if c.get("name") == container_name:
                resources = c.get("resources")
                limits = resources.get("limits") if isinstance(resources, dict) else None
                memory = limits.get("memory") if isinstance(limits, dict) else None
                return c.get("image"), c.get("env"), canonical_or_same(memory)
        return None, None, None

    return key(pod.get("spec") or {}) == key(template.get("spec") or {})


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return dict(condition)
    return None


def pod_summary(pod: Mapping[str, Any]) -> str:
    status = pod.get("status") or {}
    phase = status.get("phase") or "Pending"
    statuses = status.get("containerStatuses") or []
    restarts = sum(int(s.get("restartCount") or 0) for s in statuses)
    reason = ""
    for s in statuses:
        waiting = (s.get("state") or {}).get("waiting")
        terminated = (s.get("state") or {}).get("terminated")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
        elif terminated and terminated.get("reason"):
            reason = terminated["reason"]
    scheduled = _condition(pod, "PodScheduled")
    if scheduled and scheduled.get("status") == "False":
        reason = scheduled.get("reason") or "Unscheduled"
    ready = _condition(pod, "Ready")
    readiness = "ready" if ready and ready.get("status") == "True" else "not ready"
    text = f"{phase}{f' ({reason})' if reason else ''}, {readiness}"
    return text + (f", {restarts} restarts" if restarts else "")


def rollout_verdict(
    deployment: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], container_name: str
) -> Rollout:
    template = (deployment.get("spec") or {}).get("template") or {}
    new_pods = [p for p in pods if _pod_matches(p, template, container_name)]
    for pod in new_pods:
        name = pod.get("metadata", {}).get("name")
        scheduled = _condition(pod, "PodScheduled")
        if (
            scheduled
            and scheduled.get("status") == "False"
            and scheduled.get("reason") == ("Unschedulable")
        ):
            return Rollout("failed", f"Unschedulable: {scheduled.get('message', '')}", name)
        for s in (pod.get("status") or {}).get("containerStatuses") or []:
            state = s.get("state") or {}
            last = s.get("lastState") or {}
            waiting = state.get("waiting") or {}
            reason = waiting.get("reason")
            if reason in IMAGE_FAILURES or reason in CONFIG_FAILURES:
                return Rollout("failed", f"{reason}: {waiting.get('message', '')}".strip(), name)
            for terminated in (state.get("terminated") or {}, last.get("terminated") or {}):
                if terminated.get("reason") == "OOMKilled":
                    return Rollout(
                        "failed",
                        "OOMKilled: the engine exceeded its memory limit "
                        f"(exit code {terminated.get('exitCode')})",
                        name,
                    )
            restarts = int(s.get("restartCount") or 0)
            if restarts >= CRASH_RESTARTS:
                return Rollout(
                    "failed",
                    f"CrashLoopBackOff: the engine keeps exiting ({restarts} restarts)",
                    name,
                )
    metadata = deployment.get("metadata") or {}
    status = deployment.get("status") or {}
    if (status.get("observedGeneration") or 0) < (metadata.get("generation") or 0):
        # Until the controller has observed this generation, its status (conditions included)
        # describes the previous rollout: a ProgressDeadlineExceeded there is old news. kubectl
        # reads it in the same order (kubectl/pkg/polymorphichelpers/rollout_status.go:
        # conditions only once Generation <= Status.ObservedGeneration).
        return Rollout("waiting", "the Deployment controller has not seen the change yet")
    failure = _condition(deployment, "ReplicaFailure")
    if failure and failure.get("status") == "True" and failure.get("reason") == "FailedCreate":
        # The cluster refused to create the pod (a ResourceQuota, Pod Security admission, a
        # webhook): no pod will ever appear to wait for. The ReplicaSet controller records the
        # API error as its ReplicaFailure condition (kubernetes pkg/controller/replicaset/
        # replica_set_utils.go calculateStatus) and the deployment controller copies the new
        # ReplicaSet's condition to the Deployment (pkg/controller/deployment/progress.go
        # getReplicaFailures). Read only once observedGeneration is current (above).
        message = " ".join(str(failure.get("message") or "").split())
        if len(message) > MAX_CAUSE:
            message = message[: MAX_CAUSE - 1] + "…"
        return Rollout("failed", f"FailedCreate: {message or 'the cluster refused the pod'}")
    progressing = _condition(deployment, "Progressing")
    if (
        progressing
        and progressing.get("status") == "False"
        and progressing.get("reason") == "ProgressDeadlineExceeded"
    ):
        return Rollout("failed", f"ProgressDeadlineExceeded: {progressing.get('message', '')}")
    ready_new = [p for p in new_pods if (_condition(p, "Ready") or {}).get("status") == "True"]
    if (
        ready_new
        and int(status.get("availableReplicas") or 0) >= 1
        and int(status.get("updatedReplicas") or 0)
        >= int((deployment.get("spec") or {}).get("replicas") or 1)
    ):
        return Rollout("done", "ready", ready_new[0].get("metadata", {}).get("name"))
    if not new_pods:
        old = len(pods)
        return Rollout("waiting", f"old pods terminating ({old})" if old else "no pod yet")
    pod = new_pods[0]
    return Rollout("waiting", pod_summary(pod), pod.get("metadata", {}).get("name"))
