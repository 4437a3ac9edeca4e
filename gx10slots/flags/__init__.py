"""Kinds of availability flag: one module each, behind one interface (:class:`FlagKind`).

The registry below is the one list of kinds: the config schema's choices, the docs and the
sandbox's routing all read it. Adding a kind is a module of its own and a line here
(docs/architecture.md, "A new flag kind").
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gx10slots.flags import configmap, httproute, service_selector
from gx10slots.flags.base import FlagKind

if TYPE_CHECKING:
    from gx10slots.config import Config

KINDS: dict[str, FlagKind] = {
    kind.name: kind for kind in (service_selector.KIND, configmap.KIND, httproute.KIND)
}


def kind_of(config: Config) -> FlagKind:
    return KINDS[config.flag.kind]


__all__ = ["KINDS", "FlagKind", "kind_of"]
