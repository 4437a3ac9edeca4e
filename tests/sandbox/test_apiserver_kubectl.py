"""The sandbox API server driven by the real kubectl (discovery, tables, patches, watch)."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.apiserver import NAMESPACE, Sandbox, deployment, service, wait_for
from tests.helpers.kubectl import Kubectl

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed"),
]


def _seed_slot(sandbox: Sandbox, name: str = "blue") -> None:
    sandbox.server.seed(deployment(name))
    sandbox.server.seed(service(name))


def _rows(table: str) -> list[list[str]]:
    return [line.split() for line in table.strip().splitlines()]


def test_get_several_kinds_with_short_names(kubectl: Kubectl, tls_sandbox: Sandbox) -> None:
    _seed_slot(tls_sandbox)
    wait_for(lambda: "1/1" in kubectl.ok("get", "deploy", "blue"))
    out = kubectl.ok("get", "deploy,svc,pods,leases")
    assert "deployment.apps/blue" in out and "service/blue" in out and "pod/blue-" in out
    assert "No resources found" not in out


def test_get_endpointslices_names_the_services_pods(kubectl: Kubectl, tls_sandbox: Sandbox) -> None:
    _seed_slot(tls_sandbox)
    wait_for(lambda: "1/1" in kubectl.ok("get", "deploy", "blue"))
    out = kubectl.ok("get", "endpointslices", "-l", "kubernetes.io/service-name=blue", "-o", "json")
    (es,) = json.loads(out)["items"]
    (endpoint,) = es["endpoints"]
    assert endpoint["conditions"]["ready"] is True
    assert endpoint["targetRef"]["name"].startswith("blue-")
    assert "blue-" in kubectl.ok("get", "endpointslices")


def test_get_pods_table_columns(kubectl: Kubectl, tls_sandbox: Sandbox) -> None:
    _seed_slot(tls_sandbox)
    wait_for(lambda: "Running" in kubectl.ok("get", "pods"))
    rows = _rows(kubectl.ok("get", "pods"))
    assert rows[0] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    assert rows[1][1:4] == ["1/1", "Running", "0"]
    wide = _rows(kubectl.ok("get", "pods", "-o", "wide"))
    assert wide[0][:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    assert wide[1][5:7] == ["127.0.0.1", "gx10"]
    listing = json.loads(kubectl.ok("get", "pods", "-o", "json"))
    assert listing["kind"] == "List" and listing["items"][0]["kind"] == "Pod"
    deploy = _rows(kubectl.ok("get", "deploy"))
    assert deploy[0] == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    svc = _rows(kubectl.ok("get", "svc"))
    assert svc[0] == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    assert _rows(kubectl.ok("get", "nodes"))[1][:2] == ["gx10", "Ready"]


def test_patch_merge_and_json(kubectl: Kubectl, tls_sandbox: Sandbox) -> None:
    _seed_slot(tls_sandbox)
    out = kubectl.ok(
        "patch", "svc", "blue", "--type", "merge", "-p", '{"spec":{"selector":{"slot":"green"}}}'
    )
    assert "service/blue patched" in out
    assert kubectl.ok("get", "svc", "blue", "-o", "jsonpath={.spec.selector.slot}") == "green"
    failing = (
        '[{"op":"test","path":"/spec/selector/slot","value":"blue"},'
        '{"op":"replace","path":"/spec/selector/slot","value":"blue"}]'
    )
    result = kubectl("patch", "svc", "blue", "--type", "json", "-p", failing)
    assert result.returncode != 0
    assert "testing value /spec/selector/slot failed" in result.stderr
    passing = failing.replace('"value":"blue"}', '"value":"green"}', 1)
    assert "patched" in kubectl.ok("patch", "svc", "blue", "--type", "json", "-p", passing)
    strategic = '{"spec":{"template":{"spec":{"containers":[{"name":"engine","image":"vllm:2"}]}}}}'
    kubectl.ok("patch", "deploy", "blue", "-p", strategic)
    assert (
        kubectl.ok(
            "get", "deploy", "blue", "-o", "jsonpath={.spec.template.spec.containers[0].image}"
        )
        == "vllm:2"
    )


def test_create_replace_delete_from_files(kubectl: Kubectl, tmp_path: Path) -> None:
    manifest = tmp_path / "cm.yaml"
    cm: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg"},
        "data": {"k": "1"},
    }
    manifest.write_text(yaml.safe_dump(cm))
    assert "configmap/cfg created" in kubectl.ok("create", "-f", str(manifest))
    again = kubectl("create", "-f", str(manifest))
    assert again.returncode != 0 and "AlreadyExists" in again.stderr
    cm["data"]["k"] = "2"
    manifest.write_text(yaml.safe_dump(cm))
    assert "configmap/cfg replaced" in kubectl.ok("replace", "-f", str(manifest))
    assert kubectl.ok("get", "cm", "cfg", "-o", "jsonpath={.data.k}") == "2"
    assert 'configmap "cfg" deleted' in kubectl.ok("delete", "cm", "cfg")
    assert "NotFound" in kubectl("get", "cm", "cfg").stderr


def test_invalid_manifest_is_rejected(kubectl: Kubectl, tmp_path: Path) -> None:
    bad = deployment("bad")
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "nope"}
    manifest = tmp_path / "bad.yaml"
    manifest.write_text(yaml.safe_dump(bad))
    result = kubectl("create", "-f", str(manifest))
    assert result.returncode != 0
    assert "`selector` does not match template `labels`" in result.stderr
    typo = deployment("typo")
    typo["spec"]["replica"] = typo["spec"].pop("replicas")
    manifest.write_text(yaml.safe_dump(typo))
    result = kubectl("create", "-f", str(manifest))  # kubectl asks for fieldValidation=Strict
    assert result.returncode != 0
    assert 'strict decoding error: unknown field "spec.replica"' in result.stderr
    result = kubectl("apply", "--server-side", "-f", str(manifest))
    assert result.returncode != 0 and "Server-side apply not available" in result.stderr


def test_get_watch_sees_changes(kubectl: Kubectl, tls_sandbox: Sandbox) -> None:
    _seed_slot(tls_sandbox)
    watcher = subprocess.Popen(
        kubectl.argv("get", "svc", "-w", "--output-watch-events", "--request-timeout=20s"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []

    def read() -> None:
        assert watcher.stdout is not None
        for line in watcher.stdout:
            lines.append(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("ADDED" in line for line in lines), timeout=20)
        kubectl.ok(
            "patch",
            "svc",
            "blue",
            "--type",
            "merge",
            "-p",
            '{"spec":{"ports":[{"name":"http","port":81,"targetPort":"http"}]}}',
        )
        wait_for(lambda: any("MODIFIED" in line and "81/TCP" in line for line in lines), timeout=20)
        kubectl.ok("delete", "svc", "blue")
        wait_for(lambda: any("DELETED" in line for line in lines), timeout=20)
    finally:
        watcher.terminate()
        watcher.wait(timeout=10)
    assert lines[0].split()[:3] == ["EVENT", "NAME", "TYPE"]


def test_logs_scale_and_rollout_status(kubectl: Kubectl, tls_sandbox: Sandbox) -> None:
    _seed_slot(tls_sandbox)
    kubectl.ok("rollout", "status", "deploy/blue", "--timeout=20s")
    assert "scaled" in kubectl.ok("scale", "deploy", "blue", "--replicas=2")
    kubectl.ok("rollout", "status", "deploy/blue", "--timeout=20s")
    wait_for(lambda: len(_rows(kubectl.ok("get", "pods"))) == 3)
    pod = _rows(kubectl.ok("get", "pods"))[1][0]
    assert kubectl.ok("logs", pod) == ""  # the default runtime has no logs


def test_wrong_token_is_refused(kubectl: Kubectl, tls_sandbox: Sandbox) -> None:
    result = kubectl("get", "pods", "--token=wrong")
    assert result.returncode != 0
    assert "Unauthorized" in result.stderr or "credentials" in result.stderr


def test_quantities_come_back_canonical(kubectl: Kubectl, tmp_path: Path) -> None:
    """kubectl sends what the manifest says (YAML `cpu: 0.5` is a JSON number); the sandbox,
    like kube-apiserver, stores and returns the canonical form."""
    d = deployment("canon", memory="1.5Gi")
    d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"] = {
        "memory": "60.5Gi",
        "cpu": 0.5,
    }
    manifest = tmp_path / "canon.yaml"
    manifest.write_text(yaml.safe_dump(d))
    kubectl.ok("create", "-f", str(manifest))
    path = "jsonpath={.spec.template.spec.containers[0].resources}"
    resources = json.loads(kubectl.ok("get", "deploy", "canon", "-o", path))
    assert resources == {
        "requests": {"memory": "1536Mi"},
        "limits": {"memory": "61952Mi", "cpu": "500m"},
    }
    memory = "/spec/template/spec/containers/0/resources/requests/memory"
    patch = json.dumps([{"op": "replace", "path": memory, "value": "0.5Gi"}])
    kubectl.ok("patch", "deploy", "canon", "--type", "json", "-p", patch)
    resources = json.loads(kubectl.ok("get", "deploy", "canon", "-o", path))
    assert resources["requests"] == {"memory": "512Mi"}

    bad = deployment("bad", memory="1e+06Gi")
    manifest.write_text(yaml.safe_dump(bad))
    result = kubectl("create", "-f", str(manifest))
    assert result.returncode != 0
    assert "cannot be handled as a Deployment: quantities must match" in result.stderr
    assert "NotFound" in kubectl("get", "deploy", "bad").stderr


def test_create_configmap_and_secret_generic_send_protobuf_and_are_stored(
    kubectl: Kubectl, tmp_path: Path
) -> None:
    """kubectl's typed clients send these as application/vnd.kubernetes.protobuf (client-go >=
    0.32 PrefersProtobuf); a real API server decodes them, and so does the sandbox."""
    blob = tmp_path / "blob.bin"
    blob.write_bytes(bytes(range(256)))
    kubectl.ok("create", "configmap", "settings", "--from-literal=mode=fast", "--from-literal=n=3")
    kubectl.ok("create", "configmap", "binary", f"--from-file=blob={blob}")
    kubectl.ok(
        "create",
        "secret",
        "generic",
        "creds",
        "--from-literal=password=hunter2",
        f"--from-file={blob}",
    )
    settings = json.loads(kubectl.ok("get", "configmap", "settings", "-o", "json"))
    assert settings["data"] == {"mode": "fast", "n": "3"}
    assert settings["metadata"]["namespace"] == NAMESPACE
    binary = json.loads(kubectl.ok("get", "configmap", "binary", "-o", "json"))
    assert base64.b64decode(binary["binaryData"]["blob"]) == bytes(range(256))
    creds = json.loads(kubectl.ok("get", "secret", "creds", "-o", "json"))
    assert creds["type"] == "Opaque"
    assert base64.b64decode(creds["data"]["password"]) == b"hunter2"
    assert base64.b64decode(creds["data"]["blob.bin"]) == bytes(range(256))
    # Created once: a second create is AlreadyExists, as on a real server.
    again = kubectl("create", "configmap", "settings", "--from-literal=mode=slow")
    assert again.returncode != 0 and "already exists" in again.stderr
