"""Fixtures for the sandbox API server: a running server with its controllers, and clients."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from kubernetes import client

from gx10slots.sandbox.apiserver import ApiServer
from gx10slots.sandbox.controller import Controller
from gx10slots.sandbox.store import Store

TOKEN = "sandbox-test-token"
NAMESPACE = "gx10"
NODE = "gx10"

T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.02) -> T:
    """Poll until ``predicate()`` is truthy and return it; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s (last value: {value!r})")
        time.sleep(interval)


def node(name: str = NODE, memory: str = "128Gi", labels: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {"kubernetes.io/hostname": name, **(labels or {})},
        },
        "status": {
            "allocatable": {"memory": memory, "cpu": "20"},
            "capacity": {"memory": memory, "cpu": "20"},
            "conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "nodeInfo": {"kubeletVersion": "v1.32.0"},
        },
    }


def deployment(
    name: str = "blue",
    *,
    replicas: int = 1,
    memory: str = "1Gi",
    strategy: str = "Recreate",
    image: str = "vllm/vllm-openai:v0.9",
    deadline: int | None = None,
) -> dict:
    spec: dict[str, Any] = {
        "replicas": replicas,
        "strategy": {"type": strategy},
        "selector": {"matchLabels": {"app": "model", "slot": name}},
        "template": {
            "metadata": {"labels": {"app": "model", "slot": name}},
            "spec": {
                "containers": [
                    {
                        "name": "engine",
                        "image": image,
                        "env": [{"name": "MODEL", "value": "sandbox/ok"}],
                        "ports": [{"name": "http", "containerPort": 8000}],
                        "resources": {"requests": {"memory": memory}},
                    }
                ]
            },
        },
    }
    if deadline is not None:
        spec["progressDeadlineSeconds"] = deadline
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "model"}},
        "spec": spec,
    }


def service(name: str = "blue", selector: dict[str, str] | None = None) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": NAMESPACE, "labels": {"app": "model"}},
        "spec": {
            "selector": selector if selector is not None else {"slot": name},
            "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
        },
    }


@dataclass
class Sandbox:
    server: ApiServer
    controller: Controller
    store: Store
    url: str
    token: str | None

    def api_client(self, *, timeout_retries: int | None = 0, token: str | None = None) -> Any:
        """An official-client ApiClient; retries off by default (urllib3 would otherwise
        silently retry GETs on 429 with Retry-After and on dropped connections)."""
        key = token if token is not None else self.token
        config = client.Configuration(
            host=self.url,
            api_key={"BearerToken": key} if key else None,
            api_key_prefix={"BearerToken": "Bearer"} if key else None,
            retries=timeout_retries,
        )
        return client.ApiClient(config)


def start_sandbox(*, token: str | None = TOKEN, tls: bool = False, tick: float = 0.1) -> Sandbox:
    store = Store()
    server = ApiServer(store, token=token, tls=tls)
    controller = Controller(store, tick=tick)
    server.log_source = controller.runtime
    url = server.start()
    controller.start()
    for ns in (NAMESPACE, "default"):
        server.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    server.seed(node())
    return Sandbox(server, controller, store, url, token)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    box = start_sandbox()
    try:
        yield box
    finally:
        box.controller.stop()
        box.server.stop()


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
