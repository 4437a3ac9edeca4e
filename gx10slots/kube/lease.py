"""The Lease ``gx10slots-lock``: one mutating command at a time, per namespace.

Follows client-go's leader-election rules: acquire, renew and release are updates of the record as
read (compare-and-swap on resourceVersion); a lease held by someone else is taken over only after
this process has seen the record unchanged for a full lease duration *on its own clock* — the
timestamps inside the record come from another machine's clock and are only a hint that waiting
is worthwhile. A lease is not fencing: the flag write carries its own compare-and-swap.

Two faster ways out, for on-call (issue 13):

- a holder on *this* host whose process is gone is taken over at once. The record says where the
  holder runs (``user@host:pid``) and, on the annotation ``gx10slots.io/holder-process``, which
  kernel boot, pid namespace and process start time it had, so a reused pid or a holder in
  another container with the same hostname is never mistaken for a dead one (:func:`holder_gone`);
- ``--break-lock`` takes over a lease that this process has seen unchanged for one renew interval
  (``max(1, duration/3)`` s, how often a live holder renews) on its own clock; a holder that renews
  meanwhile is alive and the command is refused.

The record also says what the holder is doing (``gx10slots.io/command``), for `slots status` and
for the refusal message. Every takeover is reported to ``on_takeover`` (the operations record it
in the history and as an Event).
"""

from __future__ import annotations

import functools
import getpass
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from gx10slots import cmdline
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
from gx10slots.kube.values import micro_time, parse_micro, rfc3339

log = logging.getLogger("gx10slots.kube.lease")

LEASE_NAME = "gx10slots-lock"
LEASE_DURATION_S = 30
# A shorter (or longer) lease for rehearsals and tests that kill a holder on purpose and must not
# wait 30 s for its lease to expire. Every process sharing a namespace should use the same value.
LEASE_DURATION_ENV = "SLOTS_LEASE_DURATION"
LEASE_DURATION_RANGE = (2, 3600)
# A record's own leaseDurationSeconds is foreign data: bounded before it decides any wait.
MAX_RECORD_DURATION_S = 3600
# --break-lock watches one renew interval plus this much for the holder's renewal to land.
RENEW_GRACE_S = 1.0

ANNOTATION_PREFIX = "gx10slots.io/"
COMMAND = ANNOTATION_PREFIX + "command"
HOLDER_PROCESS = ANNOTATION_PREFIX + "holder-process"
# The annotations a holder owns on the record; removed when it gives the lease back.
HOLDER_ANNOTATIONS = (COMMAND, HOLDER_PROCESS)


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


def record_duration_s(spec: Mapping[str, Any], default: int) -> int:
    """The record's leaseDurationSeconds, bounded (hostile or garbled: the default)."""
    raw = spec.get("leaseDurationSeconds")
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        return default
    return min(raw, MAX_RECORD_DURATION_S)


def renew_interval_s(duration_s: float) -> float:
    """How often a holder renews: a third of the duration, at least every second."""
    return max(1.0, duration_s / 3)


# -- who holds it, and is that process still there ------------------------------------------------


@dataclass(frozen=True)
class HolderAddress:
    user: str
    host: str
    pid: int


def parse_holder(holder: str) -> HolderAddress | None:
    """``[guard:]user@host:pid`` as :func:`holder_identity` writes it; None for anything else."""
    rest, colon, pid = holder.rpartition(":")
    user, at, host = rest.rpartition("@")
    if not colon or not at or not host or not pid.isdigit() or len(pid) > 10:
        return None
    return HolderAddress(user.removeprefix("guard:"), host, int(pid))


@dataclass(frozen=True)
class ProcessMark:
    """Which process exactly: the kernel boot, the pid namespace and the start time (clock ticks
    after boot, field 22 of /proc/<pid>/stat). A pid alone is reused; all three are not."""

    boot: str
    pidns: str
    start: str

    def encode(self) -> str:
        return f"boot={self.boot};pidns={self.pidns};start={self.start}"


def parse_mark(text: Any) -> ProcessMark | None:
    if not isinstance(text, str) or len(text) > 200:
        return None
    fields = dict(part.partition("=")[::2] for part in text.split(";"))
    boot, pidns, start = fields.get("boot"), fields.get("pidns"), fields.get("start")
    if not boot or not pidns or not start or not start.isdigit():
        return None
    return ProcessMark(boot, pidns, start)


@dataclass(frozen=True)
class ProcessInfo:
    state: str  # R, S, D, Z (zombie), X (dead), ...
    start: str


def _read_small(path: str, limit: int = 4096) -> str | None:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read(limit)
    except OSError:
        return None


def process_info(pid: int, proc: str = "/proc") -> ProcessInfo | None:
    """State and start time of ``pid`` from /proc, or None when there is no such process."""
    text = _read_small(f"{proc}/{pid}/stat")
    if not text:
        return None
    # The command name (field 2) is in parentheses and may itself hold spaces and ')'.
    fields = text.rpartition(")")[2].split()
    if len(fields) < 20:
        return None
    return ProcessInfo(state=fields[0], start=fields[19])


@dataclass(frozen=True)
class Here:
    """This machine, as far as a holder record can be compared with it."""

    host: str
    boot: str | None
    pidns: str | None
    process: Callable[[int], ProcessInfo | None]


def here(proc: str = "/proc") -> Here:
    boot = _read_small(f"{proc}/sys/kernel/random/boot_id", 64)
    try:
        pidns: str | None = os.readlink(f"{proc}/self/ns/pid")
    except OSError:
        pidns = None
    return Here(
        host=socket.gethostname(),
        boot=boot.strip() if boot else None,
        pidns=pidns,
        process=lambda pid: process_info(pid, proc),
    )


def own_mark(where: Here | None = None) -> ProcessMark | None:
    """This process's mark, or None where /proc does not tell (then no one can take our lease
    early: it expires as before)."""
    where = where or here()
    info = where.process(os.getpid())
    if where.boot is None or where.pidns is None or info is None:
        return None
    return ProcessMark(where.boot, where.pidns, info.start)


def holder_gone(holder: str, mark_text: Any, where: Here) -> str | None:
    """Why the holder's process is provably gone, or None when it may be alive (pure: ``where``
    carries the machine). Only a holder on this host, in this boot and pid namespace, can be
    checked; anything else (another host, no or garbled mark) may be alive."""
    address = parse_holder(holder)
    mark = parse_mark(mark_text)
    if address is None or mark is None or address.host != where.host:
        return None
    if where.boot is None or where.pidns is None:
        return None
    if mark.boot != where.boot:
        return f"this host ({where.host}) has restarted since process {address.pid} took it"
    if mark.pidns != where.pidns:
        return None  # another container with the same hostname: its pids are not ours to see
    info = where.process(address.pid)
    if info is None:
        return f"process {address.pid} on this host ({where.host}) no longer exists"
    if info.state in ("Z", "X"):
        return f"process {address.pid} on this host ({where.host}) has exited"
    if info.start != mark.start:
        return (
            f"process {address.pid} on this host ({where.host}) has ended (the pid now belongs "
            "to another process)"
        )
    return None


# -- what status shows ---------------------------------------------------------------------------


def _shown(value: Any, limit: int = 256) -> str | None:
    if value is None or value == "":
        return None
    return cmdline.bounded(str(value), limit)


def lease_view(lease: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The lease as `slots status` shows it: None when nobody holds it, else holder, command,
    since (acquireTime) and expires (last renewal + duration). Every value is foreign data:
    bounded and printable; a time that does not parse is shown as null."""
    if not lease:
        return None
    spec = lease.get("spec") or {}
    holder = _shown(spec.get("holderIdentity"), 128) if isinstance(spec, Mapping) else None
    if holder is None:
        return None
    annotations = (lease.get("metadata") or {}).get("annotations") or {}
    if not isinstance(annotations, Mapping):
        annotations = {}
    acquired = parse_micro(spec.get("acquireTime"))
    renewed = parse_micro(spec.get("renewTime"))
    duration = record_duration_s(spec, LEASE_DURATION_S)
    expires = renewed + timedelta(seconds=duration) if renewed else None
    return {
        "holder": holder,
        "command": _shown(annotations.get(COMMAND)),
        "since": _rfc3339(acquired),
        "renewed": _rfc3339(renewed),
        "expires": _rfc3339(expires),
        "expired": expires is None or expires <= datetime.now(UTC),
    }


def _rfc3339(moment: datetime | None) -> str | None:
    return rfc3339(moment) if moment else None


@dataclass(frozen=True)
class Takeover:
    """A lease taken from another holder: whose it was, what it was doing, and why we took it."""

    lease: str
    holder: str
    command: str | None
    since: str | None
    why: str
    by: str

    def describe(self) -> str:
        doing = f" (running `{self.command}`)" if self.command else ""
        since = f" since {self.since}" if self.since else ""
        return f"took over lease {self.lease} from {self.holder}{doing}{since}: {self.why}"


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
        command: str | None = None,
        annotations: Mapping[str, str] | None = None,
        break_lock: bool = False,
        wait_for_expired: bool = True,
        on_takeover: Callable[[Takeover], None] | None = None,
        where: Here | None = None,
    ) -> None:
        """``break_lock``: take over a lease not renewed within its renew interval (watched on
        our clock). ``wait_for_expired=False``: a lease expired by its own timestamps is taken
        at once (for announcements such as the guard's, never for the lock that orders
        mutations). ``annotations``: extra facts to publish on the record while we hold it."""
        self.kube = kube
        self.holder = holder or holder_identity()
        self.duration_s = duration_s if duration_s is not None else lease_duration_s()
        self.name = name
        self._clock = clock
        self._wait = wait
        self._on_wait = on_wait or log.warning
        self.command = cmdline.bounded(command if command is not None else cmdline.current())
        self.extra_annotations = dict(annotations or {})
        self.break_lock = break_lock
        self.wait_for_expired = wait_for_expired
        self.on_takeover = on_takeover
        self._where = where
        self._mark: ProcessMark | None = None
        self._lease: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._mutex = threading.Lock()
        self.lost: str | None = None
        self.took_over: Takeover | None = None

    @property
    def held(self) -> bool:
        """From a successful acquire until release, or until a renewal found it taken over."""
        return self._lease is not None

    @property
    def where(self) -> Here:
        if self._where is None:
            self._where = here()
        return self._where

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
        transitions = spec.get("leaseTransitions")
        transitions = transitions if isinstance(transitions, int) and transitions >= 0 else 0
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
        annotations = metadata.get("annotations")
        annotations = dict(annotations) if isinstance(annotations, Mapping) else {}
        for key in (*HOLDER_ANNOTATIONS, *self.extra_annotations):
            annotations.pop(key, None)
        if self._mark is None:
            self._mark = own_mark(self.where)
        ours = {COMMAND: self.command, **self.extra_annotations}
        if self._mark is not None:
            ours[HOLDER_PROCESS] = self._mark.encode()
        annotations.update(ours)
        metadata["annotations"] = annotations
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }

    @staticmethod
    def _without_holder_annotations(body: dict[str, Any], keys: list[str]) -> None:
        annotations = body["metadata"].get("annotations") or {}
        for key in keys:
            annotations.pop(key, None)

    def _held_by_other(self, lease: dict[str, Any]) -> LockHeld:
        view = lease_view(lease) or {}
        return LockHeld(
            view.get("holder") or "?",
            view.get("since"),
            lease=self.name,
            command=view.get("command"),
        )

    # -- acquire / renew / release ---------------------------------------------------------------

    def acquire(self) -> None:
        observed: tuple[Any, ...] | None = None
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
            holder = str(holder)
            annotations = (lease.get("metadata") or {}).get("annotations") or {}
            gone = holder_gone(holder, annotations.get(HOLDER_PROCESS), self.where)
            if gone is not None:
                if self._take_over(lease, gone):
                    return
                observed = None
                continue
            record = (holder, spec.get("renewTime"), lease["metadata"].get("resourceVersion"))
            if observed is None or observed[0] != record:
                if observed is not None and self.break_lock:
                    # It was renewed while we watched: the holder is alive.
                    raise self._held_by_other(lease)
                if not self.break_lock and not self._looks_abandoned(spec):
                    raise self._held_by_other(lease)
                if not self.break_lock and not self.wait_for_expired:
                    if self._take_over(lease, "expired (not renewed for its duration)"):
                        return
                    continue
                patience = self._patience(spec)
                observed = (record, patience)
                observed_at = self._clock()
                view = lease_view(lease) or {}
                doing = f" (running `{view['command']}`)" if view.get("command") else ""
                if self.break_lock:
                    self._on_wait(
                        f"--break-lock: lease {self.name} is held by {view.get('holder')}{doing}, "
                        f"last renewed at {view.get('renewed') or 'an unreadable time'}; "
                        f"watching it {patience:g} s (its renew interval) to confirm nobody "
                        "renews it before taking it over"
                    )
                else:
                    self._on_wait(
                        f"lease {self.name} held by {view.get('holder')}{doing} was last renewed "
                        f"at {view.get('renewed') or 'an unreadable time'}; waiting "
                        f"{patience:g} s to confirm it is abandoned before taking it over"
                    )
            patience = observed[1]
            elapsed = self._clock() - observed_at
            if elapsed >= patience:
                why = (
                    f"--break-lock: not renewed for {patience:g} s (its renew interval)"
                    if self.break_lock
                    else f"abandoned: not renewed for {patience:g} s (its duration)"
                )
                if self._take_over(lease, why):
                    return
                observed = None
                continue
            self._wait(min(1.0, patience - elapsed))

    def _patience(self, spec: Mapping[str, Any]) -> float:
        """How long the record must stay unchanged on our clock before we take it."""
        if self.break_lock:
            return renew_interval_s(record_duration_s(spec, self.duration_s)) + RENEW_GRACE_S
        return float(self.duration_s)

    def _looks_abandoned(self, spec: dict[str, Any]) -> bool:
        renewed = parse_micro(spec.get("renewTime"))
        duration = record_duration_s(spec, self.duration_s)
        return renewed is None or datetime.now(UTC) - renewed > timedelta(seconds=duration)

    def _take_over(self, lease: dict[str, Any], why: str) -> bool:
        view = lease_view(lease) or {}
        if not self._try_take(lease, takeover=True):
            return False
        self.took_over = Takeover(
            lease=self.name,
            holder=view.get("holder") or "?",
            command=view.get("command"),
            since=view.get("since"),
            why=why,
            by=self.holder,
        )
        if self.on_takeover is not None:
            self.on_takeover(self.took_over)  # says it, and records it
        else:
            log.warning("%s", self.took_over.describe())
        return True

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
            and parse_micro(spec.get("renewTime")) == parse_micro(wrote.get("renewTime"))
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
            self._without_holder_annotations(body, [*HOLDER_ANNOTATIONS, *self.extra_annotations])
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
        except (SlotsError, Interrupted, KeyboardInterrupt):
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
        interval = renew_interval_s(self.duration_s)
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
