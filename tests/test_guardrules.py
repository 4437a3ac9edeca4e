"""The guard's pure decisions: counting, error share, TTFT, progress, scheduling, stand-down."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import pytest

from gx10slots.config import GuardConfig, parse_config
from gx10slots.errors import Refused
from gx10slots.guard.rules import (
    SHARE_MIN,
    SHARE_WINDOW,
    Baseline,
    Share,
    Tally,
    Target,
    busy,
    error_share,
    judge_check,
    next_check_at,
    resolve_settings,
    stand_down_reason,
    start_gate,
    trip_summary,
    ttft_limit_ms,
)
from gx10slots.slots import CHANGED_AT, CHANGED_BY, PREVIOUS, REASON, FlagState, SlotState
from gx10slots.smoke.live import Observation, progress_verdict, recent_advance
from gx10slots.smoke.progress import ProgressSample, Verdict
from tests.helpers.config import valid
from tests.helpers.guard import SETTINGS
from tests.helpers.objects import slot

CONFIG = parse_config(valid())
NOW = datetime(2026, 1, 1, tzinfo=UTC)
OK = Observation(True, "answered", ttft_ms=50.0, stall="progressing")
BAD = Observation(False, "timed out after 10.0 s waiting for the first token", timed_out=True)
# Queued behind a long generation: no first token, while the engine decoded 40 tokens of others'.
BUSY = Observation(
    False,
    "timed out after 3.0 s waiting for the first token",
    timed_out=True,
    stall="progressing",
    running=1.0,
    recent_advance=40.0,
)


# -- settings ------------------------------------------------------------------------------------


def test_command_line_overrides_config_and_the_probe_fits_in_the_interval() -> None:
    config = GuardConfig(window_s=300, interval_s=20, failures=4, probe_timeout_s=10)
    s = resolve_settings(config)
    assert (s.window_s, s.interval_s, s.failures, s.probe_timeout_s) == (300, 20, 4, 10)
    s = resolve_settings(config, window_s=20, interval_s=1, failures=2)
    assert (s.window_s, s.interval_s, s.failures) == (20, 1, 2)
    assert s.probe_timeout_s == 1  # never longer than the interval


def test_contract_defaults() -> None:
    s = resolve_settings(GuardConfig())
    assert (s.window_s, s.interval_s, s.failures) == (600, 30, 3)
    assert s.ttft_floor_ms == 1000


@pytest.mark.parametrize(
    ("interval", "confirm"), [(30.0, 10.0), (3.0, 1.0), (1.0, 1.0), (90.0, 30.0)]
)
def test_a_failure_is_confirmed_sooner_but_never_slower_than_the_interval(
    interval: float, confirm: float
) -> None:
    s = resolve_settings(GuardConfig(), interval_s=interval)
    assert s.confirm_interval_s == confirm


# -- error share and TTFT -----------------------------------------------------------------------


def test_error_share_counts_the_last_probes_only() -> None:
    assert error_share([]) == Share(0, 0)
    assert not error_share([False] * (SHARE_MIN - 1)).judged
    share = error_share([False] * 20 + [True] * SHARE_WINDOW)
    assert share == Share(0, SHARE_WINDOW)
    share = error_share([True, False, True, False, True])
    assert (share.failed, share.total, share.judged) == (2, 5, True)
    assert share.value == pytest.approx(0.4)


def test_ttft_limit_is_a_ratio_of_the_smoke_p95_with_a_floor() -> None:
    assert ttft_limit_ms(None, SETTINGS) is None
    assert ttft_limit_ms(Baseline(0.0, "r", "rev"), SETTINGS) is None
    assert ttft_limit_ms(Baseline(2.0, "r", "rev"), SETTINGS) == 1000  # the floor
    assert ttft_limit_ms(Baseline(800.0, "r", "rev"), SETTINGS) == 2400


def test_a_healthy_check_passes() -> None:
    assert judge_check(OK, Share(0, 5), SETTINGS, Baseline(40.0, "r", "rev")) == []


def test_each_rule_gives_its_own_reason() -> None:
    reasons = judge_check(BAD, Share(1, 1), SETTINGS, None)
    assert reasons == ["known-answer probe through production failed: " + BAD.detail]

    stalled = Observation(True, "ok", stall="stalled", stall_detail="stall: wedged")
    assert judge_check(stalled, Share(0, 5), SETTINGS, None) == ["stall: wedged"]

    share = judge_check(OK, Share(2, 5), SETTINGS, None)
    assert share == ["error share 2/5 = 40% of the guard's last probes, above 20%"]
    assert judge_check(OK, Share(1, 5), SETTINGS, None) == []  # 20% is not above 20%
    assert judge_check(OK, Share(4, 4), SETTINGS, None) == []  # too few to judge a share

    slow = Observation(True, "ok", ttft_ms=2500.0)
    [reason] = judge_check(slow, Share(0, 5), SETTINGS, Baseline(800.0, "r", "rev"))
    assert reason.startswith("time to first token 2500 ms above 2400 ms (3 x")
    assert judge_check(slow, Share(0, 5), SETTINGS, None) == []  # no baseline: not judged


# -- counting ------------------------------------------------------------------------------------


def test_tally_counts_consecutive_failures_and_a_pass_resets_them() -> None:
    tally = Tally(3)
    for passed in (False, False, True, False, False):
        tally.add_check(passed)
        assert not tally.tripped
    assert (tally.checks, tally.failed_checks, tally.consecutive) == (5, 4, 2)
    tally.add_check(False)
    assert tally.tripped


def test_tally_keeps_the_probe_outcomes_for_the_share_and_counts_abandoned_probes() -> None:
    tally = Tally(3)
    assert tally.add_probe(OK) == Share(0, 1)
    assert tally.add_probe(BAD) == Share(1, 2)
    assert tally.abandoned_probes == 1
    for _ in range(SHARE_WINDOW):
        share = tally.add_probe(OK)
    assert share == Share(0, SHARE_WINDOW)


def test_a_busy_probe_is_left_out_of_the_error_share() -> None:
    tally = Tally(2)
    for _ in range(SHARE_WINDOW):
        share = tally.add_probe(BUSY)
    assert share == Share(0, 0)  # no evidence either way about the answers
    assert tally.abandoned_probes == SHARE_WINDOW  # the engine may still count them
    assert tally.add_probe(BAD) == Share(1, 1)


# -- busy is not wedged ---------------------------------------------------------------------------


def test_a_probe_queued_behind_a_progressing_engine_is_busy_and_fails_nothing() -> None:
    assert busy(BUSY)
    assert judge_check(BUSY, Share(0, 0), SETTINGS, None) == []


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"recent_advance": 0.0}, "the counter stayed flat while the probe waited: the wedge"),
        ({"recent_advance": 1.0}, "one step is at most our own probe's prompt"),
        ({"recent_advance": None}, "no progress metrics: the timeout alone judges"),
        ({"stall": "stalled"}, "requests running on a flat counter"),
        ({"ttft_ms": 900.0}, "answered a first token: judged as usual"),
        ({"timed_out": False, "detail": "HTTP 500"}, "an error is no queue"),
    ],
)
def test_what_is_not_busy_still_fails_the_check(change: dict[str, Any], why: str) -> None:
    observation = Observation(**{**BUSY.__dict__, **change})
    assert not busy(observation), why
    reasons = judge_check(observation, Share(0, 0), SETTINGS, None)
    assert reasons and reasons[0].startswith("known-answer probe through production failed"), why


def test_recent_advance_is_the_counter_over_the_last_window() -> None:
    samples = [sample(0, 10, 1), sample(1, 30, 1), sample(2, 50, 1), sample(3, 50, 1)]
    assert recent_advance(samples, 1.5) == 20  # from the sample at 1 s to the one at 3 s
    assert recent_advance(samples, 10.0) == 40  # nothing that old: from the first sample
    assert recent_advance(samples[:1], 1.5) is None
    assert recent_advance([ProgressSample(0, None, 1), ProgressSample(1, None, 1)], 1) is None


@pytest.mark.parametrize(
    ("counter", "why"),
    [
        ([10, 0, 30], "an engine restart reset the counter: its count since is not the wait"),
        ([0, 100, 0, 100], "a counter that jumps back and forth (two pods behind one Service)"),
        ([100, 200, 150], "a counter that went backwards"),
        ([5, math.inf], "a counter at +Inf"),
        ([5, math.nan, 100], "a counter that read NaN"),
    ],
)
def test_a_counter_that_resets_decreases_or_is_not_finite_is_no_progress(
    counter: list[float], why: str
) -> None:
    samples = [sample(i, value, 1) for i, value in enumerate(counter)]
    advance = recent_advance(samples, 10.0)
    # The probe timed out behind it: not busy, so it fails the check (a wedged slot must not
    # look busy forever because its counter misbehaves).
    observation = Observation(**{**BUSY.__dict__, "recent_advance": advance})
    assert not busy(observation), (why, advance)
    reasons = judge_check(observation, Share(0, 0), SETTINGS, None)
    assert reasons and reasons[0].startswith("known-answer probe through production failed"), why


# -- progress ------------------------------------------------------------------------------------


def sample(at: float, generated: float, running: float) -> ProgressSample:
    return ProgressSample(at, generated, running)


def test_progress_rule_sees_a_wedge_after_an_idle_first_sample() -> None:
    # The first sample came before the probe reached the engine: nothing running yet.
    samples = [sample(0, 10, 0), sample(1, 10, 1), sample(3, 10, 1), sample(6, 10, 1)]
    verdict = progress_verdict(samples, 5.0, "gen", "run")
    assert verdict.verdict is Verdict.STALLED
    assert "engine wedged" in verdict.detail


def test_progress_rule_needs_the_whole_window_of_running_on_a_flat_counter() -> None:
    samples = [sample(0, 10, 0), sample(1, 10, 1), sample(3, 10, 1)]
    assert progress_verdict(samples, 5.0, "gen", "run").verdict is Verdict.INCONCLUSIVE
    samples = [sample(0, 10, 1), sample(3, 10, 0), sample(6, 10, 0)]
    assert progress_verdict(samples, 5.0, "gen", "run").verdict is Verdict.IDLE
    samples = [sample(0, 10, 1), sample(1, 12, 1)]
    assert progress_verdict(samples, 5.0, "gen", "run").verdict is Verdict.PROGRESSING


# -- scheduling ----------------------------------------------------------------------------------


def test_healthy_checks_run_every_interval_and_a_last_one_at_the_deadline() -> None:
    s = SETTINGS  # window 60, interval 30
    times = []
    at: float | None = 0.0
    while at is not None:
        times.append(at)
        at = next_check_at(at, 60.0, s, 0)
    assert times == [0.0, 30.0, 60.0]
    assert next_check_at(50.0, 60.0, s, 0) == 60.0  # clamped to the deadline
    assert next_check_at(59.995, 60.0, s, 0) is None  # a wait that returned a hair early


def test_a_failed_check_is_confirmed_sooner_even_past_the_deadline() -> None:
    s = SETTINGS
    assert next_check_at(0.0, 60.0, s, 1) == 10.0
    assert next_check_at(60.0, 60.0, s, 2) == 70.0  # an open streak is followed to its verdict
    assert next_check_at(60.0, 60.0, s, 3, blocked=True) is None  # unless the revert is blocked
    assert next_check_at(30.0, 60.0, s, 3, blocked=True) == 40.0


# -- stand-down and the start gate --------------------------------------------------------------


def flag(value: str | None, previous: str | None = None, **annotations: str) -> FlagState:
    slots = ("blue", "green")
    return FlagState(
        value=value,
        active=value if value in slots else None,
        previous=previous if previous in slots and previous != value else None,
        resource_version="7",
        annotations=annotations,
    )


def test_stand_down_names_who_moved_production() -> None:
    assert stand_down_reason(flag("green"), "green") is None
    moved = flag("blue", **{CHANGED_BY: "alice@ops:1", CHANGED_AT: "T", REASON: "manual"})
    reason = stand_down_reason(moved, "green")
    assert reason is not None
    assert reason.startswith("production is on blue now, not on green (changed by alice@ops:1")
    assert "at T: manual" in reason
    assert "standing down" in reason


def flag_obj(value: str, previous: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": "gx10-model",
            "resourceVersion": "7",
            "annotations": {PREVIOUS: previous},
        },
        "spec": {"selector": {"gx10slots.io/slot": value}},
    }


def gate(slots: dict[str, SlotState], state: FlagState, expected: str | None = None) -> Any:
    return start_gate(
        slots,
        state,
        flag_obj(state.value or "", state.previous or ""),
        CONFIG,
        expected=expected,
        by="guard:test",
        now=NOW,
    )


def test_start_gate_targets_the_active_slot_and_its_warm_previous() -> None:
    slots = {"blue": slot("blue", model="old"), "green": slot("green", model="new")}
    target = gate(slots, flag("green", "blue"))
    assert target == Target("green", "blue", "new", "new", "rev-green", "old", "old")


def test_start_gate_refuses_a_parked_or_unready_previous_slot() -> None:
    for previous in (slot("blue", replicas=0, available=0), slot("blue", available=0)):
        slots = {"blue": previous, "green": slot("green")}
        with pytest.raises(Refused) as info:
            gate(slots, flag("green", "blue"))
        assert "nothing safe to fall back to" in info.value.message
        assert info.value.exit_code == 3


def test_start_gate_refuses_without_a_previous_slot_or_an_active_one() -> None:
    slots = {"blue": slot("blue"), "green": slot("green")}
    with pytest.raises(Refused, match="no previous slot"):
        gate(slots, flag("green"))
    with pytest.raises(Refused, match="no active slot"):
        gate(slots, flag("purple", "blue"))


def test_start_gate_stands_down_when_production_is_not_on_the_expected_slot() -> None:
    slots = {"blue": slot("blue"), "green": slot("green")}
    reason = gate(slots, flag("blue", "green", **{CHANGED_BY: "bob"}), expected="green")
    assert isinstance(reason, str)
    assert "changed by bob" in reason


def test_trip_summary_names_the_streak_and_the_last_reasons() -> None:
    from gx10slots.guard.rules import CheckRecord

    record = CheckRecord(3, 20.0, False, ("a", "b"), BAD, Share(1, 3))
    assert trip_summary([record, record]) == "2 consecutive failed checks; last: a; b"
    assert record.to_dict()["probe"]["timed_out"] is True
