"""The last smoke report of a slot as it is kept in the cluster: a small JSON summary.

The full report (JSON, Markdown, JUnit) stays in the report directory of the machine that ran the
suite. An on-call engineer on another machine sees the summary instead, from `slots status`: it
lives in the ConfigMap ``gx10slots-smoke-<slot>`` under the key ``summary.json`` (written by
``gx10slots.ops.smokesummary``). What ``flip`` trusts is not this summary but the annotations on the
slot's Deployment (``gx10slots.slots.smoke_record``): they are bound to the revision by the same
compare-and-swap that checks it, and the guard can mark them failed. The summary is for people.

Pure functions only: :func:`build_summary` reduces a report to what a person needs (verdict, what
it gated, when, by whom, each probe's result, the candidate's and the live baseline's figures);
:func:`clean_summary` bounds and validates a summary, whoever wrote it: the same function runs
before a write and after a read, so what `status` shows is never more than what we would write.
Everything read back is hostile (anyone with write access to the namespace may have put anything
there): :func:`parse_summary` never raises on it, it says why it is unreadable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from gx10slots import scrub
from gx10slots.kube.values import parse_rfc3339, rfc3339

if TYPE_CHECKING:
    from gx10slots.smoke.report import Report

CONFIGMAP_PREFIX = "gx10slots-smoke-"
KEY = "summary.json"
SCHEMA = "gx10slots.io/smoke-summary/v1"
# What we write stays far below a ConfigMap's 1 MiB (kubernetes pkg/apis/core/validation,
# ValidateConfigMap against core.MaxSecretSize): a few KiB for a typical suite.
MAX_BYTES = 16 * 1024
# What we are willing to parse back: a little more than we ever write, so an oversized value
# (someone else's, or garbage) is refused before json.loads spends time and memory on it.
MAX_READ_BYTES = 64 * 1024
MAX_PROBES = 40
DETAIL_CHARS = 240
TEXT_CHARS = 256
PROBE_RESULTS = ("pass", "fail", "skip", "not-run")
# The figures of one slot, as the report's summary and baseline name them.
FIGURES = ("ttft_ms_p50", "ttft_ms_p95", "tokens_per_s")


def configmap_name(slot: str) -> str:
    """``gx10slots-smoke-blue``: named like the tool's other objects (gx10slots-history,
    gx10slots-lock)."""
    return CONFIGMAP_PREFIX + slot


def build_summary(
    report: Report, *, by: str, command: str, recorded: bool, report_name: str
) -> dict[str, Any]:
    """The summary of ``report``: bounded and redacted, ready to be stored.

    ``by`` is who ran it (the lease holder), ``command`` the command line (``--env`` values
    hidden), ``recorded`` whether the gate's record on the Deployment was written, and
    ``report_name`` the JSON report's file name on the machine that ran it."""
    baseline = report.baseline.to_dict() if report.baseline is not None else None
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "slot": report.slot,
        "passed": report.passed,
        "model": report.model,
        "served_name": report.served_name,
        "revision": report.revision,
        "engine": report.engine,
        "started_at": rfc3339(report.started_at),
        "at": rfc3339(report.finished_at),
        "by": by,
        "command": command,
        "recorded": recorded,
        "report": report_name,
        "probes": [
            {"name": p.name, "result": _probe_result(p.passed, p.skipped), "detail": p.detail}
            for p in report.probes
        ],
        "candidate": {**report.summary.to_dict(), "slot": report.slot, "model": report.model},
        "baseline": baseline,
    }
    return clean_summary(doc)


def _probe_result(passed: bool, skipped: bool) -> str:
    if skipped:
        return "skip" if passed else "not-run"
    return "pass" if passed else "fail"


def encode(summary: Mapping[str, Any]) -> str:
    """The stored text: compact, ASCII only (one character is one byte, the size is exact)."""
    return json.dumps(summary, separators=(",", ":"), sort_keys=False)


# -- bounding and validation (before a write and after a read) -----------------------------------


class Unreadable(ValueError):
    """A stored summary that cannot be shown; the message says why (safe to print)."""


def _text(value: Any, limit: int = TEXT_CHARS) -> str:
    if not isinstance(value, str):
        raise Unreadable("a text field is not a string")
    flat = scrub.printable(scrub.redact(" ".join(value.split())))
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _optional_text(doc: Mapping[str, Any], key: str, limit: int = TEXT_CHARS) -> str:
    value = doc.get(key)
    return "" if value is None else _text(value, limit)


def _figure(value: Any) -> float | None:
    """A measured figure; None when not measured (0, missing, null) or not a finite number."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # JSON numbers have no size limit: 400 digits are an int, no float
        return None
    if not math.isfinite(number) or number <= 0:
        return None
    return round(number, 2)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        return 0
    return min(value, 10**9)


def _time(doc: Mapping[str, Any], key: str) -> str | None:
    moment = parse_rfc3339(doc.get(key))
    return rfc3339(moment) if moment is not None else None


def _figures(doc: Any, *, candidate: bool) -> dict[str, Any] | None:
    if doc is None:
        return None
    if not isinstance(doc, Mapping):
        raise Unreadable("a slot's figures are not an object")
    out: dict[str, Any] = {
        "slot": _optional_text(doc, "slot", 64),
        "model": _optional_text(doc, "model"),
        **{key: _figure(doc.get(key)) for key in FIGURES},
    }
    if candidate:
        out["requests"] = _count(doc.get("requests"))
        out["failures"] = _count(doc.get("failures"))
    else:
        out["passed"] = doc.get("passed") is True
        caps = doc.get("capabilities")
        caps = caps if isinstance(caps, Mapping) else {}
        out["capabilities"] = {
            "tool_calls": caps.get("tool_calls") is True,
            "stream_usage": caps.get("stream_usage") is True,
            "structured_output": caps.get("structured_output") is True,
        }
        out["detail"] = _optional_text(doc, "detail", DETAIL_CHARS)
    return out


def _probes(raw: Any) -> tuple[list[dict[str, str]], int]:
    """The probes (at most MAX_PROBES) and how many were left out."""
    if not isinstance(raw, list):
        raise Unreadable("`probes` is not a list")
    probes = []
    for item in raw[:MAX_PROBES]:
        if not isinstance(item, Mapping):
            raise Unreadable("a probe is not an object")
        result = item.get("result")
        if result not in PROBE_RESULTS:
            raise Unreadable("a probe's result is not one of " + ", ".join(PROBE_RESULTS))
        probes.append(
            {
                "name": _text(item.get("name"), 64),
                "result": str(result),
                "detail": _optional_text(item, "detail", DETAIL_CHARS),
            }
        )
    return probes, max(0, len(raw) - MAX_PROBES)


def clean_summary(doc: Any) -> dict[str, Any]:
    """``doc`` as a summary we would write ourselves: every field type-checked, every text
    redacted, printable and cut, at most MAX_PROBES probes and MAX_BYTES of JSON (details go
    first, then probes from the end). Raises :class:`Unreadable` saying what is wrong."""
    if not isinstance(doc, Mapping):
        raise Unreadable("not a JSON object")
    if doc.get("schema") != SCHEMA:
        raise Unreadable(f"not a gx10slots smoke summary (schema is not {SCHEMA})")
    passed = doc.get("passed")
    if not isinstance(passed, bool):
        raise Unreadable("`passed` is not a boolean")
    at = _time(doc, "at")
    if at is None:
        raise Unreadable("`at` is not an RFC 3339 time")
    probes, omitted = _probes(doc.get("probes"))
    omitted += _count(doc.get("probes_omitted"))
    clean: dict[str, Any] = {
        "schema": SCHEMA,
        "slot": _text(doc.get("slot"), 64),
        "passed": passed,
        "model": _optional_text(doc, "model"),
        "served_name": _optional_text(doc, "served_name"),
        "revision": _optional_text(doc, "revision", 64),
        "engine": _optional_text(doc, "engine", 64),
        "started_at": _time(doc, "started_at"),
        "at": at,
        "by": _optional_text(doc, "by"),
        "command": _optional_text(doc, "command"),
        "recorded": doc.get("recorded") is True,
        "report": _optional_text(doc, "report"),
        "probes": probes,
        "probes_omitted": omitted,
        "candidate": _figures(doc.get("candidate") or {}, candidate=True),
        "baseline": _figures(doc.get("baseline"), candidate=False),
    }
    return _fit(clean)


def _fit(doc: dict[str, Any]) -> dict[str, Any]:
    """At most MAX_BYTES encoded: probe details are dropped first (names and results stay), then
    probes from the end (counted in ``probes_omitted``)."""
    if len(encode(doc)) <= MAX_BYTES:
        return doc
    for probe in doc["probes"]:
        probe["detail"] = ""
    while doc["probes"] and len(encode(doc)) > MAX_BYTES:
        doc["probes"].pop()
        doc["probes_omitted"] += 1
    return doc


def parse_summary(text: Any, slot: str) -> dict[str, Any]:
    """The summary stored for ``slot``, cleaned; :class:`Unreadable` saying why it cannot be
    shown (not text, oversized, not JSON, not ours, another slot's)."""
    if not isinstance(text, str):
        raise Unreadable(f"key {KEY} holds no text")
    if len(text) > MAX_READ_BYTES:
        raise Unreadable(f"key {KEY} is oversized ({len(text)} characters)")
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        raise Unreadable(f"key {KEY} is not valid JSON") from None
    summary = clean_summary(doc)
    if summary["slot"] != slot:
        raise Unreadable(f"it holds a summary of slot {summary['slot']!r}, not {slot}")
    return summary


@dataclass(frozen=True)
class LastSmoke:
    """What `status` shows of a slot's last smoke report: the summary, or why there is none to
    show (``error``). ``None`` stands for "no ConfigMap"."""

    summary: dict[str, Any] | None = None
    error: str | None = None

    def view(self, current_revision: str | None, now: datetime) -> dict[str, Any]:
        """The document `status -o json` gives: the summary plus ``age_s`` and ``stale`` (the
        slot's revision moved since the suite ran); or ``readable: false`` and the reason."""
        if self.summary is None:
            return {"readable": False, "error": self.error or "unreadable"}
        at = parse_rfc3339(self.summary["at"])
        age = None if at is None else round((now - at).total_seconds(), 1)
        revision = self.summary.get("revision") or None
        return {
            "readable": True,
            **self.summary,
            "age_s": age,
            "stale": current_revision is not None and revision != current_revision,
        }


def last_smoke_of(configmap: Mapping[str, Any] | None, slot: str) -> LastSmoke | None:
    """The ConfigMap as read (hostile) reduced to a :class:`LastSmoke`; None when it is absent."""
    if configmap is None:
        return None
    data = configmap.get("data")
    if not isinstance(data, Mapping):
        return LastSmoke(error="the ConfigMap has no data")
    if KEY not in data:
        return LastSmoke(error=f"the ConfigMap has no key {KEY}")
    try:
        return LastSmoke(summary=parse_summary(data[KEY], slot))
    except Unreadable as exc:
        return LastSmoke(error=str(exc))
