"""The fault matrix (issue 7): every mutating command x fault point x fault, on a real sandbox.

CI runs the quick subset (``matrix.QUICK``); ``GX10_RELIABILITY_FULL=1`` (or
``-m reliability_full``) runs every cell. With ``GX10_RELIABILITY_RESULTS=FILE`` each case's
outcome is appended to FILE as a JSON line: the source of the counts in docs/reliability.md.
"""

from __future__ import annotations

import json
import os
from typing import Any

import pytest

from tests.helpers.harness import CaseResult, Rig, SandboxPool
from tests.helpers.matrix import (
    QUICK,
    QUICK_STATE,
    Case,
    all_cases,
    quick_cases,
    quick_state_cases,
    state_cases,
)

RESULTS_ENV = "GX10_RELIABILITY_RESULTS"


def _record(result: CaseResult) -> None:
    path = os.environ.get(RESULTS_ENV)
    if path:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(result.to_dict()) + "\n")


def _params(quick: list[Case], full_only: list[Case]) -> list[Any]:
    """The quick cases CI runs on every change, then the rest, marked ``reliability_full``."""
    full = pytest.mark.reliability_full
    return [*quick, *(pytest.param(case, marks=full) for case in full_only)]


_FULL_ONLY = [c for c in all_cases() if (c.command, c.point, c.fault) not in QUICK]
# The state faults (issue 19): the history lost, the flag moved during verification.
_STATE_FULL_ONLY = [c for c in state_cases() if (c.command, c.point, c.fault) not in QUICK_STATE]
CASES = [*_params(quick_cases(), _FULL_ONLY), *_params(quick_state_cases(), _STATE_FULL_ONLY)]


@pytest.mark.e2e
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.id)
def test_matrix(
    case: Case,
    sandbox_pool: SandboxPool,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    rig = Rig(sandbox_pool, capsys, monkeypatch)
    result = rig.run_case(case)
    _record(result)
    detail = {
        "violations": result.violations,
        "first": (result.first.code, result.first.err[-1500:]) if result.first else None,
        "rerun": (result.rerun.code, result.rerun.err[-1500:]) if result.rerun else None,
        "notes": result.notes,
    }
    if os.environ.get("GX10_RELIABILITY_SHOW"):
        print(json.dumps(detail, indent=1))
    assert result.violations == [], json.dumps(detail, indent=1)
