"""``httproute``: a Gateway API HTTPRoute sends production to the slot Services by weight.

The route's rule (or rules) has backendRefs to the two slot Services (``slots.<slot>.service``);
the slot with weight 100 is active, the other has 0. Envoy Gateway, Istio, the GKE Inference
Gateway and llm-d route this way. A flip sets the weights to 100 and 0 with one JSON Patch that
first ``test``s every weight it replaces (and the caller, the resourceVersion).

What the weights mean (Gateway API v1, apis/v1/shared_types.go ``BackendRef.Weight``): each
backendRef gets ``weight / sum of weights`` of the requests, 0 gets none, an unset weight is 1.
So the route names a slot when every backendRef with a weight above 0 is that slot's Service;
anything else — a split, all weights 0, another backend with traffic — is shown to the operator
as it is and never acted on as a slot.

Nothing in the cluster shows where a Gateway actually sends production (its status says the route
was accepted, not that the data plane follows the weights yet), so a flip is proved by answers
through production, attributed by the slots' identity names.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gx10slots.flags.base import FlagKind
from gx10slots.flux import FLUX_RECONCILE, FLUX_SSA, flux_protected
from gx10slots.kube.values import pointer

if TYPE_CHECKING:
    from gx10slots.app import App
    from gx10slots.config import Config

GROUP = "gateway.networking.k8s.io"
VERSION = "v1"
PLURAL = "httproutes"
ACTIVE_WEIGHT = 100
# The CRD allows 16 rules of 16 backendRefs; a hostile object may hold more: read no further.
MAX_RULES = 16
MAX_BACKEND_REFS = 16
DEFAULT_WEIGHT = 1  # the CRD's default for an unset weight
MAX_VALUE_CHARS = 300  # a split shown to the operator: long enough for 16 backendRefs' names


def _weight(ref: Mapping[str, Any]) -> int:
    value = ref.get("weight", DEFAULT_WEIGHT)
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _service_name(ref: Mapping[str, Any], namespace: str) -> str | None:
    """The core Service a backendRef names in ``namespace``, else None (another kind, group or
    namespace: not one of the slots, whatever its name)."""
    if ref.get("group", "") not in ("", None) or ref.get("kind", "Service") != "Service":
        return None
    if ref.get("namespace", namespace) != namespace:
        return None
    name = ref.get("name")
    return name if isinstance(name, str) else None


def _slot_services(config: Config) -> dict[str, str]:
    """Service name -> slot name."""
    return {slot.service: name for name, slot in config.slots.items()}


def _rules(obj: Mapping[str, Any]) -> list[tuple[int, list[Any]]]:
    """(rule index, its backendRefs) of every rule, bounded; junk reads as no backendRefs."""
    spec = obj.get("spec")
    rules = spec.get("rules") if isinstance(spec, Mapping) else None
    out: list[tuple[int, list[Any]]] = []
    for i, rule in enumerate(rules[:MAX_RULES] if isinstance(rules, list) else []):
        refs = rule.get("backendRefs") if isinstance(rule, Mapping) else None
        out.append((i, refs[:MAX_BACKEND_REFS] if isinstance(refs, list) else []))
    return out


def _slot_rules(obj: Mapping[str, Any], config: Config) -> list[tuple[int, list[Any]]]:
    """The rules that route to a slot Service: the ones a flip changes."""
    services = _slot_services(config)
    return [
        (i, refs)
        for i, refs in _rules(obj)
        if any(
            isinstance(r, Mapping) and _service_name(r, config.namespace) in services for r in refs
        )
    ]


def rule_value(refs: list[Any], config: Config) -> str:
    """What one rule's weights say: the slot that gets every request, or a description of the
    split (``blue 50, green 50``; ``no backendRef has a weight above 0``)."""
    services = _slot_services(config)
    weighted: list[tuple[str, int]] = []
    for ref in refs:
        if not isinstance(ref, Mapping) or _weight(ref) <= 0:
            continue
        name = _service_name(ref, config.namespace)
        shown = services.get(name or "") or str(ref.get("name") or "?")[:63]
        weighted.append((shown, _weight(ref)))
    receivers = {shown for shown, _ in weighted}
    if len(receivers) == 1 and (only := next(iter(receivers))) in services.values():
        return only
    if not weighted:
        return "no backendRef has a weight above 0"
    return ", ".join(f"{shown} {weight}" for shown, weight in weighted)


def weight_ops(refs: list[Any], rule: int, config: Config, target: str) -> list[dict[str, Any]]:
    """The operations that give ``target``'s Service weight 100 and every other backendRef of
    the rule 0, each replace after a ``test`` of the name and the weight it replaces."""
    ops: list[dict[str, Any]] = []
    target_service = config.slot(target).service
    target_seen = False
    for j, ref in enumerate(refs):
        if not isinstance(ref, Mapping):
            continue
        is_target = _service_name(ref, config.namespace) == target_service
        wanted = ACTIVE_WEIGHT if is_target and not target_seen else 0
        target_seen = target_seen or is_target
        base = pointer("spec", "rules", str(rule), "backendRefs", str(j))
        ops.append({"op": "test", "path": f"{base}/name", "value": ref.get("name")})
        if "weight" in ref:
            if ref["weight"] == wanted:
                continue
            ops.append({"op": "test", "path": f"{base}/weight", "value": ref["weight"]})
            ops.append({"op": "replace", "path": f"{base}/weight", "value": wanted})
        else:
            ops.append({"op": "add", "path": f"{base}/weight", "value": wanted})
    if not target_seen:
        # The rule routes to the other slot only: the target's Service joins it.
        ops.append(
            {
                "op": "add",
                "path": pointer("spec", "rules", str(rule), "backendRefs", "-"),
                "value": {
                    "name": target_service,
                    "port": config.slot(target).port,
                    "weight": ACTIVE_WEIGHT,
                },
            }
        )
    return ops


class HTTPRouteWeights(FlagKind):
    name = "httproute"
    object_kind = "HTTPRoute"

    def value(self, obj: Mapping[str, Any], config: Config) -> str | None:
        values = [(i, rule_value(refs, config)) for i, refs in _slot_rules(obj, config)]
        if not values:
            return None
        if len({v for _, v in values}) == 1:
            shown = values[0][1]
        else:
            shown = "; ".join(f"rule {i}: {v}" for i, v in values)
        return shown if len(shown) <= MAX_VALUE_CHARS else shown[: MAX_VALUE_CHARS - 1] + "…"

    def value_ops(
        self, obj: Mapping[str, Any], config: Config, target: str
    ) -> list[dict[str, Any]]:
        ops: list[dict[str, Any]] = []
        for i, refs in _slot_rules(obj, config):
            ops += weight_ops(refs, i, config, target)
        return ops

    def flux_blocker(self, obj: Mapping[str, Any], config: Config) -> str | None:
        """``spec.rules`` is an atomic list (``x-kubernetes-list-type: atomic``): a Flux
        reconcile writes Git's rules back whole, weights included, silently undoing a flip."""
        if flux_protected(obj):
            return None
        return (
            f"HTTPRoute {config.flag.name} is applied by Flux and its rules are an atomic list: "
            f"the next reconcile would revert the flip's weights. Annotate it in Git with "
            f"{FLUX_SSA}: IfNotPresent (or {FLUX_RECONCILE}: disabled)"
        )

    def read(self, app: App) -> dict[str, Any]:
        config, kube = app.config, app.kube
        return kube.read(
            f"read HTTPRoute {config.namespace}/{config.flag.name}",
            kube.api("custom").get_namespaced_custom_object,
            GROUP,
            VERSION,
            config.namespace,
            PLURAL,
            config.flag.name,
        )

    def patch(self, app: App, patch: list[dict[str, Any]], purpose: str) -> dict[str, Any]:
        from gx10slots.kube.client import FIELD_MANAGER

        config, kube = app.config, app.kube
        # A list body goes out as application/json-patch+json (gx10slots.kube.rest), so the
        # `test` ops pin the weights that were read.
        return kube.write(
            f"patch HTTPRoute {config.namespace}/{config.flag.name}{purpose}",
            kube.api("custom").patch_namespaced_custom_object,
            GROUP,
            VERSION,
            config.namespace,
            PLURAL,
            config.flag.name,
            patch,
            field_manager=FIELD_MANAGER,
        )


KIND = HTTPRouteWeights()
