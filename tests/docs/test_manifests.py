"""docs/manifests: every document is a valid Kubernetes object, and the names agree with slots.

Validation uses kubernetes-validate's strict schemas (unknown fields are errors, as with
``kubectl apply --validate=strict``) for Kubernetes 1.32, the version the sandbox node reports.
The slots.yaml embedded in job-deploy.yaml is parsed with gx10slots' own parser, and the Role must
name the objects that config (and the tool's fixed names) point at.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from gx10slots.config import Config, parse_config
from gx10slots.kube.lease import LEASE_NAME
from gx10slots.ops.audit import HISTORY_CONFIGMAP
from gx10slots.sandbox import customresources
from gx10slots.sandbox.resources import for_kind
from gx10slots.servednames import alias_blocker, identity_name, served_names
from gx10slots.smoke.summary import configmap_name

MANIFESTS = Path(__file__).resolve().parents[2] / "docs" / "manifests"
KUBERNETES_VERSION = "1.32"
EXPECTED_FILES = {
    "slot-blue-vllm.yaml",
    "slot-green-vllm.yaml",
    "slot-llama-server.yaml",
    "services.yaml",
    "flag-configmap.yaml",
    "flag-httproute.yaml",
    "rbac.yaml",
    "job-deploy.yaml",
    "controller.yaml",
}

Document = dict[str, Any]


def _documents() -> list[tuple[str, int, Document]]:
    found: list[tuple[str, int, Document]] = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        for index, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc is not None:
                found.append((path.name, index, doc))
    return found


DOCUMENTS = _documents()


def _label(name: str, index: int, doc: Document) -> str:
    meta = doc.get("metadata") or {}
    return f"{name} document {index} ({doc.get('kind')} {meta.get('name')})"


def _by_kind(kind: str, file: str | None = None) -> list[Document]:
    return [d for f, _, d in DOCUMENTS if d.get("kind") == kind and file in (None, f)]


def test_every_expected_file_is_there() -> None:
    present = {p.name for p in MANIFESTS.glob("*.yaml")}
    assert present >= EXPECTED_FILES, f"missing: {sorted(EXPECTED_FILES - present)}"


@pytest.mark.parametrize(
    ("name", "index", "doc"),
    DOCUMENTS,
    ids=[f"{n}#{i}-{d.get('kind')}" for n, i, d in DOCUMENTS],
)
def test_document_is_valid_kubernetes(name: str, index: int, doc: Document) -> None:
    where = _label(name, index, doc)
    assert isinstance(doc, dict) and "apiVersion" in doc and "kind" in doc, where
    custom = for_kind(str(doc["apiVersion"]), str(doc["kind"]))
    crd = customresources.definition(custom) if custom is not None else None
    if crd is not None:
        # A custom resource: the published CRD's schema, strict (unknown fields are errors).
        unknown, causes = customresources.findings(crd, doc)
        problems = [f"unknown field {n!r}" for _, n, _ in unknown] + [c.text() for c in causes]
        assert not problems, f"{where}: {problems}"
        return
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path) or "(root)"
        pytest.fail(f"{where}: {path}: {exc.message}", pytrace=False)
    except kubernetes_validate.SchemaNotFoundError as exc:
        pytest.fail(f"{where}: {exc.message}", pytrace=False)


def _job_config() -> Config:
    (configmap,) = [
        d for d in _by_kind("ConfigMap", "job-deploy.yaml") if "slots.yaml" in d.get("data", {})
    ]
    return parse_config(yaml.safe_load(configmap["data"]["slots.yaml"]), source="job-deploy.yaml")


def _container(deployment: Document, name: str) -> Document:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    (container,) = [c for c in containers if c["name"] == name]
    return dict(container)


@pytest.mark.parametrize(
    "file", ["slot-blue-vllm.yaml", "slot-green-vllm.yaml", "slot-llama-server.yaml"]
)
def test_slot_deployments_fit_the_config(file: str) -> None:
    config = _job_config()
    deployments = _by_kind("Deployment", file)
    assert deployments, file
    by_name = {s.deployment: s.name for s in config.slots.values()}
    for deployment in deployments:
        name = deployment["metadata"]["name"]
        slot = by_name[name]
        spec = deployment["spec"]
        labels = spec["template"]["metadata"]["labels"]
        assert labels["gx10slots.io/slot"] == slot, name
        assert spec["selector"]["matchLabels"] == labels, name
        assert spec["strategy"]["type"] == "Recreate", name
        assert spec["template"]["spec"]["nodeSelector"] == {"kubernetes.io/hostname": "gx10"}
        container = _container(deployment, config.container)
        env = {e["name"] for e in container["env"]}
        assert {config.model_env, config.served_name_env} <= env, name
        command = " ".join(container.get("command", []) + container.get("args", []))
        assert f"$({config.model_env})" in command, name
        assert f"$({config.served_name_env})" in command, name
        # The served names can grow (renames keep old names) and carry the identity name.
        engine = "llama-server" if "llama" in file else "vllm"
        assert alias_blocker(container, engine, config.served_name_env) is None, name
        names = served_names(container, engine, config.served_name_env, config.model_env)
        assert identity_name(slot) in names, name
        memory = container["resources"]
        assert memory["limits"]["memory"] == memory["requests"]["memory"], name
        assert "startupProbe" in container and "readinessProbe" in container, name


def test_production_service_is_the_flag_and_guarded_against_flux() -> None:
    config = _job_config()
    services = {s["metadata"]["name"]: s for s in _by_kind("Service", "services.yaml")}
    flag = services[config.flag.name]
    selector = flag["spec"]["selector"]
    assert selector.get(config.flag.key) in ("blue", "green")
    assert len(selector) > 1, "the selector must keep a label beside the flag key"
    annotations = flag["metadata"]["annotations"]
    assert annotations["kustomize.toolkit.fluxcd.io/ssa"] == "IfNotPresent"
    for slot in config.slots.values():
        assert services[slot.service]["spec"]["selector"]["gx10slots.io/slot"] == slot.name


def _role_names(resource: str, verb: str, file: str = "rbac.yaml") -> set[str] | None:
    """Names the Role allows ``verb`` on ``resource`` for; None when any name is allowed; an
    empty set when it is not allowed at all."""
    (role,) = _by_kind("Role", file)
    names: set[str] = set()
    for rule in role["rules"]:
        if resource in rule["resources"] and verb in rule["verbs"]:
            if not rule.get("resourceNames"):
                return None
            names.update(rule["resourceNames"])
    return names


@pytest.mark.parametrize(
    ("resource", "verbs", "expected"),
    [
        ("deployments", ("get", "list", "watch", "update", "patch"), "slots"),
        # list/watch by name: `status --watch` redraws when the flag or a lease changes.
        ("services", ("get", "list", "watch", "patch"), "flag"),
        ("endpointslices", ("list",), "any"),
        ("configmaps", ("get", "update"), HISTORY_CONFIGMAP),
        # The slots' last smoke summaries: written by smoke and deploy, read and watched by status.
        ("configmaps", ("get", "list", "watch", "patch"), "smoke summaries"),
        ("leases", ("get", "list", "watch", "update"), LEASE_NAME),
        ("leases", ("get", "list", "watch"), "gx10slots-guard"),
        ("secrets", ("get",), "secret"),
    ],
)
def test_role_grants_what_the_config_needs(
    resource: str, verbs: tuple[str, ...], expected: str
) -> None:
    config = _job_config()
    wanted = {
        "slots": {s.deployment for s in config.slots.values()},
        "flag": {config.flag.name},
        "secret": {config.api_key.secret_name or ""},
        "smoke summaries": {configmap_name(slot) for slot in config.slots},
        "any": set(),
    }.get(expected, {expected})
    for verb in verbs:
        allowed = _role_names(resource, verb)
        assert allowed is None or wanted <= allowed, f"{verb} {resource}: {allowed} lacks {wanted}"


def test_role_lets_create_and_pod_watch_through() -> None:
    for resource, verb in [
        ("configmaps", "create"),
        ("leases", "create"),
        ("events", "create"),
        ("pods", "list"),
        ("pods", "watch"),
        ("pods/log", "get"),
    ]:
        assert _role_names(resource, verb) is None, f"{verb} {resource} must not be name-restricted"


def test_the_controller_role_grants_what_it_does_and_no_more() -> None:
    from gx10slots.controller.election import LEASE_NAME as CONTROLLER_LEASE
    from gx10slots.ops.lease import GUARD_LEASE

    config = _job_config()
    slots = {s.deployment for s in config.slots.values()}
    for resource, verb, wanted in [
        ("deployments", "get", slots),
        ("deployments", "patch", slots),
        ("services", "get", {config.flag.name}),
        ("services", "patch", {config.flag.name}),
        ("leases", "update", {CONTROLLER_LEASE, LEASE_NAME, GUARD_LEASE}),
        ("configmaps", "update", {HISTORY_CONFIGMAP}),
    ]:
        allowed = _role_names(resource, verb, "controller.yaml")
        assert allowed is not None and wanted <= allowed, f"{verb} {resource}: {allowed}"
    # It never deploys or parks: no Deployment update, no pod watch.
    assert _role_names("deployments", "update", "controller.yaml") == set()
    assert _role_names("pods", "watch", "controller.yaml") == set()
    (deployment,) = _by_kind("Deployment", "controller.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"][0] == "controller"
