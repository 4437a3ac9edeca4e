"""Deep-liveness smoke tests for a model slot: real generations, not `/health`.

    report = run_suite(endpoint, served_name, get_profile("vllm"), SuiteSettings(), slot="green")
    write_reports(report, "reports", {"json", "md"})

Modules, one concept each: ``profiles`` (what each engine means by ready, its metrics and quirks),
``settings`` (the knobs), ``probes`` (the checks, async, each bounded by its timeout) over
``context`` (running one probe) and ``chat`` (the chat endpoint, streamed or not), ``checks`` and
``wire`` (pure judgements and the OpenAI wire format), ``_http`` (byte-budgeted reading),
``progress`` (token counters and the stall verdict), ``redact`` (keeping the API key out),
``report`` (JSON, Markdown, JUnit, files), ``suite`` (the order and the deadline), ``live`` (one
live look at a serving engine: what the guard and the controller judge production by).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gx10slots.smoke.context import ProbeContext
    from gx10slots.smoke.live import (
        Observation,
        StallState,
        observe,
        progress_verdict,
        running_requests,
    )
    from gx10slots.smoke.probes import watch_for_stall
    from gx10slots.smoke.profiles import PROFILES, EngineProfile, get_profile, readiness_state
    from gx10slots.smoke.progress import ProgressSample, StallVerdict, Verdict, stall_verdict
    from gx10slots.smoke.report import (
        FORMATS,
        Report,
        Summary,
        file_timestamp,
        latest_report,
        write_reports,
    )
    from gx10slots.smoke.result import ProbeResult
    from gx10slots.smoke.settings import PROBE_NAMES, SuiteSettings
    from gx10slots.smoke.suite import run_suite, run_suite_async

# Imported on first use: `import gx10slots.smoke.profiles` (the config reads the engine
# registry) must not load the HTTP stack with it.
_EXPORTS: dict[str, str] = {
    "EngineProfile": "gx10slots.smoke.profiles",
    "FORMATS": "gx10slots.smoke.report",
    "Observation": "gx10slots.smoke.live",
    "PROBE_NAMES": "gx10slots.smoke.settings",
    "PROFILES": "gx10slots.smoke.profiles",
    "ProbeContext": "gx10slots.smoke.context",
    "ProbeResult": "gx10slots.smoke.result",
    "ProgressSample": "gx10slots.smoke.progress",
    "Report": "gx10slots.smoke.report",
    "StallState": "gx10slots.smoke.live",
    "StallVerdict": "gx10slots.smoke.progress",
    "SuiteSettings": "gx10slots.smoke.settings",
    "Summary": "gx10slots.smoke.report",
    "Verdict": "gx10slots.smoke.progress",
    "file_timestamp": "gx10slots.smoke.report",
    "get_profile": "gx10slots.smoke.profiles",
    "latest_report": "gx10slots.smoke.report",
    "observe": "gx10slots.smoke.live",
    "progress_verdict": "gx10slots.smoke.live",
    "readiness_state": "gx10slots.smoke.profiles",
    "run_suite": "gx10slots.smoke.suite",
    "run_suite_async": "gx10slots.smoke.suite",
    "running_requests": "gx10slots.smoke.live",
    "stall_verdict": "gx10slots.smoke.progress",
    "watch_for_stall": "gx10slots.smoke.probes",
    "write_reports": "gx10slots.smoke.report",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "FORMATS",
    "PROBE_NAMES",
    "PROFILES",
    "EngineProfile",
    "Observation",
    "ProbeContext",
    "ProbeResult",
    "ProgressSample",
    "Report",
    "StallState",
    "StallVerdict",
    "SuiteSettings",
    "Summary",
    "Verdict",
    "file_timestamp",
    "get_profile",
    "latest_report",
    "observe",
    "progress_verdict",
    "readiness_state",
    "run_suite",
    "run_suite_async",
    "running_requests",
    "stall_verdict",
    "watch_for_stall",
    "write_reports",
]
