"""A real sandbox per test: API server, controllers, model-server processes, Service proxies.

Tests drive it the way an operator would: the `slots` CLI (in-process for speed, or as a
subprocess where separate processes matter: locks, signals), `kubectl`, and HTTP requests through
the production endpoint. Faults are injected through the sandbox API server's control endpoint.
"""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from gx10slots.sandbox import cluster
from tests.cli_helpers import Result, run_cli

NS = "gx10"


@dataclass
class Sandbox:
    dir: Path
    info: dict[str, Any]
    capsys: pytest.CaptureFixture[str]

    @property
    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "KUBECONFIG": str(self.dir / "kubeconfig"),
            "SLOTS_CONFIG": str(self.dir / "slots.yaml"),
        }

    def cli(self, *args: str) -> Result:
        """`slots ...` in-process against this sandbox."""
        return run_cli(
            self.capsys,
            "--config",
            str(self.dir / "slots.yaml"),
            "--kubeconfig",
            str(self.dir / "kubeconfig"),
            *args,
        )

    def spawn(self, *args: str) -> subprocess.Popen[str]:
        """`slots ...` as a separate process (its own pid: its own lease holder identity)."""
        return subprocess.Popen(
            [sys.executable, "-m", "gx10slots", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def kubectl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", "--cache-dir", str(self.dir / "kubectl-cache"), "-n", NS, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def _client(self) -> httpx.Client:
        config = yaml.safe_load((self.dir / "kubeconfig").read_text())
        ca = base64.b64decode(config["clusters"][0]["cluster"]["certificate-authority-data"])
        token = config["users"][0]["user"]["token"]
        context = ssl.create_default_context(cadata=ca.decode())
        return httpx.Client(
            base_url=self.info["apiserver"],
            headers={"Authorization": f"Bearer {token}"},
            verify=context,
            timeout=10,
        )

    def api(self, method: str, path: str, body: Any = None, content_type: str | None = None) -> Any:
        headers = {"Content-Type": content_type} if content_type else {}
        with self._client() as client:
            response = client.request(
                method,
                path,
                content=json.dumps(body) if body is not None else None,
                headers=headers,
            )
        response.raise_for_status()
        return response.json()

    def get(self, kind: str, name: str) -> dict[str, Any]:
        paths = {
            "service": f"/api/v1/namespaces/{NS}/services/{name}",
            "deployment": f"/apis/apps/v1/namespaces/{NS}/deployments/{name}",
            "configmap": f"/api/v1/namespaces/{NS}/configmaps/{name}",
            "lease": f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{name}",
            "endpoints": f"/api/v1/namespaces/{NS}/endpoints/{name}",
            "httproute": f"/apis/gateway.networking.k8s.io/v1/namespaces/{NS}/httproutes/{name}",
        }
        return dict(self.api("GET", paths[kind]))

    def merge_patch(self, kind: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        paths = {
            "service": f"/api/v1/namespaces/{NS}/services/{name}",
            "deployment": f"/apis/apps/v1/namespaces/{NS}/deployments/{name}",
            "lease": f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{name}",
            "configmap": f"/api/v1/namespaces/{NS}/configmaps/{name}",
        }
        return dict(self.api("PATCH", paths[kind], patch, "application/merge-patch+json"))

    def fault(self, **rule: Any) -> None:
        self.api("POST", "/_sandbox/faults", rule)

    def clear_faults(self) -> None:
        self.api("DELETE", "/_sandbox/faults")

    def flag(self) -> str | None:
        if self.info.get("flag") == "configmap":
            return self.get("configmap", "gx10-flag").get("data", {}).get("active-slot")
        if self.info.get("flag") == "httproute":
            refs = self.get("httproute", "gx10-model")["spec"]["rules"][0]["backendRefs"]
            weighted = {r["name"].removeprefix("gx10-") for r in refs if r.get("weight", 1) > 0}
            return weighted.pop() if len(weighted) == 1 else None
        selector = self.get("service", "gx10-model")["spec"]["selector"]
        return selector.get("gx10slots.io/slot")

    def answering_slot(self) -> str | None:
        """Which slot production reaches now: the identity name its /v1/models lists."""
        response = httpx.get(f"{self.info['prod_endpoint']}/v1/models", timeout=5)
        if response.status_code != 200:
            return None
        ids = [card["id"] for card in response.json()["data"]]
        slots = [i.split("/", 1)[1] for i in ids if i.startswith("gx10slots/")]
        return slots[0] if len(slots) == 1 else None

    def history(self) -> list[dict[str, Any]]:
        try:
            cm = self.get("configmap", "gx10slots-history")
        except httpx.HTTPStatusError:
            return []
        return list(json.loads(cm["data"]["entries"]))

    def lease_holder(self) -> str | None:
        try:
            return self.get("lease", "gx10slots-lock")["spec"].get("holderIdentity")
        except httpx.HTTPStatusError:
            return None

    def production(self) -> str:
        """The served model name production answers with, asked through the production endpoint."""
        response = httpx.get(f"{self.info['prod_endpoint']}/v1/models", timeout=5)
        response.raise_for_status()
        return str(response.json()["data"][0]["id"])

    def set_config(self, section: str, **settings: Any) -> None:
        """Tune a section of the sandbox's slots.yaml (short timeouts keep tests fast)."""
        path = self.dir / "slots.yaml"
        config = yaml.safe_load(path.read_text())
        config.setdefault(section, {}).update(settings)
        path.write_text(yaml.safe_dump(config))

    def set_smoke(self, **settings: Any) -> None:
        self.set_config("smoke", **settings)

    def versions(self) -> dict[str, str]:
        """resourceVersions of every object a refused command must leave alone."""
        return {
            "flag": self.get("service", "gx10-model")["metadata"]["resourceVersion"],
            "blue": self.get("deployment", "gx10-blue")["metadata"]["resourceVersion"],
            "green": self.get("deployment", "gx10-green")["metadata"]["resourceVersion"],
        }


def wait_for(predicate: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)  # polling a condition with a deadline, not papering over a race


@pytest.fixture
def sandbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Sandbox]:
    directory = tmp_path / "sandbox"
    info = cluster.start_detached(directory, engine="fake")
    try:
        yield Sandbox(directory, info, capsys)
    finally:
        cluster.stop(directory)


@pytest.fixture
def make_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., Sandbox]]:
    """A sandbox with non-default options: ``make_sandbox(flag="configmap", router_lag=None)``
    (``router_lag`` in seconds; None: a stuck router)."""
    started: list[Path] = []

    def make(
        *, flag: str = "service-selector", router_lag: float | None = 1.0, engine: str = "fake"
    ) -> Sandbox:
        directory = tmp_path / f"sandbox-{len(started)}"
        started.append(directory)
        info = cluster.start_detached(directory, engine=engine, flag=flag, router_lag_s=router_lag)
        return Sandbox(directory, info, capsys)

    try:
        yield make
    finally:
        for directory in started:
            cluster.stop(directory)


@pytest.fixture
def llama_sandbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Sandbox]:
    """A sandbox shaped for llama-server whose tiny-* models run on llama.cpp's real one."""
    directory = tmp_path / "sandbox"
    info = cluster.start_detached(directory, engine="llama-server")
    try:
        yield Sandbox(directory, info, capsys)
    finally:
        cluster.stop(directory)


@pytest.fixture
def two_warm_slots(sandbox: Sandbox) -> Sandbox:
    """blue active, green deployed (served as sandbox-v2) and smoked: ready to flip."""
    result = sandbox.cli("deploy", "sandbox/ok", "--served-name", "sandbox-v2")
    assert result.code == 0, result.err
    return sandbox
