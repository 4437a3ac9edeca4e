"""The sandbox's data plane: controllers, the process kubelet, and one proxy per Service.

A Service proxy picks its backends per request from the Service's selector and the Ready pods
*at that moment*, as kube-proxy's rules would after they converge, so a flag flip reaches new
requests at once while streams in flight finish on their old backend.
"""

from __future__ import annotations

from pathlib import Path

from gx10slots.sandbox.apiserver import ApiServer
from gx10slots.sandbox.controller import Controller
from gx10slots.sandbox.kubelet import ProcessRuntime
from gx10slots.sandbox.proxy import ServiceProxy
from gx10slots.sandbox.resources import PODS, SERVICES
from gx10slots.sandbox.seed import NAMESPACE
from gx10slots.sandbox.selectors import selector_from_spec
from gx10slots.sandbox.store import Obj


def _ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ready and not pod["metadata"].get("deletionTimestamp")


class DataPlane:
    def __init__(self, server: ApiServer, directory: Path, *, engine: str = "fake") -> None:
        self.server = server
        self.runtime = ProcessRuntime(server.store, directory, engine=engine)
        server.log_source = self.runtime
        self.controller = Controller(server.store, self.runtime, tick=0.5)
        self.proxies: dict[str, ServiceProxy] = {}
        server.service_resolver = self.resolve

    def start(self) -> None:
        self.controller.start()

    def backends(self, service: str, namespace: str = NAMESPACE) -> list[str]:
        store = self.server.store
        svc = store.find(SERVICES, namespace, service)
        selector = ((svc or {}).get("spec") or {}).get("selector") or {}
        if not selector:
            return []  # an empty selector means "endpoints managed elsewhere": none here
        pods, _ = store.list(PODS, namespace, labels=selector_from_spec({"matchLabels": selector}))
        urls = [self.runtime.url_of(pod) for pod in pods if _ready(pod)]
        return [url for url in urls if url]

    def resolve(self, namespace: str, service: str) -> str | None:
        """For the API server's service proxy: the Service's proxy URL, None without backends."""
        if namespace != NAMESPACE or not self.backends(service, namespace):
            return None
        return self.service_endpoints({service: service})[service]

    def service_endpoints(self, services: dict[str, str]) -> dict[str, str]:
        """Start a proxy per Service; ``{key: service name}`` → ``{key: URL}``."""
        urls = {}
        for key, name in services.items():
            proxy = self.proxies.get(name)
            if proxy is None:
                proxy = ServiceProxy(name, lambda name=name: self.backends(name))  # type: ignore[misc]
                proxy.start()
                self.proxies[name] = proxy
            urls[key] = proxy.url
        return urls

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        self.proxies.clear()
        self.controller.stop()
        self.runtime.stop_all()
