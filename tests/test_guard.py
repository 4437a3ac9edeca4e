"""The guard's loop, its observation of production and its flip-back wiring, on fakes.

The loop runs on :class:`FakePorts`: an injected clock that only moves when the loop waits or a
check takes time, so no test sleeps. Observations run against ``httpx.MockTransport`` engines.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from gx10slots.app import App, GlobalOptions
from gx10slots.config import GateQuery
from gx10slots.errors import (
    ApiUnreachable,
    Interrupted,
    LockHeld,
    Refused,
    StateUnknown,
)
from gx10slots.flip.rules import FlipPlan
from gx10slots.flip.run import Switched
from gx10slots.guard import ports as ports_mod
from gx10slots.guard import run as run_mod
from gx10slots.guard.loop import GuardRequest, RevertBlocked, RevertResult, watch
from gx10slots.guard.ports import ClusterPorts
from gx10slots.guard.result import GuardResult
from gx10slots.guard.rules import (
    BUSY_MIN_ADVANCE,
    SHARE_WINDOW,
    CheckRecord,
    GateReading,
    GuardSettings,
    Share,
    Target,
    busy,
)
from gx10slots.guard.run import exit_code
from gx10slots.ops.engine import ProbeVerdict
from gx10slots.ops.read import Snapshot
from gx10slots.slots import CHANGED_BY, PREVIOUS, FlagState, SmokeRecord
from gx10slots.smoke.live import Observation, observe
from gx10slots.smoke.profiles import VLLM, get_profile
from gx10slots.smoke.settings import SuiteSettings
from tests.helpers.config import valid
from tests.helpers.engines import FakeEngine, hang_forever
from tests.helpers.guard import SETTINGS
from tests.helpers.objects import slot

TARGET = Target("green", "blue", "new-model", "new-model", "rev-green", "old-model")
OK = Observation(True, "answered 'pong'", ttft_ms=40.0, stall="progressing")
WEDGED = Observation(
    False,
    "timed out after 10.0 s waiting for the first token",
    timed_out=True,
    stall="stalled",
    stall_detail="stall: vllm:num_requests_running stayed at 1 (engine wedged)",
    running=1.0,
)
HTTP_500 = Observation(False, "/v1/chat/completions answered HTTP 500: EngineCore failed")
# Queued behind a long generation on a one-slot engine: no first token, the counter moving.
BUSY = Observation(
    False,
    "timed out after 10.0 s waiting for the first token",
    timed_out=True,
    stall="progressing",
    running=1.0,
    recent_advance=250.0,
)


def flag(value: str, **annotations: str) -> FlagState:
    return FlagState(
        value=value,
        active=value,
        previous="blue" if value == "green" else "green",
        resource_version="1",
        annotations=annotations,
    )


class FakePorts:
    """Scripted world: observations in order (the last repeats), a flag per check number."""

    def __init__(
        self,
        observations: Sequence[Observation],
        *,
        check_cost: float = 0.5,
        flags: Callable[[int], FlagState] = lambda n: flag("green"),
        reverts: Sequence[RevertResult | Exception] = (),
        stop_after_waits: int | None = None,
        gates: Sequence[Sequence[GateReading]] = (),
    ) -> None:
        self.observations = list(observations)
        self.gate_readings = list(gates)  # per check, like observations (the last repeats)
        self.gates_asked = 0
        self.check_cost = check_cost
        self.flags = flags
        self.reverts = list(reverts)
        self.stop_after_waits = stop_after_waits
        self.now = 1000.0
        self.waits: list[float] = []
        self.checks_at: list[float] = []
        self.timeouts: list[float] = []
        self.reverted: list[tuple[str, list[CheckRecord]]] = []
        self.flag_reads = 0

    def clock(self) -> float:
        return self.now

    def wait(self, seconds: float) -> bool:
        self.waits.append(round(seconds, 3))
        self.now += seconds
        return self.stop_after_waits is not None and len(self.waits) >= self.stop_after_waits

    def flag(self) -> FlagState:
        self.flag_reads += 1
        return self.flags(self.flag_reads)

    def observe(self, timeout_s: float) -> Observation:
        self.checks_at.append(round(self.now - 1000.0, 3))
        self.timeouts.append(timeout_s)
        self.now += self.check_cost
        index = len(self.checks_at) - 1
        return self.observations[min(index, len(self.observations) - 1)]

    def gates(self) -> Sequence[GateReading]:
        self.gates_asked += 1
        index = len(self.checks_at) - 1
        return (
            self.gate_readings[min(index, len(self.gate_readings) - 1)]
            if self.gate_readings
            else ()
        )

    def revert(self, summary: str, streak: Sequence[CheckRecord]) -> RevertResult:
        self.reverted.append((summary, list(streak)))
        outcome = self.reverts.pop(0) if len(self.reverts) > 1 else self.reverts[0]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


REVERTED = RevertResult("green", "blue", True, "answered", in_flight=2.0)


# -- the loop ------------------------------------------------------------------------------------


def test_a_healthy_window_passes_with_a_check_every_interval_and_one_at_the_end() -> None:
    ports = FakePorts([OK])
    outcome = watch(ports, TARGET, SETTINGS, None)
    assert outcome.result == "passed"
    assert ports.checks_at == [0.0, 30.0, 60.0]
    assert ports.waits == [29.5, 29.5]  # the check's own time counts in the interval
    assert ports.timeouts == [10.0, 10.0, 10.0]
    assert ports.reverted == []
    assert (outcome.tally.checks, outcome.tally.failed_checks) == (3, 0)


def test_consecutive_failures_trip_and_the_confirmations_come_sooner() -> None:
    ports = FakePorts([OK, WEDGED], check_cost=10.0, reverts=[REVERTED])
    outcome = watch(ports, TARGET, SETTINGS, None)
    assert outcome.result == "tripped"
    assert outcome.revert == REVERTED
    assert ports.checks_at == [0.0, 30.0, 40.0, 50.0]  # then every third of the interval
    [(summary, streak)] = ports.reverted
    assert [r.number for r in streak] == [2, 3, 4]
    assert summary.startswith("3 consecutive failed checks; last: known-answer probe")
    assert "engine wedged" in summary
    assert [r.number for r in outcome.streak] == [2, 3, 4]
    assert outcome.tally.abandoned_probes == 3


def test_a_slot_busy_for_the_whole_window_is_never_reverted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    ports = FakePorts([OK, BUSY], check_cost=10.0)
    outcome = watch(ports, TARGET, SETTINGS, None)
    assert outcome.result == "passed"
    assert ports.reverted == []
    assert ports.checks_at == [0.0, 30.0, 60.0]  # no quick confirmations: nothing failed
    assert [r.busy for r in outcome.records] == [False, True, True]
    assert outcome.records[-1].to_dict()["busy"] is True
    assert "busy: the probe waited behind other requests" in capsys.readouterr().err


def test_busy_for_longer_than_max_busy_fails_the_checks_and_flips_back() -> None:
    # Busy is not wedged, but a slot that took no new request for max_busy has left every user
    # but one waiting: the idle warm fallback would answer them.
    ports = FakePorts([OK, BUSY], check_cost=1.0, reverts=[REVERTED])
    settings = GuardSettings(**{**SETTINGS.to_dict(), "window_s": 600.0, "max_busy_s": 100.0})
    outcome = watch(ports, TARGET, settings, None)
    assert outcome.result == "tripped"
    assert ports.checks_at[:6] == [0.0, 30.0, 60.0, 90.0, 120.0, 150.0]
    busy_from = 30.0
    [(_, streak)] = ports.reverted
    assert all(r.busy for r in streak)
    assert all(r.t_s - busy_from > 100.0 for r in streak)  # none failed before max_busy
    assert "production took no new request for" in streak[-1].reasons[0]
    assert not any(not r.passed for r in outcome.records if r.t_s - busy_from <= 100.0)
    assert outcome.tally.busy_checks == len(outcome.records) - 1


def test_a_busy_streak_broken_by_an_answer_starts_again() -> None:
    # Every answered probe proves the slot takes new requests: the busy time restarts.
    pattern = [OK] + [BUSY, BUSY, BUSY, OK] * 10
    ports = FakePorts(pattern, check_cost=1.0)
    settings = GuardSettings(**{**SETTINGS.to_dict(), "window_s": 600.0, "max_busy_s": 100.0})
    outcome = watch(ports, TARGET, settings, None)
    assert outcome.result == "passed"
    assert ports.reverted == []
    assert outcome.tally.busy_checks == sum(r.busy for r in outcome.records) > 10


def test_a_wedge_after_busy_checks_still_trips() -> None:
    ports = FakePorts([OK, BUSY, BUSY, WEDGED], check_cost=1.0, reverts=[REVERTED])
    settings = GuardSettings(**{**SETTINGS.to_dict(), "window_s": 600.0})
    outcome = watch(ports, TARGET, settings, None)
    assert outcome.result == "tripped"
    [(_, streak)] = ports.reverted
    assert [r.number for r in streak] == [4, 5, 6]
    assert not any(r.busy for r in streak)


ERRORS = GateQuery("errors", "sum(rate(ai_ir_failures_total[1m]))", max=0.1)


def test_a_prometheus_gate_in_breach_trips_the_guard_while_the_probes_pass(
    capsys: pytest.CaptureFixture[str],
) -> None:
    quiet = [GateReading(ERRORS, ())]  # no traffic yet: no data, not a breach
    healthy = [GateReading(ERRORS, (0.02,))]
    failing = [GateReading(ERRORS, (0.8,))]
    ports = FakePorts([OK], gates=[quiet, healthy, failing], reverts=[REVERTED])
    outcome = watch(ports, TARGET, SETTINGS, None)
    assert outcome.result == "tripped"
    assert [r.passed for r in outcome.records] == [True, True, False, False, False]
    [(summary, streak)] = ports.reverted
    assert summary.endswith(
        "last: gate errors: 0.8 above max 0.1 (sum(rate(ai_ir_failures_total[1m])))"
    )
    assert all(r.observation.passed for r in streak)  # the probes alone would never trip
    first = outcome.records[0].to_dict()["gates"][0]
    assert (first["state"], first["detail"]) == ("no-data", "gate errors: no data (empty result)")
    assert "gate errors: no data (empty result)" in capsys.readouterr().err


def test_gates_are_not_asked_when_the_probe_already_failed() -> None:
    ports = FakePorts([OK, WEDGED], gates=[[GateReading(ERRORS, (0.02,))]], reverts=[REVERTED])
    outcome = watch(ports, TARGET, SETTINGS, None)
    assert outcome.result == "tripped"
    assert ports.gates_asked == 1  # the first check only: the wedged ones did not wait for it
    assert [len(r.gates) for r in outcome.records] == [1, 0, 0, 0]


def test_an_unavailable_prometheus_never_trips_the_guard() -> None:
    down = [GateReading(ERRORS, error="cannot reach Prometheus (ConnectError)")]
    ports = FakePorts([OK], gates=[down])
    outcome = watch(ports, TARGET, SETTINGS, None)
    assert outcome.result == "passed"
    assert outcome.records[-1].to_dict()["gates"][0]["state"] == "unavailable"


def test_isolated_failures_do_not_trip() -> None:
    # One failed probe in every SHARE_WINDOW: never in a row, never above a 20% share.
    ports = FakePorts(([HTTP_500] + [OK] * SHARE_WINDOW) * 3, check_cost=0.1)
    settings = GuardSettings(**{**SETTINGS.to_dict(), "window_s": 30.0 * 30})
    outcome = watch(ports, TARGET, settings, None)
    assert outcome.result == "passed"
    assert outcome.tally.failed_checks == 3
    assert ports.reverted == []


def test_two_failures_among_few_probes_are_a_high_error_share() -> None:
    ports = FakePorts([OK, HTTP_500, OK, HTTP_500, OK], check_cost=0.1, reverts=[REVERTED])
    settings = GuardSettings(**{**SETTINGS.to_dict(), "window_s": 600.0})
    outcome = watch(ports, TARGET, settings, None)
    assert outcome.result == "tripped"
    assert [r.passed for r in outcome.records] == [True, False, True, False, False, False]
    assert "error share 2/6 = 33%" in outcome.records[-1].reasons[0]


def test_a_high_error_share_trips_even_without_consecutive_probe_failures() -> None:
    # Every other probe fails: never `failures` probe failures in a row, but a 50% share.
    pattern = [OK, HTTP_500] * 20
    settings = GuardSettings(**{**SETTINGS.to_dict(), "window_s": 3600.0, "failures": 5})
    ports = FakePorts(pattern, check_cost=0.1, reverts=[REVERTED])
    outcome = watch(ports, TARGET, settings, None)
    assert outcome.result == "tripped"
    [(summary, streak)] = ports.reverted
    assert "error share" in summary
    assert any(r.observation.passed for r in streak)  # passing probes, failing checks
    assert outcome.tally.checks == 8


def test_an_operator_flip_makes_the_guard_stand_down_without_probing() -> None:
    moved = flag("blue", **{CHANGED_BY: "alice@ops:42"})
    ports = FakePorts([WEDGED], flags=lambda n: flag("green") if n < 3 else moved)
    outcome = watch(ports, TARGET, SETTINGS, None)
    assert outcome.result == "stood-down"
    assert outcome.stood_down is not None and "alice@ops:42" in outcome.stood_down
    assert len(ports.checks_at) == 2  # the third check saw the flag and stopped
    assert ports.reverted == []


def test_production_moving_while_it_trips_is_a_stand_down_too() -> None:
    moved = RevertResult("green", "blue", False, "", stood_down="production is on blue now")
    ports = FakePorts([WEDGED], reverts=[moved])
    outcome = watch(ports, TARGET, SETTINGS, None)
    assert outcome.result == "stood-down"
    assert outcome.stood_down == "production is on blue now"


def test_a_blocked_flip_back_is_tried_again_at_the_next_check() -> None:
    ports = FakePorts(
        [WEDGED], check_cost=1.0, reverts=[RevertBlocked("lease held by bob"), REVERTED]
    )
    outcome = watch(ports, TARGET, SETTINGS, None)
    assert outcome.result == "tripped"
    assert len(ports.reverted) == 2
    assert [len(streak) for _, streak in ports.reverted] == [3, 4]


def test_a_flip_back_blocked_until_the_window_ends_gives_up() -> None:
    ports = FakePorts([WEDGED], check_cost=1.0, reverts=[RevertBlocked("slot blue is parked")])
    outcome = watch(ports, TARGET, SETTINGS, None)
    assert outcome.result == "blocked"
    assert outcome.blocked == "slot blue is parked"
    assert ports.checks_at[-1] >= 60.0
    assert ports.checks_at[-1] < 71.0  # it stops at the first check past the deadline


def test_a_streak_open_at_the_deadline_is_followed_to_its_verdict() -> None:
    ports = FakePorts([OK, OK, HTTP_500, OK], check_cost=0.1)
    outcome = watch(ports, TARGET, SETTINGS, None)
    assert outcome.result == "passed"
    assert ports.checks_at == [0.0, 30.0, 60.0, 70.0]


def test_an_unreadable_flag_does_not_stop_the_checks() -> None:
    def flaky_flag(n: int) -> FlagState:
        if n == 2:
            raise ApiUnreachable("no answer from the API server")
        return flag("green")

    ports = FakePorts([OK], flags=flaky_flag)
    outcome = watch(ports, TARGET, SETTINGS, None)
    assert outcome.result == "passed"
    assert outcome.tally.checks == 3
    assert outcome.warnings == ["1 check(s) could not read the flag"]


def test_stopping_while_it_waits_changes_nothing() -> None:
    ports = FakePorts([OK], stop_after_waits=1)
    with pytest.raises(Interrupted) as info:
        watch(ports, TARGET, SETTINGS, None)
    assert "nothing was changed" in info.value.message
    assert ports.reverted == []


def test_ctrl_c_during_a_check_changes_nothing() -> None:
    class CtrlC(FakePorts):
        def observe(self, timeout_s: float) -> Observation:
            raise KeyboardInterrupt

    with pytest.raises(Interrupted) as info:
        watch(CtrlC([OK]), TARGET, SETTINGS, None)
    assert info.value.exit_code == 130
    assert "after 0 check(s); nothing was changed (production stays on green)" in (
        info.value.message
    )


def test_sigterm_while_the_flag_is_read_stops_the_guard_instead_of_counting_a_failed_read() -> None:
    # The CLI's SIGTERM handler raises Interrupted wherever the main thread is; a flag read that
    # may fail is guarded by `except SlotsError`, which must not take a stop for a failed read.
    def terminated(check: int) -> FlagState:
        raise Interrupted("terminated by SIGTERM")

    ports = FakePorts([OK], flags=terminated)
    with pytest.raises(Interrupted) as info:
        watch(ports, TARGET, SETTINGS, None)
    assert ports.checks_at == []  # no probe after the stop
    assert ports.reverted == []
    assert "after 0 check(s); nothing was changed" in info.value.message


# -- one observation of production, against MockTransport engines -------------------------------

SUITE = SuiteSettings(probes=("streaming",), probe_timeout_s=1.0)


def look(engine: Any, timeout_s: float = 1.0, **kw: Any) -> Observation:
    return observe(
        "http://engine.test",
        "m",
        kw.pop("profile", VLLM),
        SUITE,
        api_key=kw.pop("api_key", None),
        timeout_s=timeout_s,
        stall_window_s=timeout_s / 2,
        sample_every_s=0.02,
        transport=httpx.MockTransport(engine),
    )


def test_observe_a_healthy_engine() -> None:
    obs = look(FakeEngine())
    assert obs.passed, obs.detail
    assert obs.ttft_ms is not None
    assert obs.stall == "progressing"
    assert not obs.timed_out


def test_observe_a_wedged_engine_is_judged_at_the_stall_not_at_the_timeout() -> None:
    engine = FakeEngine()
    engine.running = 1.0
    engine.routes["/v1/chat/completions"] = hang_forever
    # A 5 s timeout, a 0.2 s stall window: the verdict comes from the stall (a probe that ran to
    # its timeout would say "timed out after 5.0 s").
    obs = observe(
        "http://engine.test",
        "m",
        VLLM,
        SUITE,
        api_key=None,
        timeout_s=5.0,
        stall_window_s=0.2,
        sample_every_s=0.02,
        transport=httpx.MockTransport(engine),
    )
    assert not obs.passed
    assert obs.timed_out  # abandoned: the engine may still count it as running
    assert obs.detail == "no answer: the engine stalled while the probe waited"
    assert obs.stall == "stalled", obs.stall_detail
    assert obs.running == 1.0


def decoding_metrics(engine: FakeEngine, steps: int | None = None) -> Any:
    """/metrics of an engine busy with someone else's long generation: one request running, the
    counter one decode step further at each scrape (for ``steps`` scrapes; then it stops)."""
    scrapes = 0

    async def metrics(request: httpx.Request) -> httpx.Response:
        nonlocal scrapes
        scrapes += 1
        if steps is None or scrapes <= steps:
            engine.generated += 1
        return httpx.Response(200, text=engine.metrics_text())

    return metrics


def test_observe_a_probe_queued_behind_a_long_generation_is_busy() -> None:
    engine = FakeEngine()
    engine.running = 1.0
    engine.routes["/v1/chat/completions"] = hang_forever  # queued: never reaches the engine
    engine.routes["/metrics"] = decoding_metrics(engine)
    obs = look(engine, timeout_s=0.3)
    assert obs.timed_out and obs.ttft_ms is None
    assert obs.stall == "progressing"
    assert obs.recent_advance is not None and obs.recent_advance >= 2, obs
    assert busy(obs)


def test_observe_an_engine_that_stops_while_the_probe_waits_is_not_busy() -> None:
    engine = FakeEngine()
    engine.running = 1.0
    engine.routes["/v1/chat/completions"] = hang_forever
    engine.routes["/metrics"] = decoding_metrics(engine, steps=4)  # then a flat counter
    # The counter moves by 3 over the first scrapes (~0.1 s), then stays flat to the end of the
    # probe's 2 s: the last 1 s window shows no progress, even with scrapes late under load.
    obs = look(engine, timeout_s=2.0)
    assert obs.timed_out
    assert obs.recent_advance is not None and obs.recent_advance < BUSY_MIN_ADVANCE, obs
    assert not busy(obs)


def test_observe_a_hung_engine_without_metrics_sees_the_timeout() -> None:
    engine = FakeEngine()
    engine.routes["/v1/chat/completions"] = hang_forever

    async def no_metrics(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404)

    engine.routes["/metrics"] = no_metrics
    obs = look(engine, timeout_s=0.3)
    assert not obs.passed
    assert obs.timed_out
    assert obs.detail.startswith("timed out after 0.3 s")
    assert obs.stall == "unavailable"


def test_observe_an_erroring_engine() -> None:
    engine = FakeEngine()

    async def error(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "EngineCore failed"}})

    engine.routes["/v1/chat/completions"] = error
    obs = look(engine)
    assert not obs.passed
    assert "HTTP 500: EngineCore failed" in obs.detail
    assert not obs.timed_out


def test_observe_a_garbage_answer_fails() -> None:
    obs = look(FakeEngine(answer="carecarecare"))
    assert not obs.passed
    assert "pong" in obs.detail


def test_observe_without_metrics_judges_the_probe_alone() -> None:
    engine = FakeEngine()
    engine.metrics_status = 404
    obs = look(engine)
    assert obs.passed
    assert obs.stall == "unavailable"
    obs = look(FakeEngine(), profile=get_profile("llama-cpp-python"))
    assert obs.passed
    assert obs.stall == "unavailable"


def test_observe_sends_the_key_and_never_shows_it() -> None:
    engine = FakeEngine()

    async def leaky(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, text=f"bad auth {request.headers['authorization']}")

    engine.routes["/v1/chat/completions"] = leaky
    obs = look(engine, api_key="s3cret-key")
    assert "s3cret-key" not in obs.detail
    assert "[REDACTED]" in obs.detail


# -- the flip-back through the flip's own steps -------------------------------------------------


def make_app(tmp_path: Path) -> App:
    app = App(GlobalOptions())
    doc = valid()
    doc["smoke"] = {"report_dir": str(tmp_path / "reports")}
    from gx10slots.config import parse_config

    app.__dict__["config"] = parse_config(doc)
    app.__dict__["kube"] = object()
    return app


PLAN = FlipPlan(
    mode="auto-revert",
    source="green",
    target="blue",
    target_model="old-model",
    source_model="new-model",
    target_served_name="old-model",
    patch=[],
)


@pytest.fixture
def wired(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[tuple[ClusterPorts, dict[str, Any]]]:
    calls: dict[str, Any] = {"switch": [], "record": [], "verify": [], "locks": []}

    @contextmanager
    def fake_lock(app: Any, *, holder: str, break_lock: bool = False) -> Iterator[str]:
        calls["locks"].append(holder)
        yield "lock"

    def fake_switch(app: App, mode: str, lock: Any, **kw: Any) -> Switched:
        calls["switch"].append((mode, lock, kw))
        outcome = calls.get("switch_outcome")
        if isinstance(outcome, Exception):
            raise outcome
        return Switched(PLAN, {"metadata": {"name": "gx10-model"}}, "T")

    def fake_verify(app: App, slot: str, served: str | None, window: float) -> tuple[bool, str]:
        calls["verify"].append((slot, served))
        return calls.get("verified", (True, "answered readiness, identity, known-answer"))

    monkeypatch.setattr(ports_mod, "hold", fake_lock)
    monkeypatch.setattr(ports_mod, "switch", fake_switch)
    monkeypatch.setattr(ports_mod, "verify_production", fake_verify)

    def fake_record(app: App, plan: FlipPlan, **kw: Any) -> list[str]:
        calls["record"].append(kw)
        return calls.get("notify_warnings", [])

    monkeypatch.setattr(ports_mod, "record_flip", fake_record)
    monkeypatch.setattr(ClusterPorts, "_running_on", lambda self, slot: 2.0)
    monkeypatch.setattr(ClusterPorts, "_fallback_answers", lambda self: calls.get("fallback"))
    monkeypatch.setattr(ports_mod, "invalidate_smoke", lambda app, slot, why, lock: True)
    ports = ClusterPorts(make_app(tmp_path), TARGET, SETTINGS, by="guard:me@host:1")
    monkeypatch.setattr(ports, "flag", lambda: flag("green"))
    yield ports, calls


@pytest.mark.parametrize(
    ("answer", "look", "safe"),
    [
        # Queued behind a stream the flip left there, its counter moving: busy, a safe place.
        (ProbeVerdict(False, "known-answer: timed out after 10.0 s", timed_out=True), BUSY, True),
        # Timed out on a flat counter: wedged, no place to go.
        (
            ProbeVerdict(False, "known-answer: timed out after 10.0 s", timed_out=True),
            WEDGED,
            False,
        ),
        # An error is not a queue: not even looked at again.
        (ProbeVerdict(False, "known-answer: HTTP 500"), BUSY, False),
    ],
)
def test_a_fallback_busy_with_a_long_generation_is_still_a_safe_place_to_go(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    answer: ProbeVerdict,
    look: Observation,
    safe: bool,
) -> None:
    looked: list[str] = []

    def fake_observe(endpoint: str, served: str, *args: Any, **kw: Any) -> Observation:
        looked.append(f"{endpoint} {served}")
        return look

    monkeypatch.setattr(ports_mod, "slot_endpoint", lambda app, slot: f"http://{slot}.test")
    monkeypatch.setattr(ports_mod, "quick_probe", lambda *args, **kw: answer)
    monkeypatch.setattr(ports_mod, "observe", fake_observe)
    target = Target("green", "blue", "new-model", "new-model", "rev-green", "old-model", "old")
    ports = ClusterPorts(make_app(tmp_path), target, SETTINGS, by="guard:me@host:1")
    unsafe = ports._fallback_answers()
    assert (unsafe is None) == safe, unsafe
    if not safe:
        assert unsafe is not None and unsafe.startswith(
            "the previous slot blue failed its own probe"
        )
    assert looked == ([] if not answer.timed_out else ["http://blue.test old"])


def test_a_quick_probe_says_whether_its_failures_were_only_timeouts(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from gx10slots.ops import engine as engine_mod

    hung, erroring = FakeEngine(), FakeEngine()
    hung.routes["/v1/chat/completions"] = hang_forever

    async def error(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, json={"error": {"message": "EngineCore failed"}})

    erroring.routes["/v1/chat/completions"] = error
    app = make_app(tmp_path)
    verdicts = []
    for fake in (FakeEngine(), hung, erroring):
        transport = httpx.MockTransport(fake)
        monkeypatch.setattr(engine_mod, "probe_access", lambda app, t=transport: (None, t))
        verdicts.append(engine_mod.quick_probe(app, "http://engine.test", "m", timeout_s=0.3))
    assert [(v.passed, v.timed_out) for v in verdicts] == [
        (True, False),
        (False, True),
        (False, False),
    ]


STREAK = [CheckRecord(i, float(i), False, ("wedged",), WEDGED, Share(0, 0)) for i in (1, 2, 3)]


def test_a_fallback_that_does_not_answer_blocks_the_flip_back(
    wired: tuple[ClusterPorts, dict[str, Any]],
) -> None:
    ports, calls = wired
    calls["fallback"] = "the previous slot blue failed its own probe: timed out"
    with pytest.raises(RevertBlocked, match="failed its own probe"):
        ports.revert("wedged", STREAK)
    assert calls["switch"] == []


def test_the_flip_back_reuses_switch_verify_and_record(
    wired: tuple[ClusterPorts, dict[str, Any]],
) -> None:
    ports, calls = wired
    result = ports.revert("3 consecutive failed checks; last: wedged", STREAK)
    assert calls["locks"] == ["guard:me@host:1"]
    [(mode, lock, kw)] = calls["switch"]
    assert (mode, lock) == ("auto-revert", "lock")
    assert kw["force"] is True
    assert kw["probe"] is False
    assert kw["expected_source"] == "green"
    assert kw["by"] == "guard:me@host:1"
    assert kw["reason"] == "slots guard: 3 consecutive failed checks; last: wedged"
    assert calls["verify"] == [("blue", "old-model")]
    [record] = calls["record"]
    assert record["action"] == "auto-revert"
    assert record["result"] == "ok"
    assert record["reason"] == kw["reason"]
    assert "2 request(s) still running on green" in record["detail"]
    assert result == RevertResult(
        "green", "blue", True, "answered readiness, identity, known-answer", in_flight=2.0
    )


def test_an_undelivered_revert_notification_is_a_warning_of_the_guard(
    wired: tuple[ClusterPorts, dict[str, Any]],
) -> None:
    ports, calls = wired
    calls["notify_warnings"] = ["notification not delivered to webhook #1 (hooks): HTTP 500"]
    result = ports.revert("tripped", STREAK)
    assert result.verified  # the flip-back itself is unaffected
    assert result.warnings == ("notification not delivered to webhook #1 (hooks): HTTP 500",)


def test_a_failed_verification_is_recorded_as_failed(
    wired: tuple[ClusterPorts, dict[str, Any]],
) -> None:
    ports, calls = wired
    calls["verified"] = (False, "known-answer: timed out")
    result = ports.revert("tripped", STREAK)
    assert not result.verified
    assert calls["record"][0]["result"] == "failed"
    assert "verification through production FAILED" in calls["record"][0]["detail"]


def test_a_refused_switch_with_production_moved_is_a_stand_down(
    wired: tuple[ClusterPorts, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ports, calls = wired
    calls["switch_outcome"] = Refused("production is no longer on green")
    monkeypatch.setattr(ports, "flag", lambda: flag("blue", **{CHANGED_BY: "alice"}))
    result = ports.revert("tripped", STREAK)
    assert result.stood_down is not None and "changed by alice" in result.stood_down
    assert calls["record"] == []


def test_a_refused_switch_with_production_still_here_is_blocked(
    wired: tuple[ClusterPorts, dict[str, Any]],
) -> None:
    ports, calls = wired
    calls["switch_outcome"] = Refused("slot blue is parked (0 replicas)")
    with pytest.raises(RevertBlocked, match="parked"):
        ports.revert("tripped", STREAK)
    assert calls["record"] == []


def test_a_held_lease_blocks_the_flip_back(
    wired: tuple[ClusterPorts, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ports, calls = wired

    def held(*args: Any, **kw: Any) -> Any:
        raise LockHeld("bob@ops:7", "T")

    monkeypatch.setattr(ports_mod, "hold", held)
    with pytest.raises(RevertBlocked, match="held by bob@ops:7"):
        ports.revert("tripped", STREAK)
    assert calls["switch"] == []


def test_a_failed_history_write_does_not_hide_a_done_flip_back(
    wired: tuple[ClusterPorts, dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    ports, _ = wired

    def broken(app: App, plan: FlipPlan, **kw: Any) -> None:
        raise ApiUnreachable("no answer")

    monkeypatch.setattr(ports_mod, "record_flip", broken)
    result = ports.revert("tripped", STREAK)
    assert result.verified
    assert not result.recorded
    assert "recording it failed" in result.warnings[0]


# -- the command, on fake ports -----------------------------------------------------------------


@pytest.fixture
def command(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[dict[str, Any]]:
    state: dict[str, Any] = {"blue_replicas": 1, "records": []}

    def fake_snapshot(app: App) -> Snapshot:
        obj: dict[str, Any] = {
            "metadata": {"name": "gx10-model", "resourceVersion": "3"},
            "spec": {"selector": {"gx10slots.io/slot": "green"}},
        }
        obj["metadata"]["annotations"] = {PREVIOUS: "blue"}
        report = "20260101T000000Z-green.json"
        slots = {
            "blue": slot("blue", "old-model", replicas=state["blue_replicas"]),
            "green": slot("green", "new-model", smoke=SmokeRecord(True, "T", "rev-green", report)),
        }
        return Snapshot({}, slots, obj, flag("green"), None)

    reports = tmp_path / "reports"
    reports.mkdir()
    smoke = {
        "slot": "green",
        "model": "new-model",
        "revision": "rev-green",
        "engine": "vllm",
        "started_at": "2026-01-01T00:00:00Z",
        "finished_at": "2026-01-01T00:00:01Z",
        "passed": True,
        "probes": [],
        "summary": {"ttft_ms_p50": 30, "ttft_ms_p95": 900, "requests": 8, "failures": 0},
    }
    (reports / "20260101T000000Z-green.json").write_text(json.dumps(smoke))
    monkeypatch.setattr(run_mod, "snapshot", fake_snapshot)
    monkeypatch.setattr(run_mod, "record_flip", lambda app, plan, **kw: state["records"].append(kw))
    monkeypatch.setattr(run_mod, "read_flag_object", lambda app: {"metadata": {}})
    state["announced"] = []

    class Announcement:
        def __exit__(self, *exc: Any) -> None:
            state["announced"].append("released")

    def announce(app: App, by: str, window_s: float) -> Announcement:
        state["announced"].append(("held", by, window_s))
        return Announcement()

    monkeypatch.setattr(run_mod, "announce_watch", announce)
    state["app"] = make_app(tmp_path)
    state["reports"] = reports
    yield state


def run_guard(state: dict[str, Any], ports: FakePorts, **request: Any) -> GuardResult:
    return run_mod.guard(
        state["app"], GuardRequest(window_s=60, interval_s=30, **request), ports=ports
    )


def test_guard_passes_and_uses_the_smoke_report_as_ttft_baseline(command: dict[str, Any]) -> None:
    result = run_guard(command, FakePorts([OK]))
    doc = result.to_dict()
    assert doc["result"] == "passed"
    assert exit_code(result) == 0
    assert doc["checks"] == 3
    assert doc["baseline"]["ttft_ms_p95"] == 900
    assert doc["ttft_limit_ms"] == 2700
    assert "error" not in doc
    report = json.loads(Path(doc["report"]).read_text())
    assert Path(doc["report"]).name.endswith("-guard-green.json")
    assert len(report["check_log"]) == 3
    # It announced its watch (the fallback stays protected) for its window, and ended it.
    assert [a[0] if isinstance(a, tuple) else a for a in command["announced"]] == [
        "held",
        "released",
    ]
    assert command["announced"][0][2] == 60


def test_guard_trip_is_exit_1_with_evidence_and_a_report(command: dict[str, Any]) -> None:
    result = run_guard(command, FakePorts([WEDGED], reverts=[REVERTED]))
    doc = result.to_dict()
    assert doc["result"] == "tripped"
    assert exit_code(result) == 1
    assert doc["error"]["exit_code"] == 1
    assert "production is on blue again (verified)" in doc["error"]["message"]
    assert doc["revert"]["in_flight_on_guarded"] == 2.0
    assert doc["revert"]["guard_probes_abandoned"] == 3
    assert len(doc["evidence"]) == 3
    assert doc["evidence"][0]["probe"]["timed_out"] is True


def test_guard_refuses_when_the_previous_slot_is_parked(command: dict[str, Any]) -> None:
    command["blue_replicas"] = 0
    ports = FakePorts([OK])
    with pytest.raises(Refused) as info:
        run_guard(command, ports)
    assert info.value.exit_code == 3
    assert "parked" in info.value.message
    assert ports.checks_at == []


def test_guard_stands_down_at_once_when_the_flip_it_follows_was_undone(
    command: dict[str, Any],
) -> None:
    ports = FakePorts([OK])
    result = run_guard(command, ports, expected="blue")
    doc = result.to_dict()
    assert doc["result"] == "stood-down"
    assert exit_code(result) == 0
    assert ports.checks_at == []


def test_guard_that_could_not_flip_back_is_exit_3_and_recorded(command: dict[str, Any]) -> None:
    ports = FakePorts([WEDGED], check_cost=1.0, reverts=[RevertBlocked("lease held by bob")])
    with pytest.raises(Refused) as info:
        run_guard(command, ports)
    assert "could not flip back before the window ended: lease held by bob" in (info.value.message)
    [record] = command["records"]
    assert (record["action"], record["result"]) == ("auto-revert", "failed")


def test_guard_that_flipped_back_to_a_silent_slot_is_state_unknown(
    command: dict[str, Any],
) -> None:
    silent = RevertResult("green", "blue", False, "known-answer: timed out")
    with pytest.raises(StateUnknown) as info:
        run_guard(command, FakePorts([WEDGED], reverts=[silent]))
    assert info.value.exit_code == 4
    assert "switched the flag to blue, but production did not answer" in info.value.message


def test_the_guard_report_file_holds_null_for_an_engines_nan_never_invalid_json(
    tmp_path: Path,
) -> None:
    from datetime import UTC, datetime
    from types import SimpleNamespace

    nan = float("nan")
    check = SimpleNamespace(to_dict=lambda: {"probe": {"running": nan, "recent_advance": nan}})
    outcome = SimpleNamespace(records=[check])
    started = datetime(2026, 1, 1, tzinfo=UTC)
    path = run_mod._write_report({"outcome": "ok"}, outcome, str(tmp_path), "green", started)  # type: ignore[arg-type]
    assert path is not None

    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    doc = json.loads(Path(path).read_text(encoding="utf-8"), parse_constant=refuse)
    assert doc["check_log"] == [{"probe": {"running": None, "recent_advance": None}}]
