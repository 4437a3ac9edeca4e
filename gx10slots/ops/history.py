"""`slots history`: the audit log, newest first."""

from __future__ import annotations

from typing import Any

from gx10slots.app import App
from gx10slots.ops.audit import read_history


def history(app: App, limit: int) -> list[dict[str, Any]]:
    return read_history(app)[:limit]
