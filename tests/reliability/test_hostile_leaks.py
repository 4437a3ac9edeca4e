"""Secrets and terminal escapes that came in from outside (issue 19, items 3 and 4).

Secrets: an engine key or a bearer token as files and Secrets hand them over (a trailing newline,
a CRLF), or with characters a header cannot carry; a server that echoes our Authorization header
(bearer token, basic-auth, exec-plugin token) in its error. Scanned for the secret's bytes: stdout
and stderr at the highest verbosity, every report, the history ConfigMap, the Events and the
annotations.

Escapes: an engine's error, a pod's log lines, an API server's Status message may carry escape
sequences (``\\x1b]0;…\\x07`` sets the terminal's title); none reaches stderr raw.
"""

from __future__ import annotations

import base64
import json
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gx10slots.kube import client as kube_client
from tests.helpers.cli import run_cli
from tests.helpers.config import kubeconfig_doc, write_config
from tests.helpers.hostile import UP, hostile, read_request, respond, target
from tests.helpers.sandbox import NS, Sandbox, started

ENGINE_KEY = "engine-key-5b0c2e7d91a4f368"
ESCAPES = "\x1b]0;owned\x07\x1b[2J\x1b[31m"


def _raw_escape(text: str) -> bool:
    return "\x1b" in text or "\x07" in text or "\u202e" in text


@pytest.fixture
def keyed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Sandbox]:
    """A sandbox whose model servers require ENGINE_KEY."""
    monkeypatch.setenv("VLLM_API_KEY", ENGINE_KEY)
    with started(tmp_path / "sandbox", capsys, engine="fake") as box:
        monkeypatch.delenv("VLLM_API_KEY")
        box.set_smoke(probe_timeout="5s", deadline="40s", formats=["json", "md", "junit"])
        yield box


def _slots(box: Sandbox, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return box.run("-v", "-v", *args, env=env)


def _everything(box: Sandbox, outputs: list[str]) -> list[tuple[str, str]]:
    """Every place a secret could have landed."""
    haystacks = [(f"output {i}", text) for i, text in enumerate(outputs)]
    for path in sorted((box.dir / "reports").rglob("*")):
        if path.is_file():
            haystacks.append((str(path), path.read_text(errors="replace")))
    for kind in ("configmaps", "events", "services"):
        haystacks.append((kind, json.dumps(box.api("GET", f"/api/v1/namespaces/{NS}/{kind}"))))
    deployments = box.api("GET", f"/apis/apps/v1/namespaces/{NS}/deployments")
    annotations = [item["metadata"].get("annotations") for item in deployments["items"]]
    haystacks.append(("deployment annotations", json.dumps(annotations)))
    return haystacks


def _leaks(haystacks: list[tuple[str, str]], secret: str) -> list[str]:
    forms = {secret, base64.b64encode(secret.encode()).decode()}
    return [where for where, text in haystacks for form in forms if form in text]


@pytest.mark.e2e
@pytest.mark.parametrize("ending", ["\n", "\r\n", " \t\n"], ids=["LF", "CRLF", "blanks"])
def test_an_engine_key_read_with_a_line_ending_works_and_never_leaks(
    keyed: Sandbox, ending: str
) -> None:
    box = keyed
    key = ENGINE_KEY + ending
    outputs: list[str] = []
    for args in (
        ("-o", "json", "deploy", "sandbox/ok", "--served-name", "v2"),
        ("smoke", "green"),
        ("-o", "json", "flip"),
        ("status",),
    ):
        done = _slots(box, *args, SLOTS_ENGINE_API_KEY=key)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 0, (args, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
    assert box.flag() == "green"  # the key worked: deployed, smoked, flipped
    assert box.history() and all(e["result"] == "ok" for e in box.history())
    assert _leaks(_everything(box, outputs), ENGINE_KEY) == []


@pytest.mark.e2e
@pytest.mark.parametrize(
    "key",
    [ENGINE_KEY + "-ключ", ENGINE_KEY[:10] + "\n" + ENGINE_KEY[10:], ENGINE_KEY + "\x1b[2J", ""],
    ids=["non-ascii", "newline-inside", "escape", "empty-after-strip"],
)
def test_an_engine_key_that_cannot_be_a_header_is_refused_without_quoting_it(
    keyed: Sandbox, key: str
) -> None:
    box = keyed
    key = key or " \n"
    before = box.versions()
    outputs = []
    for args in (("-o", "json", "smoke", "blue"), ("deploy", "sandbox/ok", "--served-name", "v2")):
        done = _slots(box, *args, SLOTS_ENGINE_API_KEY=key)
        outputs.append(done.stdout + done.stderr)
        assert done.returncode == 2, (args, done.returncode, done.stderr[-2000:])
        assert "Traceback" not in done.stderr
        assert "SLOTS_ENGINE_API_KEY" in done.stderr
        assert not _raw_escape(done.stderr)
    assert box.versions() == before
    assert _leaks(_everything(box, outputs), ENGINE_KEY[10:]) == []


@pytest.mark.e2e
@pytest.mark.parametrize("ending", ["\n", "\r\n"], ids=["LF", "CRLF"])
def test_a_kubeconfig_token_with_a_line_ending_works_and_never_leaks(
    sandbox: Sandbox, tmp_path: Path, ending: str
) -> None:
    kubeconfig = yaml.safe_load((sandbox.dir / "kubeconfig").read_text())
    token = kubeconfig["users"][0]["user"]["token"]
    inline = dict(kubeconfig)
    inline["users"] = [{"name": "u", "user": {"token": token + ending}}]
    inline["contexts"] = [{**kubeconfig["contexts"][0]}]
    inline["contexts"][0]["context"] = {**inline["contexts"][0]["context"], "user": "u"}
    (tmp_path / "token").write_text(token + ending)
    from_file = json.loads(json.dumps(inline))
    from_file["users"][0]["user"] = {"tokenFile": str(tmp_path / "token")}
    outputs = []
    for name, doc in (("inline", inline), ("file", from_file)):
        path = tmp_path / f"kubeconfig.{name}"
        path.write_text(yaml.safe_dump(doc))
        for args in (("-o", "json", "status"), ("status",), ("history",)):
            done = _slots(sandbox, *args, KUBECONFIG=str(path))
            outputs.append(done.stdout + done.stderr)
            assert done.returncode == 0, (name, args, done.stderr[-2000:])
            assert "Traceback" not in done.stderr
    assert _leaks([(str(i), o) for i, o in enumerate(outputs)], token) == []


@pytest.mark.e2e
def test_a_kubeconfig_token_that_cannot_be_a_header_is_refused_without_quoting_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    kubeconfig = yaml.safe_load((sandbox.dir / "kubeconfig").read_text())
    token = kubeconfig["users"][0]["user"]["token"]
    for bad in (token + "é", token[:8] + "\n" + token[8:]):
        kubeconfig["users"][0]["user"]["token"] = bad
        path = tmp_path / "kubeconfig"
        path.write_text(yaml.safe_dump(kubeconfig, allow_unicode=True))
        done = _slots(sandbox, "-o", "json", "status", KUBECONFIG=str(path))
        assert done.returncode == 2, done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        assert token[8:] not in done.stdout + done.stderr
        assert "bearer token" in json.loads(done.stdout)["error"]["message"]


# -- a server that echoes our credentials, with escape sequences ---------------------------------


def _echoing_api_server(status: int) -> Any:
    """An API server that refuses every request with a Status quoting our Authorization header
    (as some proxies and webhooks do) and an escape sequence."""

    def behaviour(conn: socket.socket, stop: threading.Event) -> None:
        data = read_request(conn)
        if not data:
            return
        headers = data.decode("latin-1").split("\r\n")
        auth = next(
            (h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("authorization:")),
            "none",
        )
        body = json.dumps(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "status": "Failure",
                "reason": "Forbidden" if status == 403 else "InternalError",
                "message": f"{ESCAPES}request with Authorization: {auth} refused\u202e",
                "code": status,
            }
        ).encode()
        respond(conn, body, status)

    return behaviour


def _exec_plugin(tmp_path: Path, token: str) -> dict[str, Any]:
    plugin = tmp_path / "plugin"
    credential = {
        "apiVersion": "client.authentication.k8s.io/v1",
        "kind": "ExecCredential",
        "status": {"token": token},
    }
    plugin.write_text(f"#!/bin/sh\necho '{json.dumps(credential)}'\n")
    plugin.chmod(0o755)
    return {
        "apiVersion": "client.authentication.k8s.io/v1",
        "command": str(plugin),
        "interactiveMode": "Never",
    }


SECRET_TOKEN = "tok-9f3e1d7c5b2a-echoed"
PASSWORD = "pw-4c2e8a6b0d-echoed"


@pytest.mark.parametrize("status", [403, 500])
@pytest.mark.parametrize("credential", ["token", "tokenFile", "exec", "basic-auth"])
def test_credentials_echoed_by_the_api_server_never_reach_any_output(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    credential: str,
    status: int,
) -> None:
    monkeypatch.setattr(kube_client, "READ_TIMEOUT", (2.0, 2.0))
    monkeypatch.setattr(kube_client, "READ_ATTEMPTS", 2)
    user: dict[str, Any]
    if credential == "token":
        user = {"token": SECRET_TOKEN}
    elif credential == "tokenFile":
        (tmp_path / "token").write_text(SECRET_TOKEN + "\n")
        user = {"tokenFile": str(tmp_path / "token")}
    elif credential == "exec":
        user = {"exec": _exec_plugin(tmp_path, SECRET_TOKEN)}
    else:
        user = {"username": "admin", "password": PASSWORD}
    with hostile(_echoing_api_server(status)) as url:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(kubeconfig_doc(url, **user)))
        for mode in (("-o", "json"), ()):
            result = run_cli(
                capsys,
                "-v",
                "-v",
                *mode,
                "--config",
                str(write_config(tmp_path)),
                "--kubeconfig",
                str(kubeconfig),
                "status",
            )
            everything = result.out + result.err
            assert result.code == 4, (result.code, result.err[-2000:])
            assert "Traceback" not in everything
            assert SECRET_TOKEN not in everything and PASSWORD not in everything
            basic = base64.b64encode(f"admin:{PASSWORD}".encode()).decode()
            assert basic not in everything
            assert "refused" in everything  # the message itself still gets through
            assert not _raw_escape(result.err), repr(result.err[-600:])


# -- escapes from an engine and from pod logs -----------------------------------------------------


def _engine_with_escapes(conn: socket.socket, stop: threading.Event) -> None:
    data = read_request(conn)
    if not data:
        return
    path = target(data)
    if path in (b"/health", b"/v1/models"):
        respond(conn, UP[path])
        return
    body = json.dumps({"error": {"message": f"{ESCAPES}engine exploded\u202e"}}).encode()
    respond(conn, body.replace(b"\\u001b", b"\x1b").replace(b"\\u0007", b"\x07"), 500)


@pytest.mark.e2e
def test_an_engines_escape_sequences_never_reach_the_terminal(sandbox: Sandbox) -> None:
    with hostile(_engine_with_escapes) as endpoint:
        sandbox.set_endpoint("blue", endpoint)
        sandbox.set_smoke(probe_timeout="3s", deadline="20s")
        for mode in ((), ("-o", "json"), ("-v", "-v")):
            result = sandbox.cli(*mode, "smoke", "blue")
            assert result.code == 1, result.err[-2000:]
            assert "engine exploded" in result.err  # shown, escaped
            assert not _raw_escape(result.err), repr(result.err[-800:])
            assert not _raw_escape(result.out)


@pytest.mark.e2e
def test_pod_log_lines_of_a_failed_rollout_are_shown_escaped(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The seam is the adapter: what the API server returns as the crashed pod's log.
    hostile_log = f"starting\n{ESCAPES}CUDA error\u202e\rprogress 99%\nfatal: bye\n"
    monkeypatch.setattr(kube_client.Kube, "read_text", lambda self, *a, **k: hostile_log)
    sandbox.set_config("flag", verify_window="5s")
    result = sandbox.cli("deploy", "sandbox/crash", "--timeout", "60s")
    assert result.code == 1, result.err[-2000:]
    assert "CUDA error" in result.err and "fatal: bye" in result.err
    assert not _raw_escape(result.err), repr(result.err[-800:])
    assert "\r" not in result.err
    notes = json.dumps(sandbox.api("GET", f"/api/v1/namespaces/{NS}/events"))
    assert "CUDA error" in notes or sandbox.history()  # recorded, and valid JSON
