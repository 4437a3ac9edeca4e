from __future__ import annotations

import pytest

from tests.helpers.cli import run_cli


def test_help_lists_commands_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "--help")
    assert result.code == 0
    assert "status" in result.out and "sandbox" in result.out
    assert "3 refused by a safety gate" in result.out


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "fliip")
    assert result.code == 2
    assert "No such command 'fliip'" in result.err
    assert "Traceback" not in result.err


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-o", "yaml", "status"], "'yaml' is not one of 'table', 'json'"),
        (["-n", "Bad_NS", "status"], "'Bad_NS' is not a namespace name"),
        (["--bogus", "status"], "No such option '--bogus'"),
        (["--config"], "Option '--config' requires an argument"),
    ],
)
def test_bad_global_options_exit_2_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    result = run_cli(capsys, *args)
    assert result.code == 2
    assert message in result.err
    assert "Traceback" not in result.err


def test_json_output_carries_the_error_document_on_stdout(
    capsys: pytest.CaptureFixture[str], workdir: object
) -> None:
    result = run_cli(capsys, "-o", "json", "status")
    assert result.code == 2
    error = result.json()["error"]
    assert error["type"] == "config"
    assert error["exit_code"] == 2
    assert "slots.yaml not found" in error["message"]


def test_json_usage_error_is_still_one_json_document(capsys: pytest.CaptureFixture[str]) -> None:
    result = run_cli(capsys, "-ojson", "status", "--nope")
    assert result.code == 2
    assert result.json()["error"]["type"] == "usage"


def test_output_env_var_is_honoured(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, workdir: object
) -> None:
    monkeypatch.setenv("SLOTS_OUTPUT", "json")
    result = run_cli(capsys, "status")
    assert result.json()["error"]["exit_code"] == 2


def test_config_mistake_names_the_key(capsys: pytest.CaptureFixture[str], workdir: object) -> None:
    from pathlib import Path

    Path("slots.yaml").write_text(
        "namespace: gx10\nslots: {}\nflag: {kind: service-selector, name: x}\n"
    )
    result = run_cli(capsys, "status")
    assert result.code == 2
    assert "error: slots.yaml: slots.blue: is required" in result.err
