"""The smoke summary kept in the cluster: what it holds, its bounds, and a hostile read back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gx10slots import scrub
from gx10slots.render import smoke_cell, status_text
from gx10slots.smoke.report import Baseline, Report, Summary
from gx10slots.smoke.result import ProbeResult, not_applicable, not_run
from gx10slots.smoke.summary import (
    KEY,
    MAX_BYTES,
    MAX_PROBES,
    build_summary,
    encode,
    last_smoke_of,
)

START = datetime(2026, 11, 27, 8, 15, 0, tzinfo=UTC)


def _report(*probes: ProbeResult, baseline: Baseline | None = None, **kw: Any) -> Report:
    probes = probes or (
        ProbeResult("readiness", True, 12.0, "/health answered HTTP 200"),
        ProbeResult(
            "tool-call", False, 80.0, "the answer holds no tool call", {}, "evidence " * 50
        ),
        not_run("streaming", "known-answer timed out"),
        not_applicable("metrics", "no metrics endpoint"),
    )
    fields: dict[str, Any] = dict(
        slot="green",
        model="sandbox/no-tools",
        served_name="sandbox-ok",
        revision="rev-new",
        endpoint="http://127.0.0.1:8000",
        engine="vllm",
        started_at=START,
        finished_at=START + timedelta(seconds=42),
        passed=all(p.passed for p in probes),
        probes=tuple(probes),
        summary=Summary(ttft_ms_p50=95.1, ttft_ms_p95=0.0, tokens_per_s=41.2, requests=9),
        baseline=baseline,
    )
    return Report(**(fields | kw))


BASELINE = Baseline(
    slot="blue", model="sandbox/ok", passed=True, ttft_ms_p50=10.0, ttft_ms_p95=12.5,
    tokens_per_s=None, tool_calls=True, stream_usage=True, structured_output=True,
)  # fmt: skip


def _build(report: Report, **kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = dict(
        by="alice@gx10:42", command="slots deploy x", recorded=True, report_name="r.json"
    )
    return build_summary(report, **(args | kw))


def _configmap(value: Any) -> dict[str, Any]:
    return {"metadata": {"name": "gx10slots-smoke-green"}, "data": {KEY: value}}


# -- what it holds ------------------------------------------------------------------------------


def test_the_summary_holds_verdict_gated_revision_who_probes_and_both_slots_figures() -> None:
    summary = _build(_report(baseline=BASELINE))
    assert summary["passed"] is False
    assert (summary["slot"], summary["model"], summary["revision"]) == (
        "green",
        "sandbox/no-tools",
        "rev-new",
    )
    assert summary["at"] == "2026-11-27T08:15:42Z" and summary["by"] == "alice@gx10:42"
    assert summary["command"] == "slots deploy x" and summary["report"] == "r.json"
    assert [(p["name"], p["result"]) for p in summary["probes"]] == [
        ("readiness", "pass"),
        ("tool-call", "fail"),
        ("streaming", "not-run"),
        ("metrics", "skip"),
    ]
    # What was not measured is None ("n/a"), never 0.
    candidate = summary["candidate"]
    assert (candidate["ttft_ms_p50"], candidate["ttft_ms_p95"]) == (95.1, None)
    assert candidate["tokens_per_s"] == 41.2 and candidate["requests"] == 9
    baseline = summary["baseline"]
    assert (baseline["slot"], baseline["ttft_ms_p50"], baseline["tokens_per_s"]) == (
        "blue",
        10.0,
        None,
    )
    assert baseline["capabilities"] == {
        "tool_calls": True,
        "stream_usage": True,
        "structured_output": True,
    }
    # Evidence (raw engine output) is not kept in the cluster.
    assert "evidence" not in encode(summary)


def test_a_run_without_a_live_baseline_says_so() -> None:
    assert _build(_report())["baseline"] is None


def test_no_secret_and_no_terminal_control_reaches_the_summary() -> None:
    scrub.remember("sk-engine-key-123456")
    leaky = ProbeResult(
        "known-answer", False, 1.0, "server said: Bearer sk-engine-key-123456 \x1b]0;pwned\x07"
    )
    text = encode(_build(_report(leaky), command="slots deploy x --env HF_TOKEN=…"))
    assert "sk-engine-key-123456" not in text
    assert "\x1b" not in json.loads(text)["probes"][0]["detail"]


def test_the_summary_is_bounded_however_many_and_long_the_probes() -> None:
    probes = [
        ProbeResult(f"prompt:{i}", False, 1.0, "x" * 5000, evidence="y" * 2000) for i in range(500)
    ]
    summary = _build(_report(*probes))
    assert len(encode(summary)) <= MAX_BYTES
    assert len(summary["probes"]) <= MAX_PROBES
    assert len(summary["probes"]) + summary["probes_omitted"] == 500
    assert summary["passed"] is False and summary["revision"] == "rev-new"


def test_what_is_written_reads_back_equal() -> None:
    summary = _build(_report(baseline=BASELINE))
    last = last_smoke_of(_configmap(encode(summary)), "green")
    assert last is not None and last.error is None
    assert last.summary == summary


# -- the hostile read ---------------------------------------------------------------------------


GOOD = encode(_build(_report()))


@pytest.mark.parametrize(
    ("configmap", "why"),
    [
        ({"data": None}, "no data"),
        ({"data": ["not", "a", "map"]}, "no data"),
        ({"data": {"other": "x"}}, f"no key {KEY}"),
        (_configmap(12), "holds no text"),
        (_configmap("{not json"), "not valid JSON"),
        (_configmap("[" * 100_000 + "]" * 100_000), "oversized"),
        (_configmap("[" * 30_000 + "]" * 30_000), "not valid JSON"),  # too deep to parse
        (_configmap(GOOD + " " * 70_000), "oversized"),
        (_configmap('"a string"'), "not a JSON object"),
        (_configmap(json.dumps({"passed": True})), "not a gx10slots smoke summary"),
        (_configmap(GOOD.replace('"passed":false', '"passed":"yes"')), "`passed`"),
        (_configmap(GOOD.replace('"at":"2026-11-27T08:15:42Z"', '"at":"soon"')), "`at`"),
        (_configmap(GOOD.replace('"probes":[', '"probes":{"x":[').replace("]", "]}", 1)), "list"),
        (_configmap(GOOD.replace('"result":"pass"', '"result":"maybe"')), "result"),
        (_configmap(GOOD.replace('"slot":"green"', '"slot":"blue"', 1)), "slot 'blue', not green"),
    ],
)
def test_a_garbled_foreign_or_oversized_configmap_is_unreadable_never_a_crash(
    configmap: dict[str, Any], why: str
) -> None:
    last = last_smoke_of(configmap, "green")
    assert last is not None and last.summary is None
    assert last.error is not None and why in last.error
    view = last.view("rev-new", START)
    assert view == {"readable": False, "error": last.error}


def test_hostile_values_inside_a_valid_summary_are_bounded_and_made_printable() -> None:
    doc = json.loads(GOOD)
    doc["model"] = "m\x1b[2J" + "x" * 10_000
    doc["candidate"]["ttft_ms_p50"] = float("nan")
    doc["candidate"]["tokens_per_s"] = True
    doc["candidate"]["requests"] = -5
    doc["probes"] = [{"name": f"p{i}", "result": "fail"} for i in range(1000)]
    doc["extra"] = "ignored"
    last = last_smoke_of(_configmap(json.dumps(doc)), "green")
    assert last is not None and last.summary is not None
    summary = last.summary
    assert "\x1b" not in summary["model"] and len(summary["model"]) <= 256
    assert summary["candidate"]["ttft_ms_p50"] is None
    assert summary["candidate"]["tokens_per_s"] is None
    assert summary["candidate"]["requests"] == 0
    assert len(summary["probes"]) == MAX_PROBES and summary["probes_omitted"] == 1000 - MAX_PROBES
    assert "extra" not in summary
    assert len(encode(summary)) <= MAX_BYTES


@pytest.mark.parametrize("figure", ["9" * 400, "-" + "9" * 400, "1e400", "NaN", "-Infinity"])
def test_a_figure_no_float_can_hold_is_not_measured_never_a_crash(figure: str) -> None:
    # JSON numbers have no size limit: Python reads 400 digits as an int no float can hold.
    text = GOOD.replace('"tokens_per_s":41.2', f'"tokens_per_s":{figure}')
    assert text != GOOD
    last = last_smoke_of(_configmap(text), "green")
    assert last is not None and last.summary is not None, last
    assert last.summary["candidate"]["tokens_per_s"] is None
    assert last.summary["candidate"]["ttft_ms_p50"] == 95.1


def test_the_view_says_stale_when_the_slots_revision_moved_since() -> None:
    last = last_smoke_of(_configmap(GOOD), "green")
    assert last is not None
    now = START + timedelta(seconds=42 + 300)
    current = last.view("rev-new", now)
    assert current["readable"] and current["stale"] is False and current["age_s"] == 300.0
    assert last.view("rev-newer", now)["stale"] is True


def test_no_configmap_is_no_last_smoke() -> None:
    assert last_smoke_of(None, "green") is None


# -- status shows it ------------------------------------------------------------------------------


def _slot(last: dict[str, Any] | None, gate: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "role": "standby",
        "exists": True,
        "model": "sandbox/no-tools",
        "ready": 1,
        "replicas": 1,
        "revision": "rev-new",
        "smoke": gate,
        "last_smoke": last,
    }


def test_the_smoke_column_prefers_the_gates_record_then_the_kept_report() -> None:
    last = last_smoke_of(_configmap(GOOD), "green")
    assert last is not None
    now = START + timedelta(seconds=42 + 300)
    assert smoke_cell(_slot(None)) == "none"
    assert smoke_cell(_slot({"readable": False, "error": "x"})) == "unreadable"
    assert smoke_cell(_slot(last.view("rev-newer", now))) == "stale: FAILED"
    assert smoke_cell(_slot(last.view("rev-new", now))) == "unrecorded: FAILED"
    gate = {"passed": True, "age_s": 60}
    assert smoke_cell(_slot(last.view("rev-new", now), gate)) == "passed 60s ago"


def test_status_wide_shows_who_ran_the_last_smoke_and_both_slots_figures() -> None:
    summary = _build(_report(baseline=BASELINE))
    last = last_smoke_of(_configmap(encode(summary)), "green")
    assert last is not None
    doc: dict[str, Any] = {
        "namespace": "gx10",
        "previous": None,
        "flag": {"kind": "service-selector", "name": "gx10-model", "key": "k", "value": "blue"},
        "slots": {"green": _slot(last.view("rev-newer", START + timedelta(minutes=3)))},
        "warnings": [],
    }
    narrow, wide = status_text(doc), status_text(doc, wide=True)
    assert "stale: FAILED" in narrow and "alice@gx10:42" not in narrow
    assert all(len(x) <= 80 for x in narrow.split("\n\n")[0].splitlines()), narrow
    assert "SMOKE BY" in wide.splitlines()[0] and "alice@gx10:42" in wide
    line = next(x for x in wide.splitlines() if x.startswith("last smoke of green"))
    assert "FAILED 2m ago (2026-11-27T08:15:42Z) by alice@gx10:42" in line
    assert "revision rev-new (stale" in line
    assert "failed: tool-call, streaming" in line
    assert "green TTFT p50 95 ms, 41.2 tokens/s" in line
    assert "active blue TTFT p50 10 ms, n/a tokens/s" in line


def test_a_smoke_dated_in_the_future_says_so_never_a_negative_age() -> None:
    # Anyone with write access may date a summary (or the gate's record) years ahead.
    future = GOOD.replace('"at":"2026-11-27T08:15:42Z"', '"at":"9999-12-31T23:59:59Z"')
    last = last_smoke_of(_configmap(future), "green")
    assert last is not None and last.summary is not None
    doc: dict[str, Any] = {
        "namespace": "gx10",
        "previous": None,
        "flag": {"kind": "service-selector", "name": "gx10-model", "key": "k", "value": "blue"},
        "slots": {
            "green": _slot(last.view("rev-new", START), {"passed": True, "age_s": -3600.0}),
        },
        "warnings": [],
    }
    wide = status_text(doc, wide=True)
    line = next(x for x in wide.splitlines() if x.startswith("last smoke of green"))
    assert "FAILED dated in the future (9999-12-31T23:59:59Z)" in line, line
    assert smoke_cell(doc["slots"]["green"]) == "passed dated in the future"
    assert "s ago" not in wide and "-" + "3600" not in wide


def test_status_wide_says_when_the_gates_record_disagrees_with_the_kept_report() -> None:
    passed = _build(_report(ProbeResult("readiness", True, 1.0, "ok")))
    last = last_smoke_of(_configmap(encode(passed)), "green")
    assert last is not None
    tripped = {"passed": False, "age_s": 5, "report": "guard: 3 failed checks in a row"}
    doc: dict[str, Any] = {
        "namespace": "gx10",
        "previous": None,
        "flag": {"kind": "service-selector", "name": "gx10-model", "key": "k", "value": "blue"},
        "slots": {"green": _slot(last.view("rev-new", START + timedelta(minutes=3)), tripped)},
        "warnings": [],
    }
    wide = status_text(doc, wide=True)
    line = next(x for x in wide.splitlines() if x.startswith("last smoke of green"))
    assert line.startswith("last smoke of green: passed")
    assert "but the record flip reads says FAILED since (guard: 3 failed checks in a row)" in line
    assert "FAILED 5s ago" in wide  # the SMOKE column is the gate's
