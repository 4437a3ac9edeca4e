"""The Lease ``gx10slots-lock``: one mutating command at a time, per namespace.

Follows client-go's leader-election rules: acquire, renew and release are updates of the record as
read (compare-and-swap on resourceVersion); a lease held by someone else is taken over only after
this process has seen the record unchanged for a full lease duration *on its own clock* — the
timestamps inside the record come from another machine's clock and are only a hint that waiting
is worthwhile. A lease is not fencing: the flag write carries its own compare-and-swap.
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from gx10slots.errors import ApiError, Conflict, Invalid, LockHeld, NotFound, SlotsError
from gx10slots.kube.client import Kube

log = logging.getLogger("gx10slots.lock")

LEASE_NAME = "gx10slots-lock"
LEASE_DURATION_S = 30


def holder_identity() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}:{os.getpid()}"


def micro_time(moment: datetime | None = None) -> str:
    """A ``MicroTime`` as the API server writes it."""
    return (moment or datetime.now(UTC)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _parse_micro(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None


class Lock:
    """Hold the Lease for the duration of a ``with`` block, renewing it in the background."""

    def __init__(
        self,
        kube: Kube,
        *,
        holder: str | None = None,
        duration_s: int = LEASE_DURATION_S,
        name: str = LEASE_NAME,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], None] = time.sleep,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.kube = kube
        self.holder = holder or holder_identity()
        self.duration_s = duration_s
        self.name = name
        self._clock = clock
        self._wait = wait
        self._on_wait = on_wait or log.warning
        self._lease: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._mutex = threading.Lock()
        self.lost: str | None = None

    # -- API calls -------------------------------------------------------------------------------

    def _read(self) -> dict[str, Any] | None:
        try:
            return self.kube.read(
                f"read Lease {self.kube.namespace}/{self.name}",
                self.kube.api("coordination").read_namespaced_lease,
                self.name,
                self.kube.namespace,
            )
        except NotFound:
            return None

    def _replace(self, lease: dict[str, Any]) -> dict[str, Any]:
        return self.kube.write(
            f"update Lease {self.kube.namespace}/{self.name}",
            self.kube.api("coordination").replace_namespaced_lease,
            self.name,
            self.kube.namespace,
            lease,
            field_manager="gx10slots",
        )

    def _record(self, lease: dict[str, Any] | None, *, transition: bool) -> dict[str, Any]:
        now = micro_time()
        spec = dict((lease or {}).get("spec") or {})
        transitions = int(spec.get("leaseTransitions") or 0)
        if transition and spec.get("holderIdentity"):
            transitions += 1
        spec.update(
            holderIdentity=self.holder,
            leaseDurationSeconds=self.duration_s,
            renewTime=now,
            leaseTransitions=transitions,
        )
        if transition or not spec.get("acquireTime"):
            spec["acquireTime"] = now
        metadata = dict((lease or {}).get("metadata") or {"name": self.name})
        metadata.pop("managedFields", None)
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    # -- acquire / renew / release ---------------------------------------------------------------

    def acquire(self) -> None:
        observed: dict[str, Any] | None = None
        observed_at = 0.0
        while True:
            lease = self._read()
            if lease is None:
                try:
                    self._lease = self.kube.write(
                        f"create Lease {self.kube.namespace}/{self.name}",
                        self.kube.api("coordination").create_namespaced_lease,
                        self.kube.namespace,
                        self._record(None, transition=True),
                        field_manager="gx10slots",
                    )
                    return
                except Conflict:
                    continue  # someone created it between our read and create: read again
            spec = lease.get("spec") or {}
            holder = spec.get("holderIdentity")
            if not holder or holder == self.holder:
                if self._try_take(lease):
                    return
                continue
            record = (holder, spec.get("renewTime"), lease["metadata"].get("resourceVersion"))
            if observed is None or observed["record"] != record:
                if not self._looks_abandoned(spec):
                    raise LockHeld(holder, spec.get("acquireTime"), lease=self.name)
                observed = {"record": record}
                observed_at = self._clock()
                self._on_wait(
                    f"lease {self.name} held by {holder} was last renewed at "
                    f"{spec.get('renewTime')}; waiting {self.duration_s} s to confirm it is "
                    f"abandoned before taking it over"
                )
            elapsed = self._clock() - observed_at
            if elapsed >= self.duration_s:
                if self._try_take(lease, takeover=True):
                    log.warning("took over lease %s from %s", self.name, holder)
                    return
                observed = None
                continue
            self._wait(min(1.0, self.duration_s - elapsed))

    def _looks_abandoned(self, spec: dict[str, Any]) -> bool:
        renewed = _parse_micro(spec.get("renewTime"))
        duration = int(spec.get("leaseDurationSeconds") or self.duration_s)
        return renewed is None or datetime.now(UTC) - renewed > timedelta(seconds=duration)

    def _try_take(self, lease: dict[str, Any], *, takeover: bool = False) -> bool:
        mine = (lease.get("spec") or {}).get("holderIdentity") == self.holder
        try:
            self._lease = self._replace(self._record(lease, transition=not mine or takeover))
            return True
        except (Conflict, Invalid):
            return False  # the record moved under us: read it again and decide again

    def renew(self) -> None:
        with self._mutex:
            if self._lease is None:
                return
            try:
                self._lease = self._replace(self._record(self._lease, transition=False))
            except Conflict:
                current = self._read()
                holder = ((current or {}).get("spec") or {}).get("holderIdentity")
                if holder != self.holder:
                    self.lost = f"lease {self.name} was taken over by {holder or 'nobody'}"
                    self._lease = None
                    return
                self._lease = current
                self._lease = self._replace(self._record(current, transition=False))

    def release(self) -> None:
        with self._mutex:
            lease, self._lease = self._lease, None
        if lease is None:
            return
        for _ in range(3):
            body = self._record(lease, transition=False)
            body["spec"]["holderIdentity"] = None
            body["spec"]["leaseDurationSeconds"] = 1
            try:
                self._replace(body)
                return
            except Conflict:
                lease = self._read()
                if lease is None or (lease.get("spec") or {}).get("holderIdentity") != self.holder:
                    return
            except SlotsError as exc:
                log.warning(
                    "could not release lease %s (%s); it expires in %d s",
                    self.name,
                    exc.message,
                    self.duration_s,
                )
                return

    def check(self) -> None:
        """Raise when the lease was lost while we thought we held it (before a mutation)."""
        if self.lost:
            raise LockHeld(self.lost.rsplit(" by ", 1)[-1], None, lease=self.name)

    # -- context manager with background renewal -------------------------------------------------

    def _renew_loop(self) -> None:
        interval = max(1.0, self.duration_s / 3)
        while not self._stop.wait(interval):
            try:
                self.renew()
            except (ApiError, SlotsError) as exc:
                log.warning("renewing lease %s failed: %s", self.name, exc.message)

    def __enter__(self) -> Lock:
        self.acquire()
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew_loop, name="lease-renew", daemon=True)
        self._renewer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        self.release()
