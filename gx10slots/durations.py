"""Durations as operators write them: ``90s``, ``15m``, ``1h``, ``1h30m``, ``500ms``."""

from __future__ import annotations

import re

_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    """Seconds in ``text``; ``ValueError`` naming the accepted forms when it is not a duration."""
    cleaned = text.strip().lower()
    parts = list(_PART.finditer(cleaned))
    if not parts or "".join(p.group(0) for p in parts) != cleaned:
        raise ValueError(f"{text!r} is not a duration (use e.g. 90s, 15m, 1h, 1h30m, 500ms)")
    return sum(float(p.group(1)) * _UNIT_SECONDS[p.group(2)] for p in parts)


def format_duration(seconds: float) -> str:
    """The shortest exact rendering the parser reads back (``1800`` → ``30m``)."""
    if seconds < 1 and seconds != 0:
        return f"{round(seconds * 1000)}ms"
    whole = int(seconds)
    if whole != seconds:
        return f"{seconds:g}s"
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return text + (f"{secs}s" if secs or not text else "")
