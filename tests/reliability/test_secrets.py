"""No secret ever leaves: plant known secrets, run everything, scan every output.

Planted: the engine API key (the model servers require it; the tool gets it from
SLOTS_ENGINE_API_KEY, then from a Secret named in the config), the kubeconfig's bearer token, a
client certificate key in the kubeconfig, and wrong values of each (a refused key must not be
quoted back either). Scanned: stdout and stderr of every command at the highest verbosity, in
both output modes, on success and failure paths; every report written; and in the cluster the
annotations, the history ConfigMap, the Lease and every Event.
"""

from __future__ import annotations

import base64
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.helpers.config import self_signed
from tests.helpers.sandbox import NS, Sandbox, started

ENGINE_KEY = "engine-key-7d2e91c4b0a35f68"
WRONG_ENGINE_KEY = "wrong-engine-key-51a9c3e0d7"
WRONG_TOKEN = "wrong-bearer-token-0e4b6f2a9c"


def _client_key(directory: Path) -> tuple[str, str]:
    """(client-certificate-data, client-key-data) for a fresh EC key pair."""
    cert, key = self_signed(directory, "gx10slots-client")
    return base64.b64encode(cert).decode(), base64.b64encode(key).decode()


@pytest.fixture
def planted(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[Sandbox, list[str]]]:
    directory = tmp_path / "sandbox"
    # The sandbox's model servers take VLLM_API_KEY from its environment: every slot needs it.
    monkeypatch.setenv("VLLM_API_KEY", ENGINE_KEY)
    with started(directory, capsys, engine="fake") as box:
        monkeypatch.delenv("VLLM_API_KEY")
        kubeconfig = yaml.safe_load((directory / "kubeconfig").read_text())
        token = kubeconfig["users"][0]["user"]["token"]
        cert, key = _client_key(tmp_path)
        kubeconfig["users"][0]["user"].update(
            {"client-certificate-data": cert, "client-key-data": key}
        )
        (directory / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
        key_pem = base64.b64decode(key).decode()
        key_lines = [line for line in key_pem.splitlines() if len(line) >= 16 and "-" not in line]
        secrets = [ENGINE_KEY, WRONG_ENGINE_KEY, token, WRONG_TOKEN, key, *key_lines]
        secrets += [base64.b64encode(s.encode()).decode() for s in (ENGINE_KEY, token)]
        yield box, secrets


def _slots(box: Sandbox, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return box.run("-v", "-v", *args, env={"SLOTS_ENGINE_API_KEY": ENGINE_KEY, **env})


def _set_config(box: Sandbox, **sections: object) -> None:
    path = box.dir / "slots.yaml"
    config = yaml.safe_load(path.read_text())
    config.update(sections)
    config["smoke"].update(probe_timeout="3s", deadline="40s", formats=["json", "md", "junit"])
    path.write_text(yaml.safe_dump(config))


@pytest.mark.e2e
def test_no_planted_secret_appears_in_any_output(planted: tuple[Sandbox, list[str]]) -> None:
    box, secrets = planted
    _set_config(box)
    outputs: list[tuple[str, str]] = []

    read_only = {"status", "history", "--dry-run", "smoke"}

    def run(expected: int | None, *args: str, **env: str) -> None:
        # Read-only commands in both output modes; a change once, modes alternating.
        both = bool(read_only & set(args)) and "park" not in args
        modes: list[tuple[str, ...]] = [(), ("-o", "json")]
        if not both:
            modes = [modes[len(outputs) % 2]]
        for mode in modes:
            done = _slots(box, *mode, *args, **env)
            label = " ".join((*mode, *args))
            if expected is not None:
                assert done.returncode == expected, (label, done.stderr[-1500:])
            assert "Traceback" not in done.stderr, (label, done.stderr[-1500:])
            outputs.append((label, done.stdout + done.stderr))

    run(0, "status")
    run(0, "deploy", "sandbox/ok", "--served-name", "v2")
    run(0, "smoke", "green")
    run(0, "deploy", "org/next", "--dry-run")
    run(0, "flip", "--dry-run")
    run(0, "flip", "--reason", "secrets test")
    run(0, "guard", "--for", "2s", "--interval", "1s")
    run(0, "flip-back")
    run(0, "history")
    run(1, "smoke", "green", SLOTS_ENGINE_API_KEY=WRONG_ENGINE_KEY)  # the engine refuses it
    # Into green, production's fallback since the flip-back: replaced, then parked, on purpose.
    run(1, "deploy", "sandbox/wrong-name", "--served-name", "v3", "--replace-fallback")
    run(0, "park", "--replace-fallback")
    # The key from a Secret named in the config, instead of the environment.
    box.create_secret("gx10-engine-key", "api-key", ENGINE_KEY.encode())
    _set_config(box, api_key={"secret": {"name": "gx10-engine-key", "key": "api-key"}})
    run(0, "deploy", "sandbox/ok", "--served-name", "v4", SLOTS_ENGINE_API_KEY="")
    run(0, "status", SLOTS_ENGINE_API_KEY="")
    # A refused bearer token, and a kubeconfig that breaks right after its token.
    kubeconfig = yaml.safe_load((box.dir / "kubeconfig").read_text())
    kubeconfig["users"][0]["user"]["token"] = WRONG_TOKEN
    (box.dir / "kubeconfig.wrong").write_text(yaml.safe_dump(kubeconfig))
    run(4, "status", KUBECONFIG=str(box.dir / "kubeconfig.wrong"))
    broken = (box.dir / "kubeconfig").read_text().replace("token: ", "token: [", 1)
    (box.dir / "kubeconfig.broken").write_text(broken)
    run(2, "status", KUBECONFIG=str(box.dir / "kubeconfig.broken"))

    haystacks = list(outputs)
    for path in sorted((box.dir / "reports").rglob("*")):
        if path.is_file():
            haystacks.append((str(path), path.read_text(errors="replace")))
    assert any(p.endswith(".xml") for p, _ in haystacks) and any(
        p.endswith(".md") for p, _ in haystacks
    )
    for kind in ("services", "configmaps", "events"):
        listing = box.api("GET", f"/api/v1/namespaces/{NS}/{kind}")
        haystacks.append((kind, json.dumps(listing)))
    for kind in ("deployments",):
        listing = box.api("GET", f"/apis/apps/v1/namespaces/{NS}/{kind}")
        annotations = [item["metadata"].get("annotations") for item in listing["items"]]
        haystacks.append((f"{kind} annotations", json.dumps(annotations)))
    lease = box.api("GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases")
    haystacks.append(("leases", json.dumps(lease)))
    assert len(haystacks) > 30
    leaks = [
        (where, secret[:12] + "…")
        for where, text in haystacks
        for secret in secrets
        if secret and secret in text
    ]
    assert leaks == [], leaks
    # The scan itself works: the Secret object does hold the planted key (base64).
    control = json.dumps(box.api("GET", f"/api/v1/namespaces/{NS}/secrets"))
    assert any(secret in control for secret in secrets)
