"""The one interface every kind of availability flag implements.

A flag kind knows three things about its object, and nothing else in the tool branches on the
kind: how to read it, which slot it names (and the JSON Patch operations that make it name
another), and what the cluster can show about where production goes. Everything around those —
the audit annotations, the compare-and-swap, the lease, verification through production — is the
same for every kind and lives in ``flip/``.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from gx10slots.app import App
    from gx10slots.config import Config


class FlagKind(ABC):
    """One kind of flag (``flag.kind`` in slots.yaml)."""

    #: The name in slots.yaml (``flag.kind``).
    name: ClassVar[str]
    #: The object's kind, as messages name it ("Service", "ConfigMap", ...).
    object_kind: ClassVar[str]
    #: ``flag.key``: its default, what it must look like and how messages call it; a kind
    #: without a key leaves ``key_what`` empty (then ``flag.key`` is refused).
    default_key: ClassVar[str] = ""
    key_pattern: ClassVar[re.Pattern[str] | None] = None
    key_what: ClassVar[str] = ""
    #: The flag object is itself the Service production traffic enters through.
    flag_is_service: ClassVar[bool] = False
    #: The cluster shows where production goes (``routes_to``); without it a flip is proved
    #: only by answers through production attributed by the slots' identity names.
    shows_routing: ClassVar[bool] = False

    # -- pure rules over the object's JSON ------------------------------------------------------

    @abstractmethod
    def value(self, obj: Mapping[str, Any], config: Config) -> str | None:
        """What the flag names now: a slot name, anything else it holds (shown to the operator,
        never acted on), or None when it names nothing."""

    @abstractmethod
    def value_ops(
        self, obj: Mapping[str, Any], config: Config, target: str
    ) -> list[dict[str, Any]]:
        """The JSON Patch operations that make the flag name ``target``: each ``replace``
        preceded by a ``test`` of the value it replaces, so the patch applies to exactly the
        state that was read (the caller adds the resourceVersion test and the annotations)."""

    def describe(self, config: Config) -> str:
        """The flag as messages name it."""
        key = f" key {config.flag.key}" if self.key_what else ""
        return f"{self.name} {config.flag.name}{key}"

    def flux_blocker(self, obj: Mapping[str, Any], config: Config) -> str | None:
        """Why Flux would revert a flip of this object (refused), or None."""
        return None

    def flux_warning(self, obj: Mapping[str, Any], config: Config) -> str | None:
        """A Flux risk the operator must rule out in Git (a status warning), or None."""
        return None

    # -- I/O -------------------------------------------------------------------------------------

    @abstractmethod
    def read(self, app: App) -> dict[str, Any]:
        """The flag object (raises ``NotFound`` when it does not exist)."""

    @abstractmethod
    def patch(self, app: App, patch: list[dict[str, Any]], purpose: str) -> dict[str, Any]:
        """Apply a JSON Patch to the flag object (one write, never retried); ``purpose`` says
        why, in messages."""

    def lister(self, app: App) -> Callable[..., Any] | None:
        """The list call of the flag's kind (``fn(namespace, field_selector=..., watch=...)``),
        for watching the flag object (`status --watch`); None: not watchable, redraw on a timer."""
        return None

    def routes_to(self, app: App, slot: str) -> tuple[bool, str] | None:
        """What the cluster itself shows about production reaching ``slot`` (ok, detail), or
        None when this kind's routing cannot be seen in the cluster; then only answers through
        production, attributed by the slots' identity names, can prove a flip."""
        return None


class CoreObjectFlag(FlagKind):
    """A flag that is a core/v1 object (a Service, a ConfigMap): read, patched and listed by the
    same calls, named by ``core_resource`` (``service``, ``config_map``)."""

    core_resource: ClassVar[str]

    def lister(self, app: App) -> Callable[..., Any] | None:
        return getattr(app.kube.api("core"), f"list_namespaced_{self.core_resource}")

    def read(self, app: App) -> dict[str, Any]:
        config, kube = app.config, app.kube
        return kube.read(
            f"read {self.object_kind} {config.namespace}/{config.flag.name}",
            getattr(kube.api("core"), f"read_namespaced_{self.core_resource}"),
            config.flag.name,
            config.namespace,
        )

    def patch(self, app: App, patch: list[dict[str, Any]], purpose: str) -> dict[str, Any]:
        from gx10slots.kube.client import FIELD_MANAGER

        config, kube = app.config, app.kube
        return kube.write(
            f"patch {self.object_kind} {config.namespace}/{config.flag.name}{purpose}",
            getattr(kube.api("core"), f"patch_namespaced_{self.core_resource}"),
            config.flag.name,
            config.namespace,
            patch,
            field_manager=FIELD_MANAGER,
        )
