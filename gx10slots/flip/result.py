"""What `slots flip` and `slots flip-back` did (or, with --dry-run, would do), as data.

The operation returns a :class:`FlipResult`; ``render.py`` prints it as a summary line or, with
``-o json|yaml``, as :meth:`FlipResult.to_dict`, whose keys (and their order) are the contract's
document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gx10slots.flip.rules import FlipPlan
from gx10slots.guard.result import GuardResult


@dataclass(frozen=True)
class FlipResult:
    action: str  # flip | flip-back (the command; the guard's revert has its own record)
    source: str | None  # the slot production left (None when the flag named no slot)
    target: str
    model: str | None
    source_model: str | None
    gates: list[str] = field(default_factory=list)
    changed: bool = True  # False for a dry run, and when an interrupted run was only completed
    detail: str = ""  # how production was verified
    duration_s: float = 0.0
    completed: str | None = None  # the holder whose interrupted run this one completed
    dry_run: bool = False
    patch: list[dict[str, Any]] = field(default_factory=list)  # --dry-run: the exact change
    guard: GuardResult | None = None  # --guard: what the guard did after the flip

    @classmethod
    def of(
        cls,
        plan: FlipPlan,
        action: str,
        *,
        changed: bool = True,
        detail: str = "",
        duration_s: float = 0.0,
        completed: str | None = None,
        dry_run: bool = False,
    ) -> FlipResult:
        """The result of carrying out ``plan`` (with ``dry_run``: of showing it, and its patch)."""
        return cls(
            action=action,
            source=plan.source,
            target=plan.target,
            model=plan.target_model,
            source_model=plan.source_model,
            gates=plan.gates,
            changed=changed and not dry_run,
            detail=detail,
            duration_s=duration_s,
            completed=completed,
            dry_run=dry_run,
            patch=plan.patch if dry_run else [],
        )

    @property
    def warm(self) -> str | None:
        """The slot left warm for `slots flip-back`: the one production left."""
        return self.source

    def to_dict(self) -> dict[str, Any]:
        if self.dry_run:
            doc: dict[str, Any] = {
                "action": self.action,
                "dry_run": True,
                "changed": False,
                "mode": self.action,
                "from": self.source,
                "to": self.target,
                "model": self.model,
                "from_model": self.source_model,
                "gates": self.gates,
                "patch": self.patch,
            }
        else:
            doc = {
                "action": self.action,
                "changed": self.changed,
                **({"completed": self.completed} if self.completed else {}),
                "from": self.source,
                "to": self.target,
                "model": self.model,
                "from_model": self.source_model,
                "verified": True,  # a run that could not verify raised (and switched back)
                "detail": self.detail,
                "gates": self.gates,
                "warm": self.warm,
                "duration_s": self.duration_s,
            }
        if self.guard is not None:
            doc["guard"] = self.guard.to_dict()
        return doc
