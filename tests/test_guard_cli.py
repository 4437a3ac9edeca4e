"""`slots guard`, `--guard` on flip/flip-back/deploy, and the config's `guard:` section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gx10slots.config import GuardConfig, parse_config
from gx10slots.deploy.result import Deployed
from gx10slots.errors import ConfigError, Refused
from gx10slots.flip.result import FlipResult
from gx10slots.guard import run as guard_mod
from gx10slots.guard.result import GuardResult
from tests.helpers.cli import run_cli
from tests.helpers.config import valid

# -- config --------------------------------------------------------------------------------------


def test_guard_section_defaults_and_values() -> None:
    assert parse_config(valid()).guard == GuardConfig()
    doc = valid()
    doc["guard"] = {
        "window": "2m",
        "interval": "5s",
        "failures": 2,
        "probe_timeout": "3s",
        "error_share": 0.5,
        "ttft_ratio": 4,
        "ttft_floor": "500ms",
    }
    guard = parse_config(doc).guard
    assert guard == GuardConfig(
        window_s=120,
        interval_s=5,
        failures=2,
        probe_timeout_s=3,
        error_share=0.5,
        ttft_ratio=4.0,
        ttft_floor_s=0.5,
    )


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("error_share", 0, "guard.error_share: expected a fraction between 0 and 1"),
        ("error_share", 1.5, "guard.error_share: expected a fraction between 0 and 1"),
        ("ttft_ratio", 0.5, "guard.ttft_ratio: expected at least 1"),
        ("failures", 0, "guard.failures: expected at least 1"),
        ("failures", 2.5, "guard.failures: expected a whole number"),
        ("interval", "soon", "guard.interval: 'soon' is not a duration"),
        ("window", "0s", "guard.window: expected a positive duration"),
        ("probe_timout", "3s", "guard.probe_timout: unknown key"),
    ],
)
def test_guard_section_mistakes_name_the_key(key: str, value: Any, message: str) -> None:
    doc = valid()
    doc["guard"] = {key: value}
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert message in info.value.message


# -- usage ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["guard", "--failures", "0"], "--failures"),
        (["guard", "--for", "soon"], "'soon' is not a duration"),
        (["guard", "--interval", "0s"], "is not a positive duration"),
        (["flip", "--dry-run", "--guard", "1m"], "--guard watches a real flip"),
        (["flip-back", "--dry-run", "--guard", "1m"], "--guard watches a real flip"),
        (["deploy", "m", "--guard", "1m"], "it needs --flip"),
        (["deploy", "m", "--flip", "--dry-run", "--guard", "1m"], "it needs --flip"),
    ],
)
def test_bad_guard_usage_is_exit_2(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    result = run_cli(capsys, *args)
    assert result.code == 2, result.err
    assert message in result.err


def test_help_documents_guard_and_its_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "guard", "--help")
    assert result.code == 0
    for text in ("--for DURATION", "--interval DURATION", "--failures N", "Exit 0", "3: refused"):
        assert text in result.out
    for command in ("flip", "flip-back", "deploy"):
        assert "--guard DURATION" in run_cli(capsys, command, "--help").out


# -- wiring to the operation (the operation itself is tested in test_guard.py) -------------------

TRIPPED_REPORT = {
    "action": "guard",
    "result": "tripped",
    "slot": "green",
    "checks": 4,
    "consecutive_failures": 3,
    "revert": {"to": "blue", "reason": "3 consecutive failed checks", "in_flight_on_guarded": 1},
    "error": {"type": "check-failed", "message": "flipped back", "exit_code": 1},
}
TRIPPED = GuardResult(TRIPPED_REPORT)
FLIPPED = FlipResult(
    action="flip", source="blue", target="green", model="new", source_model="old", duration_s=0.5
)


@pytest.fixture
def config_file(workdir: Path) -> Path:
    path = workdir / "slots.yaml"
    path.write_text(yaml.safe_dump(valid()))
    return path


@pytest.fixture
def tripping_guard(monkeypatch: pytest.MonkeyPatch) -> list[guard_mod.GuardRequest]:
    """A guard that trips at once: the requests it was given."""
    requests: list[guard_mod.GuardRequest] = []

    def fake_guard(app: Any, request: guard_mod.GuardRequest) -> GuardResult:
        requests.append(request)
        return TRIPPED

    monkeypatch.setattr(guard_mod, "guard", fake_guard)
    return requests


def test_guard_trip_exits_1_with_one_json_document(
    capsys: pytest.CaptureFixture[str], tripping_guard: list[Any], config_file: Path
) -> None:
    result = run_cli(capsys, "-o", "json", "guard", "--for", "20s", "--interval", "1s")
    assert result.code == 1
    assert result.json()["result"] == "tripped"
    assert tripping_guard == [guard_mod.GuardRequest(window_s=20.0, interval_s=1.0)]


def test_guard_human_summary(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, config_file: Path
) -> None:
    monkeypatch.setattr(guard_mod, "guard", lambda app, request: TRIPPED)
    result = run_cli(capsys, "guard")
    assert result.code == 1
    assert "guard green: TRIPPED after 3 failed checks in a row" in result.out
    assert "production is on blue again (verified); 1 request(s) were still running" in result.out
    passed = GuardResult(
        {**TRIPPED_REPORT, "result": "passed", "failed_checks": 1, "settings": {"failures": 3}}
    )
    monkeypatch.setattr(guard_mod, "guard", lambda app, request: passed)
    result = run_cli(capsys, "guard")
    assert result.code == 0
    assert "the window passed: 4 check(s), 1 failed" in result.out


def test_flip_with_guard_guards_the_new_slot_and_reports_both(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tripping_guard: list[Any],
    config_file: Path,
) -> None:
    from gx10slots.flip import run as flip_mod

    monkeypatch.setattr(flip_mod, "flip", lambda app, mode, **kw: FLIPPED)
    result = run_cli(capsys, "-o", "json", "flip", "--guard", "2m")
    assert result.code == 1
    doc = result.json()
    assert doc["to"] == "green"
    assert doc["guard"]["result"] == "tripped"
    assert tripping_guard == [guard_mod.GuardRequest(window_s=120.0, expected="green")]


def test_break_lock_on_a_guarded_flip_also_applies_to_the_guards_flip_back(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, config_file: Path
) -> None:
    from gx10slots.flip import run as flip_mod

    requests: list[Any] = []

    def fake_guard(app: Any, request: guard_mod.GuardRequest) -> GuardResult:
        requests.append(request)
        return TRIPPED

    monkeypatch.setattr(flip_mod, "flip", lambda app, mode, **kw: FLIPPED)
    monkeypatch.setattr(guard_mod, "guard", fake_guard)
    run_cli(capsys, "-o", "json", "flip", "--guard", "2m", "--break-lock")
    assert requests == [guard_mod.GuardRequest(window_s=120.0, expected="green", break_lock=True)]


def test_flip_with_guard_refused_keeps_the_flip_result_and_exits_3(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, config_file: Path
) -> None:
    from gx10slots.flip import run as flip_mod

    def refuse(app: Any, request: Any) -> dict[str, Any]:
        raise Refused("not guarding green: slot blue is not ready")

    monkeypatch.setattr(flip_mod, "flip", lambda app, mode, **kw: FLIPPED)
    monkeypatch.setattr(guard_mod, "guard", refuse)
    result = run_cli(capsys, "flip-back", "--guard", "1m")
    assert result.code == 3
    assert "production: blue -> green" in result.out
    assert "guard green: refused: not guarding green: slot blue is not ready" in result.out


def test_deploy_flip_with_guard_guards_after_the_deploy(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, config_file: Path
) -> None:
    from gx10slots.deploy import run as deploy_mod

    deployed = Deployed(
        slot="green",
        model="new",
        served_name="new",
        revision="r",
        changed=True,
        smoke_report="rep.json",
        flip=FLIPPED,
    )
    requests: list[Any] = []

    def fake_guard(app: Any, request: guard_mod.GuardRequest) -> GuardResult:
        requests.append(request)
        return GuardResult({**TRIPPED_REPORT, "result": "passed"})

    monkeypatch.setattr(deploy_mod, "deploy", lambda app, request, *hooks: deployed)
    monkeypatch.setattr(guard_mod, "guard", fake_guard)
    result = run_cli(
        capsys, "-o", "json", "deploy", "new", "--flip", "--guard", "30s", "--report-dir", "r"
    )
    assert result.code == 0
    assert result.json()["guard"]["result"] == "passed"
    assert requests == [guard_mod.GuardRequest(window_s=30.0, report_dir="r", expected="green")]
