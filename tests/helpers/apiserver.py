"""The sandbox API server alone, in-process, with its controllers; objects to seed it with."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from kubernetes import client

from gx10slots.sandbox.apiserver import ApiServer
from gx10slots.sandbox.controller import Controller
from gx10slots.sandbox.store import Store
from tests.helpers import wait as waiting

TOKEN = "sandbox-test-token"
NAMESPACE = "gx10"
NODE = "gx10"

T = TypeVar("T")


def wait_for(predicate: Callable[[], T | None], timeout: float = 5.0, interval: float = 0.02) -> T:
    """``wait.wait_for`` with the short deadline an in-process API server needs."""
    return waiting.wait_for(predicate, timeout, interval=interval)


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

    def stop(self) -> None:
        self.controller.stop()
        self.server.stop()


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


@contextlib.contextmanager
def running(*, tls: bool = False) -> Iterator[Sandbox]:
    """``start_sandbox`` for the length of a block."""
    box = start_sandbox(tls=tls)
    try:
        yield box
    finally:
        box.stop()
