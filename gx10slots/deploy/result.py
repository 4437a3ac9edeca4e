"""What `slots deploy` did (or, with --dry-run, would do), as data.

The operation returns a :class:`Deployed` or, with --dry-run, a :class:`DeployPreview`;
``render.py`` prints either as a summary or, with ``-o json|yaml``, as its ``to_dict()``, whose
keys (and their order) are the contract's document.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gx10slots.deploy.rules import DeployPlan
from gx10slots.flip.result import FlipResult
from gx10slots.guard.result import GuardResult


@dataclass(frozen=True)
class DeployPreview:
    """--dry-run: the plan (the whole Deployment template it would write), nothing changed."""

    plan: DeployPlan
    memory: str  # the memory gate's verdict, in words
    replaced_fallback: bool  # the target is production's protected fallback (--replace-fallback)

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": "deploy",
            "dry_run": True,
            "changed": False,
            "memory": self.memory,
            "replaced_fallback": self.replaced_fallback,
            **self.plan.to_dict(),
        }


@dataclass(frozen=True)
class Deployed:
    slot: str
    model: str
    served_name: str | None
    revision: str
    changed: bool  # False: the slot already ran this revision (smoked again, or already active)
    smoke_report: str = ""  # the passed smoke's JSON report
    reports: list[str] = field(default_factory=list)  # every format of it
    duration_s: float = 0.0
    replaced_fallback: bool = False
    # Production already ran this revision (`deploy --flip` run again): nothing deployed, no
    # smoke; ``flip`` is the interrupted flip it completed, if any.
    already_active: bool = False
    flip: FlipResult | None = None  # --flip
    guard: GuardResult | None = None  # --guard: what the guard did after the flip

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {"action": "deploy", "changed": self.changed}
        if self.already_active:
            doc["already_active"] = True
        doc |= {
            "slot": self.slot,
            "model": self.model,
            "served_name": self.served_name,
            "revision": self.revision,
            "smoke": None if self.already_active else {"passed": True, "report": self.smoke_report},
            "reports": self.reports,
            "duration_s": self.duration_s,
        }
        if not self.already_active:
            doc["replaced_fallback"] = self.replaced_fallback
        doc["flip"] = self.flip.to_dict() if self.flip is not None else None
        if self.guard is not None:
            doc["guard"] = self.guard.to_dict()
        return doc


DeployResult = Deployed | DeployPreview
