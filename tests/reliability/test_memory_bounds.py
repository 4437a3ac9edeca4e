"""Issue 19 item 9 (first half): `--memory-gib 1000000` wrote `1e+06Gi`, the gate said "memory
fits", the API server refused the quantity and the user read "the standby Deployment kept
changing under us" (exit 4). Every out-of-range budget is now refused before any write: exit 3
when it is a number the node cannot hold, exit 2 when it is not a budget at all."""

from __future__ import annotations

import pytest

from tests.helpers.sandbox import Sandbox


@pytest.mark.e2e
def test_out_of_range_memory_budgets_are_refused_before_any_write(sandbox: Sandbox) -> None:
    before = sandbox.versions()
    cases = {
        "1000000": 3,  # larger than the node
        "129": 3,  # larger than the node, just
        "2e6": 2,  # more than 1 PiB: not a budget
        "1e400": 2,  # infinite
        "inf": 2,
        "nan": 2,
        "0.5": 2,  # below the option's minimum
        "-1": 2,
    }
    for value, code in cases.items():
        result = sandbox.cli("-o", "json", "deploy", "sandbox/ok", f"--memory-gib={value}")
        assert result.code == code, (value, result.err)
        assert "Traceback" not in result.err
        assert result.json()["error"]["message"], value
    assert sandbox.versions() == before
    assert sandbox.history() == []
