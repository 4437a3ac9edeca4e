"""Sandbox model servers started in-process for one test, all stopped when it ends."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from gx10slots.sandbox.modelserver import ModelServer, ServerConfig

Serve = Callable[..., ModelServer]


@contextlib.contextmanager
def model_servers() -> Iterator[Serve]:
    """``start(model="sandbox/ok", **options)`` starts one (``options``: ``ServerConfig``'s; by
    default served as gx10, quiet: no access log, no log lines); each stops when the block ends."""
    with contextlib.ExitStack() as stack:

        def start(model: str = "sandbox/ok", **options: Any) -> ModelServer:
            options.setdefault("served_name", "gx10")
            options.setdefault("access_log", False)
            options.setdefault("log", lambda line: None)
            server = ModelServer(ServerConfig(model=model, **options))
            server.start()
            stack.callback(server.stop)
            return server

        yield start
