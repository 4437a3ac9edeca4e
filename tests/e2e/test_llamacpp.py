"""The full flow on the real llama.cpp engine: tiny-pong passes, tiny-babble never reaches
production (issues 3 and 4)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.helpers.sandbox import Sandbox
from tests.helpers.traffic import ProductionTraffic

pytestmark = pytest.mark.e2e


def test_tiny_pong_deploys_flips_and_flips_back_with_zero_failed_requests(
    llama_sandbox: Sandbox,
) -> None:
    box = llama_sandbox
    with ProductionTraffic(box.info["prod_endpoint"]) as traffic:
        result = box.cli(
            "-o",
            "json",
            "deploy",
            "tiny-pong",
            "--served-name",
            "pong-v1",
            # llama-cpp-python serves one name: clients of sandbox-ok are knowingly dropped.
            "--rename",
            "--flip",
            "--format",
            "json,md,junit",
        )
        assert result.code == 0, result.err
        assert box.production() == "pong-v1"
        assert box.cli("flip-back").code == 0
        assert box.production() == "sandbox-ok"
    print(f"production requests: {dict(traffic.outcomes)}")
    assert traffic.failures == 0, traffic.outcomes
    # llama-cpp-python echoes the request's model name, so count backends (pods) instead.
    assert len(traffic.backends) == 2, traffic.backends
    reports = result.json()["reports"]
    report = json.loads(Path(reports[0]).read_text())
    assert report["passed"] and report["engine"] == "llama-cpp-python"
    known = next(p for p in report["probes"] if p["name"] == "known-answer")
    assert "pong" in known["detail"]
    suite = ET.parse(reports[2]).getroot()
    assert int(suite.get("tests", "0")) == len(report["probes"])
    assert int(suite.get("failures", "0")) == 0
    assert "Smoke passed" in Path(reports[1]).read_text()


def test_tiny_babble_is_refused_by_smoke_and_production_never_sees_it(
    llama_sandbox: Sandbox,
) -> None:
    box = llama_sandbox
    with ProductionTraffic(box.info["prod_endpoint"]) as traffic:
        result = box.cli(
            "deploy",
            "tiny-babble",
            "--served-name",
            "babble",
            "--rename",
            "--flip",
            "--format",
            "json,md,junit",
        )
    assert result.code == 1, result.err
    assert "smoke failed" in result.err and "known-answer" in result.err
    assert box.flag() == "blue"
    assert traffic.failures == 0 and "babble" not in traffic.served_by
    report_json = sorted((box.dir / "reports").glob("*-green.json"))[-1]
    report = json.loads(report_json.read_text())
    known = next(p for p in report["probes"] if p["name"] == "known-answer")
    assert not known["passed"] and "expected /pong/i" in known["detail"]
    assert known["evidence"]
    junit = ET.parse(report_json.with_suffix(".xml")).getroot()
    assert int(junit.get("failures", "0")) >= 1
    status = box.cli("-o", "json", "status").json()
    assert status["slots"]["green"]["smoke"]["passed"] is False
