"""``configmap``: a key of a ConfigMap names the slot, and a router of the team's own follows it.

Nothing in the cluster shows where such a router sends production, so only answers through
production, attributed by the slots' identity names, can prove a flip.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from gx10slots.flags.base import CoreObjectFlag
from gx10slots.flux import flux_protected
from gx10slots.kube.values import pointer

if TYPE_CHECKING:
    from gx10slots.config import Config


class ConfigMapKey(CoreObjectFlag):
    name = "configmap"
    object_kind = "ConfigMap"
    core_resource = "config_map"
    default_key = "active-slot"
    key_pattern = re.compile(r"^[-._a-zA-Z0-9]+$")
    key_what = "a ConfigMap key"

    def value(self, obj: Mapping[str, Any], config: Config) -> str | None:
        data = obj.get("data") or {}
        value = data.get(config.flag.key) if isinstance(data, Mapping) else None
        return value if isinstance(value, str) else None

    def value_ops(
        self, obj: Mapping[str, Any], config: Config, target: str
    ) -> list[dict[str, Any]]:
        path = pointer("data", config.flag.key)
        # The raw value, whatever its type: the test pins exactly what was read.
        data = obj.get("data") or {}
        current = data.get(config.flag.key) if isinstance(data, Mapping) else None
        ops: list[dict[str, Any]] = []
        if obj.get("data") is None:
            ops.append({"op": "add", "path": "/data", "value": {}})
        if current is None:
            return [*ops, {"op": "add", "path": path, "value": target}]
        return [
            *ops,
            {"op": "test", "path": path, "value": current},
            {"op": "replace", "path": path, "value": target},
        ]

    def flux_warning(self, obj: Mapping[str, Any], config: Config) -> str | None:
        if flux_protected(obj):
            return None
        return (
            f"ConfigMap {config.flag.name} is applied by Flux: key {config.flag.key} must not be "
            f"declared in Git, or the next reconcile reverts a flip"
        )


KIND = ConfigMapKey()
