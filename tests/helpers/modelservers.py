"""Sandbox model servers started in-process for one test, all stopped when it ends."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

from gx10slots.sandbox.modelserver import ModelServer, ServerConfig
from gx10slots.smoke.report import Report
from gx10slots.smoke.result import ProbeResult
from gx10slots.smoke.settings import SuiteSettings

# The suite's defaults against a real server, except what would make a failing case slow: a
# wedge must fail in about a second.
QUICK_SUITE = SuiteSettings(
    tool_call=True,
    probe_timeout_s=5.0,
    timeouts={"readiness": 10.0, "identity": 5.0},
    readiness_poll_s=0.05,
    stall_window_s=1.0,
    stall_interval_s=0.1,
    deadline_s=60.0,
)

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


def results(report: Report) -> dict[str, ProbeResult]:
    return {p.name: p for p in report.probes}


def failures(report: Report) -> list[tuple[str, str]]:
    return [(p.name, p.detail) for p in report.probes if not p.passed]
