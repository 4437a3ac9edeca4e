"""The fault matrix's results as the Markdown table in docs/reliability.md.

    GX10_RELIABILITY_FULL=1 GX10_RELIABILITY_RESULTS=matrix.jsonl \\
        .venv/bin/python -m pytest tests/reliability/test_fault_matrix.py
    .venv/bin/python -m tests.reliability.report matrix.jsonl

Each cell is the exit code of the faulted run, then (after the arrow) that of the re-run when
there was one; a cell with an invariant violation is marked with ``!``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.helpers.matrix import (
    COMMANDS,
    FAULTS,
    MOVED,
    POINTS,
    QUICK,
    QUICK_STATE,
    STATE_FAULTS,
    STATE_HEADINGS,
    target,
)

SIGNAL_EXIT = {-9: "KILL"}


def _code(code: int | None) -> str:
    if code is None:
        return ""
    return SIGNAL_EXIT.get(code, str(code))


def _cell(result: dict[str, Any] | None, quick: bool) -> str:
    if result is None:
        return "not run"
    cell = _code(result["exit"])
    if result.get("rerun_exit") is not None:
        cell += " → " + _code(result["rerun_exit"])
    if result["violations"]:
        cell += " !"
    return f"**{cell}**" if quick else cell


def state_table(results: list[dict[str, Any]]) -> str:
    """The state faults (issue 19): one row per command, one column per fault."""
    by_case = {r["case"]: r for r in results}
    quick = {f"{c}:{p}:{f}" for c, p, f in QUICK_STATE}
    lines = [
        "| command | " + " | ".join(STATE_HEADINGS[f] for f in STATE_FAULTS) + " |",
        "|---|" + "---|" * len(STATE_FAULTS),
    ]
    for command in COMMANDS:
        cells = []
        for fault in STATE_FAULTS:
            if command == "park" and fault == MOVED:
                cells.append("no verification")
                continue
            case = f"{command}:{'verify' if fault == MOVED else 'history'}:{fault}"
            cells.append(_cell(by_case.get(case), case in quick))
        lines.append(f"| {command} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(results: list[dict[str, Any]]) -> str:
    by_case = {r["case"]: r for r in results}
    quick = {f"{c}:{p}:{f}" for c, p, f in QUICK}
    lines = [
        "| command | point | " + " | ".join(FAULTS) + " |",
        "|---|---|" + "---|" * len(FAULTS),
    ]
    for command in COMMANDS:
        for point in POINTS:
            if target(command, point) is None:
                continue
            cells = []
            for fault in FAULTS:
                case = f"{command}:{point}:{fault}"
                cells.append(_cell(by_case.get(case), case in quick))
            lines.append(f"| {command} | {point} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summary(results: list[dict[str, Any]]) -> str:
    violations = sum(1 for r in results if r["violations"])
    seconds = sum(r["seconds"] for r in results)
    reruns = sum(1 for r in results if r.get("rerun_exit") is not None)
    takeovers = sum(1 for r in results if any("took the abandoned" in n for n in r["notes"]))
    return (
        f"cases run: {len(results)}; invariant violations: {violations}; re-runs needed: "
        f"{reruns}; lease takeovers: {takeovers}; case time: {seconds:.0f} s"
    )


def main(argv: list[str]) -> None:
    results = [json.loads(line) for line in Path(argv[0]).read_text().splitlines() if line]
    # A case run twice (a retried run appending to the same file) counts once: the last run.
    latest = {r["case"]: r for r in results}
    state = {k: r for k, r in latest.items() if k.split(":")[-1] in STATE_FAULTS}
    requests = {k: r for k, r in latest.items() if k not in state}
    if requests:
        print(summary(list(requests.values())))
        print()
        print(table(list(requests.values())))
    if state:
        if requests:
            print()
        print("state faults: " + summary(list(state.values())))
        print()
        print(state_table(list(state.values())))


if __name__ == "__main__":
    main(sys.argv[1:])
