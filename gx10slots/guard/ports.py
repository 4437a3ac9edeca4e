"""The guard's ports onto the real world: the flag through the API server, production through
its endpoint, and the flip-back through the flip's own steps (``gx10slots.flip``).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from gx10slots import console
from gx10slots.app import App
from gx10slots.errors import (
    Interrupted,
    LockHeld,
    Refused,
    SlotsError,
)
from gx10slots.flip.rules import clean_reason
from gx10slots.flip.run import Switched, mark_done, record_flip, switch, where_production_is
from gx10slots.flip.verify import verify as verify_production
from gx10slots.guard.loop import RevertBlocked, RevertResult
from gx10slots.guard.rules import (
    CheckRecord,
    GateReading,
    GuardSettings,
    Target,
    busy,
    stand_down_reason,
)
from gx10slots.kube.lease import Lock
from gx10slots.ops.engine import (
    probe_access,
    production_endpoint,
    quick_probe,
    slot_endpoint,
    suite_settings,
)
from gx10slots.ops.lease import hold
from gx10slots.ops.read import read_flag_object
from gx10slots.ops.smoke import invalidate_smoke
from gx10slots.slots import FlagState, flag_state
from gx10slots.smoke import Observation, get_profile, observe, running_requests

if TYPE_CHECKING:
    from gx10slots.guard.prometheus import PrometheusGates

# Reading the wedged slot's running gauge after the flip-back is best effort and quick.
IN_FLIGHT_TIMEOUT_S = 3.0


class ClusterPorts:
    """The real world: the flag through the API server, production through its endpoint."""

    def __init__(
        self,
        app: App,
        target: Target,
        settings: GuardSettings,
        *,
        by: str,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], bool] | None = None,
        break_lock: bool = False,
    ) -> None:
        self.app = app
        self.break_lock = break_lock
        self.target = target
        self.settings = settings
        self.by = by
        self._clock = clock
        self._wait = wait or threading.Event().wait
        self.profile = get_profile(app.config.engine)
        self.endpoint = production_endpoint(app)
        # The same credentials and transport as every probe (apiserver-proxy needs the cluster's).
        self.api_key, self.transport = probe_access(app)
        self.suite = suite_settings(app, ("streaming",))
        self._gates: PrometheusGates | None = None  # made at the first check that needs it

    def clock(self) -> float:
        return self._clock()

    def wait(self, seconds: float) -> bool:
        return self._wait(seconds)

    def flag(self) -> FlagState:
        return flag_state(read_flag_object(self.app), self.app.config)

    def observe(self, timeout_s: float) -> Observation:
        return self._observe_at(self.endpoint, self.target.served_name or "", timeout_s)

    def _observe_at(self, endpoint: str, served_name: str, timeout_s: float) -> Observation:
        settings = dataclasses.replace(
            self.suite, probe_timeout_s=timeout_s, deadline_s=timeout_s * 2
        )
        return observe(
            endpoint,
            served_name,
            self.profile,
            settings,
            api_key=self.api_key,
            timeout_s=timeout_s,
            stall_window_s=self.settings.stall_window_s,
            sample_every_s=self.settings.sample_every_s,
            transport=self.transport,
        )

    def gates(self) -> tuple[GateReading, ...]:
        prometheus = self.app.config.guard.prometheus
        if prometheus.url is None:
            return ()
        if self._gates is None:
            from gx10slots.guard.prometheus import PrometheusGates

            self._gates = PrometheusGates(prometheus)
        return self._gates.read()

    def _fallback_answers(self) -> str | None:
        """Why the previous slot is no safe place to go (its own quick probe), or None."""
        previous = self.target.previous
        served = self.target.previous_served_name or ""
        endpoint = slot_endpoint(self.app, previous)
        timeout = self.settings.probe_timeout_s
        verdict = quick_probe(self.app, endpoint, served, timeout_s=timeout)
        if verdict.passed:
            return None
        if verdict.timed_out and busy(self._observe_at(endpoint, served, timeout)):
            # An engine that serves one request at a time may still be busy with streams the
            # flip left on it (established streams keep their pod): queued behind progressing
            # work is busy, not wedged, and still the safe place to go.
            console.progress(
                f"guard {self.target.guarded}: the previous slot {previous} is busy (its probe "
                "waited while its progress counter moved): flipping back to it anyway"
            )
            return None
        return f"the previous slot {previous} failed its own probe: {verdict.detail}"

    def revert(self, summary: str, streak: Sequence[CheckRecord]) -> RevertResult:
        app, guarded = self.app, self.target.guarded
        reason = clean_reason(f"slots guard: {summary}")
        console.progress(
            f"guard {guarded}: tripped ({summary}); taking the lease to flip back to "
            f"{self.target.previous}"
        )
        switched: Switched | None = None
        # A guard that lost sight of production (a network blip on its own side) must not move a
        # healthy production onto a slot that does not answer either.
        unsafe = self._fallback_answers()
        if unsafe is not None:
            raise RevertBlocked(unsafe)
        try:
            with hold(app, holder=self.by, break_lock=self.break_lock) as lock:
                try:
                    switched = switch(
                        app,
                        "auto-revert",
                        lock,
                        force=True,
                        by=self.by,
                        reason=reason,
                        expected_source=guarded,
                        probe=False,
                    )
                except Refused as exc:
                    moved = stand_down_reason(self.flag(), guarded)
                    if moved is not None:
                        return RevertResult(
                            guarded, self.target.previous, False, exc.message, stood_down=moved
                        )
                    raise RevertBlocked(exc.message) from exc
                return self._verify_and_record(lock, switched, reason, summary)
        except LockHeld as exc:
            raise RevertBlocked(exc.message) from exc
        except (KeyboardInterrupt, Interrupted) as exc:
            message = exc.message if isinstance(exc, Interrupted) else "interrupted by Ctrl-C"
            raise Interrupted(
                f"{message} while the guard was flipping back; "
                + where_production_is(app, switched),
                reported=True,
            ) from None
        except SlotsError as exc:
            exc.message = f"the guard tripped ({summary}) and flipping back failed: {exc.message}"
            raise

    def _verify_and_record(
        self, lock: Lock, switched: Switched, reason: str, summary: str
    ) -> RevertResult:
        plan = switched.plan
        console.progress(
            f"flag switched: production {plan.source or 'no slot'} -> {plan.target}; verifying "
            f"through {self.endpoint}"
        )
        ok, detail = verify_production(
            self.app, plan.target, plan.target_served_name, self.app.config.flag.verify_window_s
        )
        in_flight = self._running_on(self.target.guarded)
        stranded = (
            f"; {in_flight:g} request(s) still running on {plan.source}"
            if in_flight is not None
            else ""
        )
        record_detail = (
            f"guard tripped: {summary}{stranded}; "
            + ("verified: " if ok else "verification through production FAILED: ")
            + detail
        )
        warnings: list[str] = []
        recorded = True
        if not invalidate_smoke(
            self.app, plan.source or self.target.guarded, f"guard tripped: {summary}", lock
        ):
            warnings.append(f"could not mark the smoke of {plan.source} as failed")
        try:
            warnings += record_flip(
                self.app,
                plan,
                action="auto-revert",
                by=self.by,
                reason=reason,
                result="ok" if ok else "failed",
                detail=record_detail,
                regarding=switched.flag_obj,
            )
            # As every flag writer does: the run is finished only when the flag says so.
            mark_done(self.app, switched.flag_obj, plan.run)
        except SlotsError as exc:
            recorded = False
            warnings.append(f"the flip-back happened but recording it failed: {exc.message}")
            console.progress(warnings[-1])
        return RevertResult(
            source=plan.source or self.target.guarded,
            target=plan.target,
            verified=ok,
            detail=detail,
            in_flight=in_flight,
            recorded=recorded,
            warnings=tuple(warnings),
        )

    def _running_on(self, slot: str) -> float | None:
        """The slot's running-requests gauge, read on the slot itself (requests stranded there)."""
        try:
            endpoint = slot_endpoint(self.app, slot)
        except SlotsError:
            return None  # best effort: reported as unknown
        return running_requests(
            endpoint,
            self.profile,
            api_key=self.api_key,
            timeout_s=IN_FLIGHT_TIMEOUT_S,
            transport=self.transport,
        )
