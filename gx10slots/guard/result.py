"""What a guard did (`slots guard`, `--guard` after a flip), as data.

The guard's result is its report: the same JSON document it writes to the report directory (the
settings, every failed check's evidence, the revert), open-ended evidence kept as a dictionary.
``render.guard_summary`` prints it; -o json|yaml print :meth:`GuardResult.to_dict`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The guard's verdict (the report's ``result``) -> the command's exit code.
EXIT_CODES: dict[str, int] = {"passed": 0, "stood-down": 0, "tripped": 1, "refused": 3}


@dataclass(frozen=True)
class GuardResult:
    report: dict[str, Any]  # the guard report's document (gx10slots/guard/run.py builds it)

    @property
    def outcome(self) -> str:
        """passed, stood-down, tripped or refused."""
        return str(self.report.get("result"))

    @property
    def slot(self) -> str | None:
        """The slot it guarded."""
        slot = self.report.get("slot")
        return str(slot) if slot else None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES.get(self.outcome, 1)

    def to_dict(self) -> dict[str, Any]:
        return self.report
