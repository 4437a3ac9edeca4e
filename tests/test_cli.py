from __future__ import annotations

import pytest

from tests.cli_helpers import run_cli


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
        (["-o", "xml", "status"], "'xml' is not one of 'table', 'wide', 'json', 'yaml'"),
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


# -- kubectl's conventions -----------------------------------------------------------------------


def test_global_options_are_also_taken_after_the_subcommand(
    capsys: pytest.CaptureFixture[str], workdir: object
) -> None:
    # The config is read (so -o reached the command): before, `status -o json` was
    # "No such option '-o'".
    result = run_cli(capsys, "status", "-o", "json")
    assert result.code == 2
    assert result.json()["error"]["type"] == "config"
    # --config after the subcommand is the config read.
    result = run_cli(capsys, "status", "--config", "elsewhere.yaml")
    assert "config file elsewhere.yaml not found" in result.err


def test_an_option_after_the_subcommand_overrides_the_one_before(
    capsys: pytest.CaptureFixture[str], workdir: object
) -> None:
    import yaml

    result = run_cli(capsys, "-o", "json", "status", "-o", "yaml")
    assert yaml.safe_load(result.out)["error"]["type"] == "config"
    result = run_cli(capsys, "--config", "a.yaml", "status", "--config", "b.yaml")
    assert "config file b.yaml not found" in result.err


def test_yaml_output_is_one_document_on_stdout(
    capsys: pytest.CaptureFixture[str], workdir: object
) -> None:
    import yaml

    result = run_cli(capsys, "-o", "yaml", "history")
    assert result.code == 2
    assert yaml.safe_load(result.out)["error"]["exit_code"] == 2


def test_after_a_subcommand_n_is_the_namespace(
    capsys: pytest.CaptureFixture[str], workdir: object
) -> None:
    result = run_cli(capsys, "history", "-n", "Bad_NS")
    assert result.code == 2
    assert "'Bad_NS' is not a namespace name" in result.err
    assert run_cli(capsys, "history", "-l", "0").code == 2
    assert "Traceback" not in result.err


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_completion_prints_a_script_for_the_shell(
    capsys: pytest.CaptureFixture[str], shell: str
) -> None:
    result = run_cli(capsys, "completion", shell)
    assert result.code == 0
    assert "_SLOTS_COMPLETE" in result.out and f"{shell}_complete" in result.out


def test_completion_of_an_unknown_shell_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run_cli(capsys, "completion", "tcsh").code == 2


def test_completion_offers_slot_names_where_a_slot_is_an_argument(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from click.shell_completion import ShellComplete

    from gx10slots.cli import cli

    complete = ShellComplete(cli, {}, "slots", "_SLOTS_COMPLETE")
    assert [c.value for c in complete.get_completions(["park"], "")] == [
        "blue",
        "green",
        "standby",
    ]
    assert [c.value for c in complete.get_completions(["smoke"], "g")] == ["green"]
    assert [c.value for c in complete.get_completions(["deploy", "m", "--slot"], "")] == [
        "blue",
        "green",
    ]
    assert "json" in [c.value for c in complete.get_completions(["status", "-o"], "")]


def test_every_global_option_after_the_subcommand_reaches_the_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gx10slots.app import App
    from gx10slots.errors import Refused

    seen: list[App] = []

    def fake_status(app: App) -> None:
        seen.append(app)
        raise Refused("stop here")

    monkeypatch.setattr("gx10slots.ops.status.status", fake_status)
    result = run_cli(
        capsys,
        "-v",
        "--namespace",
        "before",
        "status",
        "-v",
        "-n",
        "after",
        "--context",
        "ctx2",
        "--kubeconfig",
        "kc2",
        "--config",
        "c2.yaml",
        "-o",
        "wide",
    )
    assert result.code == 3 and "stop here" in result.err
    options = seen[0].options
    assert (options.namespace, options.context, options.kubeconfig) == ("after", "ctx2", "kc2")
    assert (options.config_path, options.output, options.verbosity) == ("c2.yaml", "wide", 2)
    # -q after the subcommand counts against -v before it, as the two would before it.
    run_cli(capsys, "-v", "status", "-q", "-q")
    assert seen[1].options.verbosity == -1
