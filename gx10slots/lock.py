"""The Lease ``gx10slots-lock``: one mutating command at a time, per namespace.

Follows client-go's leader-election rules: acquire, renew and release are updates of the record as
read (compare-and-swap on resourceVersion); a lease held by someone else is taken over only after
this process has seen the record unchanged for a full lease duration *on its own clock* — the
timestamps inside the record come from another machine's clock and are only a hint that waiting
is worthwhile. A lease is not fencing: the flag write carries its own compare-and-swap.
"""

from __future__ import annotations

import functools
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

from gx10slots.errors import (
    ApiError,
    ConfigError,
    Conflict,
    Interrupted,
    Invalid,
    LockHeld,
    NotFound,
    SlotsError,
)
from gx10slots.kube.client import Kube

log = logging.getLogger("gx10slots.lock")

LEASE_NAME = "gx10slots-lock"
LEASE_DURATION_S = 30
# A shorter (or longer) lease for rehearsals and tests that kill a holder on purpose and must not
# wait 30 s for its lease to expire. Every process sharing a namespace should use the same value.
LEASE_DURATION_ENV = "SLOTS_LEASE_DURATION"
LEASE_DURATION_RANGE = (2, 3600)


def lease_duration_s() -> int:
    """The lease duration in seconds: 30, or ``SLOTS_LEASE_DURATION`` (whole seconds, 2-3600)."""
    raw = os.environ.get(LEASE_DURATION_ENV, "").strip()
    if not raw:
        return LEASE_DURATION_S
    low, high = LEASE_DURATION_RANGE
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ConfigError(
            f"{LEASE_DURATION_ENV}={raw[:40]!r}: expected whole seconds from {low} to {high}"
        )
    return int(raw)


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
        duration_s: int | None = None,
        name: str = LEASE_NAME,
        clock: Callable[[], float] = time.monotonic,
        wait: Callable[[float], None] = time.sleep,
        on_wait: Callable[[str], None] | None = None,
    ) -> None:
        self.kube = kube
        self.holder = holder or holder_identity()
        self.duration_s = duration_s if duration_s is not None else lease_duration_s()
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
                body = self._record(None, transition=True)
                created = self._settled(
                    body,
                    functools.partial(
                        self.kube.write,
                        f"create Lease {self.kube.namespace}/{self.name}",
                        self.kube.api("coordination").create_namespaced_lease,
                        self.kube.namespace,
                        body,
                        field_manager="gx10slots",
                    ),
                )
                if created is not None:
                    self._lease = created
                    return
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
        body = self._record(lease, transition=not mine or takeover)
        taken = self._settled(body, lambda: self._replace(body))
        if taken is None:
            return False  # the record moved under us: read it again and decide again
        self._lease = taken
        return True

    def _settled(
        self, body: dict[str, Any], write: Callable[[], dict[str, Any]]
    ) -> dict[str, Any] | None:
        """The lease as our write left it, or None when the write did not land (409/422: the
        record moved). Any other failure is settled by reading back, as for the flag: a record
        naming us with the renewTime we wrote is ours, whatever the answer said."""
        try:
            return write()
        except Interrupted:
            raise
        except (Conflict, Invalid):
            return self._ours(body)
        except SlotsError:
            landed = self._ours(body)
            if landed is None:
                raise
            return landed

    def _ours(self, body: dict[str, Any]) -> dict[str, Any] | None:
        current = self._read()
        spec = (current or {}).get("spec") or {}
        wrote = body["spec"]
        if (
            current is not None
            and spec.get("holderIdentity") == self.holder
            # Compared as instants: the API server may render a MicroTime differently.
            and _parse_micro(spec.get("renewTime")) == _parse_micro(wrote.get("renewTime"))
        ):
            log.info("lease %s: the write's answer was an error, but it landed", self.name)
            return current
        return None

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

    def _give_back_if_ours(self) -> None:
        try:
            current = self._read()
        except (SlotsError, KeyboardInterrupt):
            return  # it expires on its own
        if ((current or {}).get("spec") or {}).get("holderIdentity") == self.holder:
            self._lease = current
            self.release()

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
        try:
            self.acquire()
        except BaseException:
            # Interrupted (or failed) while a write may have taken the lease: give it back.
            self._give_back_if_ours()
            raise
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
