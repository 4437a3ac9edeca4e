"""Progress and diagnostics on stderr (stdout carries data only), at the chosen verbosity."""

from __future__ import annotations

import logging
import sys

_verbosity = 0


def configure(verbosity: int) -> None:
    global _verbosity
    _verbosity = verbosity
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
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
        print(message, file=sys.stderr, flush=True)


def detail(message: str) -> None:
    """Extra detail shown with -v."""
    if _verbosity >= 1:
        print(message, file=sys.stderr, flush=True)
