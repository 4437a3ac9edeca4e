"""What every command shares: the global options, and the config and cluster they lead to.

Both are made on first use, so `slots --help` and `slots sandbox …` never load the Kubernetes
client, and a config mistake surfaces before any network call.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from gx10slots.config import Config
    from gx10slots.kube.client import Kube

OutputFormat = Literal["table", "wide", "json", "yaml"]
# The formats that print one document (the command's result, or {"error": ...}) on stdout.
DOCUMENT_FORMATS = ("json", "yaml")


@dataclass(frozen=True)
class GlobalOptions:
    config_path: str = "slots.yaml"
    kubeconfig: str | None = None
    context: str | None = None
    namespace: str | None = None
    output: OutputFormat = "table"
    verbosity: int = 0  # -1 quiet, 0 normal, 1+ verbose

    @property
    def document(self) -> bool:
        """-o json / -o yaml: the result is one document on stdout, not a table."""
        return self.output in DOCUMENT_FORMATS


class App:
    def __init__(self, options: GlobalOptions) -> None:
        self.options = options

    @cached_property
    def config(self) -> Config:
        # Imported here, not at the top: the config module (and PyYAML) is a fifth of what
        # `slots --help` would otherwise load, and --help never reads a config.
        from gx10slots.config import load_config

        config = load_config(self.options.config_path)
        if self.options.namespace:
            config = replace(config, namespace=self.options.namespace)
        return config

    @cached_property
    def kube(self) -> Kube:
        from gx10slots.kube.client import Kube, connect

        config = self.config  # a config mistake is reported before any connection attempt
        return Kube(connect(self.options.kubeconfig, self.options.context), config.namespace)
