"""Leader election over the Lease ``gx10slots-controller``, as client-go's leaderelection does.

Every candidate tries every ``retry_period``: it takes the Lease when nobody holds it, or when the
record it sees has not changed for a whole ``leaseDurationSeconds`` *on its own clock* (no
comparison of clocks across machines), and the leader renews it. A write is a replace pinned to
the resourceVersion read, so two candidates can never both win. A leader that cannot renew
within ``renew_deadline`` stops acting before its lease can expire. (client-go,
tools/leaderelection/leaderelection.go: tryAcquireOrRenew, isLeaseValid.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from gx10slots.errors import Conflict, NotFound, SlotsError
from gx10slots.kube.client import Kube
from gx10slots.kube.values import micro_time

log = logging.getLogger(__name__)

LEASE_NAME = "gx10slots-controller"


@dataclass(frozen=True)
class Timing:
    """client-go's defaults scaled to the lease: renew deadline 2/3 of it, retry every 2 s."""

    lease_duration_s: float = 15.0

    @property
    def renew_deadline_s(self) -> float:
        return self.lease_duration_s * 2 / 3

    @property
    def retry_period_s(self) -> float:
        return min(2.0, self.lease_duration_s / 7.5)


def holder_of(lease: Mapping[str, Any] | None) -> str:
    spec = (lease or {}).get("spec") or {}
    holder = spec.get("holderIdentity")
    return holder[:256] if isinstance(holder, str) else ""


def may_take(
    lease: Mapping[str, Any], *, me: str, leading: bool, observed_at: float, now: float
) -> bool:
    """Whether a candidate may write itself into ``lease`` (pure). ``observed_at``: when this
    candidate first saw the lease's current record, on its own clock."""
    holder = holder_of(lease)
    if not holder or leading or holder == me:
        return True
    spec = lease.get("spec") or {}
    duration = spec.get("leaseDurationSeconds")
    if isinstance(duration, bool) or not isinstance(duration, int) or duration < 1:
        duration = 1  # a garbled record protects nobody for long
    return observed_at + min(duration, 3600) <= now


def record(
    lease: Mapping[str, Any] | None, *, me: str, leading: bool, duration_s: float, at: datetime
) -> dict[str, Any]:
    """The Lease body that makes ``me`` the holder (renewing, or taking over)."""
    body: dict[str, Any] = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": dict((lease or {}).get("metadata") or {"name": LEASE_NAME}),
    }
    body["metadata"].pop("managedFields", None)
    old = (lease or {}).get("spec") or {}
    transitions = old.get("leaseTransitions")
    transitions = transitions if isinstance(transitions, int) and transitions >= 0 else 0
    now = micro_time(at)
    body["spec"] = {
        "holderIdentity": me,
        "leaseDurationSeconds": int(duration_s),
        "renewTime": now,
        "acquireTime": old.get("acquireTime") if leading and old.get("acquireTime") else now,
        "leaseTransitions": transitions if leading or lease is None else transitions + 1,
    }
    return body


class Elector:
    """Keeps trying to lead, in a background thread; :attr:`leading` says whether we do."""

    def __init__(
        self,
        kube: Kube,
        me: str,
        timing: Timing,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: Callable[[bool], None] | None = None,
    ) -> None:
        self.kube = kube
        self.me = me
        self.timing = timing
        self._clock = clock
        self._on_change = on_change
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._observed: tuple[str, Any] | None = None
        self._observed_at = 0.0
        self._renewed_at = 0.0
        self._thread: threading.Thread | None = None

    @property
    def leading(self) -> bool:
        return self._leading.is_set()

    def wait_until_leading(self, timeout_s: float) -> bool:
        return self._leading.wait(timeout_s)

    # -- one attempt -----------------------------------------------------------------------------

    def try_acquire_or_renew(self) -> bool:
        from datetime import UTC, datetime

        coordination = self.kube.api("coordination")
        namespace = self.kube.namespace
        now = self._clock()
        try:
            lease: dict[str, Any] | None = self.kube.read(
                f"read Lease {namespace}/{LEASE_NAME}",
                coordination.read_namespaced_lease,
                LEASE_NAME,
                namespace,
            )
        except NotFound:
            lease = None
        if lease is not None:
            if self.leading and holder_of(lease) != self.me:
                self._set(False)  # taken over (our renewals stopped for too long): step down
            seen = (holder_of(lease), (lease.get("metadata") or {}).get("resourceVersion"))
            if seen != self._observed:
                self._observed, self._observed_at = seen, now
            if not may_take(
                lease, me=self.me, leading=self.leading, observed_at=self._observed_at, now=now
            ):
                return False
        body = record(
            lease,
            me=self.me,
            leading=self.leading and holder_of(lease) == self.me,
            duration_s=self.timing.lease_duration_s,
            at=datetime.now(UTC),
        )
        try:
            if lease is None:
                self.kube.write(
                    f"create Lease {namespace}/{LEASE_NAME}",
                    coordination.create_namespaced_lease,
                    namespace,
                    body,
                    field_manager="gx10slots",
                )
            else:
                self.kube.write(
                    f"update Lease {namespace}/{LEASE_NAME}",
                    coordination.replace_namespaced_lease,
                    LEASE_NAME,
                    namespace,
                    body,
                    field_manager="gx10slots",
                )
        except Conflict:
            return False  # someone else wrote it first: read again next round
        self._renewed_at = now
        return True

    # -- the background loop ---------------------------------------------------------------------

    def _set(self, leading: bool) -> None:
        if leading == self.leading:
            return
        if leading:
            self._leading.set()
        else:
            self._leading.clear()
        log.info("controller: %s", "leading" if leading else "not leading")
        if self._on_change is not None:
            self._on_change(leading)

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                ok = self.try_acquire_or_renew()
            except SlotsError as exc:
                log.warning("controller: lease %s: %s", LEASE_NAME, exc.message)
                ok = False
            if ok:
                self._set(True)
            elif self.leading and (
                self._clock() - self._renewed_at >= self.timing.renew_deadline_s
            ):
                self._set(False)  # could not renew in time: stop acting before it expires
            if self._stop.wait(self.timing.retry_period_s):
                break

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="leader-election", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop trying; a leader gives the Lease back so a standby takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self.leading:
            self._set(False)
            self._release()

    def _release(self) -> None:
        from datetime import UTC, datetime

        coordination = self.kube.api("coordination")
        try:
            lease = self.kube.read(
                f"read Lease {self.kube.namespace}/{LEASE_NAME}",
                coordination.read_namespaced_lease,
                LEASE_NAME,
                self.kube.namespace,
            )
            if holder_of(lease) != self.me:
                return
            body = record(lease, me=self.me, leading=True, duration_s=1, at=datetime.now(UTC))
            body["spec"]["holderIdentity"] = None
            self.kube.write(
                f"release Lease {self.kube.namespace}/{LEASE_NAME}",
                coordination.replace_namespaced_lease,
                LEASE_NAME,
                self.kube.namespace,
                body,
                field_manager="gx10slots",
            )
        except SlotsError as exc:
            log.warning("controller: could not release lease %s: %s", LEASE_NAME, exc.message)
