"""The operator docs cannot rot: links resolve, every `slots` command shown parses, and the runbook
names every refusal and failure the code can raise.

- Links: every relative link in docs/*.md points at a file that exists, and at a heading that
  exists when it has an anchor (GitHub's anchor rules).
- Commands: every line of a ``sh`` block, and every inline code span, that starts with ``slots``
  in the operator pages (``COMMAND_PAGES``) is run through click with ``--help`` appended: an
  unknown command or option fails it (values are not checked: ``--help`` stops parsing first).
- Messages: the literal text of every ``Refused``, ``CheckFailed``, ``StateUnknown``,
  ``ClusterError`` and ``LockHeld`` message in gx10slots (and the Flux blockers, raised through a
  variable) must appear in docs/runbook.md. A new message fails this test until it is documented.
"""

from __future__ import annotations

import ast
import re
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from gx10slots.cli import cli

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PACKAGE = ROOT / "gx10slots"
RUNBOOK = DOCS / "runbook.md"
PAGES = sorted(DOCS.glob("*.md"))
# The pages whose commands are checked. The others (config.md, benchmarks.md, ...) belong to other
# changes and quote commands in shorthand (`slots sandbox up|down`).
COMMAND_PAGES = [
    DOCS / name
    for name in (
        "README.md",
        "quickstart.md",
        "concepts.md",
        "runbook.md",
        "gx10-memory.md",
        "flux.md",
        "ci.md",
        "reports.md",
        "cli.md",
    )
]

# Written concurrently by other changes: a link to them may precede the file.
PENDING: set[str] = set()

_FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^#{1,6} +(.+?) *$", re.M)
_INLINE = re.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_SHELL_STOP = {"|", "||", "&&", ";", "&", ">", ">>", "<", "2>", "2>&1"}
_RAISED = {"Refused", "CheckFailed", "StateUnknown", "ClusterError", "LockHeld"}
_BLOCKERS = {"flux_deploy_blocker", "flux_blocker"}


def _prose(text: str) -> str:
    """The page without its fenced blocks (headings and links inside them do not count)."""
    return _FENCE.sub("", text)


def _anchor(heading: str) -> str:
    kept = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return kept.replace(" ", "-")


def _anchors(page: Path) -> set[str]:
    return {_anchor(h) for h in _HEADING.findall(_prose(page.read_text(encoding="utf-8")))}


def _links() -> Iterator[tuple[str, str]]:
    for page in PAGES:
        for target in _LINK.findall(_prose(page.read_text(encoding="utf-8"))):
            if not re.match(r"^[a-z]+:", target):
                yield page.name, target


@pytest.mark.parametrize(("page", "target"), list(_links()), ids=lambda v: str(v))
def test_relative_links_resolve(page: str, target: str) -> None:
    path_part, _, anchor = target.partition("#")
    destination = (DOCS / page).parent / path_part if path_part else DOCS / page
    if path_part in PENDING and not destination.exists():
        pytest.skip(f"{path_part} is being written by another change")
    assert destination.exists(), f"{page}: link to {target}: {destination} does not exist"
    if anchor and destination.suffix == ".md":
        assert anchor in _anchors(destination), f"{page}: no heading for #{anchor} in {path_part}"


# -- commands --------------------------------------------------------------------------------


def _shell_lines(text: str) -> Iterator[str]:
    for lang, body in _FENCE.findall(text):
        if lang not in ("sh", "bash", "shell"):
            continue
        logical = ""
        for line in body.splitlines():
            if line.rstrip().endswith("\\"):
                logical += line.rstrip()[:-1] + " "
                continue
            yield logical + line
            logical = ""


def _commands() -> Iterator[tuple[str, str]]:
    for page in COMMAND_PAGES:
        text = page.read_text(encoding="utf-8")
        candidates = list(_shell_lines(text))
        candidates += [span for span in _INLINE.findall(_prose(text)) if "..." not in span]
        for line in candidates:
            try:
                words = shlex.split(line, comments=True)
            except ValueError:
                continue
            while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
                words = words[1:]  # VAR=value before the command
            if words[:1] != ["slots"]:
                continue
            args: list[str] = []
            for word in words[1:]:
                if word in _SHELL_STOP or word.startswith((">", "2>")):
                    break
                args.append(word)
            yield page.name, shlex.join(["slots", *args])


@pytest.mark.parametrize(("page", "command"), sorted(set(_commands())), ids=lambda v: str(v))
def test_documented_commands_parse(page: str, command: str) -> None:
    args = shlex.split(command)[1:]
    try:
        code = cli.main([*args, "--help"], prog_name="slots", standalone_mode=False)
    except Exception as exc:  # noqa: BLE001 - any click error is the finding
        pytest.fail(f"{page}: `{command}` does not parse: {exc}", pytrace=False)
    assert code == 0, f"{page}: `{command}`"


# -- messages --------------------------------------------------------------------------------


def _literal(node: ast.expr) -> ast.expr | None:
    """The string expression a message is built from (through ``+`` and ``.rstrip()``)."""
    if isinstance(node, ast.BinOp):
        return _literal(node.left)
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        return _literal(node.func.value)
    if isinstance(node, ast.JoinedStr) or (
        isinstance(node, ast.Constant) and isinstance(node.value, str)
    ):
        return node
    return None


def _fragment(node: ast.expr) -> str:
    """The longest literal piece of a message: what any rendering of it must contain."""
    if isinstance(node, ast.Constant):
        return str(node.value).strip()
    assert isinstance(node, ast.JoinedStr)
    pieces = [str(v.value) for v in node.values if isinstance(v, ast.Constant)]
    return max(pieces, key=len, default="").strip()


def _messages() -> Iterator[tuple[str, str]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if "sandbox" in path.relative_to(PACKAGE).parts:
            continue
        where = str(path.relative_to(ROOT))
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
                if node.func.id in _RAISED and node.args:
                    message = _literal(node.args[0])
                    if message is not None:
                        yield f"{where}:{node.lineno}", _fragment(message)
            elif isinstance(node, ast.FunctionDef) and node.name in _BLOCKERS:
                for ret in ast.walk(node):
                    if isinstance(ret, ast.Return) and ret.value is not None:
                        message = _literal(ret.value)
                        if message is not None:
                            yield f"{where}:{ret.lineno}", _fragment(message)
            elif isinstance(node, ast.ClassDef) and node.name == "LockHeld":
                for inner in ast.walk(node):
                    if isinstance(inner, ast.JoinedStr):
                        yield f"{where}:{inner.lineno}", _fragment(inner)
                        break


MESSAGES = sorted(set(_messages()))


def test_messages_were_found() -> None:
    assert len(MESSAGES) >= 40, "the message scan found too little: has the code moved?"


@pytest.mark.parametrize(("where", "fragment"), MESSAGES, ids=lambda v: str(v))
def test_runbook_lists_every_refusal_and_failure(where: str, fragment: str) -> None:
    runbook = " ".join(RUNBOOK.read_text(encoding="utf-8").split())
    assert " ".join(fragment.split()) in runbook, (
        f"{where}: the message containing {fragment!r} is not in docs/runbook.md; add it to the "
        "table of its exit code, with what it means and what to do"
    )
