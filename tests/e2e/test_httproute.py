"""The `httproute` flag end to end: `slots sandbox up --flag httproute` serves a Gateway API
HTTPRoute whose backendRef weights route production; deploy --flip and flip-back move them;
kubectl reads and patches the route like any custom resource."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable

import httpx
import pytest
import yaml

from tests.e2e.conftest import Sandbox, wait_for

pytestmark = pytest.mark.e2e

ROUTE = "httproute/gx10-model"


def weights(box: Sandbox) -> list[int]:
    """The route's weights as kubectl shows them: blue's, then green's."""
    shown = box.kubectl("get", ROUTE, "-o", "jsonpath={.spec.rules[0].backendRefs[*].weight}")
    assert shown.returncode == 0, shown.stderr
    return [int(w) for w in shown.stdout.split()]


def production_statuses(box: Sandbox, requests: int) -> Counter[str]:
    """What ``requests`` requests through production get: the slot that answered, or the status."""
    seen = Counter[str]()
    for _ in range(requests):
        response = httpx.get(f"{box.info['prod_endpoint']}/v1/models", timeout=5)
        if response.status_code != 200:
            seen[str(response.status_code)] += 1
            continue
        ids = [card["id"] for card in response.json()["data"]]
        seen.update(i.split("/", 1)[1] for i in ids if i.startswith("gx10slots/"))
    return seen


def test_deploy_flip_and_flip_back_move_production_through_the_route_weights(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    box = make_sandbox(flag="httproute")
    flag = yaml.safe_load((box.dir / "slots.yaml").read_text())["flag"]
    assert (flag["kind"], flag["name"]) == ("httproute", "gx10-model")
    assert weights(box) == [100, 0]
    assert box.answering_slot() == "blue"

    deployed = box.cli("-o", "json", "deploy", "org/model-v2", "--served-name", "v2", "--flip")
    assert deployed.code == 0, deployed.err
    assert deployed.json()["flip"]["to"] == "green"
    assert weights(box) == [0, 100]
    assert box.answering_slot() == "green"  # verified through production before it returned
    assert box.production() == "v2"
    # The Gateway says so on the route too, at the generation with the new weights.
    route = box.get("httproute", "gx10-model")
    accepted = route["status"]["parents"][0]["conditions"][0]
    assert (accepted["type"], accepted["status"]) == ("Accepted", "True")
    assert accepted["observedGeneration"] == route["metadata"]["generation"]
    status = box.cli("-o", "json", "status").json()
    assert (status["active"], status["previous"]) == ("green", "blue")

    back = box.cli("flip-back")
    assert back.code == 0, back.err
    assert weights(box) == [100, 0]
    assert box.answering_slot() == "blue"
    route = box.get("httproute", "gx10-model")
    assert route["metadata"]["annotations"]["gx10slots.io/active"] == "blue"
    assert route["metadata"]["annotations"]["gx10slots.io/previous"] == "green"
    actions = [(e["action"], e["from"], e["to"], e["result"]) for e in box.history()]
    assert actions[:2] == [("flip-back", "green", "blue", "ok"), ("flip", "blue", "green", "ok")]


def test_a_stuck_gateway_fails_verification_and_the_weights_go_back(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    box = make_sandbox(flag="httproute", router_lag=None)
    assert box.cli("deploy", "sandbox/ok").code == 0  # green warm, same served name
    box.set_config("flag", verify_window="3s")
    result = box.cli("flip")
    assert result.code == 1, result.err
    assert weights(box) == [100, 0]
    assert box.answering_slot() == "blue"
    newest = box.history()[0]
    assert (newest["action"], newest["to"], newest["result"]) == ("flip", "green", "failed")


def test_kubectl_gets_and_patches_the_route_and_production_follows(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    box = make_sandbox(flag="httproute", router_lag=0.2)
    listed = box.kubectl("get", "httproutes")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split()[:4] == ["NAME", "HOSTNAMES", "AGE", "gx10-model"]
    assert box.cli("deploy", "sandbox/ok").code == 0  # green ready too

    # kubectl's default patch is a strategic merge, which no custom resource takes.
    refused = box.kubectl("patch", ROUTE, "-p", '{"metadata":{"labels":{"x":"y"}}}')
    assert refused.returncode != 0
    assert "application/strategic-merge-patch+json is not supported" in refused.stderr

    rv = json.loads(box.kubectl("get", ROUTE, "-o", "json").stdout)["metadata"]["resourceVersion"]
    split = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "replace", "path": "/spec/rules/0/backendRefs/0/weight", "value": 1},
        {"op": "replace", "path": "/spec/rules/0/backendRefs/1/weight", "value": 1},
    ]
    patched = box.kubectl("patch", ROUTE, "--type=json", "-p", json.dumps(split))
    assert patched.returncode == 0, patched.stderr
    assert weights(box) == [1, 1]
    wait_for(lambda: production_statuses(box, 4) == {"blue": 2, "green": 2}, what="a 1:1 split")
    assert box.cli("flip").code == 3  # the route names no slot: nothing is the standby

    again = box.kubectl("patch", ROUTE, "--type=json", "-p", json.dumps(split))
    assert again.returncode != 0  # its resourceVersion test no longer holds
    assert "testing value /metadata/resourceVersion failed" in again.stderr

    too_heavy = box.kubectl(
        "patch",
        ROUTE,
        "--type=json",
        "-p",
        '[{"op":"replace","path":"/spec/rules/0/backendRefs/0/weight","value":1000001}]',
    )
    assert too_heavy.returncode != 0
    assert "should be less than or equal to 1000000" in too_heavy.stderr

    zero = {
        "spec": {
            "rules": [
                {
                    "backendRefs": [
                        {"name": "gx10-blue", "port": 8000, "weight": 0},
                        {"name": "gx10-green", "port": 8000, "weight": 0},
                    ]
                }
            ]
        }
    }
    assert box.kubectl("patch", ROUTE, "--type=merge", "-p", json.dumps(zero)).returncode == 0
    wait_for(lambda: production_statuses(box, 3) == {"500": 3}, what="500s with no weight")
    status = box.cli("status")
    assert "names 'no backendRef has a weight above 0', not a slot" in status.out + status.err


def test_through_the_api_server_proxy_production_is_the_gateway_service(
    make_sandbox: Callable[..., Sandbox],
) -> None:
    box = make_sandbox(flag="httproute")
    config = yaml.safe_load((box.dir / "slots.yaml").read_text())
    config["access"] = "apiserver-proxy"
    for section in (*config["slots"].values(), config["flag"]):
        section.pop("endpoint")
    path = box.dir / "via-proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    deployed = box.cli(
        "--config", str(path), "deploy", "org/m", "--served-name", "proxied", "--flip"
    )
    assert deployed.code == 0, deployed.err
    assert weights(box) == [0, 100]
    assert box.production() == "proxied"
    assert box.cli("--config", str(path), "flip-back").code == 0
    assert weights(box) == [100, 0]
    assert box.answering_slot() == "blue"
