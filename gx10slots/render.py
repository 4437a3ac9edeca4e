"""Human renderings of command results (JSON output is the documents themselves)."""

from __future__ import annotations

import json
import sys
from typing import Any


def emit_json(document: Any) -> None:
    """The one JSON document on stdout, every string redacted (ASCII-escaped, so no control
    character reaches a terminal either)."""
    from gx10slots.scrub import redact_doc

    sys.stdout.write(json.dumps(redact_doc(document), indent=2, sort_keys=False) + "\n")
    sys.stdout.flush()


def _console() -> Any:
    from rich.console import Console

    # markup off: model names and keys such as [gx10slots.io/slot] are data, not styles. Piped
    # output is not squeezed to 80 columns: a log or a script wants whole values.
    width = None if sys.stdout.isatty() else 200
    return Console(highlight=False, soft_wrap=True, markup=False, width=width)


def _cell(value: Any) -> str:
    """A table cell. Values come from the cluster, where anyone with write access may have put
    them: control characters are shown escaped, never sent to the terminal."""
    if value is None or value == "":
        return "-"
    from gx10slots.scrub import safe

    return safe(value)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def status_table(doc: dict[str, Any]) -> None:
    from rich.table import Table

    console = _console()
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in (
        "SLOT",
        "ROLE",
        "MODEL",
        "SERVED NAME",
        "IMAGE",
        "READY",
        "MEMORY",
        "REVISION",
        "SMOKE",
        "PROTECTED",
    ):
        table.add_column(column)
    for name, slot in doc["slots"].items():
        smoke = slot.get("smoke")
        if not slot.get("exists", True):
            smoke_text = "-"
        elif smoke is None:
            smoke_text = "none for this revision"
        else:
            verdict = "passed" if smoke["passed"] else "FAILED"
            smoke_text = f"{verdict} {_age(smoke.get('age_s'))} ago"
        memory = slot.get("memory_gib")
        table.add_row(
            name,
            slot["role"] if slot.get("exists", True) else "missing",
            _cell(slot.get("model")),
            _cell(slot.get("served_name")),
            _cell(slot.get("image")),
            f"{slot.get('ready', 0)}/{slot.get('replicas', 0)}",
            "-" if memory is None else f"{memory:g} GiB",
            _cell(slot.get("revision")),
            smoke_text,
            _protected(slot),
        )
    console.print(table)
    flag = doc["flag"]
    console.print(
        f"\nflag: {flag['kind']} {doc['namespace']}/{flag['name']} [{flag['key']}] = "
        f"{_cell(flag.get('value'))}   previous: {_cell(doc.get('previous'))}"
    )
    if flag.get("changed_at"):
        console.print(f"changed {_cell(flag['changed_at'])} by {_cell(flag.get('changed_by'))}")
    if flag.get("endpoint"):
        console.print(f"production endpoint: {_cell(flag['endpoint'])}")
    fallback = doc.get("fallback")
    if fallback and fallback.get("protected"):
        until = f"until {fallback['until']}" if fallback.get("until") else "with no known end"
        console.print(
            f"fallback: {_cell(fallback['slot'])} protected {until} ("
            + _cell("; ".join(fallback.get("reasons") or []))
            + "): deploy into it and park of it need --replace-fallback"
        )
    console.print(lock_line(doc.get("lock")))
    for warning in doc.get("warnings", []):
        console.print(f"warning: {_cell(warning)}", style="yellow")


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


def flip_summary(result: dict[str, Any]) -> str:
    if result.get("dry_run"):
        lines = [
            f"dry run: {result['action']} {result['from'] or 'no slot'} -> {result['to']} "
            f"({result['model']})"
        ]
        lines += [f"  gate passed: {gate}" for gate in result.get("gates", [])]
        lines.append("  patch: " + json.dumps(result["patch"]))
        lines.append("nothing changed (the pre-flip probe runs only for real)")
        return "\n".join(lines)
    completed = (
        f" (completed the run by {result['completed']}, interrupted after its flag write)"
        if result.get("completed")
        else ""
    )
    warm = f"; {result['warm']} stays warm for `slots flip-back`" if result.get("warm") else ""
    return (
        f"production: {_cell(result['from'] or 'no slot')} -> {result['to']} "
        f"({result['model']}), verified in {result['duration_s']:.2f} s{completed}{warm}"
    )


def history_table(entries: list[dict[str, Any]]) -> None:
    from rich.table import Table

    console = _console()
    if not entries:
        console.print("no history yet")
        return
    table = Table(box=None, pad_edge=False, header_style="bold")
    for column in ("AT", "ACTION", "FROM", "TO", "MODEL", "BY", "RESULT", "REASON"):
        table.add_column(column)
    for e in entries:
        table.add_row(
            _cell(e.get("at")),
            _cell(e.get("action")),
            _cell(e.get("from")),
            _cell(e.get("to")),
            _cell(e.get("model")),
            _cell(e.get("by")),
            _cell(e.get("result")),
            _cell(e.get("reason")),
        )
    console.print(table)


def deploy_summary(result: dict[str, Any]) -> str:
    if result.get("dry_run"):
        lines = [
            f"dry run: deploy {result['model']} into slot {result['slot']} "
            f"({result['deployment']}), served as {result['served_name']}"
        ]
        lines += [f"  change: {c}" for c in result["changes"]] or ["  no change: already deployed"]
        lines.append(f"  {result['memory']}")
        lines.append(f"  revision {result['revision_before']} -> {result['revision_after']}")
        lines.append("nothing changed")
        return "\n".join(lines)
    if result.get("already_active"):
        lines = [
            f"production (slot {result['slot']}) already runs {result['model']} (revision "
            f"{result['revision']}): nothing deployed"
        ]
        if result.get("flip"):
            lines.append(flip_summary(result["flip"]))
        return "\n".join(lines)
    lines = [
        f"deployed {result['model']} into slot {result['slot']} (revision {result['revision']}); "
        f"smoke passed; report {result['smoke']['report']}"
    ]
    if result.get("flip"):
        lines.append(flip_summary(result["flip"]))
    else:
        lines.append(f"production unchanged; `slots flip` makes {result['slot']} active")
    return "\n".join(lines)


def guard_summary(result: dict[str, Any]) -> str:
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
