"""The guard's loop: check, judge, count, and flip back through its :class:`Ports` when the
checks fail in a row. It talks to the world only through the ports (clock, wait, flag, observe,
revert), so its tests run on fakes with an injected clock and no sleeping.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from gx10slots import console
from gx10slots.errors import (
    Interrupted,
    SlotsError,
)
from gx10slots.guard.rules import (
    Baseline,
    CheckRecord,
    GateReading,
    GuardSettings,
    Tally,
    Target,
    busy_detail,
    gate_verdict,
    judge_check,
    next_check_at,
    stand_down_reason,
    trip_summary,
)
from gx10slots.slots import FlagState
from gx10slots.smoke import Observation


@dataclass(frozen=True)
class GuardRequest:
    window_s: float | None = None  # None: the config's guard.window (default 10m)
    interval_s: float | None = None
    failures: int | None = None
    report_dir: str | None = None  # where the smoke reports are and the guard report goes
    # The slot a flip just made active (`--guard`): if production is elsewhere, stand down.
    expected: str | None = None
    # Take over a stale gx10slots-lock when flipping back (`--break-lock`).
    break_lock: bool = False
    probe_timeout_s: float | None = None  # None: the config's guard.probe_timeout
    by: str | None = None  # who acts, in the records (None: guard:<user@host:pid>)


# -- the seam --------------------------------------------------------------------------------


class RevertBlocked(Exception):
    """The flip-back cannot happen now (lease held, previous slot not ready): try again later.

    Control flow between the loop and its revert port, never shown to users as such.
    """


@dataclass(frozen=True)
class RevertResult:
    source: str
    target: str
    verified: bool
    detail: str
    stood_down: str | None = None  # production had moved before we could act
    in_flight: float | None = None  # requests still running on the guarded slot after the flip
    recorded: bool = True
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "from": self.source,
            "to": self.target,
            "verified": self.verified,
            "detail": self.detail,
            "in_flight_on_guarded": self.in_flight,
            "recorded": self.recorded,
        }


class Ports(Protocol):
    def clock(self) -> float: ...

    def wait(self, seconds: float) -> bool:
        """Wait up to ``seconds``; True when asked to stop meanwhile."""
        ...

    def flag(self) -> FlagState: ...

    def observe(self, timeout_s: float) -> Observation: ...

    def gates(self) -> Sequence[GateReading]:
        """The ``guard.prometheus`` queries' answers (empty without gates)."""
        ...

    def revert(self, summary: str, streak: Sequence[CheckRecord]) -> RevertResult:
        """Flip back (or report that production moved); :class:`RevertBlocked` when it cannot."""
        ...


@dataclass
class WatchOutcome:
    result: Literal["passed", "stood-down", "tripped", "blocked"]
    tally: Tally
    records: list[CheckRecord]
    stood_down: str | None = None
    revert: RevertResult | None = None
    blocked: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def streak(self) -> list[CheckRecord]:
        n = self.tally.consecutive
        return self.records[-n:] if n else []


# -- the loop --------------------------------------------------------------------------------


def watch(
    ports: Ports, target: Target, settings: GuardSettings, baseline: Baseline | None
) -> WatchOutcome:
    """Check until the window has passed, production moved, or the guard tripped and acted."""
    tally = Tally(settings.failures)
    records: list[CheckRecord] = []
    warnings: list[str] = []
    start = ports.clock()
    deadline = start + settings.window_s
    next_at: float | None = start
    blocked: str | None = None
    unread_flag = 0
    reverting = False
    try:
        while next_at is not None:
            delay = next_at - ports.clock()
            if delay > 0 and ports.wait(delay):
                raise Interrupted("asked to stop")
            started = ports.clock()
            try:
                flag: FlagState | None = ports.flag()
            except SlotsError as exc:
                flag = None
                unread_flag += 1
                console.progress(
                    f"guard {target.guarded}: cannot read the flag ({exc.message}); checking "
                    "production anyway (a flip-back re-checks the flag under compare-and-swap)"
                )
            moved = stand_down_reason(flag, target.guarded) if flag is not None else None
            if moved is not None:
                console.progress(f"guard {target.guarded}: {moved}")
                return WatchOutcome("stood-down", tally, records, stood_down=moved)
            observation = ports.observe(settings.probe_timeout_s)
            # Gates on real traffic only for a slot that answered: a failed probe fails the check
            # anyway, and a wedged slot must be left without waiting for Prometheus.
            gates = tuple(ports.gates()) if observation.passed else ()
            share = tally.add_probe(observation)
            busy_for = tally.track_busy(observation, started - start)
            reasons = judge_check(observation, share, settings, baseline, gates, busy_for)
            tally.add_check(not reasons)
            record = CheckRecord(
                tally.checks,
                started - start,
                not reasons,
                tuple(reasons),
                observation,
                share,
                gates,
            )
            records.append(record)
            _progress_line(target, settings, tally, record)
            if tally.tripped:
                streak = records[-tally.consecutive :]
                reverting = True
                try:
                    result = ports.revert(trip_summary(streak), streak)
                except RevertBlocked as exc:
                    blocked = str(exc)
                    console.progress(
                        f"guard {target.guarded}: tripped, but cannot flip back now: {blocked}; "
                        "trying again at the next check"
                    )
                else:
                    if result.stood_down is not None:
                        console.progress(f"guard {target.guarded}: {result.stood_down}")
                        return WatchOutcome(
                            "stood-down", tally, records, stood_down=result.stood_down
                        )
                    return WatchOutcome("tripped", tally, records, revert=result, warnings=warnings)
                reverting = False
            else:
                blocked = None
            next_at = next_check_at(
                started, deadline, settings, tally.consecutive, blocked=blocked is not None
            )
    except (KeyboardInterrupt, Interrupted) as exc:
        if reverting and isinstance(exc, Interrupted):
            raise  # the revert port already said where production is
        raise Interrupted(
            f"interrupted: the guard stopped watching slot {target.guarded} after "
            f"{tally.checks} check(s); nothing was changed (production stays on "
            f"{target.guarded})",
            reported=True,
        ) from None
    if unread_flag:
        warnings.append(f"{unread_flag} check(s) could not read the flag")
    if blocked is not None:
        return WatchOutcome("blocked", tally, records, blocked=blocked, warnings=warnings)
    return WatchOutcome("passed", tally, records, warnings=warnings)


def _progress_line(
    target: Target, settings: GuardSettings, tally: Tally, record: CheckRecord
) -> None:
    obs = record.observation
    head = f"guard {target.guarded}: check {record.number} (+{record.t_s:.1f}s)"
    # Gates that passed, or could not be judged (no data, Prometheus unavailable): said, so that
    # thresholds can be tuned on what was read. A breach is among the reasons already.
    verdicts = [gate_verdict(g) for g in record.gates]
    gates = "".join(f"; {detail}" for state, detail in verdicts if state != "breach")
    if record.passed and record.busy:
        console.progress(f"{head} {busy_detail(obs, settings)}{gates}")
    elif record.passed:
        ttft = f", TTFT {obs.ttft_ms:.0f} ms" if obs.ttft_ms is not None else ""
        console.progress(f"{head} ok{ttft}; progress {obs.stall}{gates}")
    else:
        console.progress(
            f"{head} FAILED ({tally.consecutive}/{settings.failures} in a row): "
            + "; ".join(record.reasons)
            + gates
        )
