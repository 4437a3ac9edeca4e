"""Progress and diagnostics on stderr (stdout carries data only), at the chosen verbosity.

Every line goes through :func:`gx10slots.scrub.safe`: progress carries foreign text (an engine's
error, a pod's log line, an API server's message), which may hold a credential or an escape
sequence meant for the terminal.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from gx10slots import scrub

_verbosity = 0
# While a live progress reporter runs (gx10slots.progress), lines go through it: above its live
# line on a terminal, timestamped on a pipe.
_sink: Callable[[str], None] | None = None


def set_sink(sink: Callable[[str], None] | None) -> None:
    global _sink
    _sink = sink


def _write(message: str) -> None:
    if _sink is not None:
        _sink(scrub.safe(message))
    else:
        print(scrub.safe(message), file=sys.stderr, flush=True)


class _SafeFormatter(logging.Formatter):
    """Log records (ours and the libraries' we collect) scrubbed like every other line."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub.safe(super().format(record), keep_newlines=True)


def configure(verbosity: int) -> None:
    global _verbosity
    _verbosity = verbosity
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_SafeFormatter("%(message)s"))
    logger = logging.getLogger("gx10slots")
    logger.handlers[:] = [handler]
    logger.propagate = False
    logger.setLevel(
        logging.DEBUG
        if verbosity >= 2
        else logging.INFO
        if verbosity == 1
        else logging.WARNING
        if verbosity == 0
        else logging.ERROR
    )


def progress(message: str) -> None:
    """One line of progress; silenced by -q."""
    if _verbosity >= 0:
        _write(message)


def detail(message: str) -> None:
    """Extra detail shown with -v."""
    if _verbosity >= 1:
        _write(message)
