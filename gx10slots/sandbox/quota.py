"""ResourceQuota for pods: admission (a pod that would exceed a quota is refused) and the usage the
resourcequota controller writes into a quota's status.

Ported from kubernetes/kubernetes:

- plugin/pkg/admission/resourcequota/controller.go ``checkRequest``: for every quota of the
  namespace, the pod's usage masked to the quota's hard names is added to the quota's usage; when
  that exceeds ``hard`` the create is refused with ``admission.NewForbidden`` and
  ``exceeded quota: <quota>, requested: <r>, used: <u>, limited: <h>`` (each a ``prettyPrint``:
  ``name=quantity`` sorted by name and joined with ``,``, masked to the exceeded names). A quota
  that tracks cpu or memory also requires every container to state it (``Constraints``):
  ``failed quota: <quota>: must specify limits.memory for: engine``.
- staging/src/k8s.io/apiserver/pkg/admission/errors.go ``NewForbidden``/``extractResourceName``:
  the object's name, or its ``generateName`` when it has none yet (a controller's pod), so the
  text is ``pods "slot-a-5d4f8b-" is forbidden: exceeded quota: ...`` (403 Forbidden).
- pkg/quota/v1/evaluator/core/pods.go ``PodUsageFunc``: ``pods`` and ``count/pods`` 1;
  ``requests.cpu``/``cpu``, ``requests.memory``/``memory``, ``limits.cpu``, ``limits.memory`` from
  the pod's effective requests and limits (sum over containers, at least the largest init
  container's, plus overhead: component-helpers resource.PodRequests/PodLimits); extended
  resources as ``requests.<name>``. Pods in a terminal phase use nothing (``QuotaV1Pod``).

The sandbox checks ``spec.hard`` against usage computed from the stored pods at the moment of the
create (under the store's lock), where a real apiserver uses the status the resourcequota
controller last wrote and reserves the increment; the outcome is the same once that controller has
caught up (a real server refuses pods with "status unknown for quota" until it has).
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

from gx10slots.kube import quantity
from gx10slots.sandbox.resources import PODS, RESOURCEQUOTAS
from gx10slots.sandbox.store import Obj, StatusError, Store

__all__ = ["admit_pod", "pod_usage", "quota_status"]

# pods.go: the names whose quota makes every container state the resource (validationSet).
_MUST_SPECIFY = ("cpu", "memory", "requests.cpu", "requests.memory", "limits.cpu", "limits.memory")
_STANDARD = ("cpu", "memory")


def _value(raw: Any) -> Fraction:
    try:
        return quantity.from_json(raw).value
    except quantity.QuantityError:
        return Fraction(0)


def _add(into: dict[str, Fraction], block: Any, scale: int = 1) -> None:
    for name, raw in (block or {}).items() if isinstance(block, dict) else ():
        into[str(name)] = into.get(str(name), Fraction(0)) + _value(raw) * scale


def _effective(spec: Obj, key: str) -> dict[str, Fraction]:
    """resource.PodRequests/PodLimits: sum of the containers, at least each init container's,
    plus the pod overhead."""
    total: dict[str, Fraction] = {}
    for c in spec.get("containers") or []:
        _add(total, ((c or {}).get("resources") or {}).get(key))
    for c in spec.get("initContainers") or []:
        init: dict[str, Fraction] = {}
        _add(init, ((c or {}).get("resources") or {}).get(key))
        for name, value in init.items():
            total[name] = max(total.get(name, Fraction(0)), value)
    _add(total, spec.get("overhead"))
    return total


def _terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pod_usage(pod: Obj) -> dict[str, Fraction]:
    """What one pod counts against a quota (PodUsageFunc)."""
    if _terminal(pod):
        return {}
    spec = pod.get("spec") or {}
    usage: dict[str, Fraction] = {"pods": Fraction(1), "count/pods": Fraction(1)}
    requests, limits = _effective(spec, "requests"), _effective(spec, "limits")
    for name, value in requests.items():
        if name in _STANDARD:
            usage[name] = value
            usage[f"requests.{name}"] = value
        elif "/" in name:  # an extended resource (nvidia.com/gpu): quota'd as requests.<name>
            usage[f"requests.{name}"] = value
    for name, value in limits.items():
        if name in _STANDARD:
            usage[f"limits.{name}"] = value
    return usage


def _format(name: str, value: Fraction, hard: Any) -> str:
    """A quantity as Quantity.String() prints it, in the format of the quota's own value."""
    try:
        fmt = quantity.from_json(hard).format
    except quantity.QuantityError:
        fmt = quantity.DECIMAL_SI
    if name.endswith("memory") and fmt == quantity.DECIMAL_SI and value and value % 1024 == 0:
        fmt = quantity.BINARY_SI
    if value.denominator == 1:
        return quantity.Quantity(int(value), 0, fmt).canonical()
    milli = -(-value.numerator * 1000 // value.denominator)  # rounded up, as RoundUp(Milli)
    return quantity.Quantity(milli, -3, fmt).canonical()


def _pretty(values: dict[str, Fraction], hard: dict[str, Any]) -> str:
    return ",".join(f"{n}={_format(n, values[n], hard.get(n))}" for n in sorted(values))


def _used(store: Store, namespace: str, names: list[str]) -> dict[str, Fraction]:
    used = {name: Fraction(0) for name in names}
    for pod in store.list(PODS, namespace)[0]:
        for name, value in pod_usage(pod).items():
            if name in used:
                used[name] += value
    return used


def _container_missing(pod: Obj, required: set[str]) -> str:
    """pods.go Constraints: 'limits.memory for: engine; requests.cpu for: a,b' or ''."""
    missing: dict[str, set[str]] = {}
    spec = pod.get("spec") or {}
    for c in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        res = (c or {}).get("resources") or {}
        requests, limits = res.get("requests") or {}, res.get("limits") or {}
        for name in required:
            base = name.split(".")[-1]
            present = base in limits if name.startswith("limits.") else base in requests
            if not present:
                missing.setdefault(name, set()).add(str((c or {}).get("name") or ""))
    return "; ".join(f"{n} for: {','.join(sorted(missing[n]))}" for n in sorted(missing))


def _forbidden(pod: Obj, reason: str) -> StatusError:
    meta = pod.get("metadata") or {}
    name = meta.get("name") or meta.get("generateName") or "Unknown"
    return StatusError(
        403,
        "Forbidden",
        f'pods "{name}" is forbidden: {reason}',
        details={"name": name, "kind": "pods"},
    )


def admit_pod(store: Store, pod: Obj) -> None:
    """Refuse (403) a pod whose creation would exceed a ResourceQuota of its namespace; call it
    holding ``store.atomic()`` together with the create, so two pods cannot both squeeze in."""
    namespace = str((pod.get("metadata") or {}).get("namespace") or "")
    if _terminal(pod):
        return
    requested = pod_usage(pod)
    for rq in store.list(RESOURCEQUOTAS, namespace)[0]:
        hard = (rq.get("spec") or {}).get("hard") or {}
        if not isinstance(hard, dict) or not hard:
            continue
        name = rq["metadata"]["name"]
        required = {n for n in hard if n in _MUST_SPECIFY}
        missing = _container_missing(pod, required)
        if missing:
            raise _forbidden(pod, f"failed quota: {name}: must specify {missing}")
        tracked = {n: v for n, v in requested.items() if n in hard and v}
        if not tracked:
            continue
        used = _used(store, namespace, list(tracked))
        exceeded = [n for n in tracked if used[n] + tracked[n] > _value(hard[n])]
        if exceeded:
            limited = ",".join(
                f"{n}={quantity.canonical_or_same(hard[n])}" for n in sorted(exceeded)
            )
            raise _forbidden(
                pod,
                f"exceeded quota: {name}, "
                f"requested: {_pretty({n: tracked[n] for n in exceeded}, hard)}, "
                f"used: {_pretty({n: used[n] for n in exceeded}, hard)}, "
                f"limited: {limited}",
            )


def quota_status(store: Store, rq: Obj) -> Obj:
    """The status the resourcequota controller writes: hard as in spec, used for those names."""
    hard = (rq.get("spec") or {}).get("hard") or {}
    if not isinstance(hard, dict):
        return {}
    namespace = str(rq["metadata"].get("namespace") or "")
    used = _used(store, namespace, list(hard))
    return {
        "hard": dict(hard),
        "used": {n: _format(n, used[n], hard[n]) for n in sorted(hard)},
    }
