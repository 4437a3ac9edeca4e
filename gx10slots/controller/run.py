"""`slots controller`: the guard that stays up after everyone has gone to bed.

While it leads (Lease ``gx10slots-controller``, see :mod:`election`), every couple of seconds it
reads the flag. A flip it has not guarded yet — by `slots flip`, by hand, by anyone — starts a
guard of the new active slot exactly as `slots guard` does (the same rules, the same
compare-and-swap flip-back, the same history, Event and report), with the controller's fast
checks (``controller.interval``/``failures``/``probe_timeout``), for what is left of
``guard.window`` after the flip. A manual flip during a watch makes the guard stand down; the next
round guards the new active slot: it never fights an operator. Between flips, a light heartbeat
(a tiny known-answer generation) on each running slot every ``controller.heartbeat``, so a
standby that stopped answering is reported before anyone needs it.

``--mode observe`` (or ``guard.mode: observe``) judges everything and says "would flip back",
and changes nothing.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from gx10slots import console, notify
from gx10slots.app import App
from gx10slots.config import GuardMode
from gx10slots.controller.election import LEASE_NAME, Elector, Timing
from gx10slots.controller.metrics import ControllerMetrics
from gx10slots.errors import Interrupted, Refused, SlotsError, StateUnknown, UsageError
from gx10slots.guard.loop import GuardRequest, Ports, RevertResult
from gx10slots.guard.ports import ClusterPorts
from gx10slots.guard.rules import CheckRecord, GuardSettings, Target
from gx10slots.kube.lease import holder_identity
from gx10slots.kube.values import now_utc, parse_rfc3339
from gx10slots.ops.engine import quick_probe, slot_endpoint
from gx10slots.ops.read import Snapshot, snapshot
from gx10slots.slots import CHANGED_AT
from gx10slots.smoke import Observation

# How often the flag is read between flips (a flip is guarded from the next read on).
POLL_S = 2.0
MAX_TIME_CHARS = 64


class MetricsServer(Protocol):
    def shutdown(self) -> None: ...


def parse_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:9108`` for IPv6; an empty host is every interface)."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or len(text) > 300 or int(port) > 65535:
        raise UsageError(
            f"--metrics-addr {text[:80]!r}: expected HOST:PORT, such as 127.0.0.1:9108"
        )
    return host.strip("[]") or "0.0.0.0", int(port)


def serve_metrics(metrics: ControllerMetrics, address: str) -> MetricsServer:
    """Serve ``/metrics`` in a background thread; says where on stderr."""
    from prometheus_client import start_http_server

    host, port = parse_address(address)
    try:
        server, _thread = start_http_server(port, addr=host, registry=metrics.registry)
    except OSError as exc:
        raise UsageError(
            f"--metrics-addr {address}: cannot listen there ({exc.strerror or exc})",
            hint="choose a free port (0 picks one)",
        ) from exc
    bound = server.server_address[1]
    console.progress(f"controller: metrics at http://{host}:{bound}/metrics")
    return server


@dataclass(frozen=True)
class FlipSeen:
    """A flip, as the flag records it: the slot it made active and when."""

    active: str
    at: str

    def age_s(self, now: datetime) -> float | None:
        moment = parse_rfc3339(self.at)
        return (now - moment).total_seconds() if moment else None


def flip_seen(snap: Snapshot) -> FlipSeen | None:
    if snap.flag.active is None:
        return None
    # The annotation is anyone's to write: bounded before it is kept or shown (a time is short).
    at = str(snap.flag.annotations.get(CHANGED_AT) or "")[:MAX_TIME_CHARS]
    return FlipSeen(snap.flag.active, at)


def window_left_s(flip: FlipSeen, window_s: float, now: datetime) -> float:
    """What is left of the guard window after ``flip`` (pure). A flip whose time is unreadable
    is guarded for a whole window: better watched too long than not at all."""
    age = flip.age_s(now)
    if age is None or age < 0:
        return window_s
    return max(window_s - age, 0.0)


class ControllerPorts(ClusterPorts):
    """The guard's ports, with the controller's metrics, its mode and its leadership: when this
    replica stops leading (or is asked to stop), the watch ends at once and changes nothing."""

    def __init__(
        self,
        app: App,
        target: Target,
        settings: GuardSettings,
        *,
        by: str,
        mode: GuardMode,
        metrics: ControllerMetrics,
        keep_going: Callable[[], bool],
    ) -> None:
        super().__init__(app, target, settings, by=by)
        self.mode = mode
        self.metrics = metrics
        self.keep_going = keep_going
        self._consecutive = 0

    def wait(self, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while True:
            if not self.keep_going():
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(left, 0.25))

    def observe(self, timeout_s: float) -> Observation:
        observation = super().observe(timeout_s)
        if observation.ttft_ms is not None:
            self.metrics.probe_seconds.labels(
                result="passed" if observation.passed else "failed"
            ).observe(observation.ttft_ms / 1000.0)
        self._consecutive = 0 if observation.passed else self._consecutive + 1
        self.metrics.consecutive.set(self._consecutive)
        return observation

    def revert(self, summary: str, streak: Sequence[CheckRecord]) -> RevertResult:
        if not self.keep_going():
            raise Interrupted("the controller stopped leading; nothing was changed")
        if self.mode == "observe":
            self.metrics.would_reverts.inc()
            said = (
                f"observe mode: would flip back from {self.target.guarded} to "
                f"{self.target.previous} ({summary}); nothing was changed"
            )
            console.progress(f"controller: {said}")
            notify.notify(
                self.app.config,
                "would-revert",
                {
                    "from": self.target.guarded,
                    "to": self.target.previous,
                    "model": self.target.model,
                    "by": self.by,
                    "reason": summary,
                },
                wait=False,
            )
            return RevertResult(
                self.target.guarded, self.target.previous, False, said, stood_down=said
            )
        result = super().revert(summary, streak)
        if result.stood_down is None:
            self.metrics.reverts.inc()
        return result


class Controller:
    def __init__(
        self,
        app: App,
        *,
        mode: GuardMode,
        metrics: ControllerMetrics,
        stop: threading.Event,
        elector: Elector | None = None,
    ) -> None:
        self.app = app
        self.mode = mode
        self.metrics = metrics
        self.stop = stop
        self.by = f"controller:{holder_identity()}"
        self.elector = elector or Elector(
            app.kube,
            self.by,
            Timing(app.config.controller.lease_duration_s),
            on_change=self._leading,
        )
        self.guarded: FlipSeen | None = None
        self.last_active: str | None = None
        self.heartbeat_due = 0.0

    def _leading(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        console.progress(
            f"controller {self.by}: "
            + ("leading" if leading else f"no longer leading (Lease {LEASE_NAME})")
        )

    def keep_going(self) -> bool:
        return not self.stop.is_set() and self.elector.leading

    def run(self) -> None:
        self.elector.start()
        console.progress(
            f"controller {self.by}: mode {self.mode}; waiting to lead (Lease {LEASE_NAME})"
        )
        try:
            while not self.stop.is_set():
                if not self.elector.leading:
                    self.stop.wait(self.elector.timing.retry_period_s)
                    continue
                self.round()
                self.stop.wait(POLL_S)
        finally:
            self.elector.stop()

    def round(self) -> None:
        """One look: guard a flip not guarded yet, else the heartbeat when it is due."""
        try:
            snap = snapshot(self.app)
        except SlotsError as exc:
            console.progress(f"controller: cannot read the slots: {exc.message}")
            return
        now = now_utc()
        self.metrics.saw(snap.slots, snap.flag, now)
        flip = flip_seen(snap)
        if flip is not None and self.last_active is not None and flip.active != self.last_active:
            self.metrics.flips.inc()
        self.last_active = flip.active if flip else None
        if flip is not None and flip != self.guarded:
            self.guarded = flip
            left = window_left_s(flip, self.app.config.guard.window_s, now)
            if left > 0 and snap.flag.previous is not None:
                self.guard(flip, left)
                return
        if time.monotonic() >= self.heartbeat_due:
            self.heartbeat(snap)
            self.heartbeat_due = time.monotonic() + self.app.config.controller.heartbeat_s

    def guard(self, flip: FlipSeen, window_s: float) -> None:
        from gx10slots.guard.run import guard

        settings = self.app.config.controller
        console.progress(
            f"controller: guarding {flip.active} for {window_s:.0f} s (flipped at {flip.at})"
        )
        request = GuardRequest(
            window_s=window_s,
            interval_s=settings.interval_s,
            failures=settings.failures,
            probe_timeout_s=settings.probe_timeout_s,
            expected=flip.active,
            by=self.by,
        )

        def make_ports(target: Target, guard_settings: GuardSettings, by: str) -> Ports:
            return ControllerPorts(
                self.app,
                target,
                guard_settings,
                by=by,
                mode=self.mode,
                metrics=self.metrics,
                keep_going=self.keep_going,
            )

        self.metrics.guarding.set(1)
        try:
            guarded = guard(self.app, request, make_ports=make_ports)
            console.progress(f"controller: guard of {flip.active}: {guarded.outcome}")
        except Refused as exc:
            console.progress(f"controller: not guarding {flip.active}: {exc.message}")
        except StateUnknown as exc:
            console.progress(f"controller: {exc.message}")
        except Interrupted as exc:
            if self.elector.leading and not self.stop.is_set():
                raise  # SIGTERM or Ctrl-C: the controller stops (the watch changed nothing)
            console.progress(f"controller: {exc.message}")  # it stopped leading: stand by
        except SlotsError as exc:
            console.progress(f"controller: guarding {flip.active} failed: {exc.message}")
        finally:
            self.metrics.guarding.set(0)
            self.metrics.consecutive.set(0)

    def heartbeat(self, snap: Snapshot) -> None:
        """A tiny known-answer generation on each running slot."""
        timeout = self.app.config.controller.probe_timeout_s
        for name, slot in snap.slots.items():
            if not slot.exists or slot.replicas < 1:
                continue
            try:
                verdict = quick_probe(
                    self.app,
                    slot_endpoint(self.app, name),
                    slot.identity or slot.served_name or "",
                    timeout_s=timeout,
                )
            except SlotsError as exc:
                passed, detail = False, exc.message
            else:
                passed, detail = verdict.passed, verdict.detail
            self.metrics.heartbeat(name, passed, time.time())
            if not passed:
                role = "active" if snap.flag.active == name else "standby"
                console.progress(f"controller: heartbeat: {role} slot {name} failed: {detail}")
