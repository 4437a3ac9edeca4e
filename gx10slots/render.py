"""Renderings of command results: a human summary or table, or the result's document.

The operations return frozen result dataclasses (``flip.result.FlipResult``, ...). For -o table
and -o wide, the functions below turn one into text; for -o json and -o yaml, :func:`emit` prints
its ``to_dict()``, the contract's document (keys and their order pinned by tests).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from gx10slots.deploy.result import DeployResult
    from gx10slots.flip.result import FlipResult
    from gx10slots.guard.result import GuardResult
    from gx10slots.ops.park import ParkResult
    from gx10slots.ops.smoke import SmokeOutcome
    from gx10slots.ops.status import StatusResult


@runtime_checkable
class Result(Protocol):
    """An operation's result: rendered by the functions here, its document by ``to_dict``."""

    def to_dict(self) -> dict[str, Any]: ...


def plain(document: Any) -> Any:
    """``document`` with every result in it replaced by its ``to_dict()`` document."""
    if isinstance(document, Result):
        return plain(document.to_dict())
    if isinstance(document, dict):
        return {key: plain(value) for key, value in document.items()}
    if isinstance(document, list | tuple):
        return [plain(value) for value in document]
    return document


def emit_json(document: Any) -> None:
    """The one JSON document on stdout, every string redacted (ASCII-escaped, so no control
    character reaches a terminal either)."""
    sys.stdout.write(format_document(document, "json"))
    sys.stdout.flush()


def format_document(document: Any, output: str) -> str:
    """``document`` as -o json or -o yaml prints it, every string redacted. Both escape every
    non-ASCII and control character (JSON's ensure_ascii; YAML's allow_unicode=False writes them
    as double-quoted escapes), so foreign text never reaches a terminal raw."""
    from gx10slots.scrub import finite_numbers, redact_doc

    clean = finite_numbers(redact_doc(plain(document)))
    if output == "yaml":
        import yaml

        return str(yaml.safe_dump(clean, sort_keys=False, allow_unicode=False, width=100))
    return json.dumps(clean, indent=2, sort_keys=False) + "\n"


def emit(document: Any, output: str) -> None:
    """The one document on stdout in the chosen format (json or yaml)."""
    sys.stdout.write(format_document(document, output))
    sys.stdout.flush()


def format_table(
    columns: Sequence[tuple[str, bool]], rows: Sequence[Sequence[str]], *, wide: bool
) -> str:
    """A kubectl-style table: left-aligned columns two spaces apart, values never cut (a long
    value widens its column; a terminal wraps the line rather than lose the value). Each column
    is ``(header, in_default)``: without ``wide`` only the default ones, as `kubectl get` keeps
    its -o wide columns for -o wide."""
    shown = [i for i, (_, default) in enumerate(columns) if wide or default]
    table = [[columns[i][0] for i in shown], *([row[i] for i in shown] for row in rows)]
    widths = [max(len(line[n]) for line in table) for n in range(len(shown))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip()
        for line in table
    )


def _cell(value: Any) -> str:
    """A table cell. Values come from the cluster, where anyone with write access may have put
    them: control characters are shown escaped, never sent to the terminal."""
    if value is None or value == "":
        return "-"
    from gx10slots.scrub import safe

    return safe(value)


def _ago(seconds: float | None) -> str:
    """``5m ago``; a time further ahead of our clock than skew explains is said to be in the
    future (anyone with write access may date a record years ahead), never a negative age."""
    from gx10slots.slots import FUTURE_SMOKE_TOLERANCE_S

    if seconds is not None and seconds < -FUTURE_SMOKE_TOLERANCE_S:
        return "dated in the future"
    return _age(None if seconds is None else max(seconds, 0.0)) + " ago"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


# (header, shown without -o wide): the rest only with -o wide. The default set fits 80 columns
# with model names up to about 25 characters; longer ones widen it (never cut).
STATUS_COLUMNS = (
    ("SLOT", True),
    ("ROLE", True),
    ("MODEL", True),
    ("SERVED NAME", False),
    ("IMAGE", False),
    ("READY", True),
    ("MEMORY", False),
    ("REVISION", True),
    ("SMOKE", True),
    ("SMOKE REVISION", False),
    ("SMOKE BY", False),
    ("PROTECTED", False),
)


def status_text(result: StatusResult | dict[str, Any], *, wide: bool = False) -> str:
    """`slots status` as a table and the lines under it (pure: the watch redraws from it),
    drawn from the result's document: what the table shows is what -o json shows."""
    doc = plain(result)
    rows = []
    for name, slot in doc["slots"].items():
        last = slot.get("last_smoke") or {}
        readable = last if last.get("readable") else {}
        memory = slot.get("memory_gib")
        rows.append(
            (
                _cell(name),
                slot["role"] if slot.get("exists", True) else "missing",
                _cell(slot.get("model")),
                _cell(slot.get("served_name")),
                _cell(slot.get("image")),
                f"{slot.get('ready', 0)}/{slot.get('replicas', 0)}",
                "-" if memory is None else f"{memory:g} GiB",
                _cell(slot.get("revision")),
                smoke_cell(slot),
                _cell(readable.get("revision") or (slot.get("smoke") or {}).get("revision")),
                _cell(readable.get("by")),
                _protected(slot),
            )
        )
    lines = [format_table(STATUS_COLUMNS, rows, wide=wide), ""]
    if wide:
        lines += [
            last_smoke_line(name, slot)
            for name, slot in doc["slots"].items()
            if (slot.get("last_smoke") or {}).get("readable")
        ]
    flag = doc["flag"]
    lines.append(
        f"flag: {flag['kind']} {doc['namespace']}/{flag['name']}"
        + (f" [{flag['key']}]" if flag.get("key") else "")
        + " = "
        f"{_cell(flag.get('value'))}   previous: {_cell(doc.get('previous'))}"
    )
    if flag.get("changed_at"):
        lines.append(f"changed {_cell(flag['changed_at'])} by {_cell(flag.get('changed_by'))}")
    if flag.get("endpoint"):
        lines.append(f"production endpoint: {_cell(flag['endpoint'])}")
    lines.append(fallback_line(doc.get("fallback")))
    lines.append(lock_line(doc.get("lock")))
    lines += [f"warning: {_cell(warning)}" for warning in doc.get("warnings", [])]
    return "\n".join(lines)


def smoke_cell(slot: dict[str, Any]) -> str:
    """The SMOKE column: what `flip` trusts (the record on the Deployment for the slot's current
    revision) first; else the last report kept in the cluster, marked ``stale`` when the slot's
    revision moved since it ran (flip will not accept it) or ``unrecorded`` when its record
    never reached the Deployment (flip will not accept it either)."""
    if not slot.get("exists", True):
        return "-"
    gate = slot.get("smoke")
    if gate is not None:
        verdict = "passed" if gate["passed"] else "FAILED"
        return f"{verdict} {_ago(gate.get('age_s'))}"
    last = slot.get("last_smoke")
    if not last:
        return "none"  # for this revision: a smoke of an earlier one does not count
    if not last.get("readable"):
        return "unreadable"
    # Short enough for the 80-column table: its age and revision are in -o wide and the JSON.
    verdict = "passed" if last.get("passed") else "FAILED"
    return f"{'stale' if last.get('stale') else 'unrecorded'}: {verdict}"


def _figures_text(figures: dict[str, Any] | None) -> str:
    if not figures:
        return "not measured"
    p50 = figures.get("ttft_ms_p50")
    rate = figures.get("tokens_per_s")
    return (
        f"TTFT p50 {'n/a' if p50 is None else f'{p50:.0f} ms'}, "
        f"{'n/a' if rate is None else f'{rate:.1f}'} tokens/s"
    )


def last_smoke_line(slot: str, doc: dict[str, Any]) -> str:
    """One line per slot (-o wide): the last smoke report kept in the cluster, whoever ran it,
    and the gate's record when it says otherwise (a guard marked the slot failed since)."""
    last = doc["last_smoke"]
    verdict = "passed" if last.get("passed") else "FAILED"
    stale = " (stale: the slot's revision moved since)" if last.get("stale") else ""
    failed = [p["name"] for p in last.get("probes", []) if p.get("result") in ("fail", "not-run")]
    parts = [
        f"last smoke of {_cell(slot)}: {verdict} {_ago(last.get('age_s'))} "
        f"({_cell(last.get('at'))}) by "
        f"{_cell(last.get('by'))}, model {_cell(last.get('model'))}, revision "
        f"{_cell(last.get('revision'))}{stale}",
        f"failed: {_cell(', '.join(failed))}" if failed else "",
        f"{_cell(slot)} {_figures_text(last.get('candidate'))}",
    ]
    baseline = last.get("baseline")
    if baseline:
        parts.append(f"active {_cell(baseline.get('slot'))} {_figures_text(baseline)}")
    if last.get("report"):
        parts.append(f"report {_cell(last['report'])}")
    gate = doc.get("smoke")
    if gate is not None and not last.get("stale") and gate.get("passed") != last.get("passed"):
        gate_verdict = "passed" if gate.get("passed") else "FAILED"
        parts.append(
            f"but the record flip reads says {gate_verdict} since ({_cell(gate.get('report'))})"
        )
    return "; ".join(p for p in parts if p)


def fallback_line(fallback: dict[str, Any] | None) -> str:
    """Production's fallback (the slot `flip-back` returns to) and whether it is protected."""
    if not fallback or not fallback.get("slot"):
        return "fallback: none (no previous slot to flip back to)"
    slot = _cell(fallback["slot"])
    if not fallback.get("protected"):
        return f"fallback: {slot}, not protected (deploy and park may replace it)"
    until = f"until {_cell(fallback['until'])}" if fallback.get("until") else "with no known end"
    return (
        f"fallback: {slot}, protected {until} ("
        + _cell("; ".join(fallback.get("reasons") or []))
        + "): deploy into it and park of it need --replace-fallback"
    )


def _protected(slot: dict[str, Any]) -> str:
    if slot.get("protected_until"):
        return "until " + _cell(slot["protected_until"])
    return "yes (no known end)" if slot.get("protected") else "-"


def lock_line(lock: dict[str, Any] | None) -> str:
    """The lease gx10slots-lock in one line: free, or who holds it doing what since when."""
    if not lock:
        return "lock: free"
    doing = f" running `{_cell(lock.get('command'))}`" if lock.get("command") else ""
    state = "EXPIRED at" if lock.get("expired") else "expires"
    return (
        f"lock: held by {_cell(lock.get('holder'))}{doing} since {_cell(lock.get('since'))}, "
        f"{state} {_cell(lock.get('expires'))}"
    )


def flip_summary(result: FlipResult) -> str:
    if result.dry_run:
        lines = [
            f"dry run: {result.action} {result.source or 'no slot'} -> {result.target} "
            f"({result.model})"
        ]
        lines += [f"  gate passed: {gate}" for gate in result.gates]
        lines.append("  patch: " + json.dumps(result.patch))
        lines.append("nothing changed (the pre-flip probe runs only for real)")
        return "\n".join(lines)
    completed = (
        f" (completed the run by {result.completed}, interrupted after its flag write)"
        if result.completed
        else ""
    )
    warm = f"; {result.warm} stays warm for `slots flip-back`" if result.warm else ""
    return (
        f"production: {_cell(result.source or 'no slot')} -> {result.target} "
        f"({result.model}), verified in {result.duration_s:.2f} s{completed}{warm}"
    )


HISTORY_COLUMNS = (
    ("AT", True),
    ("ACTION", True),
    ("FROM", True),
    ("TO", True),
    ("MODEL", True),
    ("BY", False),
    ("RESULT", True),
    ("REASON", False),
)


def history_text(entries: list[dict[str, Any]], *, wide: bool = False) -> str:
    if not entries:
        return "no history yet"
    keys = ("at", "action", "from", "to", "model", "by", "result", "reason")
    rows = [[_cell(entry.get(key)) for key in keys] for entry in entries]
    return format_table(HISTORY_COLUMNS, rows, wide=wide)


def deploy_summary(result: DeployResult) -> str:
    from gx10slots.deploy.result import DeployPreview

    if isinstance(result, DeployPreview):
        plan = result.plan
        lines = [
            f"dry run: deploy {plan.model} into slot {plan.slot} "
            f"({plan.deployment['metadata']['name']}), served as {plan.served_name}"
        ]
        lines += [f"  change: {c}" for c in plan.changes] or ["  no change: already deployed"]
        lines.append(f"  {result.memory}")
        lines.append(f"  revision {plan.revision_before} -> {plan.revision_after}")
        lines.append("nothing changed")
        return "\n".join(lines)
    if result.already_active:
        lines = [
            f"production (slot {result.slot}) already runs {result.model} (revision "
            f"{result.revision}): nothing deployed"
        ]
        if result.flip:
            lines.append(flip_summary(result.flip))
        return "\n".join(lines)
    lines = [
        f"deployed {result.model} into slot {result.slot} (revision {result.revision}); "
        f"smoke passed; report {result.smoke_report}"
    ]
    if result.flip:
        lines.append(flip_summary(result.flip))
    else:
        lines.append(f"production unchanged; `slots flip` makes {result.slot} active")
    return "\n".join(lines)


def park_summary(result: ParkResult) -> str:
    return result.detail


def smoke_summary(outcome: SmokeOutcome) -> str:
    verdict = "passed" if outcome.passed else f"FAILED ({outcome.failure_summary})"
    return f"smoke {outcome.report.slot}: {verdict}\nreports: " + ", ".join(outcome.report_paths)


def guard_summary(guarded: GuardResult) -> str:
    result = guarded.report
    slot = result.get("slot") or "?"
    outcome = result.get("result")
    checks = result.get("checks", 0)
    if outcome == "stood-down":
        return f"guard {slot}: stood down after {checks} check(s): {result.get('stood_down')}"
    if outcome == "refused":
        error = result.get("error") or {}
        return f"guard {slot}: refused: {error.get('message', 'nothing safe to fall back to')}"
    report = f"; report {result['report']}" if result.get("report") else ""
    warnings = "".join(f"\nwarning: {w}" for w in result.get("warnings", []))
    if outcome == "tripped":
        revert = result.get("revert") or {}
        in_flight = revert.get("in_flight_on_guarded")
        own = revert.get("guard_probes_abandoned") or 0
        stranded = (
            f"; {in_flight:g} request(s) were still running on {slot}"
            + (f" (up to {own} of them the guard's own timed-out probes)" if own else "")
            if isinstance(in_flight, int | float)
            else ""
        )
        return (
            f"guard {slot}: TRIPPED after {result.get('consecutive_failures')} failed checks in a "
            f"row ({revert.get('reason', '')}); flipped back: production is on "
            f"{revert.get('to')} again (verified){stranded}{report}{warnings}"
        )
    return (
        f"guard {slot}: the window passed: {checks} check(s), {result.get('failed_checks', 0)} "
        f"failed, none {result.get('settings', {}).get('failures', '?')} in a row; production "
        f"stays on {slot}{report}{warnings}"
    )
