"""What `slots guard` decides, as pure functions over plain data (no I/O, no clock).

The guard watches the active slot for a window after a flip. Each *check* reads the flag (still
ours?) and makes one :class:`Observation` of production; :func:`judge_check` turns it into reasons
to fail; a :class:`Tally` counts consecutive failed checks; :func:`next_check_at` says when to look
again; :func:`start_gate` decides whether guarding makes sense at all. The rest of
``gx10slots.guard`` does the I/O around these.

A check fails when any of these holds:

- the known-answer probe through the production endpoint failed (error, timeout, wrong answer),
  unless it was *busy* (:func:`busy`): it timed out waiting for its first token while the
  engine's progress counter kept moving, i.e. it queued behind other work (a long generation on
  an engine that serves one request at a time) on an engine that is not wedged;
- the progress rule says *stalled*: requests running while the generation counter stayed flat;
- more than ``error_share`` of the guard's last :data:`SHARE_WINDOW` probes failed (judged from
  :data:`SHARE_MIN` probes on; a passing smoke had none, so the ratio is an absolute ceiling);
- the probe's time to first token exceeds ``ttft_ratio`` x the TTFT p95 of the slot's smoke report
  (and ``ttft_floor`` at least: an idle engine's smoke can measure a few milliseconds);
- a ``guard.prometheus`` query (a gate on real traffic) answered a value beyond its threshold.
  A gate with no data (empty vector, NaN) or no usable answer is reported, never a breach: no
  traffic is no evidence against the slot, and a Prometheus outage must not move production.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from gx10slots.config import Config, GateQuery, GuardConfig
from gx10slots.durations import format_duration
from gx10slots.errors import Refused, UsageError, excerpt
from gx10slots.flip.rules import plan_flip
from gx10slots.slots import CHANGED_AT, CHANGED_BY, REASON, FlagState, SlotState
from gx10slots.smoke import Observation

# The error share is taken over the guard's last SHARE_WINDOW probes, once there are SHARE_MIN.
SHARE_WINDOW = 10
SHARE_MIN = 5
# After a failed check the next one comes after a third of the interval (at least a second, never
# more than the interval): a failure is confirmed or cleared quickly, so a wedged slot is left
# sooner and fewer production requests are stranded on it.
CONFIRM_DIVISOR = 3
MIN_CONFIRM_S = 1.0
# The progress rule needs requests running on a flat counter for this share of the probe timeout.
STALL_WINDOW_FRACTION = 0.5
# A wait that returns a hair early must not produce a second check at the deadline.
_EPSILON_S = 0.01
# A probe that got no first token counts as queued behind other work when the progress counter
# moved at least this much over the stall window before it gave up. Before its first token our
# own probe adds at most one step (llama-server's n_decode_total counts its prompt's decode; the
# first token is sampled from it), vLLM's generation counter nothing: two is someone else's work.
BUSY_MIN_ADVANCE = 2.0
# Busy is not wedged, but not forever: a slot whose every probe waited behind other generations
# for this long has taken no new request in all that time (a runaway generation on a one-slot
# engine, a queue that never drains). Those checks fail from then on: the warm fallback is idle
# and would answer. Long enough for a healthy long generation (thousands of tokens).
MAX_BUSY_S = 300.0


@dataclass(frozen=True)
class GuardSettings:
    window_s: float
    interval_s: float
    failures: int
    probe_timeout_s: float
    error_share: float
    ttft_ratio: float
    ttft_floor_ms: float
    max_busy_s: float = MAX_BUSY_S

    @property
    def confirm_interval_s(self) -> float:
        return min(self.interval_s, max(self.interval_s / CONFIRM_DIVISOR, MIN_CONFIRM_S))

    @property
    def stall_window_s(self) -> float:
        return self.probe_timeout_s * STALL_WINDOW_FRACTION

    @property
    def sample_every_s(self) -> float:
        return min(1.0, self.probe_timeout_s / 5)

    def to_dict(self) -> dict[str, Any]:
        return {
            "window_s": self.window_s,
            "interval_s": self.interval_s,
            "failures": self.failures,
            "probe_timeout_s": self.probe_timeout_s,
            "error_share": self.error_share,
            "ttft_ratio": self.ttft_ratio,
            "ttft_floor_ms": self.ttft_floor_ms,
            "max_busy_s": self.max_busy_s,
        }


MIN_INTERVAL_S = 1.0


def resolve_settings(
    config: GuardConfig,
    *,
    window_s: float | None = None,
    interval_s: float | None = None,
    failures: int | None = None,
    probe_timeout_s: float | None = None,
) -> GuardSettings:
    """Command line over config over the contract's defaults; a check fits in its interval."""
    interval = interval_s if interval_s is not None else config.interval_s
    if interval < MIN_INTERVAL_S:
        # Shorter than a probe can take: every check would time out and trip on a healthy slot.
        raise UsageError(
            f"guard interval {interval:g} s is too short: at least {MIN_INTERVAL_S:g} s "
            "(a check is one real generation)"
        )
    return GuardSettings(
        window_s=window_s if window_s is not None else config.window_s,
        interval_s=interval,
        failures=failures if failures is not None else config.failures,
        probe_timeout_s=min(
            probe_timeout_s if probe_timeout_s is not None else config.probe_timeout_s, interval
        ),
        error_share=config.error_share,
        ttft_ratio=config.ttft_ratio,
        ttft_floor_ms=config.ttft_floor_s * 1000.0,
    )


@dataclass(frozen=True)
class Baseline:
    """What the slot's smoke report measured, to compare time to first token against."""

    ttft_ms_p95: float
    report: str
    revision: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "ttft_ms_p95": round(self.ttft_ms_p95, 1),
            "report": self.report,
            "revision": self.revision,
        }


def ttft_limit_ms(baseline: Baseline | None, settings: GuardSettings) -> float | None:
    if baseline is None or baseline.ttft_ms_p95 <= 0:
        return None
    return max(settings.ttft_ratio * baseline.ttft_ms_p95, settings.ttft_floor_ms)


@dataclass(frozen=True)
class Share:
    failed: int
    total: int

    @property
    def judged(self) -> bool:
        return self.total >= SHARE_MIN

    @property
    def value(self) -> float:
        return self.failed / self.total if self.total else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"failed": self.failed, "total": self.total, "judged": self.judged}


def error_share(outcomes: Sequence[bool]) -> Share:
    """The share of failed probes among the last :data:`SHARE_WINDOW` (``True`` = passed)."""
    recent = list(outcomes)[-SHARE_WINDOW:]
    return Share(sum(1 for ok in recent if not ok), len(recent))


GateState = Literal["ok", "breach", "no-data", "unavailable"]
# How much of a gate's query a reason quotes.
QUERY_EXCERPT_CHARS = 80


@dataclass(frozen=True)
class GateReading:
    """What one ``guard.prometheus`` query answered at one check: a value per series (NaN kept,
    judged as no data), or why there is no usable answer."""

    gate: GateQuery
    values: tuple[float, ...] = ()
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        state, detail = gate_verdict(self)
        return {
            "name": self.gate.name,
            "query": self.gate.query,
            "max": self.gate.max,
            "min": self.gate.min,
            # JSON has no NaN or infinity: those values are given as text.
            "values": [v if math.isfinite(v) else str(v) for v in self.values],
            "state": state,
            "detail": detail,
        }


def gate_verdict(reading: GateReading) -> tuple[GateState, str]:
    """A gate's state at one check and one line saying why."""
    gate = reading.gate
    where = f"gate {gate.name}"
    if reading.error is not None:
        return "unavailable", f"{where}: no usable answer from Prometheus ({reading.error})"
    values = [v for v in reading.values if not math.isnan(v)]
    if not values:
        return "no-data", f"{where}: no data" + (" (NaN)" if reading.values else " (empty result)")
    query = excerpt(gate.query, QUERY_EXCERPT_CHARS)
    if gate.max is not None and max(values) > gate.max:
        return "breach", f"{where}: {max(values):.4g} above max {gate.max:g} ({query})"
    if gate.min is not None and min(values) < gate.min:
        return "breach", f"{where}: {min(values):.4g} below min {gate.min:g} ({query})"
    if len(values) == 1:
        value = f"{values[0]:.4g}"
    else:
        value = f"{min(values):.4g} to {max(values):.4g} over {len(values)} series"
    return "ok", f"{where}: {value}"


def busy(observation: Observation) -> bool:
    """The probe timed out before its first token while the engine kept decoding: it waited
    behind other requests (llama-server with one slot, ``--parallel 1``, serves one generation at
    a time and defers the rest; vLLM queues past ``--max-num-seqs``). That is a busy engine, not
    a wedged one: the wedge signature is requests running with *no* progress (domain notes,
    "Progress check"). The counter is the profile's ``progress_counter``: llama-server's
    ``llamacpp:n_decode_total`` (one per decode step; ``tokens_predicted_total`` moves only when
    a request ends), vLLM's ``vllm:generation_tokens_total``.

    Not busy: a probe that got a first token (then it is judged as usual), a stall, or a counter
    that stayed flat over the last stall window (the engine stopped while the probe waited)."""
    return (
        observation.timed_out
        and observation.ttft_ms is None
        and observation.stall != "stalled"
        and observation.recent_advance is not None
        and observation.recent_advance >= BUSY_MIN_ADVANCE
    )


def busy_detail(observation: Observation, settings: GuardSettings) -> str:
    return (
        f"busy: the probe waited behind other requests ({observation.detail}) while the engine's "
        f"progress counter advanced by {observation.recent_advance or 0:g} in the last "
        f"{settings.stall_window_s:g} s: not a wedge"
    )


def judge_check(
    observation: Observation,
    share: Share,
    settings: GuardSettings,
    baseline: Baseline | None,
    gates: Sequence[GateReading] = (),
    busy_for_s: float = 0.0,
) -> list[str]:
    """Why this check failed; empty when it passed (a busy probe is no reason, until the slot
    has been busy for ``busy_for_s`` > ``settings.max_busy_s``: see MAX_BUSY_S)."""
    reasons: list[str] = []
    if not observation.passed and not busy(observation):
        reasons.append(f"known-answer probe through production failed: {observation.detail}")
    elif busy(observation) and busy_for_s > settings.max_busy_s:
        reasons.append(
            f"production took no new request for {busy_for_s:.0f} s: every probe waited behind "
            f"other generations (above {settings.max_busy_s:.0f} s; {observation.detail})"
        )
    if observation.stall == "stalled":
        reasons.append(observation.stall_detail)
    if share.judged and share.value > settings.error_share:
        reasons.append(
            f"error share {share.failed}/{share.total} = {share.value:.0%} of the guard's last "
            f"probes, above {settings.error_share:.0%}"
        )
    limit = ttft_limit_ms(baseline, settings)
    ttft = observation.ttft_ms
    if limit is not None and baseline is not None and ttft is not None and ttft > limit:
        reasons.append(
            f"time to first token {ttft:.0f} ms above {limit:.0f} ms "
            f"({settings.ttft_ratio:g} x the smoke's p95 of {baseline.ttft_ms_p95:.0f} ms)"
        )
    for reading in gates:
        state, detail = gate_verdict(reading)
        if state == "breach":
            reasons.append(detail)
    return reasons


@dataclass
class Tally:
    """Checks so far: how many failed, how many in a row, and the recent probe outcomes."""

    failures_needed: int
    checks: int = 0
    failed_checks: int = 0
    consecutive: int = 0
    # Probes that timed out: the engine may still count them as running.
    abandoned_probes: int = 0
    probes: deque[bool] = field(default_factory=lambda: deque(maxlen=SHARE_WINDOW))
    busy_checks: int = 0
    busy_since_s: float | None = None  # when the current run of busy checks began

    def track_busy(self, observation: Observation, at_s: float) -> float:
        """How long the slot has been busy, counting this check (``at_s``: when it started);
        0 when this check is not busy."""
        if not busy(observation):
            self.busy_since_s = None
            return 0.0
        self.busy_checks += 1
        if self.busy_since_s is None:
            self.busy_since_s = at_s
        return at_s - self.busy_since_s

    def add_probe(self, observation: Observation) -> Share:
        """Count this check's probe; the error share including it. A busy probe (queued behind
        other work) says nothing of the answers and is left out of the share."""
        if not busy(observation):
            self.probes.append(observation.passed)
        if observation.timed_out:
            self.abandoned_probes += 1
        return error_share(self.probes)

    def add_check(self, passed: bool) -> None:
        self.checks += 1
        if passed:
            self.consecutive = 0
        else:
            self.failed_checks += 1
            self.consecutive += 1

    @property
    def tripped(self) -> bool:
        return self.consecutive >= self.failures_needed


@dataclass(frozen=True)
class CheckRecord:
    number: int
    t_s: float  # seconds since the guard started
    passed: bool
    reasons: tuple[str, ...]
    observation: Observation
    share: Share
    gates: tuple[GateReading, ...] = ()

    @property
    def busy(self) -> bool:
        return busy(self.observation)

    def to_dict(self) -> dict[str, Any]:
        return {
            "check": self.number,
            "t_s": round(self.t_s, 3),
            "passed": self.passed,
            "busy": self.busy,
            "reasons": list(self.reasons),
            "probe": self.observation.to_dict(),
            "error_share": self.share.to_dict(),
            "gates": [g.to_dict() for g in self.gates],
        }


def next_check_at(
    started: float,
    deadline: float,
    settings: GuardSettings,
    consecutive: int,
    *,
    blocked: bool = False,
) -> float | None:
    """When the next check starts (on the caller's clock), or None when the guard is done.

    Healthy: every interval until a last check at the deadline. After a failed check: sooner,
    to confirm; a streak still open at the deadline is followed to its verdict (it ends within
    ``failures`` quick checks), unless the flip-back is blocked (lease held, previous slot not
    ready), which the window's end gives up on.
    """
    over = started + _EPSILON_S >= deadline
    if over and (consecutive == 0 or blocked):
        return None
    if consecutive > 0:
        return started + settings.confirm_interval_s
    return min(started + settings.interval_s, deadline)


def stand_down_reason(flag: FlagState, guarded: str) -> str | None:
    """Why the guard must stand down (someone else moved production), or None."""
    if flag.active == guarded:
        return None
    annotations: Mapping[str, str] = flag.annotations
    by = annotations.get(CHANGED_BY) or "someone"
    at = annotations.get(CHANGED_AT)
    why = annotations.get(REASON)
    return (
        f"production is on {flag.value or 'nothing'} now, not on {guarded} (changed by {by}"
        + (f" at {at}" if at else "")
        + (f": {why}" if why else "")
        + "); standing down: the guard never fights an operator"
    )


@dataclass(frozen=True)
class Target:
    """The slot under guard and the warm slot to fall back to."""

    guarded: str
    previous: str
    model: str | None
    served_name: str | None
    revision: str | None
    previous_model: str | None
    previous_served_name: str | None = None


def start_gate(
    slots: Mapping[str, SlotState],
    flag: FlagState,
    flag_obj: Mapping[str, Any],
    config: Config,
    *,
    expected: str | None,
    by: str,
    now: datetime,
) -> Target | str:
    """The target, or a stand-down reason (production is not on ``expected``); ``Refused`` when
    there is nothing safe to fall back to. The gates are the auto-revert's own (``plan_flip``)."""
    if flag.active is None:
        raise Refused(
            f"the flag names {flag.value or 'nothing'!r}, not a slot: there is no active slot to "
            "guard"
        )
    if expected is not None and flag.active != expected:
        return stand_down_reason(flag, expected) or ""
    guarded = flag.active
    if flag.previous is None:
        raise Refused(
            f"no previous slot is recorded on the flag object: slot {guarded} has nothing safe to "
            "fall back to",
            hint="guard right after a flip (`slots flip --guard 10m`)",
        )
    try:
        plan = plan_flip(
            "auto-revert",
            slots,
            flag,
            flag_obj,
            config,
            force=True,
            by=by,
            reason="slots guard: start check",
            now=now,
            expected_source=guarded,
        )
    except Refused as exc:
        raise Refused(
            f"not guarding {guarded}: flipping back to {flag.previous} would be refused "
            f"({exc.message}); there is nothing safe to fall back to",
            hint=exc.hint
            or f"make {flag.previous} warm again (slots deploy MODEL --slot {flag.previous})",
        ) from exc
    state = slots[guarded]
    return Target(
        guarded=guarded,
        previous=plan.target,
        model=state.model,
        served_name=state.served_name or state.model,
        revision=state.revision,
        previous_model=plan.target_model,
        previous_served_name=plan.target_served_name or plan.target_model,
    )


def trip_summary(streak: Sequence[CheckRecord]) -> str:
    """One line for the history reason and the Event: how many checks, and what the last said."""
    last = streak[-1] if streak else None
    why = "; ".join(last.reasons) if last else "no checks"
    return f"{len(streak)} consecutive failed checks; last: {why}"


def describe(settings: GuardSettings) -> str:
    return (
        f"for {format_duration(settings.window_s)}, a check every "
        f"{format_duration(settings.interval_s)} (after a failure every "
        f"{format_duration(settings.confirm_interval_s)}), {settings.failures} failed in a row "
        f"flip back"
    )
