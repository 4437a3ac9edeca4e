"""Fixtures for the sandbox API server: a running server with its controllers, and clients.

``sandbox`` here is the API server alone (tests/helpers/apiserver.py); it overrides the whole
sandbox of tests/helpers/fixtures.py for this directory.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from tests.helpers.apiserver import Sandbox, running
from tests.helpers.kubectl import Kubectl


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running() as box:
        yield box


@pytest.fixture
def tls_sandbox() -> Iterator[Sandbox]:
    """The API server on TLS, as kubectl requires."""
    with running(tls=True) as box:
        yield box


@pytest.fixture
def kubectl(tls_sandbox: Sandbox, tmp_path: Path) -> Kubectl:
    return Kubectl(tls_sandbox, tmp_path)


@pytest.fixture
def api(sandbox: Sandbox) -> Iterator[Any]:
    api_client = sandbox.api_client()
    try:
        yield api_client
    finally:
        api_client.close()


@pytest.fixture
def core(api: Any) -> Any:
    return client.CoreV1Api(api)


@pytest.fixture
def apps(api: Any) -> Any:
    return client.AppsV1Api(api)
