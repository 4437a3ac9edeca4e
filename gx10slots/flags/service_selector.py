"""``service-selector``: the production Service's selector names the slot (``gx10slots.io/slot``).

The Service is both the flag and the way in, so the cluster itself shows where production goes:
its EndpointSlices list the pods the selector picks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gx10slots.errors import Interrupted, SlotsError
from gx10slots.flags.base import CoreObjectFlag
from gx10slots.flux import FLUX_RECONCILE, FLUX_SSA, flux_protected
from gx10slots.kube.values import pointer

if TYPE_CHECKING:
    from gx10slots.app import App
    from gx10slots.config import Config

# A qualified label key: optional DNS-subdomain prefix, then a name of [A-Za-z0-9_.-].
_LABEL_KEY = re.compile(
    r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$"
)
# Bounds on what is read back: a hostile or huge list must not cost the verification its time.
MAX_SLICES = 100
MAX_NAMES_SHOWN = 5


class ServiceSelector(CoreObjectFlag):
    name = "service-selector"
    object_kind = "Service"
    core_resource = "service"
    default_key = "gx10slots.io/slot"
    key_pattern = _LABEL_KEY
    key_what = "a label key"
    flag_is_service = True
    shows_routing = True

    def value(self, obj: Mapping[str, Any], config: Config) -> str | None:
        selector = (obj.get("spec") or {}).get("selector") or {}
        value = selector.get(config.flag.key) if isinstance(selector, Mapping) else None
        return value if isinstance(value, str) else None

    def value_ops(
        self, obj: Mapping[str, Any], config: Config, target: str
    ) -> list[dict[str, Any]]:
        path = pointer("spec", "selector", config.flag.key)
        # The raw value, whatever its type: the test pins exactly what was read.
        selector = (obj.get("spec") or {}).get("selector") or {}
        current = selector.get(config.flag.key) if isinstance(selector, Mapping) else None
        if current is None:
            return [{"op": "add", "path": path, "value": target}]
        return [
            {"op": "test", "path": path, "value": current},
            {"op": "replace", "path": path, "value": target},
        ]

    def flux_blocker(self, obj: Mapping[str, Any], config: Config) -> str | None:
        """A Service selector is an atomic map: under Flux's default ``Override`` (and
        ``Merge``) policy the next reconcile writes Git's selector back, silently undoing the
        flip."""
        if flux_protected(obj):
            return None
        return (
            f"Service {config.flag.name} is applied by Flux and its selector is an atomic map: "
            f"the next reconcile would revert the flip. Annotate it in Git with "
            f"{FLUX_SSA}: IfNotPresent (or {FLUX_RECONCILE}: disabled), or use a configmap flag"
        )

    def routes_to(self, app: App, slot: str) -> tuple[bool, str] | None:
        """The production Service's EndpointSlices list ready endpoints, and only the target
        slot's pods."""
        config, kube = app.config, app.kube
        try:
            listed = kube.read(
                f"list EndpointSlices of Service {config.namespace}/{config.flag.service}",
                kube.api("custom").list_namespaced_custom_object,
                "discovery.k8s.io",
                "v1",
                config.namespace,
                "endpointslices",
                label_selector=f"kubernetes.io/service-name={config.flag.service}",
            )
        except Interrupted:
            raise
        except SlotsError as exc:
            return False, f"cannot read the production EndpointSlices: {exc.message}"
        prefix = config.slot(slot).deployment + "-"
        ready: list[str] = []
        strangers: list[str] = []
        items = listed.get("items") if isinstance(listed, dict) else None
        for es in (items if isinstance(items, list) else [])[:MAX_SLICES]:
            for endpoint in (es.get("endpoints") if isinstance(es, dict) else None) or []:
                if not isinstance(endpoint, dict):
                    continue
                name = str((endpoint.get("targetRef") or {}).get("name") or "?")[:100]
                if not name.startswith(prefix):
                    strangers.append(name)  # ready or not: the selector still matches it
                elif (endpoint.get("conditions") or {}).get("ready") is not False:
                    ready.append(name)  # discovery/v1: a nil ready condition means ready
        if strangers:
            shown = ", ".join(strangers[:MAX_NAMES_SHOWN])
            return False, f"the production EndpointSlices still list {shown}"
        if not ready:
            return False, "the production EndpointSlices list no ready endpoint"
        shown = ", ".join(ready[:MAX_NAMES_SHOWN])
        return True, f"EndpointSlices name only {slot}'s pods ({shown})"


KIND = ServiceSelector()
