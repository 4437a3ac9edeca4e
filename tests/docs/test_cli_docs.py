"""docs/cli.md cannot rot: it is exactly what ``python -m gx10slots.clidocs`` renders from the
commands' own ``--help``, and the shell completion its header documents works."""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from gx10slots import clidocs
from gx10slots.cli import cli

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"
# The console script of the environment running the tests (.venv/bin/slots in this repository).
SLOTS = Path(sys.executable).with_name("slots")


def _command_paths(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    ctx = click.Context(group)
    paths: list[tuple[str, ...]] = [prefix]
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        if command is None or command.hidden:
            continue
        if isinstance(command, click.Group):
            paths += _command_paths(command, (*prefix, name))
        else:
            paths.append((*prefix, name))
    return paths


def _section(text: str, title: str) -> str | None:
    match = re.search(rf"^### `{re.escape(title)}`\n\n```text\n(.*?)\n```$", text, re.M | re.S)
    return match.group(1) if match else None


def test_cli_md_is_current() -> None:
    expected = clidocs.render()
    actual = CLI_MD.read_text(encoding="utf-8") if CLI_MD.exists() else ""
    if actual != expected:
        diff = difflib.unified_diff(
            actual.splitlines(keepends=True),
            expected.splitlines(keepends=True),
            "docs/cli.md (committed)",
            "docs/cli.md (rendered from --help)",
        )
        excerpt = "".join(list(diff)[:80])
        pytest.fail(
            f"docs/cli.md is stale: regenerate it with `{clidocs.REGENERATE}`\n{excerpt}",
            pytrace=False,
        )


@pytest.mark.parametrize("path", _command_paths(cli), ids=lambda p: " ".join(("slots", *p)))
def test_each_section_is_what_help_prints(
    path: tuple[str, ...], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every command has a section, identical to its --help on a COLUMNS-wide terminal."""
    monkeypatch.setenv("COLUMNS", str(clidocs.COLUMNS))  # click sizes help from the terminal
    code = cli.main([*path, "--help"], prog_name="slots", standalone_mode=False)
    assert code == 0
    title = " ".join(("slots", *path))
    section = _section(clidocs.render(), title)
    assert section is not None, f"no section for `{title}` in docs/cli.md"
    assert section == capsys.readouterr().out.rstrip()


def test_render_walks_nested_groups_and_skips_hidden_commands() -> None:
    @click.group()
    def top() -> None:
        """Top."""

    @top.group()
    def outer() -> None:
        """Outer group."""

    @outer.command()
    @click.option("--flag", is_flag=True, help="A flag.")
    def inner(flag: bool) -> None:
        """Inner command."""

    @top.command(hidden=True)
    def secret() -> None:
        """Hidden."""

    page = clidocs.render(top)
    assert "### `slots outer inner`" in page
    assert "Usage: slots outer inner [OPTIONS]" in page
    assert "--flag" in page
    assert "secret" not in page
    assert "- [`slots outer inner`](#slots-outer-inner)" in page


# -- shell completion (click's own mechanism, documented in the page's header) ----------------

SHELLS = {
    "bash": "_slots_completion() {",
    "zsh": "_slots_completion() {",
    "fish": "function _slots_completion",
}


def _run_slots(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    assert SLOTS.exists(), f"{SLOTS} not found: install the project into this environment"
    return subprocess.run(
        [str(SLOTS), *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.e2e
@pytest.mark.parametrize("shell", sorted(SHELLS))
def test_completion_script_is_printed(shell: str) -> None:
    assert f"slots completion {shell} >" in clidocs.HEADER, "documented in docs/cli.md"
    result = _run_slots("completion", shell)
    assert result.returncode == 0, result.stderr
    assert SHELLS[shell] in result.stdout, result.stdout[:500]
    # click's own variable still works, for scripts generated the earlier way.
    old = _run_slots(env={"_SLOTS_COMPLETE": f"{shell}_source"})
    assert old.stdout == result.stdout


def _bash_complete(tmp_path: Path, words: str, cword: int) -> list[str]:
    bash = shutil.which("bash")
    assert bash is not None, "bash is part of the test image"
    script = tmp_path / "slots-complete.bash"
    script.write_text(_run_slots("completion", "bash").stdout, encoding="utf-8")
    probe = (
        f'. "{script}"; COMP_WORDS=({words}); COMP_CWORD={cword}; _slots_completion slots; '
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(
        [bash, "-c", probe],
        env={**os.environ, "PATH": f"{SLOTS.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


@pytest.mark.e2e
def test_bash_completion_completes_subcommands_and_slot_names(tmp_path: Path) -> None:
    assert _bash_complete(tmp_path, "slots fl", 1) == ["flip", "flip-back"]
    assert _bash_complete(tmp_path, 'slots park ""', 2) == ["blue", "green", "standby"]
    assert _bash_complete(tmp_path, "slots status -o y", 3) == ["yaml"]
