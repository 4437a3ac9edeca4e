"""Where the sandbox's production router sends a request: pure rules, no I/O.

A :class:`Routing` is the router's whole decision, computed from the API (and compared, so a
change can wait out ``--router-lag``): weighted backends, each a Service with its ready endpoints
or the reason it is invalid, or a status every request gets.

For the ``httproute`` flag it follows the Gateway API (v1.6.1, apis/v1/httproute_types.go and
shared_types.go) for the production route's first rule:

- a backendRef receives ``weight / (sum of weights)`` of the requests; weight 0 gets none, an
  unset weight is 1 (the CRD's default, applied by the API server);
- an invalid backendRef (not a core Service, another namespace without a ReferenceGrant, a Service
  that does not exist or has no such port) gets a 500 for its share of the requests;
- a backendRef whose Service has no ready endpoints gets a 503 for its share ("implementations
  SHOULD return a 503");
- no backendRef with a weight above 0 — all of them weighted 0, or none at all — is a 500 for
  every request: the spec's rule for a rule whose backends are all invalid, which is how the
  implementations answer all-zero weights and what the spec's maintainers read it as
  (kubernetes-sigs/gateway-api#4769);
- no route, or a route without rules: 404 ("When no rules matching a request have been
  successfully attached to the parent ... a HTTP 404 status code MUST be returned").

The Service-selector and ConfigMap flags route to one backend, the Service's ready endpoints.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

ROUTE_API_VERSION = "gateway.networking.k8s.io/v1"


class NoRoute(Exception):
    """What the router answers instead of forwarding: ``status`` and why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Backend:
    """One destination: a Service, its weight, its ready endpoints (base URLs), or ``invalid``
    (why, and the route condition's reason for it)."""

    service: str
    weight: int
    endpoints: tuple[str, ...] = ()
    invalid: str | None = None
    invalid_reason: str = ""


@dataclass(frozen=True)
class Routing:
    backends: tuple[Backend, ...] = ()
    # A status for every request (404 no route, 500 no backend with weight): None forwards.
    status: int | None = None
    reason: str = ""
    # The HTTPRoute's generation this routing was computed from (its status's observedGeneration).
    generation: int | None = None

    @classmethod
    def single(cls, service: str, endpoints: Sequence[str]) -> Routing:
        return cls((Backend(service, 1, tuple(endpoints)),))

    @property
    def weighted(self) -> tuple[Backend, ...]:
        return tuple(b for b in self.backends if b.weight > 0)

    def serves(self) -> bool:
        """Whether some request would reach an endpoint now."""
        return any(b.endpoints and b.invalid is None for b in self.weighted)


@dataclass(frozen=True)
class ServiceView:
    """What the router knows of a Service: its ports and its ready endpoints."""

    ports: tuple[int, ...]
    endpoints: tuple[str, ...]


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def from_httproute(
    route: dict[str, Any] | None,
    name: str,
    namespace: str,
    service: Callable[[str], ServiceView | None],
) -> Routing:
    """The routing an HTTPRoute asks for (stored, so defaulted and valid; read defensively)."""
    if route is None:
        return Routing(status=404, reason=f"no HTTPRoute {namespace}/{name}")
    rules = (route.get("spec") or {}).get("rules")
    rule = rules[0] if isinstance(rules, list) and rules and isinstance(rules[0], dict) else None
    if rule is None:
        return Routing(status=404, reason=f"HTTPRoute {namespace}/{name} has no rules")
    refs = rule.get("backendRefs")
    backends: list[Backend] = []
    for ref in refs if isinstance(refs, list) else []:
        if not isinstance(ref, dict):
            continue
        target = str(ref.get("name") or "")
        weight = max(0, _int(ref.get("weight"), 1))
        why, cause = None, ""  # RouteConditionReason values of ResolvedRefs
        view: ServiceView | None = None
        if ref.get("group", "") != "" or ref.get("kind", "Service") != "Service":
            why = f"backendRef {target} is a {ref.get('kind')}, not a core Service"
            cause = "InvalidKind"
        elif ref.get("namespace", namespace) != namespace:
            why = (
                f"backendRef {ref.get('namespace')}/{target} is in another namespace and no "
                "ReferenceGrant allows it"
            )
            cause = "RefNotPermitted"
        else:
            view = service(target)
            if view is None:
                why, cause = f"backendRef Service {target} does not exist", "BackendNotFound"
            elif _int(ref.get("port"), -1) not in view.ports:
                why = f"backendRef Service {target} has no port {ref.get('port')}"
                cause = "BackendNotFound"
        endpoints = view.endpoints if view is not None and why is None else ()
        backends.append(Backend(target, weight, endpoints, why, cause))
    generation = (route.get("metadata") or {}).get("generation")
    generation = generation if isinstance(generation, int) else None
    routing = Routing(tuple(backends), generation=generation)
    if not routing.weighted:
        return Routing(
            tuple(backends),
            status=500,
            reason=f"HTTPRoute {namespace}/{name} has no backendRef with a weight above 0",
            generation=generation,
        )
    return routing


CONTROLLER_NAME = "gx10slots.io/sandbox-gateway"


def route_status(
    route: dict[str, Any], routing: Routing, gateway: str, at: str
) -> dict[str, Any] | None:
    """The ``status`` the Gateway writes on the route once it routes by ``routing``: one entry
    per parentRef (gateway-api apis/v1/shared_types.go ``RouteParentStatus``), ``Accepted`` and
    ``ResolvedRefs`` at the generation it follows; conditions that do not change keep their
    ``lastTransitionTime``. None when the routing is not this route's (another generation)."""
    meta = route.get("metadata") or {}
    if routing.generation is None or meta.get("generation") != routing.generation:
        return None
    spec = route.get("spec") or {}
    parents = spec.get("parentRefs")
    refs = [p for p in (parents if isinstance(parents, list) else [])[:32] if isinstance(p, dict)]
    if not refs:
        refs = [{"name": gateway}]
    bad = next((b for b in routing.backends if b.invalid is not None), None)
    old = (route.get("status") or {}).get("parents")
    old_conditions: dict[str, Any] = {}
    for entry in old if isinstance(old, list) else []:
        for c in (entry.get("conditions") if isinstance(entry, dict) else None) or []:
            if isinstance(c, dict):
                old_conditions[str(c.get("type"))] = c

    def condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, Any]:
        status = "True" if ok else "False"
        prior = old_conditions.get(kind) or {}
        since = prior.get("lastTransitionTime") if prior.get("status") == status else None
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "observedGeneration": routing.generation,
            "lastTransitionTime": since or at,
        }

    conditions = [
        condition("Accepted", True, "Accepted", "Route is accepted"),
        condition(
            "ResolvedRefs",
            bad is None,
            bad.invalid_reason if bad is not None else "ResolvedRefs",
            bad.invalid or "" if bad is not None else "All references are resolved",
        ),
    ]
    return {
        "parents": [
            {
                "parentRef": {
                    "group": ref.get("group", "gateway.networking.k8s.io"),
                    "kind": ref.get("kind", "Gateway"),
                    "name": ref.get("name"),
                    **({"namespace": ref["namespace"]} if "namespace" in ref else {}),
                },
                "controllerName": CONTROLLER_NAME,
                "conditions": conditions,
            }
            for ref in refs
        ]
    }


class Picker:
    """Chooses a backend per request, in proportion to the weights: smooth weighted round-robin
    (nginx's), so the split is exact over every ``sum of weights`` requests and interleaved."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._for: Routing | None = None
        self._current: list[int] = []

    def pick(self, routing: Routing) -> Backend:
        backends = routing.weighted
        with self._lock:
            if routing != self._for:
                self._for, self._current = routing, [0] * len(backends)
            total = sum(b.weight for b in backends)
            for i, b in enumerate(backends):
                self._current[i] += b.weight
            best = max(range(len(backends)), key=lambda i: self._current[i])
            self._current[best] -= total
            return backends[best]

    def endpoints(self, routing: Routing, name: str) -> list[str]:
        """The endpoints this request may go to (the proxy round-robins among them); raises
        :class:`NoRoute` when it gets a status instead."""
        if routing.status is not None:
            raise NoRoute(routing.status, f"{name}: {routing.reason}")
        if len(routing.backends) == 1 and routing.backends[0].invalid is None:
            return list(routing.backends[0].endpoints)  # one Service: the proxy's 503 if none
        backend = self.pick(routing)
        if backend.invalid is not None:
            raise NoRoute(500, f"{name}: {backend.invalid}")
        if not backend.endpoints:
            raise NoRoute(503, f"{name}: no ready endpoints for backend Service {backend.service}")
        return list(backend.endpoints)
