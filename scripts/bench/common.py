"""What every part of the benchmark shares: its constants and targets, the clock, statistics."""

from __future__ import annotations

import math
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass


ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "benchmarks.md"
NS = "gx10"
FLAG = "gx10-model"
SLOT_KEY = "gx10slots.io/slot"
PREVIOUS = "gx10slots.io/previous"
NODE = "gx10"
SLOTS = ("blue", "green")
POLL_S = 0.005  # the detection loop's pause between requests to the production endpoint
SETTLE_S = 0.3  # a pause between measured commands, so one's tail does not load the next
DETECT_TIMEOUT_S = 90.0  # generous: a loaded machine can take this long; a figure is a median
LATENCY_MS = 50  # the fault server's fixed latency for the probe-overhead figures
# `slots deploy`'s line once the rollout is done, on a pipe: "<UTC time> green: ready [pod]" (the
# progress reporter's timestamped lines), or "[ 1.2s] green: ready" (-v's elapsed-time prefix).
READY_LINE = re.compile(
    r"^(?:\[\s*[\d.]+s\]|\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ)\s+(blue|green): ready\b"
)

# Targets from issue #8 (sandbox, fake engine, this 2-core machine); the ratios to kubectl and
# --help from issue #17 (3x kubectl for status and time to restore, --help within 100 ms).
T_RESTORE_S = 1.0
T_RESTORE_RATIO = 3.0
T_RESTORE_PROBE_S = 1.5
T_STATUS_RATIO = 3.0
T_HELP_MS = 100.0
T_PROBE_OVERHEAD_MS = 2.0
T_BURST_RATIO = 1.5
T_READINESS_MS = 200.0
T_RSS_MB = 120.0


def now() -> float:
    """CLOCK_MONOTONIC (what ``time.monotonic`` reads on Linux): one clock for this process and
    its children, so a child's own timestamps compare with ours."""
    return time.clock_gettime(time.CLOCK_MONOTONIC)


class BenchError(Exception):
    """The benchmark could not measure something (a command failed, a state was not reached)."""


# -- statistics ------------------------------------------------------------------------------------


@dataclass
class Stats:
    values: list[float]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    def quartiles(self) -> tuple[float, float]:
        if len(self.values) < 2:
            return self.median, self.median
        q = statistics.quantiles(self.values, n=4, method="inclusive")
        return q[0], q[2]

    @property
    def lo(self) -> float:
        return min(self.values) if self.values else math.nan

    @property
    def hi(self) -> float:
        return max(self.values) if self.values else math.nan

    def fmt(self, scale: float = 1.0, digits: int = 0) -> str:
        """``median [q1..q3] min..max``, each value times ``scale``."""
        if not self.values:
            return "—"
        q1, q3 = self.quartiles()

        def f(v: float) -> str:
            return f"{v * scale:.{digits}f}"

        return f"**{f(self.median)}** [{f(q1)}..{f(q3)}] {f(self.lo)}..{f(self.hi)}"

    def to_dict(self) -> dict[str, float | int]:
        q1, q3 = self.quartiles()
        return {
            "median": self.median,
            "q1": q1,
            "q3": q3,
            "min": self.lo,
            "max": self.hi,
            "n": self.n,
        }


@dataclass
class Figure:
    """One line of the summary: our figure, its baseline, the target and whether it is met."""

    key: str
    title: str
    ours: Stats
    ours_label: str
    unit: str  # "ms" or "MiB"
    target: str
    met: bool | None
    baseline: Stats | None = None
    baseline_label: str = ""
    ratio: float | None = None
    digits: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "unit": self.unit,
            "ours": self.ours.to_dict(),
            "ours_label": self.ours_label,
            "baseline": self.baseline.to_dict() if self.baseline else None,
            "baseline_label": self.baseline_label,
            "ratio": self.ratio,
            "target": self.target,
            "met": self.met,
        }


def step(text: str) -> None:
    print(f"==> {text}", file=sys.stderr, flush=True)
