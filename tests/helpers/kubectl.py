"""The real kubectl against the in-process sandbox API server (TLS), through its own
kubeconfig and cache directory."""

from __future__ import annotations

import base64
import subprocess
from pathlib import Path

import yaml

from tests.helpers.apiserver import NAMESPACE, Sandbox


class Kubectl:
    """``kubectl(...)`` runs it; ``ok(...)`` also asserts exit 0 and returns stdout."""

    def __init__(self, sandbox: Sandbox, tmp: Path) -> None:
        self.sandbox = sandbox
        self.kubeconfig = tmp / "kubeconfig"
        self.cache = tmp / "cache"
        assert sandbox.server.certificate_pem is not None
        cluster = {
            "server": sandbox.url,
            "certificate-authority-data": base64.b64encode(sandbox.server.certificate_pem).decode(),
        }
        self.kubeconfig.write_text(
            yaml.safe_dump(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [{"name": "sandbox", "cluster": cluster}],
                    "users": [{"name": "admin", "user": {"token": sandbox.token}}],
                    "contexts": [
                        {
                            "name": "sandbox",
                            "context": {
                                "cluster": "sandbox",
                                "user": "admin",
                                "namespace": NAMESPACE,
                            },
                        }
                    ],
                    "current-context": "sandbox",
                }
            )
        )

    def argv(self, *args: str) -> list[str]:
        return ["kubectl", f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache}", *args]

    def __call__(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args), capture_output=True, text=True, input=input, timeout=60, check=False
        )

    def ok(self, *args: str, input: str | None = None) -> str:
        result = self(*args, input=input)
        assert result.returncode == 0, result.stderr
        return result.stdout
