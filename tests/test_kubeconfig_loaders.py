"""Our loader for plain kubeconfigs finds the same credentials as the official client's loader
(the host, whether the server is verified, the Authorization header, the CA, the client
certificate and key), answers "not mine" for everything else (exec plugins, auth providers,
several files), and never lets a credential out. The commands then run without importing the
official client at all.

Also run against the declared floor of the official client (scripts/test-client-floor.sh)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from gx10slots import scrub
from gx10slots.errors import ConfigError, SlotsError
from gx10slots.kube import client as kube_client
from gx10slots.kube import kubeconfig
from gx10slots.kube.rest import Credentials

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "fast-path-token-3f9a1c7e5b"


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """A self-signed CA certificate and a client certificate with its key (PEM)."""
    directory = tmp_path_factory.mktemp("pem")
    out: dict[str, bytes] = {}
    for name in ("ca", "client"):
        key, cert = directory / f"{name}.key", directory / f"{name}.pem"
        subprocess.run(
            [
                "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", f"/CN={name}",
                "-keyout", str(key), "-out", str(cert),
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )  # fmt: skip
        out[f"{name}.pem"], out[f"{name}.key"] = cert.read_bytes(), key.read_bytes()
    return out


def _write(directory: Path, cluster: dict[str, Any], user: dict[str, Any]) -> str:
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:6443", **cluster}}],
        "users": [{"name": "u", "user": user}],
        "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u", "namespace": "x"}}],
        "current-context": "ctx",
    }
    path = directory / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    return str(path)


def _material(credentials: Credentials) -> dict[str, Any]:
    """What a credential set amounts to on the wire, whichever loader (file or inline data)."""

    def read(data: bytes | str | None, path: str | None) -> bytes | None:
        if data is not None:
            return data.encode() if isinstance(data, str) else data
        return Path(path).read_bytes() if path else None

    return {
        "host": credentials.host,
        "verify": credentials.verify,
        "headers": _headers(credentials),
        "ca": read(credentials.ca_data, credentials.ca_file),
        "cert": read(credentials.cert_data, credentials.cert_file),
        "key": read(credentials.key_data, credentials.key_file),
    }


def _headers(credentials: Credentials) -> dict[str, str]:
    return {k.lower(): v for k, v in credentials.headers().items()}  # names are case-insensitive


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _plain_kubeconfigs(directory: Path, pem: dict[str, bytes]) -> dict[str, str]:
    for name, data in pem.items():
        (directory / name).write_bytes(data)
    (directory / "token").write_text(f"  {TOKEN}\n")
    return {
        "token and CA data": _write(
            directory / _sub(directory, "a"),
            {"certificate-authority-data": _b64(pem["ca.pem"])},
            {"token": TOKEN},
        ),
        "token file, CA file (relative)": _write(
            directory / _sub(directory, "b"),
            {"certificate-authority": "../ca.pem"},
            {"tokenFile": "../token"},
        ),
        "client certificate files": _write(
            directory / _sub(directory, "c"),
            {"certificate-authority": str(directory / "ca.pem")},
            {"client-certificate": "../client.pem", "client-key": "../client.key"},
        ),
        "client certificate data and a token": _write(
            directory / _sub(directory, "d"),
            {"certificate-authority-data": _b64(pem["ca.pem"])},
            {
                "client-certificate-data": _b64(pem["client.pem"]),
                "client-key-data": _b64(pem["client.key"]),
                "token": TOKEN,
            },
        ),
        "insecure-skip-tls-verify": _write(
            directory / _sub(directory, "e"), {"insecure-skip-tls-verify": True}, {"token": TOKEN}
        ),
    }


def _sub(directory: Path, name: str) -> str:
    (directory / name).mkdir(exist_ok=True)
    return name


@pytest.mark.parametrize(
    "case",
    [
        "token and CA data",
        "token file, CA file (relative)",
        "client certificate files",
        "client certificate data and a token",
        "insecure-skip-tls-verify",
    ],
)
def test_a_plain_kubeconfig_loads_the_same_credentials_as_the_official_loader(
    case: str, tmp_path: Path, pem: dict[str, bytes]
) -> None:
    path = _plain_kubeconfigs(tmp_path, pem)[case]
    ours = kubeconfig.plain_credentials(path, None)
    assert ours is not None, "a plain kubeconfig is ours to load"
    official = kubeconfig.official_credentials(path, None)
    assert _material(ours) == _material(official)
    # And the TLS context builds from it (the client key loads, the CA parses).
    ours.ssl_context()


def test_a_named_context_is_the_one_loaded(tmp_path: Path) -> None:
    doc = {
        "clusters": [
            {"name": "a", "cluster": {"server": "https://a.example:6443"}},
            {"name": "b", "cluster": {"server": "https://b.example:6443"}},
        ],
        "users": [{"name": "u", "user": {"token": TOKEN}}],
        "contexts": [
            {"name": "one", "context": {"cluster": "a", "user": "u"}},
            {"name": "two", "context": {"cluster": "b", "user": "u"}},
        ],
        "current-context": "one",
    }
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(doc))
    ours = kubeconfig.plain_credentials(str(path), "two")
    assert ours is not None and ours.host == "https://b.example:6443"
    assert _material(ours) == _material(kubeconfig.official_credentials(str(path), "two"))


EXEC_PLUGIN = """\
import json, sys
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1beta1",
    "kind": "ExecCredential",
    "status": {"token": "exec-plugin-token-8d2e4f"},
}))
"""


@pytest.mark.parametrize(
    "user",
    [
        {"exec": {"command": "PLUGIN", "apiVersion": "client.authentication.k8s.io/v1beta1"}},
        {"auth-provider": {"name": "oidc", "config": {"id-token": "x"}}},
        {"username": "admin", "password": "pw"},
        {"token": TOKEN, "as": "someone-else"},
    ],
    ids=["exec", "auth-provider", "basic", "impersonation"],
)
def test_anything_else_is_left_to_the_official_loader(user: dict[str, Any], tmp_path: Path) -> None:
    path = _write(tmp_path, {}, user)
    assert kubeconfig.plain_credentials(path, None) is None


def test_an_exec_plugin_kubeconfig_connects_through_the_official_loader(tmp_path: Path) -> None:
    plugin = tmp_path / "plugin.py"
    plugin.write_text(EXEC_PLUGIN)
    user = {
        "exec": {
            "command": sys.executable,
            "args": [str(plugin)],
            "apiVersion": "client.authentication.k8s.io/v1beta1",
        }
    }
    path = _write(tmp_path, {"insecure-skip-tls-verify": True}, user)
    connection = kube_client.connect(path, None)
    headers = _headers(connection.transport.credentials)
    assert headers["authorization"] == "Bearer exec-plugin-token-8d2e4f"
    assert scrub.REDACTED in scrub.redact("answer: exec-plugin-token-8d2e4f")


def test_several_kubeconfig_files_are_merged_by_the_official_loader(
    tmp_path: Path, pem: dict[str, bytes]
) -> None:
    first = _plain_kubeconfigs(tmp_path, pem)["token and CA data"]
    other = tmp_path / "other"
    other.write_text(yaml.safe_dump({"clusters": [], "users": [], "contexts": []}))
    merged = os.pathsep.join([first, str(other)])
    assert kubeconfig.plain_credentials(merged, None) is None
    connection = kube_client.connect(merged, None)
    assert connection.host == "https://127.0.0.1:6443"
    assert _headers(connection.transport.credentials)["authorization"] == f"Bearer {TOKEN}"


def test_in_cluster_credentials_come_from_the_official_loader(
    tmp_path: Path, pem: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    from kubernetes.config import incluster_config

    token, ca = tmp_path / "token", tmp_path / "ca.crt"
    token.write_text("in-cluster-token-51c0")
    ca.write_bytes(pem["ca.pem"])
    monkeypatch.setattr(incluster_config, "SERVICE_TOKEN_FILENAME", str(token))
    monkeypatch.setattr(incluster_config, "SERVICE_CERT_FILENAME", str(ca))
    monkeypatch.setattr(kube_client, "IN_CLUSTER_TOKEN", str(token))
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")

    def not_ours(*args: Any) -> None:
        raise AssertionError("in-cluster credentials are the official loader's")

    monkeypatch.setattr(kubeconfig, "plain_credentials", not_ours)
    connection = kube_client.connect(None, None)
    assert connection.source == "in-cluster service account"
    assert connection.host == "https://10.0.0.1:443"
    credentials = connection.transport.credentials
    assert _headers(credentials)["authorization"].lower() == "bearer in-cluster-token-51c0"
    assert _material(credentials)["ca"] == pem["ca.pem"]


def test_credentials_never_show_in_output(tmp_path: Path, pem: dict[str, bytes]) -> None:
    path = _plain_kubeconfigs(tmp_path, pem)["client certificate data and a token"]
    credentials = kubeconfig.plain_credentials(path, None)
    assert credentials is not None
    assert TOKEN not in repr(credentials) and TOKEN not in str(credentials)
    # Registered where read, so any message that quotes them is redacted.
    assert TOKEN not in scrub.redact(f"401 from a proxy echoing Bearer {TOKEN} and {TOKEN}")


def test_a_token_that_cannot_travel_in_a_header_is_refused_without_quoting_it(
    tmp_path: Path,
) -> None:
    path = _write(tmp_path, {}, {"token": "half\x07secret-token-value"})
    with pytest.raises(ConfigError) as caught:
        kube_client.connect(path, None)
    assert "secret-token-value" not in str(caught.value.message)
    assert "not shown" in caught.value.message


def test_a_token_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, {}, {"tokenFile": "/dev/zero"})
    with pytest.raises(ConfigError) as caught:
        kube_client.connect(path, None)
    assert "regular file" in caught.value.message


def test_unusable_certificate_material_is_a_config_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {"certificate-authority-data": _b64(b"not a certificate")},
        {"token": TOKEN},
    )
    with pytest.raises(SlotsError) as caught:
        kube_client.connect(path, None)
    assert caught.value.exit_code == ConfigError("x").exit_code


# -- the hot path imports no official client -------------------------------------------------------


class _Api(BaseHTTPRequestHandler):
    seen: list[dict[str, Any]] = []

    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        _Api.seen.append(
            {
                "method": self.command,
                "path": self.path,
                "content_type": self.headers.get("Content-Type"),
                "authorization": self.headers.get("Authorization"),
                "body": json.loads(body) if body else None,
            }
        )
        doc = {"kind": "Service", "metadata": {"name": "gx10-model", "resourceVersion": "7"}}
        data = json.dumps(doc).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_PATCH = _answer

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api_server() -> Iterator[str]:
    _Api.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Api)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_reads_and_writes_go_out_as_plain_json_without_the_official_client(
    api_server: str, tmp_path: Path
) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(
        yaml.safe_dump(
            {
                "clusters": [{"name": "c", "cluster": {"server": api_server}}],
                "users": [{"name": "u", "user": {"token": TOKEN}}],
                "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "x",
            }
        )
    )
    script = textwrap.dedent(
        f"""
        import json, sys
        from gx10slots.kube.client import Kube, connect
        kube = Kube(connect({str(path)!r}, None), "gx10")
        core = kube.api("core")
        got = kube.read("read", core.read_namespaced_service, "gx10-model", "gx10")
        ops = [{{"op": "replace", "path": "/spec/selector/slot", "value": "green"}}]
        kube.write("patch", core.patch_namespaced_service, "gx10-model", "gx10", ops,
                   field_manager="gx10slots")
        loaded = [m for m in ("kubernetes", "pydantic", "httpx") if m in sys.modules]
        print(json.dumps({{"name": got["metadata"]["name"], "loaded": loaded}}))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result == {"name": "gx10-model", "loaded": []}
    read, patch = _Api.seen
    assert (read["method"], read["path"]) == ("GET", "/api/v1/namespaces/gx10/services/gx10-model")
    assert read["authorization"] == f"Bearer {TOKEN}"
    assert patch["method"] == "PATCH"
    assert patch["path"] == "/api/v1/namespaces/gx10/services/gx10-model?fieldManager=gx10slots"
    # A list of operations is a JSON patch, as the official client sent it.
    assert patch["content_type"] == "application/json-patch+json"
    assert patch["body"][0]["value"] == "green"


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[tuple[str, str, dict[str, Any], str]] = []

    def request(self, method: str, path: str, **options: Any) -> None:
        self.sent.append((method, path, dict(options.get("query") or {}), options["content_type"]))


@pytest.mark.parametrize(
    ("group", "method", "args", "kwargs", "expected"),
    [
        (
            "custom",
            "get_namespaced_custom_object",
            ("gateway.networking.k8s.io", "v1", "gx10", "httproutes", "prod"),
            {},
            ("GET", "/apis/gateway.networking.k8s.io/v1/namespaces/gx10/httproutes/prod", {}),
        ),
        (
            "custom",
            "patch_namespaced_custom_object",
            ("gateway.networking.k8s.io", "v1", "gx10", "httproutes", "prod", [{"op": "test"}]),
            {"field_manager": "gx10slots"},
            (
                "PATCH",
                "/apis/gateway.networking.k8s.io/v1/namespaces/gx10/httproutes/prod",
                {"fieldManager": "gx10slots"},
            ),
        ),
        (
            "core",
            "list_namespaced_pod",
            ("gx10",),
            {"label_selector": "app=x", "watch": True, "resource_version": "7"},
            (
                "GET",
                "/api/v1/namespaces/gx10/pods",
                {"labelSelector": "app=x", "watch": True, "resourceVersion": "7"},
            ),
        ),
        (
            "core",
            "read_namespaced_pod_log",
            ("p-1", "gx10"),
            {"container": "model", "tail_lines": 40},
            (
                "GET",
                "/api/v1/namespaces/gx10/pods/p-1/log",
                {"container": "model", "tailLines": 40},
            ),
        ),
        ("core", "read_node", ("gx10",), {}, ("GET", "/api/v1/nodes/gx10", {})),
        (
            "coordination",
            "create_namespaced_lease",
            ("gx10", {"metadata": {"name": "l"}}),
            {},
            ("POST", "/apis/coordination.k8s.io/v1/namespaces/gx10/leases", {}),
        ),
    ],
)
def test_the_generated_method_names_map_to_the_api_paths(
    group: str,
    method: str,
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    expected: tuple[str, str, dict[str, Any]],
) -> None:
    from gx10slots.kube.rest import Group

    recorder = _Recorder()
    getattr(Group(recorder, group), method)(*args, **kwargs)  # type: ignore[arg-type]
    (sent,) = recorder.sent
    assert sent[:3] == expected
    if method.startswith("patch"):
        assert sent[3] == "application/json-patch+json"


def test_a_name_with_a_slash_cannot_reach_another_path() -> None:
    from gx10slots.kube.rest import Group

    recorder = _Recorder()
    Group(recorder, "core").read_namespaced_service("a/../../nodes/x", "gx10")  # type: ignore[arg-type]
    assert recorder.sent[0][1] == "/api/v1/namespaces/gx10/services/a%2F..%2F..%2Fnodes%2Fx"
