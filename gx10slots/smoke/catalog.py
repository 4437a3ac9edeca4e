"""The one list of smoke probes: their names, the running order and what each needs.

Adding a probe: a line here and its function in ``probes.py`` registered under the same name
(``@registered("name")``); the settings' validation, the suite's order, its "wedged, do not wait"
gating and the per-probe timeouts all read this list (a test checks every entry has a function).
Pure data, no I/O: the configuration reads it without loading the HTTP stack.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    # Waits on a generation: once one of these timed out (a wedge), the rest would only time out.
    generating: bool = False
    # Its own default timeout (None: the suite's probe_timeout_s). Readiness waits for a model to
    # load; identity reads config and must be quick.
    timeout_s: float | None = None


CATALOG: tuple[ProbeSpec, ...] = (
    ProbeSpec("readiness", timeout_s=120.0),
    ProbeSpec("identity", timeout_s=10.0),
    ProbeSpec("known-answer", generating=True),
    ProbeSpec("streaming", generating=True),
    ProbeSpec("tool-call", generating=True),
    # A JSON schema in response_format: the answer must be JSON matching it.
    ProbeSpec("structured-output", generating=True),
    # The team's golden prompts (smoke.prompts): one result `prompt:<name>` per prompt.
    ProbeSpec("prompts", generating=True),
    ProbeSpec("burst", generating=True),
    ProbeSpec("progress"),
    # Last of the requests: an engine that unloads idle models (Ollama) is asked to keep this one
    # loaded, and every request before it reset its keep-alive to the server's default.
    ProbeSpec("keep-alive", generating=True, timeout_s=120.0),
    # Judged by the suite from what the others measured and the active slot's figures.
    ProbeSpec("baseline"),
)

PROBE_NAMES: tuple[str, ...] = tuple(spec.name for spec in CATALOG)
GENERATING: frozenset[str] = frozenset(spec.name for spec in CATALOG if spec.generating)
# Probes the suite judges itself rather than through a registered probe function.
JUDGED_BY_SUITE: frozenset[str] = frozenset({"baseline", "prompts"})
# A golden prompt's result is named `prompt:<its name>`.
PROMPT_PREFIX = "prompt:"
