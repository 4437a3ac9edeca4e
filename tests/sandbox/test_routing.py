"""The sandbox Gateway's routing rules for an HTTPRoute's weighted backendRefs (pure)."""

from __future__ import annotations

import copy
from collections import Counter
from typing import Any

import pytest

from gx10slots.sandbox import customresources
from gx10slots.sandbox.routing import (
    NoRoute,
    Picker,
    Routing,
    ServiceView,
    from_httproute,
    route_status,
)

BLUE = ServiceView((8000,), ("http://blue-pod",))
GREEN = ServiceView((8000,), ("http://green-pod",))


def route(*refs: dict[str, Any]) -> dict[str, Any]:
    return {"spec": {"rules": [{"backendRefs": list(refs)}]}}


def ref(name: str, weight: int | None = None, **more: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "port": 8000, "group": "", "kind": "Service", **more}
    if weight is not None:
        out["weight"] = weight
    return out


def routing_of(r: dict[str, Any] | None, services: dict[str, ServiceView] | None = None) -> Routing:
    known = services if services is not None else {"gx10-blue": BLUE, "gx10-green": GREEN}
    return from_httproute(r, "gx10-model", "gx10", known.get)


def served(routing: Routing, requests: int) -> Counter[str]:
    """Which endpoint each of ``requests`` requests goes to (or the status it gets)."""
    picker, seen = Picker(), Counter[str]()
    for _ in range(requests):
        try:
            seen.update(picker.endpoints(routing, "gx10-model"))
        except NoRoute as answer:
            seen[str(answer.status)] += 1
    return seen


def test_weight_100_gets_every_request_and_weight_0_none() -> None:
    assert served(routing_of(route(ref("gx10-blue", 100), ref("gx10-green", 0))), 50) == {
        "http://blue-pod": 50
    }
    assert served(routing_of(route(ref("gx10-blue", 0), ref("gx10-green", 100))), 50) == {
        "http://green-pod": 50
    }


@pytest.mark.parametrize(("blue", "green"), [(70, 30), (1, 1), (1, 3), (999_999, 1)])
def test_split_weights_split_the_requests_in_proportion(blue: int, green: int) -> None:
    total = blue + green
    seen = served(routing_of(route(ref("gx10-blue", blue), ref("gx10-green", green))), total)
    assert seen == {"http://blue-pod": blue, "http://green-pod": green}


def test_a_split_is_interleaved_not_in_bursts() -> None:
    picker = Picker()
    routing = routing_of(route(ref("gx10-blue", 1), ref("gx10-green", 1)))
    order = [picker.endpoints(routing, "p")[0] for _ in range(4)]
    assert order[0] != order[1] and order[1] != order[2]


def test_an_unset_weight_counts_as_one() -> None:
    seen = served(routing_of(route(ref("gx10-blue"), ref("gx10-green", 1))), 4)
    assert seen == {"http://blue-pod": 2, "http://green-pod": 2}


@pytest.mark.parametrize(
    "refs",
    [
        (ref("gx10-blue", 0), ref("gx10-green", 0)),
        (),
    ],
    ids=["all-weights-zero", "no-backendRefs"],
)
def test_no_backend_with_a_weight_is_a_500_for_every_request(refs: tuple[Any, ...]) -> None:
    routing = routing_of(route(*refs))
    assert not routing.serves()
    assert served(routing, 5) == {"500": 5}


@pytest.mark.parametrize(
    ("bad", "why"),
    [
        (ref("gx10-nope", 1), "does not exist"),
        (ref("gx10-green", 1, port=9999), "has no port 9999"),
        (ref("gx10-green", 1, namespace="other"), "ReferenceGrant"),
        (ref("gx10-green", 1, group="example.com", kind="Backend"), "not a core Service"),
    ],
)
def test_an_invalid_backend_gets_a_500_for_its_share(bad: dict[str, Any], why: str) -> None:
    routing = routing_of(route(ref("gx10-blue", 1), bad))
    assert served(routing, 10) == {"http://blue-pod": 5, "500": 5}
    with pytest.raises(NoRoute, match=why):
        Picker().endpoints(routing_of(route(bad)), "gx10-model")


def test_a_backend_without_ready_endpoints_gets_a_503_for_its_share() -> None:
    services = {"gx10-blue": BLUE, "gx10-green": ServiceView((8000,), ())}
    routing = routing_of(route(ref("gx10-blue", 1), ref("gx10-green", 1)), services)
    assert served(routing, 4) == {"http://blue-pod": 2, "503": 2}
    assert routing.serves()  # blue still answers


@pytest.mark.parametrize(
    "r", [None, {"spec": {}}, {"spec": {"rules": []}}, {"spec": {"rules": "junk"}}]
)
def test_no_route_or_no_rule_is_a_404(r: dict[str, Any] | None) -> None:
    assert served(routing_of(r), 2) == {"404": 2}


def test_hostile_backend_refs_do_not_crash_the_router() -> None:
    junk: dict[str, Any] = {
        "spec": {"rules": [{"backendRefs": ["x", None, {"weight": "heavy", "name": 3}]}]}
    }
    assert served(routing_of(junk), 2) == {"500": 2}


def test_the_service_selector_and_configmap_flags_route_to_one_service() -> None:
    assert Picker().endpoints(Routing.single("gx10-model", ("a", "b")), "p") == ["a", "b"]
    # No ready endpoint: an empty list, which the Service proxy answers with its 503.
    assert Picker().endpoints(Routing.single("gx10-model", ()), "p") == []


def _stored_route(generation: int, *refs: dict[str, Any]) -> dict[str, Any]:
    r = route(*refs)
    r.update(apiVersion="gateway.networking.k8s.io/v1", kind="HTTPRoute")
    r["metadata"] = {"name": "gx10-model", "namespace": "gx10", "generation": generation}
    r["spec"]["parentRefs"] = [{"name": "gx10-gateway"}]
    return r


def test_the_gateway_reports_the_generation_it_routes_by_in_a_valid_status() -> None:
    stored = _stored_route(3, ref("gx10-blue", 100), ref("gx10-nope", 0))
    status = route_status(stored, routing_of(stored), "gx10-gateway", "2026-01-01T00:00:00Z")
    assert status is not None
    (parent,) = status["parents"]
    assert parent["parentRef"] == {
        "group": "gateway.networking.k8s.io",
        "kind": "Gateway",
        "name": "gx10-gateway",
    }
    conditions = {c["type"]: c for c in parent["conditions"]}
    assert conditions["Accepted"]["status"] == "True"
    assert conditions["Accepted"]["observedGeneration"] == 3
    assert (conditions["ResolvedRefs"]["status"], conditions["ResolvedRefs"]["reason"]) == (
        "False",
        "BackendNotFound",
    )
    # What it writes is valid against the published CRD, as a real status write must be.
    stored["status"] = status
    unknown, causes = customresources.findings(customresources.HTTPROUTE, stored)
    assert (unknown, causes) == ([], [])


def test_a_status_keeps_the_transition_time_of_a_condition_that_did_not_change() -> None:
    first = _stored_route(1, ref("gx10-blue", 100), ref("gx10-green", 0))
    first["status"] = route_status(first, routing_of(first), "gw", "2026-01-01T00:00:00Z")
    second = copy.deepcopy(first)
    second["metadata"]["generation"] = 2
    second["spec"]["rules"][0]["backendRefs"][1]["weight"] = 100
    status = route_status(second, routing_of(second), "gw", "2026-01-02T00:00:00Z")
    assert status is not None
    accepted = status["parents"][0]["conditions"][0]
    assert (accepted["observedGeneration"], accepted["lastTransitionTime"]) == (
        2,
        "2026-01-01T00:00:00Z",
    )
    # A routing of another generation is not reported on this one.
    assert route_status(second, routing_of(first), "gw", "2026-01-02T00:00:00Z") is None


def test_the_sandbox_offers_every_registered_flag_kind() -> None:
    from gx10slots.cli import cli
    from gx10slots.flags import KINDS
    from gx10slots.sandbox import seed

    assert set(seed.FLAG_KINDS) == set(KINDS)
    up = cli.commands["sandbox"].commands["up"]  # type: ignore[attr-defined]
    (flag,) = [p for p in up.params if p.name == "flag"]
    assert set(flag.type.choices) == set(KINDS)
