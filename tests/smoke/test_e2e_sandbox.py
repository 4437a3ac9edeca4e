"""The suite against the sandbox's fault-injecting model server: a real HTTP peer per test."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from gx10slots.smoke import Report, SuiteSettings, get_profile, run_suite, write_reports
from tests.helpers.modelservers import QUICK_SUITE, Serve, failures, model_servers, results

modelserver = pytest.importorskip("gx10slots.sandbox.modelserver")

pytestmark = pytest.mark.e2e

SERVED = "gx10"
SCHEMA = json.loads((Path(__file__).parents[2] / "docs" / "report-schema.json").read_text())

SETTINGS = dataclasses.replace(QUICK_SUITE, structured_output=True)


@pytest.fixture
def serve() -> Iterator[Serve]:
    with model_servers() as start:
        yield lambda model, **options: start(model, served_name=SERVED, **options)


def smoke(server: Any, settings: SuiteSettings = SETTINGS, **kw: Any) -> Report:
    return run_suite(server.url, SERVED, get_profile("vllm"), settings, slot="green", **kw)


def test_ok_passes_the_default_suite(serve: Serve, tmp_path: Path) -> None:
    report = smoke(serve("sandbox/ok"))
    assert report.passed, failures(report)
    r = results(report)
    assert r["known-answer"].detail.startswith("answered 'pong'")
    assert r["tool-call"].detail.startswith("called get_weather")
    assert r["structured-output"].detail.startswith("answered JSON matching the schema")
    assert "no stall" in r["progress"].detail
    paths = write_reports(report, tmp_path)
    jsonschema.validate(
        json.loads(paths[0].read_text()), SCHEMA, cls=jsonschema.Draft202012Validator
    )


def test_wedge_fails_known_answer_in_time_and_the_stall_check_flags_it(serve: Serve) -> None:
    settings = dataclasses.replace(SETTINGS, probe_timeout_s=1.0)
    started = time.monotonic()
    report = smoke(serve("sandbox/wedge"), settings)
    elapsed = time.monotonic() - started
    r = results(report)
    assert r["readiness"].passed and r["identity"].passed  # what /health-only checks see
    assert r["known-answer"].detail == "timed out after 1.0 s waiting for the answer"
    assert r["known-answer"].duration_ms < 1500
    assert r["progress"].detail.startswith("stall: vllm:num_requests_running stayed at 1 or more")
    assert elapsed < 6.0


def test_no_json_fails_structured_output_and_nothing_else(serve: Serve) -> None:
    report = smoke(serve("sandbox/no-json"))
    ((name, detail),) = failures(report)
    assert name == "structured-output" and detail.startswith("the answer is not JSON")


def test_wrong_name_fails_identity(serve: Serve) -> None:
    report = smoke(serve("sandbox/wrong-name"))
    assert results(report)["identity"].detail == (
        "expected exactly ['gx10'], /v1/models holds ['gx10-wrong']"
    )


def test_no_tools_fails_tool_call_as_leaked(serve: Serve) -> None:
    report = smoke(serve("sandbox/no-tools"))
    assert failures(report) == [
        (
            "tool-call",
            'tool call leaked into content: <tool_call>{"name": "get_weather", '
            '"arguments": {"city": "Paris"}}</tool_call>',
        )
    ]


def test_garbage_fails_known_answer_with_the_evidence(serve: Serve) -> None:
    report = smoke(serve("sandbox/garbage"))
    known = results(report)["known-answer"]
    assert known.detail.startswith("expected /pong/i, got '")
    assert known.evidence.startswith("content: ") and len(known.evidence.split()) > 10


def test_slow_passes_with_the_ttft_measured(serve: Serve) -> None:
    report = smoke(serve("sandbox/slow-1s"), dataclasses.replace(SETTINGS, stall_window_s=3.0))
    assert report.passed, failures(report)
    assert results(report)["streaming"].metrics["ttft_ms"] >= 1000
    assert report.summary.ttft_ms_p50 >= 1000


def test_flaky_fails_burst(serve: Serve) -> None:
    report = smoke(serve("sandbox/flaky-50"), dataclasses.replace(SETTINGS, burst=16))
    burst = results(report)["burst"]
    assert not burst.passed
    assert "requests failed: /v1/chat/completions answered HTTP 500" in burst.detail


def test_loading_passes_after_readiness_waits(serve: Serve) -> None:
    report = smoke(serve("sandbox/loading-1s"))
    assert report.passed, failures(report)
    readiness = results(report)["readiness"]
    assert readiness.metrics["attempts"] > 1 and readiness.metrics["waited_ms"] >= 800


def test_a_planted_api_key_is_used_and_appears_in_no_report(serve: Serve, tmp_path: Path) -> None:
    key = "sk-sandbox-planted-0123456789"
    server = serve("sandbox/ok", api_key=key)
    without = smoke(server)
    assert "answered HTTP 401" in results(without)["known-answer"].detail
    report = smoke(server, api_key=key)
    assert report.passed, failures(report)
    for path in write_reports(report, tmp_path):
        assert key not in path.read_text()
