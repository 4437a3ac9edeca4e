"""Least privilege: the whole flow as the service account of docs/manifests/rbac.yaml, enforced.

The sandbox API server authorizes every identity but its admin with the RBAC objects it stores
(gx10slots.sandbox.rbac). Here the admin applies docs/manifests/rbac.yaml with kubectl, mints the
service account's token with `kubectl create token`, and every command runs as that account:
each must work, every decision must be an allow, and every rule of the Role must be needed by at
least one request (no rule grants more than the flow uses). Removing a grant gives the
apiserver's 403 message, exit 4, production untouched.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gx10slots.sandbox.apiserver import ApiServer
from gx10slots.sandbox.rbac import (
    Attributes,
    User,
    forbidden,
    name_from_field_selector,
    rule_allows,
    service_account_user,
)
from tests.helpers.sandbox import NS, Sandbox, started

RBAC_YAML = Path(__file__).resolve().parents[2] / "docs" / "manifests" / "rbac.yaml"
SA = service_account_user("gx10", "gx10slots")


# -- rule matching and messages (pure) ----------------------------------------------------------


def attrs(verb: str, resource: str, name: str = "", **kw: Any) -> Attributes:
    return Attributes(SA, verb, resource=resource, name=name, namespace="gx10", **kw)


@pytest.mark.parametrize(
    ("rule", "request_", "allowed"),
    [
        (
            {"verbs": ["get"], "apiGroups": [""], "resources": ["pods/log"]},
            attrs("get", "pods", "p", subresource="log"),
            True,
        ),
        (
            {"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]},
            attrs("get", "pods", "p", subresource="log"),
            False,
        ),
        (
            {"verbs": ["patch"], "apiGroups": ["apps"], "resources": ["*/scale"]},
            attrs("patch", "deployments", "d", subresource="scale", api_group="apps"),
            True,
        ),
        (
            {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]},
            attrs("delete", "deployments", "d", subresource="scale", api_group="apps"),
            True,
        ),
        (
            {"verbs": ["get"], "apiGroups": ["apps"], "resources": ["deployments"]},
            attrs("get", "deployments", "d"),
            False,
        ),  # wrong group
        (
            {
                "verbs": ["patch"],
                "apiGroups": [""],
                "resources": ["services"],
                "resourceNames": ["gx10-model"],
            },
            attrs("patch", "services", "gx10-model"),
            True,
        ),
        (
            {
                "verbs": ["patch"],
                "apiGroups": [""],
                "resources": ["services"],
                "resourceNames": ["gx10-model"],
            },
            attrs("patch", "services", "gx10-blue"),
            False,
        ),
        (
            {
                "verbs": ["create"],
                "apiGroups": [""],
                "resources": ["configmaps"],
                "resourceNames": ["gx10slots-history"],
            },
            attrs("create", "configmaps"),
            False,
        ),
        (
            {"verbs": ["list"], "apiGroups": [""], "resources": ["pods"]},
            attrs("watch", "pods"),
            False,
        ),
    ],
)
def test_rule_matching_follows_kubernetes(
    rule: dict[str, Any], request_: Attributes, allowed: bool
) -> None:
    assert rule_allows(rule, request_) is allowed


def test_a_list_is_authorized_by_name_only_through_a_metadata_name_field_selector() -> None:
    assert name_from_field_selector("metadata.name=gx10-green") == "gx10-green"
    assert name_from_field_selector("status.phase=Running,metadata.name==x") == "x"
    assert name_from_field_selector("metadata.name!=x") == ""
    assert name_from_field_selector(None) == ""


def test_the_forbidden_message_is_the_apiservers() -> None:
    error = forbidden(attrs("patch", "services", "x"))
    assert (error.code, error.reason) == (403, "Forbidden")
    assert error.message == (
        'services "x" is forbidden: User "system:serviceaccount:gx10:gx10slots" cannot patch '
        'resource "services" in API group "" in the namespace "gx10"'
    )
    logs = forbidden(attrs("get", "pods", "p", subresource="log"))
    assert logs.message.startswith('pods "p" is forbidden: ') and '"pods/log"' in logs.message
    node = forbidden(Attributes(SA, "get", resource="nodes", name="gx10"))
    assert node.message.endswith('cannot get resource "nodes" in API group "" at the cluster scope')
    listing = forbidden(attrs("list", "deployments", api_group="apps"))
    assert listing.message.startswith("deployments.apps is forbidden: ")


# -- the API server (in-process) ------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[ApiServer]:
    with ApiServer(token="admin", users={"alice-token": User("alice")}) as api:
        for obj in (
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "gx10"}},
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": "mine", "namespace": "gx10"},
                "data": {"a": "1"},
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": "reader", "namespace": "gx10"},
                "rules": [
                    {
                        "apiGroups": [""],
                        "resources": ["configmaps"],
                        "resourceNames": ["mine"],
                        "verbs": ["get"],
                    }
                ],
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": "reader", "namespace": "gx10"},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": "reader",
                },
                "subjects": [{"kind": "User", "name": "alice"}],
            },
        ):
            api.seed(obj)
        yield api


def _as(server: ApiServer, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"})


def test_the_server_enforces_roles_and_answers_403_status(server: ApiServer) -> None:
    with _as(server, "alice-token") as alice:
        assert alice.get("/api/v1/namespaces/gx10/configmaps/mine").status_code == 200
        denied = alice.get("/api/v1/namespaces/gx10/configmaps")
        assert denied.status_code == 403
        body = denied.json()
        assert body["kind"] == "Status" and body["reason"] == "Forbidden"
        assert body["message"] == (
            'configmaps is forbidden: User "alice" cannot list resource "configmaps" in API '
            'group "" in the namespace "gx10"'
        )
        assert alice.get("/api").status_code == 200  # discovery is open to the authenticated
        assert alice.get("/_sandbox/faults").status_code == 403  # the control API is not
    with _as(server, "wrong") as stranger:
        assert stranger.get("/api/v1/namespaces/gx10/configmaps/mine").status_code == 401
    with _as(server, "admin") as admin:
        assert admin.get("/api/v1/namespaces/gx10/configmaps").status_code == 200
        decisions = admin.get("/_sandbox/authz").json()["decisions"]
    assert [(d["verb"], d["resource"], d["allowed"]) for d in decisions] == [
        ("get", "configmaps", True),
        ("list", "configmaps", False),
    ]
    assert decisions[0]["via"] == "RoleBinding gx10/reader -> Role reader rule 0"


def test_service_account_tokens_are_minted_and_bound_by_role_bindings(server: ApiServer) -> None:
    server.seed(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "bot", "namespace": "gx10"},
        }
    )
    server.seed(
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "bot", "namespace": "gx10"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "reader"},
            "subjects": [{"kind": "ServiceAccount", "name": "bot"}],  # namespace: the binding's
        }
    )
    with _as(server, "admin") as admin:
        short = admin.post(
            "/api/v1/namespaces/gx10/serviceaccounts/bot/token",
            json={"spec": {"expirationSeconds": 60}},
        )
        assert short.status_code == 422
        minted = admin.post("/api/v1/namespaces/gx10/serviceaccounts/bot/token", json={})
        assert minted.status_code == 201
        missing = admin.post("/api/v1/namespaces/gx10/serviceaccounts/nobody/token", json={})
        assert missing.status_code == 404
    token = minted.json()["status"]["token"]
    with _as(server, token) as bot:
        assert bot.get("/api/v1/namespaces/gx10/configmaps/mine").status_code == 200
        denied = bot.delete("/api/v1/namespaces/gx10/configmaps/mine")
        assert denied.status_code == 403
        assert 'User "system:serviceaccount:gx10:bot" cannot delete' in denied.json()["message"]


# -- the whole flow with exactly docs/manifests/rbac.yaml ----------------------------------------


def _kubectl(box: Sandbox, *args: str, kubeconfig: Path | None = None) -> str:
    env = {**box.env, "KUBECONFIG": str(kubeconfig or box.dir / "kubeconfig")}
    done = subprocess.run(
        ["kubectl", "--cache-dir", str(box.dir / "kubectl-cache"), "-n", NS, *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def _slots(box: Sandbox, kubeconfig: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return box.run(*args, env={"KUBECONFIG": str(kubeconfig)})


@pytest.fixture
def as_service_account(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[tuple[Sandbox, Path]]:
    """A sandbox with rbac.yaml applied and a kubeconfig for its service account."""
    directory = tmp_path / "sandbox"
    with started(directory, capsys, engine="fake") as box:
        _kubectl(box, "apply", "-f", str(RBAC_YAML))
        # The engine key comes from the Secret rbac.yaml grants (kubectl sends Secrets as
        # protobuf, which the sandbox does not decode: create it through the JSON API).
        box.create_secret("gx10-engine-key", "api-key", b"engine-key-for-rbac")
        config = yaml.safe_load((directory / "slots.yaml").read_text())
        config["api_key"] = {"secret": {"name": "gx10-engine-key", "key": "api-key"}}
        config["smoke"].update(probe_timeout="5s", deadline="60s")
        (directory / "slots.yaml").write_text(yaml.safe_dump(config))
        token = _kubectl(box, "create", "token", "gx10slots").strip()
        kubeconfig = yaml.safe_load((directory / "kubeconfig").read_text())
        kubeconfig["users"][0]["user"]["token"] = token
        sa_config = directory / "kubeconfig-gx10slots"
        sa_config.write_text(yaml.safe_dump(kubeconfig))
        box.api("DELETE", "/_sandbox/authz")
        yield box, sa_config


FLOW: list[tuple[tuple[str, ...], int]] = [
    (("status",), 0),
    (("deploy", "sandbox/ok", "--served-name", "v2"), 0),
    (("smoke", "green"), 0),
    (("flip", "--reason", "least privilege"), 0),
    (("guard", "--for", "2s", "--interval", "1s"), 0),
    (("history",), 0),
    (("flip-back",), 0),
    (("park", "--replace-fallback"), 0),  # green served before the flip-back: its fallback
    (("deploy", "sandbox/crash", "--timeout", "60s"), 1),  # a failed rollout reads pods/log
    (("status",), 0),
]


@pytest.mark.e2e
def test_the_whole_flow_works_with_only_the_documented_role(
    as_service_account: tuple[Sandbox, Path],
) -> None:
    box, kubeconfig = as_service_account
    errors = {}
    for args, expected in FLOW:
        done = _slots(box, kubeconfig, *args)
        assert done.returncode == expected, (args, done.stderr[-2000:])
        assert "forbidden" not in done.stderr.lower(), (args, done.stderr[-2000:])
        errors[args[:2]] = done.stderr
    assert "log lines" in errors[("deploy", "sandbox/crash")]  # pods/log was readable
    decisions = box.api("GET", "/_sandbox/authz")["decisions"]
    sa_decisions = [d for d in decisions if d["user"] == SA.name]
    assert sa_decisions, "the flow made no request as the service account"
    denied = [d for d in sa_decisions if not d["allowed"]]
    assert denied == [], denied
    # Least privilege: every rule of the Role and ClusterRole was needed by the flow.
    documents = [d for d in yaml.safe_load_all(RBAC_YAML.read_text()) if d]
    used = {d["via"].rsplit(" -> ", 1)[1] for d in sa_decisions}
    for doc in documents:
        if doc["kind"] not in ("Role", "ClusterRole"):
            continue
        for index, rule in enumerate(doc["rules"]):
            assert f"{doc['kind']} {doc['metadata']['name']} rule {index}" in used, (
                f"{doc['kind']} {doc['metadata']['name']} rule {index} ({rule}) was never used"
            )


@pytest.mark.e2e
def test_a_missing_grant_is_exit_4_with_the_apiservers_message(
    as_service_account: tuple[Sandbox, Path],
) -> None:
    box, kubeconfig = as_service_account
    assert _slots(box, kubeconfig, "deploy", "sandbox/ok", "--served-name", "v2").returncode == 0
    # Take `patch` on the flag away: the flip is refused by the API server, production stays.
    role = box.api("GET", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/gx10slots")
    for rule in role["rules"]:
        if rule["resources"] == ["services"]:
            rule["verbs"] = ["get"]
    box.api("PUT", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/gx10slots", role)
    before = box.get("service", "gx10-model")["metadata"]["resourceVersion"]
    flip = _slots(box, kubeconfig, "-o", "json", "flip")
    assert flip.returncode == 4, flip.stderr
    assert (
        'services "gx10-model" is forbidden: User "system:serviceaccount:gx10:gx10slots" cannot '
        'patch resource "services" in API group "" in the namespace "gx10"'
    ) in flip.stderr
    assert "did not happen" in flip.stderr and "still on blue" in flip.stderr
    assert box.get("service", "gx10-model")["metadata"]["resourceVersion"] == before
    assert box.lease_holder() in (None, "")
    # Without the RoleBinding nothing is allowed: the first read says so.
    box.api("DELETE", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/rolebindings/gx10slots")
    status = _slots(box, kubeconfig, "status")
    assert status.returncode == 4
    assert (
        'deployments.apps "gx10-blue" is forbidden: User "system:serviceaccount:gx10:gx10slots"'
        in status.stderr
    )
    assert "Traceback" not in status.stderr


# `access: apiserver-proxy` reaches the slots through `services/NAME:PORT/proxy`: GET for
# /health, /v1/models and /metrics, POST (verb create) for completions. The rule it needs:
PROXY_RULE = {
    "apiGroups": [""],
    "resources": ["services/proxy"],
    "resourceNames": ["gx10-blue:8000", "gx10-green:8000", "gx10-model:8000"],
    "verbs": ["get", "create"],
}


def _documented_proxy_rule() -> bool:
    role = next(d for d in yaml.safe_load_all(RBAC_YAML.read_text()) if d and d["kind"] == "Role")
    return any("services/proxy" in rule.get("resources", []) for rule in role["rules"])


@pytest.mark.e2e
def test_apiserver_proxy_access_works_with_the_services_proxy_rule(
    as_service_account: tuple[Sandbox, Path],
) -> None:
    box, kubeconfig = as_service_account
    config = yaml.safe_load((box.dir / "slots.yaml").read_text())
    config["access"] = "apiserver-proxy"
    config.pop("api_key", None)  # an engine key cannot travel through the proxy
    for slot in config["slots"].values():
        slot.pop("endpoint", None)
    config["flag"].pop("endpoint", None)
    (box.dir / "slots.yaml").write_text(yaml.safe_dump(config))
    if not _documented_proxy_rule():
        # docs/manifests/rbac.yaml has no services/proxy rule yet: the probes are refused.
        refused = _slots(box, kubeconfig, "-o", "json", "smoke", "active")
        assert refused.returncode == 1, refused.stderr
        decisions = box.api("GET", "/_sandbox/authz")["decisions"]
        assert any(
            d["resource"] == "services" and d["subresource"] == "proxy" and not d["allowed"]
            for d in decisions
        )
        role = box.api("GET", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/gx10slots")
        role["rules"].append(PROXY_RULE)
        box.api("PUT", f"/apis/rbac.authorization.k8s.io/v1/namespaces/{NS}/roles/gx10slots", role)
    box.api("DELETE", "/_sandbox/authz")
    for args in (
        ("smoke", "active"),
        ("deploy", "org/m", "--served-name", "via-proxy", "--flip"),
        ("flip-back",),
    ):
        done = _slots(box, kubeconfig, *args)
        assert done.returncode == 0, (args, done.stderr[-2000:])
    decisions = box.api("GET", "/_sandbox/authz")["decisions"]
    proxied = {(d["verb"], d["name"]) for d in decisions if d["subresource"] == "proxy"}
    assert {("get", "gx10-green:8000"), ("create", "gx10-model:8000")} <= proxied, proxied
    assert all(d["allowed"] for d in decisions)
