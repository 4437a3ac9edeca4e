"""docs/cli.md, generated from the `--help` of every command: ``python -m gx10slots.clidocs``.

Each command's help is rendered by click's own formatter at a fixed width, so the page is exactly
what ``slots ... --help`` prints on a terminal of ``COLUMNS`` (100) columns.
``tests/docs/test_cli_docs.py`` fails when the committed page differs from :func:`render`;
regenerate with::

    .venv/bin/python -m gx10slots.clidocs > docs/cli.md
"""

from __future__ import annotations

import sys
from collections.abc import Iterator

import click

# Click formats help 2 columns narrower than the terminal: this is a 100-column terminal's page.
COLUMNS = 100
WIDTH = COLUMNS - 2
REGENERATE = ".venv/bin/python -m gx10slots.clidocs > docs/cli.md"

HEADER = f"""\
# `slots` command reference

<!-- Generated from the commands' own `--help` by
       {REGENERATE}
     Do not edit by hand: tests/docs/test_cli_docs.py fails when this page is stale. -->

Every command and subcommand of `slots`, as `--help` prints it. Global options go before or
after the subcommand, as with kubectl: `slots -o json status` and `slots status -o json` are the
same; given twice, the one after the subcommand wins. `-n` is always the namespace
(`slots history -n gx10 -l 5`: `-l`/`--limit` is the number of entries). `-o` takes
`table` (the default: the columns that matter, values never cut), `wide` (every column), `json`
or `yaml` (one document on stdout, errors included).

What the exit codes mean and what to do about each: [runbook.md](runbook.md#exit-codes).
The config file: [config.md](config.md).

## Shell completion

`slots completion bash|zsh|fish` prints click's completion script for your shell. It completes
commands, options and the fixed choices (slot names, `-o table|wide|json|yaml`). Generate the
script once (running `slots` on every new shell is slower):

```sh
# bash (4.4 or later)
slots completion bash > ~/.slots-complete.bash
echo '. ~/.slots-complete.bash' >> ~/.bashrc

# zsh
slots completion zsh > ~/.slots-complete.zsh
echo '. ~/.slots-complete.zsh' >> ~/.zshrc

# fish
slots completion fish > ~/.config/fish/completions/slots.fish
```

Regenerate the script after upgrading `slots`. `slots` must be on `PATH` when you press Tab
(`. .venv/bin/activate`, or a `pip install` of the project).

## Commands
"""


def _context(command: click.Command, name: str, parent: click.Context | None) -> click.Context:
    """A context like the one click builds for ``--help``, at a fixed width; nothing is parsed."""
    settings = {
        **command.context_settings,
        "terminal_width": WIDTH,
        "max_content_width": COLUMNS,
    }
    return click.Context(command, info_name=name, parent=parent, **settings)


def _walk(
    command: click.Command, name: str, parent: click.Context | None = None
) -> Iterator[click.Context]:
    """The command's context, then every subcommand's, depth first, in click's listing order."""
    ctx = _context(command, name, parent)
    yield ctx
    if isinstance(command, click.Group):
        for sub_name in command.list_commands(ctx):
            sub = command.get_command(ctx, sub_name)
            if sub is not None and not sub.hidden:
                yield from _walk(sub, sub_name, ctx)


def _section(ctx: click.Context) -> str:
    help_text = ctx.command.get_help(ctx).rstrip()
    return f"### `{ctx.command_path}`\n\n```text\n{help_text}\n```\n"


def render(group: click.Group | None = None) -> str:
    """The whole of docs/cli.md for ``group`` (default: the `slots` CLI)."""
    if group is None:
        from gx10slots.cli import cli

        group = cli
    contexts = list(_walk(group, "slots"))
    index = "".join(f"- [`{c.command_path}`](#{_anchor(c.command_path)})\n" for c in contexts)
    sections = "\n".join(_section(c) for c in contexts)
    return f"{HEADER}\n{index}\n{sections}"


def _anchor(title: str) -> str:
    """GitHub's heading anchor for a heading that is only ``title`` in backquotes."""
    kept = (ch for ch in title.lower() if ch.isalnum() or ch in " -_")
    return "".join(kept).replace(" ", "-")


def main() -> None:
    sys.stdout.write(render())


if __name__ == "__main__":
    main()
