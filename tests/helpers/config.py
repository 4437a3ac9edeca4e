"""slots.yaml documents and kubeconfigs for tests that never reach a cluster."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from gx10slots.app import App, GlobalOptions
from gx10slots.config import parse_config


def valid() -> dict[str, Any]:
    return {
        "namespace": "gx10",
        "engine": "vllm",
        "slots": {
            "blue": {"deployment": "gx10-blue", "endpoint": "http://127.0.0.1:8001"},
            "green": {
                "deployment": "gx10-green",
                "service": "green-svc",
                "endpoint": "http://127.0.0.1:8002/",
            },
        },
        "flag": {
            "kind": "service-selector",
            "name": "gx10-model",
            "endpoint": "http://127.0.0.1:8000",
        },
    }


def ollama_app(green_endpoint: str) -> App:
    """An App for an Ollama engine whose slot green is at ``green_endpoint``, without a file."""
    doc = valid()
    doc["engine"] = "ollama"
    doc["slots"]["green"]["endpoint"] = green_endpoint
    app = App(GlobalOptions())
    app.__dict__["config"] = parse_config(doc)  # the cached property
    return app


def minimal() -> dict[str, Any]:
    """The smallest slots.yaml: two slots and a service-selector flag, every endpoint closed."""
    return {
        "namespace": "gx10",
        "slots": {
            "blue": {"deployment": "gx10-blue", "endpoint": "http://127.0.0.1:1"},
            "green": {"deployment": "gx10-green", "endpoint": "http://127.0.0.1:2"},
        },
        "flag": {
            "kind": "service-selector",
            "name": "gx10-model",
            "endpoint": "http://127.0.0.1:3",
        },
    }


CONFIG = parse_config(minimal())


def write_config(directory: Path) -> Path:
    """``minimal()`` written as ``directory``/slots.yaml."""
    path = directory / "slots.yaml"
    path.write_text(yaml.safe_dump(minimal()))
    return path


# A credential no test output may ever show.
KUBECONFIG_TOKEN = "tok-3c1f0e9a-hostile-cluster"


def kubeconfig_doc(server: str = "https://127.0.0.1:6443", **user: Any) -> dict[str, Any]:
    """A one-context kubeconfig for ``server`` (TLS unverified); ``user`` replaces the token."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": {"server": server, "insecure-skip-tls-verify": True}}
        ],
        "users": [{"name": "u", "user": user or {"token": KUBECONFIG_TOKEN}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "gx10"}}],
        "current-context": "x",
    }


def self_signed(directory: Path, name: str) -> tuple[bytes, bytes]:
    """A fresh EC key pair and its self-signed certificate for CN ``name``: (cert PEM, key PEM),
    also left in ``directory`` as NAME.crt and NAME.key."""
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert.read_bytes(), key.read_bytes()
