"""The smoke inside `deploy` against production's active slot: capability parity, the live
baseline and golden prompts, on the sandbox with real model-server processes (issue 15)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.sandbox import Sandbox

pytestmark = pytest.mark.e2e


def _report(directory: Path, slot: str = "green") -> dict[str, Any]:
    """The newest JSON report of ``slot`` in ``directory``."""
    paths = sorted(directory.glob(f"*-{slot}.json"))
    assert paths, f"no report of {slot} in {directory}"
    return dict(json.loads(paths[-1].read_text()))


def _probes(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in report["probes"]}


def _setup(sandbox: Sandbox, tmp_path: Path, **smoke: Any) -> Path:
    reports = tmp_path / "reports"
    # Short timeouts keep failures fast; smoke.tool_call stays at its default (off).
    sandbox.set_smoke(report_dir=str(reports), probe_timeout="10s", deadline="60s", **smoke)
    return reports


def test_a_model_without_tool_calls_fails_against_an_active_slot_that_makes_them(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    reports = _setup(sandbox, tmp_path)
    before = sandbox.versions()["flag"]
    result = sandbox.cli("deploy", "sandbox/no-tools", "--flip")
    assert result.code == 1, result.err
    assert "tool-call" in result.err and "capability parity" in result.err
    # Production untouched: still blue, answered by blue.
    assert sandbox.flag() == "blue" and sandbox.answering_slot() == "blue"
    assert sandbox.versions()["flag"] == before
    report = _report(reports)
    tool = _probes(report)["tool-call"]
    assert not tool["passed"] and not tool["skipped"]
    assert report["baseline"]["slot"] == "blue"
    assert report["baseline"]["capabilities"]["tool_calls"] is True
    assert sandbox.history()[0]["result"] == "failed"


def test_a_model_without_structured_output_fails_against_an_active_slot_that_has_it(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    reports = _setup(sandbox, tmp_path)
    before = sandbox.versions()["flag"]
    result = sandbox.cli("deploy", "sandbox/no-json", "--flip")
    assert result.code == 1, result.err
    assert "structured-output" in result.err and "capability parity" in result.err
    assert sandbox.flag() == "blue" and sandbox.answering_slot() == "blue"
    assert sandbox.versions()["flag"] == before
    report = _report(reports)
    structured = _probes(report)["structured-output"]
    assert not structured["passed"] and not structured["skipped"]
    assert "the answer is not JSON" in structured["detail"]
    # Both slots' figures: the active slot returned such JSON, the candidate did not.
    assert report["baseline"]["capabilities"]["structured_output"] is True
    markdown = sorted(reports.glob("*-green.md"))[-1].read_text()
    assert "| structured output (JSON schema) | no | yes |" in markdown
    assert sandbox.history()[0]["result"] == "failed"


def test_the_same_model_passes_and_its_report_holds_both_slots(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    reports = _setup(sandbox, tmp_path)
    result = sandbox.cli("deploy", "sandbox/ok")
    assert result.code == 0, result.err
    # The active slot's speed is measured interleaved with the candidate's, in the same run:
    # candidate streaming, active streaming, active burst, candidate burst (each progress line
    # after its timestamp: "  ok   NAME" for the candidate, "    active: ok   NAME").
    lines = result.err.splitlines()

    def at(slot: str, probe: str) -> list[int]:
        mark = f"Z {'    active: ' if slot == 'active' else '  '}ok   {probe} "
        return [i for i, line in enumerate(lines) if mark in line]

    # The reference run (capabilities) before the candidate's run, then the interleaved ones.
    assert at("active", "tool-call")[0] < at("candidate", "readiness")[0]
    assert len(at("active", "streaming")) == 2
    (candidate_streaming,) = at("candidate", "streaming")
    assert candidate_streaming + 1 == at("active", "streaming")[1]
    (active_burst,) = at("active", "burst")
    assert active_burst + 1 == at("candidate", "burst")[0]
    report = _report(reports)
    probes = _probes(report)
    assert probes["tool-call"]["passed"] and not probes["tool-call"]["skipped"]
    assert probes["structured-output"]["passed"] and not probes["structured-output"]["skipped"]
    assert probes["baseline"]["passed"] and not probes["baseline"]["skipped"]
    base = report["baseline"]
    assert base["slot"] == "blue" and base["ttft_ms_p95"] > 0 and base["tokens_per_s"] > 0
    markdown = sorted(reports.glob("*-green.md"))[-1].read_text()
    assert "blue (active)" in markdown and "xychart-beta" in markdown

    # smoke.baseline.live: false: no reference run, no parity, the baseline probe skipped.
    sandbox.set_smoke(baseline={"live": False})
    alone = sandbox.cli("smoke", "green")
    assert alone.code == 0, alone.err
    assert "reference run" not in alone.err
    report = _report(reports)
    assert report["baseline"] is None
    assert _probes(report)["baseline"]["skipped"] and _probes(report)["tool-call"]["skipped"]


def test_a_model_far_slower_than_the_active_slot_fails_its_baseline(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    reports = _setup(sandbox, tmp_path)
    result = sandbox.cli("deploy", "sandbox/slow-2s", "--flip")
    assert result.code == 1, result.err
    assert "baseline" in result.err and "TTFT p95" in result.err
    # Measured again to confirm, in the reverse order of the first measurement (active burst,
    # candidate burst): candidate first, then the active slot.
    again = result.err.split("measuring both again")[1]
    bursts = re.findall(r"Z ( {4}active: | {2})(?:ok|FAIL) +burst ", again)
    assert [b.strip() or "candidate" for b in bursts] == ["candidate", "active:"], again
    assert sandbox.flag() == "blue" and sandbox.answering_slot() == "blue"
    report = _report(reports)
    baseline = _probes(report)["baseline"]
    assert not baseline["passed"] and "active slot blue" in baseline["detail"]
    # Both slots' figures: the candidate's 2 s against the active slot's milliseconds.
    assert baseline["metrics"]["ttft_ms_p95"] >= 2000
    assert report["baseline"]["ttft_ms_p95"] < 1000


def test_golden_prompts_pass_when_they_match_and_fail_the_deploy_when_not(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    reports = _setup(
        sandbox,
        tmp_path,
        prompts=[{"name": "ping", "prompt": "Reply with pong, please.", "expect": "(?i)pong"}],
    )
    ok = sandbox.cli("deploy", "sandbox/ok")
    assert ok.code == 0, ok.err
    assert _probes(_report(reports))["prompt:ping"]["passed"]

    sandbox.set_smoke(
        prompts=[{"name": "capital", "prompt": "The capital of France?", "expect": "(?i)paris"}]
    )
    failed = sandbox.cli("smoke", "green")
    assert failed.code == 1, failed.err
    capital = _probes(_report(reports))["prompt:capital"]
    assert not capital["passed"] and "expected /(?i)paris/" in capital["detail"]
    assert "prompt:capital" in failed.err or "prompt:capital" in failed.out
