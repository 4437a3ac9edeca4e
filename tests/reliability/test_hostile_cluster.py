"""A hostile or broken path to the cluster: malformed kubeconfigs, an API server that is not
there, one that never answers, one with another certificate, a token it refuses.

Each ends in exit 2 (the kubeconfig is wrong: fix the file) or exit 4 (the cluster cannot be
reached or refused us) with the cause in one message, within the tool's timeouts, no traceback,
and the credential never echoed.
"""

from __future__ import annotations

import base64
import socket
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from gx10slots.kube import client as kube_client
from tests.helpers.cli import Result, run_cli
from tests.helpers.config import KUBECONFIG_TOKEN, kubeconfig_doc, self_signed, write_config
from tests.helpers.hostile import hostile, silent
from tests.helpers.sandbox import Sandbox


def _run(capsys: pytest.CaptureFixture[str], config: Path, kubeconfig: Path, *args: str) -> Result:
    return run_cli(
        capsys, "--config", str(config), "--kubeconfig", str(kubeconfig), "-o", "json", *args
    )


def _check(result: Result, code: int, *needles: str) -> None:
    assert result.code == code, (result.code, result.err)
    assert "Traceback" not in result.err + result.out
    assert KUBECONFIG_TOKEN not in result.err + result.out
    error = result.json()["error"]
    assert error["exit_code"] == code
    for needle in needles:
        assert needle in error["message"], error["message"]


MALFORMED: dict[str, tuple[str | bytes, str]] = {
    "not-yaml": ("::: [\n  token: " + KUBECONFIG_TOKEN, "cannot load Kubernetes credentials"),
    "a-list": ("- just\n- a list\n", "cannot load Kubernetes credentials"),
    "empty": ("", "cannot load Kubernetes credentials"),
    "binary": (
        b"\xff\xfe\x00\x01" + KUBECONFIG_TOKEN.encode(),
        "cannot load Kubernetes credentials",
    ),
    "no-current-context": (
        yaml.safe_dump({**kubeconfig_doc(), "current-context": ""}),
        "cannot load Kubernetes credentials",
    ),
    "context-names-no-cluster": (
        yaml.safe_dump({**kubeconfig_doc(), "clusters": []}),
        "cannot load Kubernetes credentials",
    ),
    "bad-ca-data": (
        yaml.safe_dump(
            {
                **kubeconfig_doc(),
                "clusters": [
                    {
                        "name": "c",
                        "cluster": {
                            "server": "https://127.0.0.1:6443",
                            "certificate-authority-data": "!!not base64!!",
                        },
                    }
                ],
            }
        ),
        "cannot load Kubernetes credentials",
    ),
    "token-file-missing": (
        yaml.safe_dump(kubeconfig_doc(tokenFile="/nonexistent/token")),
        "cannot load Kubernetes credentials",
    ),
    "exec-plugin-missing": (
        yaml.safe_dump(
            kubeconfig_doc(
                exec={
                    "apiVersion": "client.authentication.k8s.io/v1",
                    "command": "/nonexistent/credential-plugin",
                    "args": [KUBECONFIG_TOKEN],
                    "interactiveMode": "Never",
                }
            )
        ),
        "cannot load Kubernetes credentials",
    ),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_a_malformed_kubeconfig_is_exit_2_naming_the_cause(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text, needle = MALFORMED[name]
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_bytes(text if isinstance(text, bytes) else text.encode())
    result = _run(capsys, write_config(tmp_path), kubeconfig, "status")
    _check(result, 2, needle)


def test_a_missing_kubeconfig_and_a_directory_are_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _check(_run(capsys, write_config(tmp_path), tmp_path / "nope", "status"), 2, "not found")
    directory = tmp_path / "dir"
    directory.mkdir()
    _check(_run(capsys, write_config(tmp_path), directory, "status"), 2, "Kubernetes credentials")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("command", [("status",), ("flip",), ("park",), ("deploy", "org/m")])
def test_an_unreachable_api_server_is_exit_4_and_says_where_it_looked(
    command: tuple[str, ...], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = f"https://127.0.0.1:{_closed_port()}"
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_doc(server)))
    started = time.monotonic()
    result = _run(capsys, write_config(tmp_path), kubeconfig, *command)
    _check(result, 4, "cannot reach the API server at", server)
    assert time.monotonic() - started < 15  # read retries are capped (4 attempts, backoff)


def test_an_api_server_that_never_answers_is_exit_4_within_the_timeout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(kube_client, "READ_TIMEOUT", (1.0, 1.0))
    with hostile(silent) as url:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(kubeconfig_doc(url.replace("http:", "https:"))))
        started = time.monotonic()
        result = _run(capsys, write_config(tmp_path), kubeconfig, "status")
        elapsed = time.monotonic() - started
    _check(result, 4)
    assert "API server" in result.json()["error"]["message"]
    assert elapsed < 4 * 1.0 + 6, elapsed  # attempts x timeout + backoff


def _sandbox_kubeconfig(box: Sandbox) -> dict[str, Any]:
    return dict(yaml.safe_load((box.dir / "kubeconfig").read_text()))


@pytest.mark.e2e
def test_a_wrong_token_is_exit_4_unauthorized_without_echoing_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    kubeconfig = _sandbox_kubeconfig(sandbox)
    kubeconfig["users"][0]["user"]["token"] = KUBECONFIG_TOKEN
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    for args in (("status",), ("flip",), ("history",)):
        result = _run(sandbox.capsys, sandbox.dir / "slots.yaml", path, *args)
        _check(result, 4, "401 Unauthorized")
        assert "credentials" in result.json()["error"]["hint"]


@pytest.mark.e2e
def test_a_certificate_from_another_authority_is_exit_4_naming_tls(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    kubeconfig = _sandbox_kubeconfig(sandbox)
    other, _ = self_signed(tmp_path, "someone-else")
    kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(
        other
    ).decode()
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(kubeconfig))
    result = _run(sandbox.capsys, sandbox.dir / "slots.yaml", path, "status")
    _check(result, 4, "certificate verify failed")
    error = result.json()["error"]
    assert error["type"] == "api-unreachable"
    assert "TLS" in error["hint"] and "certificate-authority" in error["hint"]
