"""The sandbox's data plane: controllers, the process kubelet, and one proxy per Service.

A slot Service's proxy picks its backends per request from the Service's selector and the Ready
pods *at that moment*, as kube-proxy's rules would after they converge.

Production goes through a :class:`Router` that follows, like kube-proxy (or a router of your own
for a ConfigMap flag), what the API says with a lag (``--router-lag``, default 1 s; ``never``: a
stuck router that keeps routing where it did when the sandbox came up):

- ``service-selector`` flag: the ready endpoints of the production Service's EndpointSlices
  (discovery.k8s.io/v1, label ``kubernetes.io/service-name``), which the endpoint controller
  keeps in step with the Service's selector;
- ``configmap`` flag: the ready endpoints of the slot Service the flag ConfigMap's key names;
- ``httproute`` flag: the weights of the HTTPRoute's backendRefs to the slot Services, and their
  ready endpoints, as a Gateway would (:mod:`gx10slots.sandbox.routing`: weight 0 gets nothing,
  split weights split the requests, no weight above 0 is a 500); once it routes by a generation
  of the route it writes the route's ``status.parents`` (Accepted, ResolvedRefs), as Gateways do.

Streams in flight finish on their old backend either way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

from gx10slots.kube.values import rfc3339
from gx10slots.sandbox.apiserver import ApiServer
from gx10slots.sandbox.controller import Controller
from gx10slots.sandbox.jobs import InClusterAccess, JobController
from gx10slots.sandbox.kubelet import ProcessRuntime
from gx10slots.sandbox.proxy import ServiceProxy
from gx10slots.sandbox.resources import CONFIGMAPS, ENDPOINTSLICES, HTTPROUTES, PODS, SERVICES
from gx10slots.sandbox.routing import Picker, Routing, ServiceView, from_httproute, route_status
from gx10slots.sandbox.seed import (
    FLAG_CONFIGMAP,
    FLAG_KEY,
    FLAG_ROUTE,
    GATEWAY,
    NAMESPACE,
    PRODUCTION_SERVICE,
    deployment_name,
)
from gx10slots.sandbox.selectors import selector_from_spec
from gx10slots.sandbox.store import Obj

log = logging.getLogger(__name__)


def _ready(pod: Obj) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)
    return ready and not pod["metadata"].get("deletionTimestamp")


ROUTER_PERIOD_S = 0.05
DEFAULT_ROUTER_LAG_S = 1.0


T = TypeVar("T")


class Router(Generic[T]):
    """Production's routing decision, following ``desired()`` through a delay line of ``lag_s``
    seconds (None: frozen once :meth:`go_live` is called). Until then it follows at once, so the
    sandbox starts serving without waiting out the lag."""

    def __init__(
        self,
        desired: Callable[[], T],
        lag_s: float | None,
        initial: T,
        applied: Callable[[T], None] | None = None,
    ) -> None:
        self._desired = desired
        self._on_applied = applied  # told of each routing once it is in force
        self.lag_s = lag_s
        self._applied: T = initial
        self._pending: deque[tuple[float, T]] = deque()
        self._last: T | None = None
        self._live = False
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sandbox-router", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)

    def go_live(self) -> None:
        self.step()
        with self._lock:
            self._live = True

    def current(self) -> T:
        with self._lock:
            return self._applied

    def step(self) -> None:
        try:
            desired = self._desired()
        except Exception:  # noqa: BLE001 - a failed read leaves the routing as it is
            return
        now = time.monotonic()
        with self._lock:
            before = self._applied
            if not self._live:
                self._applied, self._last = desired, desired
            else:
                if desired != self._last:
                    self._last = desired
                    self._pending.append((now, desired))
                if self.lag_s is None:
                    self._pending.clear()  # a stuck router: it never applies anything again
                else:
                    while self._pending and self._pending[0][0] <= now - self.lag_s:
                        self._applied = self._pending.popleft()[1]
            applied = self._applied
        if self._on_applied is not None and applied != before:
            try:
                self._on_applied(applied)
            except Exception:  # a failed status write must not stop the routing
                log.debug("sandbox router: reporting the routing failed", exc_info=True)

    def _run(self) -> None:
        while not self._stop.wait(ROUTER_PERIOD_S):
            self.step()


class DataPlane:
    def __init__(
        self,
        server: ApiServer,
        directory: Path,
        *,
        engine: str = "fake",
        flag: str = "service-selector",
        router_lag_s: float | None = DEFAULT_ROUTER_LAG_S,
    ) -> None:
        self.server = server
        self.flag = flag
        self.runtime = ProcessRuntime(server.store, directory, engine=engine)
        server.log_source = self.runtime
        self.controller = Controller(server.store, self.runtime, tick=0.5)
        self.runtime.in_cluster = InClusterAccess(server)
        self.jobs = JobController(server.store)
        self.proxies: dict[str, ServiceProxy] = {}
        self.router = Router(
            self._production_wanted,
            router_lag_s,
            Routing(),
            self._report_route_status if flag == "httproute" else None,
        )
        self._picker = Picker()
        server.service_resolver = self.resolve

    def start(self) -> None:
        self.controller.start()
        self.jobs.start()
        self.router.start()

    def _slice_backends(self, service: str, namespace: str = NAMESPACE) -> tuple[str, ...]:
        """URLs of the ready endpoints the Service's EndpointSlices list, as kube-proxy reads
        them (pkg/proxy/endpointslicecache.go: ready endpoints only)."""
        store = self.server.store
        slices, _ = store.list(ENDPOINTSLICES, namespace)
        urls: list[str] = []
        for es in slices:
            labels = es["metadata"].get("labels") or {}
            if labels.get("kubernetes.io/service-name") != service:
                continue
            for endpoint in es.get("endpoints") or []:
                if not (endpoint.get("conditions") or {}).get("ready"):
                    continue
                ref = endpoint.get("targetRef") or {}
                pod = store.find(PODS, namespace, str(ref.get("name", "")))
                url = self.runtime.url_of(pod) if pod is not None else None
                if url:
                    urls.append(url)
        return tuple(sorted(urls))

    def _service_view(self, service: str) -> ServiceView | None:
        svc = self.server.store.find(SERVICES, NAMESPACE, service)
        if svc is None:
            return None
        ports = tuple(
            p["port"]
            for p in (svc.get("spec") or {}).get("ports") or []
            if isinstance(p, dict) and isinstance(p.get("port"), int)
        )
        return ServiceView(ports, self._slice_backends(service))

    def _production_wanted(self) -> Routing:
        if self.flag == "configmap":
            cm = self.server.store.find(CONFIGMAPS, NAMESPACE, FLAG_CONFIGMAP) or {}
            slot = (cm.get("data") or {}).get(FLAG_KEY)
            if slot not in ("blue", "green"):
                return Routing.single(PRODUCTION_SERVICE, ())
            return Routing.single(
                deployment_name(str(slot)), self._slice_backends(deployment_name(str(slot)))
            )
        if self.flag == "httproute":
            route = self.server.store.find(HTTPROUTES, NAMESPACE, FLAG_ROUTE)
            return from_httproute(route, FLAG_ROUTE, NAMESPACE, self._service_view)
        return Routing.single(PRODUCTION_SERVICE, self._slice_backends(PRODUCTION_SERVICE))

    def _report_route_status(self, routing: Routing) -> None:
        """As a Gateway does once it routes by a route: ``status.parents`` says so, at the
        generation it follows (a new resourceVersion for the route, as in a cluster)."""
        at = rfc3339()

        def write(route: Obj) -> Obj | None:
            status = route_status(route, routing, GATEWAY, at)
            if status is None or route.get("status") == status:
                return None
            route["status"] = status
            return route

        self.server.store.mutate(HTTPROUTES, NAMESPACE, FLAG_ROUTE, write)

    def production_serves(self) -> bool:
        """Whether the router, as applied now, sends some request to a ready endpoint."""
        return self.router.current().serves()

    def backends(self, service: str, namespace: str = NAMESPACE) -> list[str]:
        """The endpoints a request to ``service`` may go to now; for production, the router's
        choice for this request (raises ``NoRoute`` when the router answers it itself)."""
        if service == PRODUCTION_SERVICE and namespace == NAMESPACE:
            return self._picker.endpoints(self.router.current(), PRODUCTION_SERVICE)
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
        if namespace != NAMESPACE:
            return None
        if service == PRODUCTION_SERVICE:
            if not self.production_serves():
                return None
        elif not self.backends(service, namespace):
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
        self.jobs.stop()
        self.router.stop()
        for proxy in self.proxies.values():
            proxy.stop()
        self.proxies.clear()
        self.controller.stop()
        self.runtime.stop_all()
