"""The report: its JSON against the published schema, Markdown, JUnit, files on disk."""

from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gx10slots.errors import UsageError
from gx10slots.smoke.report import (
    Baseline,
    Report,
    Summary,
    latest_report,
    md_cell,
    write_reports,
)
from gx10slots.smoke.result import ProbeResult, not_applicable, not_run

SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "report-schema.json").read_text())
START = datetime(2026, 11, 27, 8, 15, 0, 123000, tzinfo=UTC)


def make_report(*probes: ProbeResult, slot: str = "green", **kw) -> Report:
    probes = probes or (
        ProbeResult("readiness", True, 12.0, "/health answered HTTP 200 after 1 attempt"),
        ProbeResult(
            "known-answer",
            False,
            812.4,
            "expected /pong/i, got 'carecarecare'",
            {"ttft_ms": 95.1},
            "content: carecarecare",
        ),
        not_run("streaming", "known-answer timed out; the engine looks wedged"),
        not_applicable("tool-call", "tool calls are not enabled (smoke tool_call)"),
    )
    fields: dict[str, Any] = dict(
        slot=slot,
        model="org/model",
        served_name="gx10",
        revision="rev-3",
        endpoint="http://127.0.0.1:8000",
        engine="vllm",
        started_at=START,
        finished_at=START + timedelta(seconds=42),
        passed=all(p.passed for p in probes),
        probes=tuple(probes),
        summary=Summary(
            ttft_ms_p50=95.1, ttft_ms_p95=120.0, tokens_per_s=41.2, requests=9, failures=1
        ),
    )
    return Report(**(fields | kw))


def test_json_has_the_contract_shape_and_validates_against_the_schema() -> None:
    doc = json.loads(make_report().to_json())
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert doc["started_at"] == "2026-11-27T08:15:00.123Z"
    assert doc["finished_at"] == "2026-11-27T08:15:42.123Z"
    assert doc["probes"][1] == {
        "name": "known-answer",
        "passed": False,
        "skipped": False,
        "duration_ms": 812.4,
        "detail": "expected /pong/i, got 'carecarecare'",
        "metrics": {"ttft_ms": 95.1},
        "evidence": "content: carecarecare",
    }
    assert doc["summary"] == {
        "ttft_ms_p50": 95.1,
        "ttft_ms_p95": 120.0,
        "tokens_per_s": 41.2,
        "requests": 9,
        "failures": 1,
    }


def test_schema_rejects_what_the_contract_forbids() -> None:
    doc = json.loads(make_report().to_json())
    del doc["summary"]["failures"]
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    doc = json.loads(make_report().to_json())
    doc["started_at"] = "27/11/2026"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)


def test_non_finite_metrics_do_not_break_json() -> None:
    report = make_report(ProbeResult("burst", True, 1.0, "ok", {"tokens_per_s": float("inf")}))
    doc = json.loads(report.to_json())
    assert doc["probes"][0]["metrics"]["tokens_per_s"] == 0.0


def test_round_trip_through_json() -> None:
    report = make_report()
    again = Report.from_json(report.to_json())
    assert again == report
    assert again.to_json() == report.to_json()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "invalid JSON"),
        ("[]", "not a JSON object"),
        ('{"passed": true}', "`probes` is not a list"),
        ('{"passed": "yes", "probes": []}', "`passed` is not a boolean"),
    ],
)
def test_from_json_rejects_what_is_not_a_report(text: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        Report.from_json(text)


def test_from_json_rejects_bad_fields() -> None:
    doc = json.loads(make_report().to_json())
    doc["started_at"] = "2026-11-27T08:15:00"  # no zone
    with pytest.raises(UsageError, match="has no time zone"):
        Report.from_dict(doc)
    doc = json.loads(make_report().to_json())
    doc["probes"][0]["metrics"] = {"x": "fast"}
    with pytest.raises(UsageError, match="metric 'x' is not a number"):
        Report.from_dict(doc)


def test_older_reports_without_p95_read_p50_instead() -> None:
    doc = json.loads(make_report().to_json())
    del doc["summary"]["ttft_ms_p95"]
    assert Report.from_dict(doc).summary.ttft_ms_p95 == 95.1


def test_markdown_has_verdict_table_and_escaped_cut_evidence() -> None:
    hostile = '<tool_call>{"name": "x"}</tool_call> | ok | `rm` *bold* [link](x)\n' + "y" * 400
    report = make_report(
        ProbeResult("readiness", True, 3.0, "ready"),
        ProbeResult(
            "tool-call",
            False,
            20.0,
            "tool call leaked into content: <tool_call>…",
            evidence=hostile,
        ),
    )
    md = report.to_markdown()
    lines = md.splitlines()
    assert lines[0] == "## ❌ Smoke failed: green · org/model (1 of 2 probes)"
    assert "| Probe | Result | Time | Detail | Evidence |" in lines
    row = next(line for line in lines if line.startswith("| tool-call"))
    # Every cell separator is ours: the evidence's own pipes are escaped.
    assert row.count("|") - row.count("\\|") == 6
    assert "&lt;tool\\_call&gt;" in row and "<tool_call>" not in row
    assert "\\`rm\\`" in row and "\\*bold\\*" in row and "\\[link\\]" in row
    evidence_cell = row.rsplit(" | ", 1)[1]
    assert "…" in evidence_cell and "y" * 200 not in evidence_cell


ACTIVE = Baseline(
    slot="blue",
    model="org/prod",
    passed=True,
    ttft_ms_p50=4.0,
    ttft_ms_p95=6.5,
    tokens_per_s=880.0,
    tool_calls=True,
    stream_usage=True,
    structured_output=True,
)


def test_the_active_slots_figures_are_under_baseline_in_json() -> None:
    doc = make_report(baseline=ACTIVE).to_dict()
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert doc["baseline"] == {
        "slot": "blue",
        "model": "org/prod",
        "passed": True,
        "detail": "",
        "ttft_ms_p50": 4.0,
        "ttft_ms_p95": 6.5,
        "tokens_per_s": 880.0,
        "capabilities": {"tool_calls": True, "stream_usage": True, "structured_output": True},
    }
    assert Report.from_json(make_report(baseline=ACTIVE).to_json()).baseline == ACTIVE
    # Not measured is null, not 0; no baseline at all is null too.
    unmeasured = Baseline("blue", "org/prod", passed=False, detail="readiness: refused")
    doc = make_report(baseline=unmeasured).to_dict()
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    assert doc["baseline"]["ttft_ms_p95"] is None and doc["baseline"]["tokens_per_s"] is None
    assert make_report().to_dict()["baseline"] is None


def test_a_baseline_from_before_structured_output_reads_as_not_returning_it() -> None:
    doc = make_report(baseline=ACTIVE).to_dict()
    del doc["baseline"]["capabilities"]["structured_output"]
    jsonschema.validate(doc, SCHEMA, cls=jsonschema.Draft202012Validator)
    baseline = Report.from_dict(doc).baseline
    assert baseline is not None and baseline.tool_calls and not baseline.structured_output


def test_a_baseline_of_the_wrong_shape_is_not_a_report() -> None:
    doc = make_report(baseline=ACTIVE).to_dict()
    doc["baseline"]["ttft_ms_p95"] = "fast"
    with pytest.raises(UsageError, match=r"baseline\.ttft_ms_p95"):
        Report.from_dict(doc)


def test_a_golden_prompts_result_validates_against_the_schema() -> None:
    report = make_report(ProbeResult("prompt:capital-fr", False, 5.0, "expected /paris/"))
    jsonschema.validate(report.to_dict(), SCHEMA, cls=jsonschema.Draft202012Validator)


def test_markdown_shows_both_slots_side_by_side_with_a_chart() -> None:
    md = make_report(baseline=ACTIVE).to_markdown()
    assert "| | green (candidate) · org/model | blue (active) · org/prod |" in md
    assert "| TTFT p95 | 120 ms | 6 ms |" in md  # 6.5 rounds to even
    assert "| tokens/s (burst) | 41.2 tokens/s | 880.0 tokens/s |" in md
    assert "| tool calls | no | yes |" in md
    assert "| structured output (JSON schema) | no | yes |" in md
    assert md.count("```mermaid\nxychart-beta") == 2
    assert 'x-axis ["blue (active)", "green (candidate)"]' in md
    assert "bar [6.5, 120.0]" in md and "bar [880.0, 41.2]" in md


def test_nothing_measured_reads_n_a_not_zero() -> None:
    report = make_report(summary=Summary(requests=1, failures=1))
    md = report.to_markdown()
    assert "TTFT p50 n/a, p95 n/a; tokens/s n/a" in md
    assert "0 ms" not in md.split("| Probe |")[0] and "0.0 tokens/s" not in md
    unmeasured = Baseline("blue", "org/prod", passed=False, detail="readiness: refused")
    md = make_report(baseline=unmeasured).to_markdown()
    assert "| TTFT p95 | 120 ms | n/a |" in md
    assert "| tokens/s (burst) | 41.2 tokens/s | n/a |" in md
    assert '"blue (active) n/a"' in md
    assert "The active slot's own run failed: readiness: refused" in md


def test_markdown_of_a_pass() -> None:
    md = make_report(ProbeResult("readiness", True, 3.0, "ready")).to_markdown()
    assert md.startswith("## ✅ Smoke passed: green · org/model\n")
    assert "| readiness | ✅ pass | 3 ms | ready |  |" in md


def test_md_cell() -> None:
    assert md_cell("a\nb\tc") == "a b c"
    assert md_cell("a|b") == "a\\|b"
    assert md_cell("x" * 10, 5) == "xxxx…"
    assert md_cell("\x00\x07ctrl") == "ctrl"


def test_junit_is_valid_xml_even_with_control_characters() -> None:
    nasty = 'bad \x00\x01\x1b[31m bytes \ufffe and <xml> & "quotes"'
    report = make_report(
        ProbeResult("readiness", True, 3.0, "ready"),
        ProbeResult(
            "known-answer", False, 812.4, f"expected /pong/i, got {nasty!s}", evidence=nasty
        ),
        not_run("streaming", "engine not ready"),
        not_applicable("tool-call", "disabled"),
    )
    root = ET.fromstring(report.to_junit())
    assert root.tag == "testsuite"
    # A probe that could not run is a failure in CI's eyes; only inapplicable ones are skipped.
    assert root.attrib["tests"] == "4" and root.attrib["failures"] == "2"
    assert root.attrib["skipped"] == "1" and root.attrib["errors"] == "0"
    cases = root.findall("testcase")
    assert [c.attrib["name"] for c in cases] == [
        "readiness",
        "known-answer",
        "streaming",
        "tool-call",
    ]
    failure = cases[1].find("failure")
    assert failure is not None
    assert failure.attrib["message"].startswith("expected /pong/i, got bad")
    assert "\x00" not in failure.attrib["message"] and "<xml> &" in (failure.text or "")
    not_run_case = cases[2].find("failure")
    assert not_run_case is not None
    assert not_run_case.attrib["message"] == "not run: engine not ready"
    assert not_run_case.attrib["type"] == "SmokeProbeNotRun"
    assert cases[3].find("skipped") is not None
    assert cases[1].attrib["time"] == "0.812"


def test_write_reports_names_files_by_time_and_slot(tmp_path: Path) -> None:
    target = tmp_path / "deep" / "reports"
    paths = write_reports(make_report(), target)
    assert [p.name for p in paths] == [
        "20261127T081500Z-green.json",
        "20261127T081500Z-green.md",
        "20261127T081500Z-green.xml",
    ]
    assert json.loads(paths[0].read_text())["slot"] == "green"
    ET.parse(paths[2])
    assert sorted(os.listdir(target)) == sorted(p.name for p in paths)  # no temp files left


def test_write_reports_only_the_asked_formats(tmp_path: Path) -> None:
    paths = write_reports(make_report(slot="../../etc"), tmp_path, {"json"})
    assert [p.name for p in paths] == ["20261127T081500Z-..-..-etc.json"]
    assert paths[0].parent == tmp_path
    with pytest.raises(UsageError, match="unknown report format pdf"):
        write_reports(make_report(), tmp_path, {"pdf"})


def test_write_reports_into_an_unwritable_place(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(UsageError, match="cannot write the smoke report"):
        write_reports(make_report(), blocker / "reports")


def test_latest_report_finds_the_newest_passing_one(tmp_path: Path) -> None:
    older = make_report(ProbeResult("readiness", True, 1.0, "ok"))
    newer_failed = make_report(started_at=START + timedelta(hours=1))
    write_reports(older, tmp_path, {"json"})
    write_reports(newer_failed, tmp_path, {"json"})
    write_reports(make_report(slot="blue"), tmp_path, {"json"})
    (tmp_path / "20991231T000000Z-green.json").write_text("{corrupt")
    found = latest_report(tmp_path, "green")
    assert found is not None and found.started_at == START and found.passed
    assert latest_report(tmp_path, "green", passed_only=False) == newer_failed
    assert latest_report(tmp_path / "missing", "green") is None


@pytest.mark.parametrize(
    "where", ["summary.ttft_ms_p50", "summary.requests", "probe.metrics", "probe.duration_ms"]
)
def test_a_report_file_with_a_number_no_float_can_hold_is_skipped_as_a_baseline(
    tmp_path: Path, where: str
) -> None:
    # A file in the report directory is read as hostile: 400 digits are an int no float holds.
    passed = make_report(ProbeResult("readiness", True, 1.0, "ok"))
    write_reports(passed, tmp_path, {"json"})
    doc = json.loads(passed.to_json())
    huge = 10**400
    if where == "summary.ttft_ms_p50":
        doc["summary"]["ttft_ms_p50"] = huge
    elif where == "summary.requests":
        doc["summary"]["requests"] = huge
    elif where == "probe.metrics":
        doc["probes"][0]["metrics"] = {"x": huge}
    else:
        doc["probes"][0]["duration_ms"] = huge
    (tmp_path / "20991231T000000Z-green.json").write_text(json.dumps(doc))
    with pytest.raises(UsageError, match="not a smoke report"):
        Report.from_dict(doc)
    found = latest_report(tmp_path, "green")  # the newer file is skipped, never a crash
    assert found is not None and found.started_at == START


def test_the_schema_names_every_engine_profile_and_every_probe() -> None:
    """The report schema is written by hand: it must list what the registries hold."""
    from gx10slots.smoke.catalog import PROBE_NAMES
    from gx10slots.smoke.profiles import PROFILES

    props = SCHEMA["properties"]
    assert set(props["engine"]["enum"]) == set(PROFILES)
    (names, _prompt) = SCHEMA["$defs"]["probe"]["properties"]["name"]["anyOf"]
    assert set(names["enum"]) == set(PROBE_NAMES) - {"prompts"}
