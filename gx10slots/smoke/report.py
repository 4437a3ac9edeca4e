"""One smoke report, rendered three ways: JSON (the record), Markdown (a PR comment), JUnit (CI).

The JSON shape is the contract's (``docs/report-schema.json`` describes it); the other two are
views of the same dataclass, so they cannot disagree.
"""

from __future__ import annotations

import json
import logging
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gx10slots.errors import UsageError
from gx10slots.fileio import NotReadable, atomic_write, read_bounded
from gx10slots.smoke.result import ProbeResult

logger = logging.getLogger(__name__)

SCHEMA_VERSION = 1
FORMATS = ("json", "md", "junit")
_SUFFIX = {"json": ".json", "md": ".md", "junit": ".xml"}
MARKDOWN_EVIDENCE_CHARS = 200

# Characters XML 1.0 cannot carry at all (escaping does not help): C0 controls but tab, LF, CR;
# lone surrogates; U+FFFE/U+FFFF.
_XML_INVALID = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~#])")
_SLOT_SAFE = re.compile(r"[^A-Za-z0-9._-]+")


def rfc3339(moment: datetime) -> str:
    """``2026-11-27T08:15:00.123Z``: UTC, milliseconds, a ``Z``."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def file_timestamp(moment: datetime) -> str:
    """``20261127T081500Z``: sorts as text, safe in file names."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


@dataclass(frozen=True)
class Summary:
    ttft_ms_p50: float = 0.0
    ttft_ms_p95: float = 0.0
    tokens_per_s: float = 0.0
    requests: int = 0
    failures: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "ttft_ms_p50": round(self.ttft_ms_p50, 1),
            "ttft_ms_p95": round(self.ttft_ms_p95, 1),
            "tokens_per_s": round(self.tokens_per_s, 2),
            "requests": self.requests,
            "failures": self.failures,
        }


@dataclass(frozen=True)
class Baseline:
    """Production's active slot as measured in the same run (the reference the candidate is
    judged against): its figures (None: not measured) and what it can do (capability parity)."""

    slot: str
    model: str
    passed: bool
    ttft_ms_p50: float | None = None
    ttft_ms_p95: float | None = None
    tokens_per_s: float | None = None
    tool_calls: bool = False
    stream_usage: bool = False
    # Returned JSON matching the structured-output probe's schema.
    structured_output: bool = False
    # What failed in the reference run ("" when it passed).
    detail: str = ""

    @classmethod
    def of(cls, report: Report) -> Baseline:
        """The reference run's report reduced to what the candidate is judged against."""
        probes = {p.name: p for p in report.probes}
        tool = probes.get("tool-call")
        streaming = probes.get("streaming")
        structured = probes.get("structured-output")
        s = report.summary
        failed = [p for p in report.probes if not p.passed]
        return cls(
            slot=report.slot,
            model=report.model,
            passed=report.passed,
            ttft_ms_p50=s.ttft_ms_p50 if s.ttft_ms_p50 > 0 else None,
            ttft_ms_p95=s.ttft_ms_p95 if s.ttft_ms_p95 > 0 else None,
            tokens_per_s=s.tokens_per_s if s.tokens_per_s > 0 else None,
            tool_calls=tool is not None and tool.passed and not tool.skipped,
            # A usage chunk counted the streamed tokens (the probe records completion_tokens).
            stream_usage=streaming is not None
            and streaming.passed
            and "completion_tokens" in streaming.metrics,
            structured_output=structured is not None
            and structured.passed
            and not structured.skipped,
            detail="; ".join(f"{p.name}: {p.detail}" for p in failed)[:1000],
        )

    def to_dict(self) -> dict[str, Any]:
        def rounded(value: float | None, digits: int) -> float | None:
            return None if value is None else round(value, digits)

        return {
            "slot": self.slot,
            "model": self.model,
            "passed": self.passed,
            "detail": self.detail,
            "ttft_ms_p50": rounded(self.ttft_ms_p50, 1),
            "ttft_ms_p95": rounded(self.ttft_ms_p95, 1),
            "tokens_per_s": rounded(self.tokens_per_s, 2),
            "capabilities": {
                "tool_calls": self.tool_calls,
                "stream_usage": self.stream_usage,
                "structured_output": self.structured_output,
            },
        }

    @classmethod
    def from_dict(cls, doc: Any) -> Baseline:
        if not isinstance(doc, Mapping):
            raise ValueError("`baseline` is not an object")
        caps = doc.get("capabilities") or {}
        if not isinstance(caps, Mapping):
            raise ValueError("`baseline.capabilities` is not an object")
        passed = doc.get("passed")
        if not isinstance(passed, bool):
            raise ValueError("`baseline.passed` is not a boolean")
        return cls(
            slot=_text(doc, "slot"),
            model=_text(doc, "model"),
            passed=passed,
            detail=_text(doc, "detail", required=False),
            ttft_ms_p50=_optional_number(doc, "ttft_ms_p50"),
            ttft_ms_p95=_optional_number(doc, "ttft_ms_p95"),
            tokens_per_s=_optional_number(doc, "tokens_per_s"),
            tool_calls=caps.get("tool_calls") is True,
            stream_usage=caps.get("stream_usage") is True,
            structured_output=caps.get("structured_output") is True,
        )


@dataclass(frozen=True)
class Report:
    slot: str
    model: str
    revision: str
    endpoint: str
    engine: str
    started_at: datetime
    finished_at: datetime
    passed: bool
    probes: tuple[ProbeResult, ...]
    summary: Summary = field(default_factory=Summary)
    served_name: str = ""
    # Production's active slot measured in the same run; None when there was none to measure.
    baseline: Baseline | None = None

    # --- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "slot": self.slot,
            "model": self.model,
            "served_name": self.served_name,
            "revision": self.revision,
            "endpoint": self.endpoint,
            "engine": self.engine,
            "started_at": rfc3339(self.started_at),
            "finished_at": rfc3339(self.finished_at),
            "passed": self.passed,
            "probes": [p.to_dict() for p in self.probes],
            "summary": self.summary.to_dict(),
            "baseline": self.baseline.to_dict() if self.baseline is not None else None,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str | bytes) -> Report:
        """Read a report back; :class:`UsageError` saying why when it is not one."""
        try:
            doc = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise UsageError(f"not a smoke report: invalid JSON ({exc})") from None
        return cls.from_dict(doc)

    @classmethod
    def from_dict(cls, doc: Any) -> Report:
        try:
            if not isinstance(doc, Mapping):
                raise ValueError("the document is not a JSON object")
            raw_summary = doc.get("summary") or {}
            if not isinstance(raw_summary, Mapping):
                raise ValueError("`summary` is not an object")
            raw_probes = doc.get("probes")
            if not isinstance(raw_probes, list):
                raise ValueError("`probes` is not a list")
            passed = doc.get("passed")
            if not isinstance(passed, bool):
                raise ValueError("`passed` is not a boolean")
            raw_baseline = doc.get("baseline")
            return cls(
                baseline=Baseline.from_dict(raw_baseline) if raw_baseline is not None else None,
                slot=_text(doc, "slot"),
                model=_text(doc, "model"),
                served_name=_text(doc, "served_name", required=False),
                revision=_text(doc, "revision", required=False),
                endpoint=_text(doc, "endpoint", required=False),
                engine=_text(doc, "engine"),
                started_at=_moment(doc, "started_at"),
                finished_at=_moment(doc, "finished_at"),
                passed=passed,
                probes=tuple(ProbeResult.from_dict(_as_map(p)) for p in raw_probes),
                summary=Summary(
                    ttft_ms_p50=_number(raw_summary, "ttft_ms_p50"),
                    # Older reports may lack p95; p50 is the closest stand-in.
                    ttft_ms_p95=_number(
                        raw_summary, "ttft_ms_p95", _number(raw_summary, "ttft_ms_p50")
                    ),
                    tokens_per_s=_number(raw_summary, "tokens_per_s"),
                    requests=int(_number(raw_summary, "requests")),
                    failures=int(_number(raw_summary, "failures")),
                ),
            )
        except ValueError as exc:
            raise UsageError(f"not a smoke report: {exc}") from None
        except OverflowError:  # JSON numbers have no size limit: 400 digits fit no float
            raise UsageError("not a smoke report: a number too large for a float") from None

    # --- Markdown -----------------------------------------------------------------------------

    def to_markdown(self) -> str:
        failed = [p for p in self.probes if not p.passed]
        who = f"{md_cell(self.slot or '?')} · {md_cell(self.model)}"
        if self.passed:
            header = f"## ✅ Smoke passed: {who}"
        else:
            header = f"## ❌ Smoke failed: {who} ({len(failed)} of {len(self.probes)} probes)"
        elapsed = (self.finished_at - self.started_at).total_seconds()
        s = self.summary
        lines = [
            header,
            "",
            f"Engine {md_cell(self.engine)} at {md_cell(self.endpoint)}, revision "
            f"{md_cell(self.revision or 'unknown')}; {rfc3339(self.started_at)}, {elapsed:.1f} s.",
            f"TTFT p50 {_ms(_measured(s.ttft_ms_p50))}, p95 {_ms(_measured(s.ttft_ms_p95))}; "
            f"{_per_s(_measured(s.tokens_per_s), named=True)}; {s.requests} requests; "
            f"{s.failures} failures.",
            "",
            "| Probe | Result | Time | Detail | Evidence |",
            "|---|---|---:|---|---|",
        ]
        for p in self.probes:
            lines.append(
                f"| {md_cell(p.name)} | {_verdict(p)} | {p.duration_ms:.0f} ms | "
                f"{md_cell(p.detail)} | {md_cell(p.evidence, MARKDOWN_EVIDENCE_CHARS)} |"
            )
        if self.baseline is not None:
            lines += ["", *self._markdown_baseline(self.baseline)]
        return "\n".join(lines) + "\n"

    def _markdown_baseline(self, base: Baseline) -> list[str]:
        s = self.summary
        mine = (_measured(s.ttft_ms_p50), _measured(s.ttft_ms_p95), _measured(s.tokens_per_s))
        probes = {p.name: p for p in self.probes}
        tool = probes.get("tool-call")
        streaming = probes.get("streaming")
        my_tools = tool is not None and tool.passed and not tool.skipped
        my_usage = (
            streaming is not None and streaming.passed and "completion_tokens" in streaming.metrics
        )
        structured = probes.get("structured-output")
        my_json = structured is not None and structured.passed and not structured.skipped
        me = f"{md_cell(self.slot or '?')} (candidate) · {md_cell(self.model)}"
        them = f"{md_cell(base.slot or '?')} (active) · {md_cell(base.model)}"
        lines = [
            "### Against production's active slot, measured in the same run",
            "",
            f"| | {me} | {them} |",
            "|---|---:|---:|",
            f"| TTFT p50 | {_ms(mine[0])} | {_ms(base.ttft_ms_p50)} |",
            f"| TTFT p95 | {_ms(mine[1])} | {_ms(base.ttft_ms_p95)} |",
            f"| tokens/s (burst) | {_per_s(mine[2])} | {_per_s(base.tokens_per_s)} |",
            f"| tool calls | {_yes(my_tools)} | {_yes(base.tool_calls)} |",
            f"| streaming with usage | {_yes(my_usage)} | {_yes(base.stream_usage)} |",
            f"| structured output (JSON schema) | {_yes(my_json)} | "
            f"{_yes(base.structured_output)} |",
        ]
        if not base.passed:
            lines += ["", f"The active slot's own run failed: {md_cell(base.detail, 300)}"]
        labels = (f"{_chart_label(base.slot)} (active)", f"{_chart_label(self.slot)} (candidate)")
        for title, unit, values in (
            ("TTFT p95 (ms), lower is better", "ms", (base.ttft_ms_p95, mine[1])),
            ("tokens/s in the burst, higher is better", "tokens/s", (base.tokens_per_s, mine[2])),
        ):
            # GitHub renders Mermaid's xychart-beta; a value not measured is drawn as 0 and its
            # label says so.
            shown = [
                label if value is not None else f"{label} {NOT_MEASURED}"
                for label, value in zip(labels, values, strict=True)
            ]
            lines += [
                "",
                "```mermaid",
                "xychart-beta",
                f'    title "{title}"',
                "    x-axis [" + ", ".join(f'"{x}"' for x in shown) + "]",
                f'    y-axis "{unit}"',
                "    bar [" + ", ".join(f"{(v or 0.0):.1f}" for v in values) + "]",
                "```",
            ]
        return lines

    # --- JUnit --------------------------------------------------------------------------------

    def to_junit(self) -> str:
        # A probe that could not run (engine not ready) failed the suite: CI must show it red.
        failures = sum(1 for p in self.probes if not p.passed)
        skipped = sum(1 for p in self.probes if p.skipped and p.passed)
        suite = ET.Element(
            "testsuite",
            {
                "name": xml_text(f"gx10slots smoke {self.slot}".strip()),
                "tests": str(len(self.probes)),
                "failures": str(failures),
                "errors": "0",
                "skipped": str(skipped),
                "time": f"{(self.finished_at - self.started_at).total_seconds():.3f}",
                "timestamp": rfc3339(self.started_at),
            },
        )
        props = ET.SubElement(suite, "properties")
        for key in ("slot", "model", "served_name", "revision", "endpoint", "engine"):
            ET.SubElement(props, "property", {"name": key, "value": xml_text(getattr(self, key))})
        classname = xml_text(f"smoke.{self.slot or 'slot'}.{self.engine}")
        for p in self.probes:
            case = ET.SubElement(
                suite,
                "testcase",
                {
                    "classname": classname,
                    "name": xml_text(p.name),
                    "time": f"{p.duration_ms / 1000.0:.3f}",
                },
            )
            if p.skipped and p.passed:
                ET.SubElement(case, "skipped", {"message": xml_text(p.detail)})
            elif not p.passed:
                kind = "SmokeProbeNotRun" if p.skipped else "SmokeProbeFailed"
                failure = ET.SubElement(
                    case, "failure", {"message": xml_text(p.detail), "type": kind}
                )
                failure.text = xml_text(p.evidence or p.detail)
            else:
                out = ET.SubElement(case, "system-out")
                out.text = xml_text(p.detail)
        ET.indent(suite)
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\n'
            + ET.tostring(suite, encoding="unicode")
            + "\n"
        )


def _measured(value: float) -> float | None:
    """A summary figure, None when nothing was measured (the summary holds 0 then)."""
    return value if value > 0 else None


# What a figure nothing measured reads, never 0.
NOT_MEASURED = "n/a"


def _ms(value: float | None) -> str:
    return NOT_MEASURED if value is None else f"{value:.0f} ms"


def _per_s(value: float | None, *, named: bool = False) -> str:
    """``41.2 tokens/s``; ``n/a`` (``tokens/s n/a`` where nothing else names the figure)."""
    if value is None:
        return f"tokens/s {NOT_MEASURED}" if named else NOT_MEASURED
    return f"{value:.1f} tokens/s"


def _yes(value: bool) -> str:
    return "yes" if value else "no"


def _chart_label(slot: str) -> str:
    # Inside a quoted Mermaid string: nothing that could end the string or the statement.
    return _SLOT_SAFE.sub("-", slot).strip("-")[:40] or "slot"


def _optional_number(doc: Mapping[str, Any], key: str) -> float | None:
    value = doc.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"`baseline.{key}` is not a number")
    return float(value)


def _as_map(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValueError("a probe is not an object")
    return value


def _text(doc: Mapping[str, Any], key: str, *, required: bool = True) -> str:
    value = doc.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ValueError(f"`{key}` is not a string")
    return value


def _number(doc: Mapping[str, Any], key: str, default: float = 0.0) -> float:
    value = doc.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"`summary.{key}` is not a number")
    return float(value)


def _moment(doc: Mapping[str, Any], key: str) -> datetime:
    value = _text(doc, key)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"`{key}` is not an RFC 3339 time: {value!r:.40}") from None
    if moment.tzinfo is None:
        raise ValueError(f"`{key}` has no time zone")
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # a valid time beyond the calendar's edge in UTC
        raise ValueError(f"`{key}` is out of range: {value!r:.40}") from None


def _verdict(p: ProbeResult) -> str:
    if p.skipped:
        return "⏭ skipped" if p.passed else "⛔ not run"
    return "✅ pass" if p.passed else "❌ fail"


def md_cell(text: str, limit: int | None = None) -> str:
    """Text made safe for one Markdown table cell (GitHub flavour), optionally cut to ``limit``.

    One line, no control characters, HTML metacharacters as entities (so ``<tool_call>`` shows
    rather than vanishing as a tag) and Markdown metacharacters escaped (so ``|`` cannot end the
    cell).
    """
    flat = " ".join(_CONTROL.sub(" ", text).split())
    if limit is not None and len(flat) > limit:
        flat = flat[: limit - 1] + "…"
    flat = flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", flat)


def xml_text(text: str) -> str:
    """Text XML 1.0 can carry (ElementTree escapes ``<&>`` but passes control bytes through)."""
    return _XML_INVALID.sub("", text)


# --- files ------------------------------------------------------------------------------------


def report_stem(report: Report) -> str:
    slot = _SLOT_SAFE.sub("-", report.slot).strip("-") or "slot"
    return f"{file_timestamp(report.started_at)}-{slot}"


def write_reports(
    report: Report, directory: str | os.PathLike[str], formats: Iterable[str] = FORMATS
) -> list[Path]:
    """Write ``<UTC timestamp>-<slot>.json|.md|.xml`` atomically; the paths, in ``FORMATS`` order.

    Each file appears whole or not at all (written to a temporary file in the same directory,
    then renamed), so a reader never sees half a report.
    """
    wanted = set(formats)
    unknown = wanted - set(FORMATS)
    if unknown:
        raise UsageError(
            f"unknown report format {', '.join(sorted(unknown))}; expected some of "
            f"{', '.join(FORMATS)}"
        )
    target = Path(directory)
    renderers = {"json": report.to_json, "md": report.to_markdown, "junit": report.to_junit}
    paths = []
    try:
        target.mkdir(parents=True, exist_ok=True)
        for fmt in FORMATS:
            if fmt in wanted:
                path = target / (report_stem(report) + _SUFFIX[fmt])
                atomic_write(path, renderers[fmt]())
                paths.append(path)
    except OSError as exc:
        raise UsageError(
            f"cannot write the smoke report to {target}: {exc.strerror or exc}",
            hint="choose a writable directory with --report-dir",
        ) from exc
    return paths


# A report is tens of KB; anything much bigger under a report's name is not one of ours.
MAX_REPORT_BYTES = 16 * 1024 * 1024


def latest_report(
    directory: str | os.PathLike[str], slot: str, *, passed_only: bool = True
) -> Report | None:
    """The newest readable JSON report of ``slot`` in ``directory`` (a baseline), or None.

    Unreadable files are skipped with a warning: a corrupt old report must not block a new smoke.
    """
    folder = Path(directory)
    if not folder.is_dir():
        return None
    safe = _SLOT_SAFE.sub("-", slot).strip("-") or "slot"
    name = re.compile(rf"\d{{8}}T\d{{6}}Z-{re.escape(safe)}\.json")
    candidates = [p for p in folder.glob(f"*-{safe}.json") if name.fullmatch(p.name)]
    for path in sorted(candidates, reverse=True):
        try:
            # Bounded, and only a regular file: a FIFO named like a report must not hang us.
            report = Report.from_json(read_bounded(path, MAX_REPORT_BYTES))
        except (OSError, UsageError, NotReadable) as exc:
            logger.warning("skipping %s as a baseline: %s", path, exc)
            continue
        if report.passed or not passed_only:
            return report
    return None
