"""The outcome of one probe: the unit every report format renders."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Longest evidence we keep per probe. Reports cut it further (Markdown to 200 characters); this cap
# only keeps a hostile body from bloating the JSON report.
EVIDENCE_CHARS = 2000


@dataclass(frozen=True)
class ProbeResult:
    """One probe's verdict.

    ``skipped`` marks a probe that did not run: with ``passed=True`` it was not applicable (tool
    calls disabled, no metrics endpoint); with ``passed=False`` it could not run because an earlier
    probe failed ("not run: engine not ready").
    """

    name: str
    passed: bool
    duration_ms: float
    detail: str
    metrics: dict[str, float] = field(default_factory=dict)
    evidence: str = ""
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "passed": self.passed,
            "skipped": self.skipped,
            "duration_ms": round(self.duration_ms, 1),
            "detail": self.detail,
            "metrics": {k: _finite(v) for k, v in self.metrics.items()},
            "evidence": self.evidence,
        }

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> ProbeResult:
        """Inverse of :meth:`to_dict`; raises ``ValueError`` naming the first bad field."""
        name = doc.get("name")
        passed = doc.get("passed")
        if not isinstance(name, str) or not isinstance(passed, bool):
            raise ValueError("a probe needs a string `name` and a boolean `passed`")
        duration = doc.get("duration_ms", 0.0)
        if isinstance(duration, bool) or not isinstance(duration, int | float):
            raise ValueError(f"probe {name}: `duration_ms` is not a number")
        raw_metrics = doc.get("metrics") or {}
        if not isinstance(raw_metrics, Mapping):
            raise ValueError(f"probe {name}: `metrics` is not an object")
        metrics: dict[str, float] = {}
        for key, value in raw_metrics.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"probe {name}: metric {key!r} is not a number")
            metrics[str(key)] = float(value)
        return cls(
            name=name,
            passed=passed,
            duration_ms=float(duration),
            detail=str(doc.get("detail", "")),
            metrics=metrics,
            evidence=str(doc.get("evidence", "")),
            skipped=bool(doc.get("skipped", False)),
        )


def _finite(value: float) -> float:
    # JSON has no NaN or infinity; a probe that divided by zero reports 0 rather than an
    # unparseable document.
    return round(value, 3) if math.isfinite(value) else 0.0


def not_run(name: str, reason: str) -> ProbeResult:
    """A probe that could not run because of an earlier failure: it counts against the suite."""
    return ProbeResult(
        name=name, passed=False, duration_ms=0.0, detail=f"not run: {reason}", skipped=True
    )


def not_applicable(name: str, reason: str) -> ProbeResult:
    """A probe that does not apply to this engine or configuration: it does not count."""
    return ProbeResult(
        name=name, passed=True, duration_ms=0.0, detail=f"skipped: {reason}", skipped=True
    )
