"""The command line this process runs, as it is shown to others (on the Lease, in `status`).

Kept apart from the CLI (and light: no Kubernetes client) so that the lease can say what its
holder is doing. The text is bounded and free of control characters: it is read back by other
operators' terminals. Arguments are operator-typed, but ``--env KEY=VALUE`` may carry a token,
so those values are never shown.
"""

from __future__ import annotations

import shlex
import unicodedata
from collections.abc import Sequence

MAX_COMMAND_CHARS = 256
# Options whose value is KEY=VALUE where VALUE may be a secret: shown as KEY=…
_SECRET_VALUED = ("--env",)

_command = "slots"


def _printable(text: str) -> str:
    """One line with no control or format characters (category C), spaces collapsed."""
    cleaned = "".join(c if unicodedata.category(c)[0] != "C" else " " for c in text)
    return " ".join(cleaned.split())


def bounded(text: str, limit: int = MAX_COMMAND_CHARS) -> str:
    """A foreign or typed text made safe to store and show: printable, one line, bounded."""
    flat = _printable(text)
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def describe(argv: Sequence[str]) -> str:
    """``slots`` and its arguments (shell-quoted), with the values of ``--env`` hidden, bounded."""
    shown: list[str] = ["slots"]
    hide_next = False
    for arg in argv:
        option, eq, value = arg.partition("=")
        if hide_next:
            shown.append(shlex.quote(option) + "=…")
        elif option in _SECRET_VALUED and eq:
            shown.append(f"{option}={shlex.quote(value.split('=', 1)[0])}=…")
        else:
            shown.append(shlex.quote(arg))
        hide_next = not hide_next and arg in _SECRET_VALUED
    return bounded(" ".join(shown))


def set_command(argv: Sequence[str]) -> None:
    """Remember this process's arguments (called once by the CLI entry point)."""
    global _command
    _command = describe(argv)


def current() -> str:
    return _command
