"""The sandbox as the measuring side sees it (never timed): reads and watches through the product's
own Kubernetes adapter (gx10slots.kube), the production endpoint, and the rollout rules."""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

if TYPE_CHECKING:
    pass

import queue

from .common import DETECT_TIMEOUT_S, FLAG, NS, POLL_S, SLOT_KEY, BenchError, now

# -- the sandbox's API, for the measuring side (watches, reads); never timed -----------------------


class Api:
    """Reads through the product's own adapter (connection, credentials, retries, bounds)."""

    def __init__(self, directory: Path) -> None:
        from gx10slots.kube.client import Kube, connect

        self.kube = Kube(connect(str(directory / "kubeconfig"), None), NS)

    def flag(self) -> dict[str, Any]:
        core = self.kube.api("core")
        return self.kube.read(f"read Service {FLAG}", core.read_namespaced_service, FLAG, NS)

    def deployment(self, name: str) -> dict[str, Any]:
        apps = self.kube.api("apps")
        return self.kube.read(f"read Deployment {name}", apps.read_namespaced_deployment, name, NS)

    def close(self) -> None:
        self.kube.connection.transport.pool.clear()


class _Arrivals(queue.Queue[Any]):
    """The Watcher's event queue, stamping each event as it arrives (CLOCK_MONOTONIC)."""

    def __init__(self) -> None:
        super().__init__()
        self.log: list[tuple[float, str, dict[str, Any]]] = []

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        self.log.append((now(), str(item.type), item.obj))
        super().put(item, block, timeout)


class Watch:
    """A watch on one collection through the product's Watcher (gx10slots.kube.watch), recording
    each event's arrival time; the objects listed first are recorded as ``LISTED``."""

    def __init__(self, api: Api, method: str, group: str = "core", **selectors: str) -> None:
        from gx10slots.kube.watch import Watcher

        self.watcher = Watcher(api.kube)
        self.arrivals = _Arrivals()
        self.watcher.events = self.arrivals
        self.list_fn = getattr(api.kube.api(group), method)
        self.selectors = selectors  # field_selector / label_selector
        self.what = method

    @property
    def events(self) -> list[tuple[float, str, dict[str, Any]]]:
        return self.arrivals.log

    def __enter__(self) -> Watch:
        self.watcher.add(self.what, self.list_fn, **self.selectors)
        # Events that happen before the watch request is in would arrive late, in one burst,
        # when it is: wait until the stream is open.
        if not self.watcher.watching.wait(10.0):
            raise BenchError(f"could not watch {self.what}")
        return self

    def __exit__(self, *exc: object) -> None:
        self.watcher.stop()

    def first(self, after: float, predicate: Callable[[dict[str, Any]], bool]) -> float | None:
        for at, kind, obj in list(self.events):
            if at >= after and kind not in ("DELETED", "ERROR") and predicate(obj):
                return at
        return None


class Production:
    """GETs /v1/models through the production endpoint (the Service proxy) on a kept-alive
    connection; the proxy picks its backend per request, so the next request after a flip
    already reaches the new slot."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=5)

    def served(self) -> str | None:
        try:
            self.conn.request("GET", "/v1/models")
            response = self.conn.getresponse()
            body = response.read()
            if response.status != 200:
                return None
            return str(json.loads(body)["data"][0]["id"])
        except (OSError, http.client.HTTPException, ValueError, KeyError, IndexError):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=5)
            return None

    def wait_for(self, name: str, timeout: float = DETECT_TIMEOUT_S) -> float:
        deadline = now() + timeout
        while now() < deadline:
            if self.served() == name:
                return now()
            time.sleep(POLL_S)
        raise BenchError(f"production did not answer with {name!r} within {timeout:g} s")

    def close(self) -> None:
        self.conn.close()


def flag_slot(obj: dict[str, Any]) -> str | None:
    value = (obj.get("spec") or {}).get("selector", {}).get(SLOT_KEY)
    return str(value) if value is not None else None


def other_slot(slot: str) -> str:
    return "green" if slot == "blue" else "blue"


def _served_env(deployment: dict[str, Any]) -> str | None:
    for container in (
        deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
    ):
        for env in container.get("env") or []:
            if env.get("name") == "SERVED_MODEL_NAME":
                return str(env.get("value"))
    return None


def complete_with(served_name: str) -> Callable[[dict[str, Any]], bool]:
    def check(deployment: dict[str, Any]) -> bool:
        return _served_env(deployment) == served_name and rollout_complete(deployment)

    return check


def first_ready(
    deployment_events: Sequence[tuple[float, str, dict[str, Any]]],
    pod_events: Sequence[tuple[float, str, dict[str, Any]]],
    served_name: str,
    container: str,
) -> float | None:
    """When the API first showed the new revision ready: our own watches of the Deployment and
    its Pods replayed in arrival order, judged by the rule `slots deploy` applies
    (``deploy.rules.rollout_verdict``: the new pod Ready, the Deployment counting it updated and
    available)."""
    from gx10slots.deploy.rules import rollout_verdict

    merged = sorted(
        [(at, "deployment", kind, obj) for at, kind, obj in deployment_events]
        + [(at, "pod", kind, obj) for at, kind, obj in pod_events],
        key=lambda event: event[0],
    )
    deployment: dict[str, Any] | None = None
    pods: dict[str, dict[str, Any]] = {}
    for at, source, kind, obj in merged:
        if source == "deployment":
            deployment = None if kind == "DELETED" else obj
        elif kind == "DELETED":
            pods.pop(obj.get("metadata", {}).get("name", ""), None)
        else:
            pods[obj.get("metadata", {}).get("name", "")] = obj
        if deployment is None or _served_env(deployment) != served_name:
            continue
        if rollout_verdict(deployment, list(pods.values()), container).state == "done":
            return at
    return None


def rollout_complete(deployment: dict[str, Any]) -> bool:
    """What `kubectl rollout status` waits for: the controller saw the new spec, every replica is
    updated and available, no old replica is left, and the Available condition is True."""
    spec, status = deployment.get("spec") or {}, deployment.get("status") or {}
    want = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    available = (
        c.get("status") == "True"
        for c in status.get("conditions") or []
        if c.get("type") == "Available"
    )
    return (
        int(status.get("observedGeneration") or 0)
        >= int(deployment.get("metadata", {}).get("generation") or 0)
        and updated >= want >= 1
        and int(status.get("replicas") or 0) == updated
        and int(status.get("availableReplicas") or 0) >= updated
        and any(available)
    )
