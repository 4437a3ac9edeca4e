"""docs/reliability.md publishes the matrix: it must be the matrix the code runs."""

from __future__ import annotations

import re
from pathlib import Path

from tests.helpers.matrix import (
    COMMANDS,
    FAULTS,
    MOVED,
    QUICK,
    QUICK_STATE,
    STATE_FAULTS,
    STATE_HEADINGS,
    all_cases,
    state_cases,
    target,
)

PAGE = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def _matrix_rows() -> dict[tuple[str, str], list[str]]:
    text = PAGE.read_text(encoding="utf-8")
    header = "| command | point | " + " | ".join(FAULTS) + " |"
    assert header in text, "the matrix table's header does not list the faults the code injects"
    rows: dict[tuple[str, str], list[str]] = {}
    for line in text[text.index(header) :].splitlines()[2:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[(cells[0], cells[1])] = cells[2:]
    return rows


def test_the_published_matrix_has_every_cell_the_code_runs() -> None:
    rows = _matrix_rows()
    cells = {(c.command, c.point) for c in all_cases()}
    assert set(rows) == cells
    for (command, point), values in rows.items():
        assert target(command, point) is not None
        assert len(values) == len(FAULTS) and all(values), (command, point)


def test_the_quick_subset_is_marked_and_counted() -> None:
    rows = _matrix_rows()
    marked = {
        (command, point, FAULTS[i])
        for (command, point), values in rows.items()
        for i, value in enumerate(values)
        if value.startswith("**")
    }
    assert marked == set(QUICK)
    text = PAGE.read_text(encoding="utf-8")
    assert f"| {len(QUICK)} cases | {len(all_cases())} cases, **0 invariant violations** |" in text


def test_the_published_counts_are_a_full_run_with_no_violation() -> None:
    text = PAGE.read_text(encoding="utf-8")
    found = re.search(r"cases run: (\d+); invariant violations: (\d+)", text)
    assert found, "the full run's summary line is missing"
    assert (int(found[1]), int(found[2])) == (len(all_cases()), 0)
    assert " !" not in "".join("".join(v) for v in _matrix_rows().values())


# -- the state faults (issue 19) -------------------------------------------------------------


def _state_rows() -> dict[str, list[str]]:
    text = PAGE.read_text(encoding="utf-8")
    header = "| command | " + " | ".join(STATE_HEADINGS[f] for f in STATE_FAULTS) + " |"
    assert header in text, "the state-fault table's header does not list the faults injected"
    rows: dict[str, list[str]] = {}
    for line in text[text.index(header) :].splitlines()[2:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = cells[1:]
    return rows


def test_the_published_state_faults_are_every_case_run_with_no_violation() -> None:
    rows = _state_rows()
    assert set(rows) == set(COMMANDS)
    published = {
        (command, "verify" if STATE_FAULTS[i] == MOVED else "history", STATE_FAULTS[i])
        for command, values in rows.items()
        for i, value in enumerate(values)
        if value != "no verification"
    }
    assert published == {(c.command, c.point, c.fault) for c in state_cases()}
    marked = {
        (command, "verify" if STATE_FAULTS[i] == MOVED else "history", STATE_FAULTS[i])
        for command, values in rows.items()
        for i, value in enumerate(values)
        if value.startswith("**")
    }
    assert marked == set(QUICK_STATE)
    assert " !" not in "".join("".join(v) for v in rows.values())
    text = PAGE.read_text(encoding="utf-8")
    found = re.search(r"state faults: cases run: (\d+); invariant violations: (\d+)", text)
    assert found, "the state faults' summary line is missing"
    assert (int(found[1]), int(found[2])) == (len(state_cases()), 0)
