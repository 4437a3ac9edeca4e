"""The lease's pure rules: who holds it, whether that process is gone, what status shows, and
what a holder writes (gx10slots.kube.lease, gx10slots.cmdline)."""

from __future__ import annotations

import copy
import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gx10slots import cmdline
from gx10slots.errors import Conflict, LockHeld, NotFound
from gx10slots.kube.lease import (
    COMMAND,
    HOLDER_PROCESS,
    Here,
    Lock,
    ProcessInfo,
    ProcessMark,
    Takeover,
    holder_gone,
    lease_view,
    own_mark,
    parse_holder,
    process_info,
    record_duration_s,
    renew_interval_s,
)
from gx10slots.kube.values import micro_time

MARK = ProcessMark("boot-1", "pid:[4026531836]", "43891").encode()


def here(processes: dict[int, ProcessInfo]) -> Here:
    return Here(host="gx10", boot="boot-1", pidns="pid:[4026531836]", process=processes.get)


def test_holder_identities_parse_with_or_without_the_guard_prefix() -> None:
    assert parse_holder("alice@gx10:42") == parse_holder("guard:alice@gx10:42")
    address = parse_holder("guard:alice@gx10:42")
    assert address is not None and (address.host, address.pid) == ("gx10", 42)
    for odd in ("", "alice", "alice@gx10", "alice@gx10:x", "@:1", "alice@gx10:" + "9" * 30):
        assert parse_holder(odd) is None


def test_a_holder_whose_process_is_gone_on_this_host_is_gone() -> None:
    why = holder_gone("alice@gx10:42", MARK, here({}))
    assert why and "process 42" in why and "no longer exists" in why


def test_a_zombie_holder_is_gone() -> None:
    why = holder_gone("alice@gx10:42", MARK, here({42: ProcessInfo("Z", "43891")}))
    assert why and "exited" in why


def test_a_reused_pid_is_not_mistaken_for_the_holder() -> None:
    why = holder_gone("alice@gx10:42", MARK, here({42: ProcessInfo("S", "99999")}))
    assert why and "another process" in why


def test_a_live_holder_is_not_gone() -> None:
    assert holder_gone("alice@gx10:42", MARK, here({42: ProcessInfo("S", "43891")})) is None


@pytest.mark.parametrize(
    ("holder", "mark"),
    [
        ("alice@other-host:42", MARK),  # another host: its pids are not ours to look at
        ("alice@gx10:42", None),  # written by an older version: cannot tell
        ("alice@gx10:42", "garbage"),
        ("alice@gx10:42", ProcessMark("boot-1", "pid:[999]", "43891").encode()),  # container
        ("not an identity", MARK),
    ],
)
def test_anything_that_cannot_be_checked_may_be_alive(holder: str, mark: Any) -> None:
    assert holder_gone(holder, mark, here({})) is None


def test_a_holder_from_before_a_reboot_is_gone() -> None:
    mark = ProcessMark("boot-0", "pid:[4026531836]", "43891").encode()
    why = holder_gone("alice@gx10:42", mark, here({42: ProcessInfo("S", "43891")}))
    assert why and "restarted" in why


def test_process_info_reads_proc_stat_even_with_a_hostile_command_name(tmp_path: Path) -> None:
    stat = tmp_path / "42" / "stat"
    stat.parent.mkdir()
    # Fields 4 to 52 hold their own numbers; field 22 is the start time.
    rest = " ".join(str(n) for n in range(4, 53))
    stat.write_text(f"42 (evil) name ) (x) S {rest}")
    info = process_info(42, str(tmp_path))
    assert info is not None and (info.state, info.start) == ("S", "22")
    assert process_info(43, str(tmp_path)) is None


def test_this_process_is_alive_by_its_own_rule() -> None:
    from gx10slots.kube.lease import here as real_here

    where = real_here()
    mark = own_mark(where)
    assert mark is not None
    holder = f"me@{where.host}:{os.getpid()}"
    assert holder_gone(holder, mark.encode(), where) is None


def test_micro_times_always_have_six_fractional_digits() -> None:
    whole = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
    assert micro_time(whole) == "2026-11-29T10:00:00.000000Z"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", micro_time())


def test_record_durations_are_bounded_and_the_renew_interval_is_a_third() -> None:
    assert record_duration_s({"leaseDurationSeconds": 30}, 30) == 30
    assert record_duration_s({"leaseDurationSeconds": 10**12}, 30) == 3600
    for bad in ("30", -1, 0, True, None, 1.5):
        assert record_duration_s({"leaseDurationSeconds": bad}, 30) == 30
    assert renew_interval_s(30) == 10 and renew_interval_s(2) == 1


def test_status_view_of_a_lease() -> None:
    renewed = datetime(2026, 11, 29, 10, 0, 0, tzinfo=UTC)
    lease: dict[str, Any] = {
        "metadata": {"annotations": {COMMAND: "slots deploy sandbox/ok --flip\x1b[2J"}},
        "spec": {
            "holderIdentity": "alice@gx10:42",
            "acquireTime": micro_time(renewed - timedelta(seconds=5)),
            "renewTime": micro_time(renewed),
            "leaseDurationSeconds": 30,
        },
    }
    view = lease_view(lease)
    assert view is not None
    assert view["holder"] == "alice@gx10:42"
    assert view["command"] == "slots deploy sandbox/ok --flip [2J"  # no escape reaches a tty
    assert view["since"] == "2026-11-29T09:59:55Z"
    assert view["expires"] == "2026-11-29T10:00:30Z"
    released = {**lease, "spec": {**lease["spec"], "holderIdentity": None}}
    assert lease_view(released) is None and lease_view(None) is None
    garbled = {"metadata": {"annotations": "x"}, "spec": {"holderIdentity": "h", "renewTime": 5}}
    assert lease_view(garbled) == {
        "holder": "h",
        "command": None,
        "since": None,
        "renewed": None,
        "expires": None,
        "expired": True,
    }


def test_the_command_shown_is_bounded_and_hides_env_values() -> None:
    shown = cmdline.describe(
        ["deploy", "m", "--env", "HF_TOKEN=hf_secret", "--env=K=v", "--reason", "a b\n\x07"]
    )
    assert "hf_secret" not in shown and "=v" not in shown
    assert shown == "slots deploy m --env HF_TOKEN=… --env=K=… --reason 'a b '"
    assert len(cmdline.describe(["x" * 10_000])) <= cmdline.MAX_COMMAND_CHARS


def test_the_record_a_holder_writes_names_its_command_and_process() -> None:
    where = Here(host="gx10", boot="b", pidns="p", process=lambda pid: ProcessInfo("S", "7"))
    lock = Lock(object(), holder="me@gx10:1", command="slots park", where=where)  # type: ignore[arg-type]
    body = lock._record(
        {"metadata": {"name": "gx10slots-lock", "annotations": {"other": "kept"}}, "spec": {}},
        transition=True,
    )
    annotations = body["metadata"]["annotations"]
    assert annotations[COMMAND] == "slots park"
    assert annotations[HOLDER_PROCESS] == "boot=b;pidns=p;start=7"
    assert annotations["other"] == "kept"
    assert re.fullmatch(r".*\.\d{6}Z", body["spec"]["renewTime"])


# -- acquire against an in-memory Lease (compare-and-swap like the API server) -------------------


class FakeLeases:
    """Just enough of the coordination API: read, create and replace with resourceVersion CAS."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.version = 0
        self.writes = 0

    def read_namespaced_lease(self, name: str, namespace: str) -> dict[str, Any]:
        if self.lease is None:
            raise NotFound("no lease", status=404)
        return copy.deepcopy(self.lease)

    def _store(self, body: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        self.writes += 1
        body = copy.deepcopy(body)
        body["metadata"]["resourceVersion"] = str(self.version)
        self.lease = body
        return copy.deepcopy(body)

    def create_namespaced_lease(self, namespace: str, body: dict[str, Any], **_: Any) -> Any:
        if self.lease is not None:
            raise Conflict("exists", status=409)
        return self._store(body)

    def replace_namespaced_lease(
        self, name: str, namespace: str, body: dict[str, Any], **_: Any
    ) -> Any:
        current = (self.lease or {}).get("metadata", {}).get("resourceVersion")
        if body["metadata"].get("resourceVersion") != current:
            raise Conflict("the object has been modified", status=409)
        return self._store(body)


class FakeKube:
    namespace = "gx10"

    def __init__(self) -> None:
        self.leases = FakeLeases()

    def api(self, group: str) -> FakeLeases:
        return self.leases

    def read(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        return fn(*args, **kw)

    def write(self, what: str, fn: Any, *args: Any, **kw: Any) -> Any:
        return fn(*args, **kw)


class Clock:
    def __init__(self, kube: FakeKube | None = None, renew_every: float | None = None) -> None:
        self.now = 0.0
        self.kube = kube
        self.renew_every = renew_every

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += seconds
        if self.kube is not None and self.renew_every is not None:  # the holder is alive
            lease = self.kube.leases.lease
            assert lease is not None
            lease["spec"]["renewTime"] = micro_time()
            self.kube.leases.version += 1
            lease["metadata"]["resourceVersion"] = str(self.kube.leases.version)


WHERE = Here(host="gx10", boot="boot-1", pidns="pid:[1]", process=lambda pid: None)


def planted(holder: str, *, renewed_ago: float, mark: str | None = None) -> FakeKube:
    kube = FakeKube()
    at = micro_time(datetime.now(UTC) - timedelta(seconds=renewed_ago))
    annotations = {COMMAND: "slots deploy org/big"}
    if mark:
        annotations[HOLDER_PROCESS] = mark
    kube.leases._store(
        {
            "metadata": {"name": "gx10slots-lock", "annotations": annotations},
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": 30,
                "acquireTime": at,
                "renewTime": at,
            },
        }
    )
    return kube


def lock_for(kube: FakeKube, clock: Clock, **kw: Any) -> tuple[Lock, list[Takeover]]:
    taken: list[Takeover] = []
    lock = Lock(
        kube,  # type: ignore[arg-type]
        holder="me@gx10:1",
        duration_s=30,
        clock=clock,
        wait=clock.wait,
        on_wait=lambda message: None,
        on_takeover=taken.append,
        where=WHERE,
        command="slots park",
        **kw,
    )
    return lock, taken


def test_a_dead_holder_on_this_host_is_taken_over_at_once_and_reported() -> None:
    kube = planted("alice@gx10:42", renewed_ago=1, mark="boot=boot-1;pidns=pid:[1];start=9")
    clock = Clock()
    lock, taken = lock_for(kube, clock)
    lock.acquire()
    assert clock.now == 0  # no waiting at all
    assert kube.leases.lease is not None
    assert kube.leases.lease["spec"]["holderIdentity"] == "me@gx10:1"
    assert [(t.holder, t.command) for t in taken] == [("alice@gx10:42", "slots deploy org/big")]
    assert "no longer exists" in taken[0].why


def test_a_live_holder_is_refused_at_once_naming_its_command() -> None:
    kube = planted("bob@elsewhere:7", renewed_ago=1)
    clock = Clock()
    lock, taken = lock_for(kube, clock)
    with pytest.raises(LockHeld, match="held by bob@elsewhere:7 running `slots deploy org/big`"):
        lock.acquire()
    assert clock.now == 0 and taken == []


def test_break_lock_takes_a_lease_unrenewed_for_its_renew_interval_on_our_clock() -> None:
    kube = planted("bob@elsewhere:7", renewed_ago=1)  # looks fresh by bob's clock
    clock = Clock()
    lock, taken = lock_for(kube, clock, break_lock=True)
    lock.acquire()
    assert clock.now == pytest.approx(renew_interval_s(30) + 1.0)  # 11 s, not 30 or 60
    assert len(taken) == 1 and "--break-lock" in taken[0].why
    assert taken[0].holder == "bob@elsewhere:7"


def test_break_lock_refuses_a_holder_that_renews_while_we_watch() -> None:
    kube = planted("bob@elsewhere:7", renewed_ago=1)
    clock = Clock(kube, renew_every=1.0)
    lock, taken = lock_for(kube, clock, break_lock=True)
    with pytest.raises(LockHeld, match="held by bob@elsewhere:7"):
        lock.acquire()
    assert taken == []
    assert kube.leases.lease is not None
    assert kube.leases.lease["spec"]["holderIdentity"] == "bob@elsewhere:7"


def test_release_removes_what_the_holder_published() -> None:
    kube = FakeKube()
    lock, _ = lock_for(kube, Clock())
    lock.acquire()
    assert kube.leases.lease is not None
    assert kube.leases.lease["metadata"]["annotations"][COMMAND] == "slots park"
    lock.release()
    released = kube.leases.lease
    assert released["spec"]["holderIdentity"] is None
    assert COMMAND not in released["metadata"]["annotations"]
    assert HOLDER_PROCESS not in released["metadata"]["annotations"]


@pytest.mark.parametrize(
    "renew_time", ["9999-12-31T23:59:59.000000Z", "0001-01-01T00:00:00.000000+01:00"]
)
def test_a_lease_from_the_edge_of_the_calendar_is_shown_not_a_crash(renew_time: str) -> None:
    lease = {
        "metadata": {"name": "gx10slots-lock"},
        "spec": {
            "holderIdentity": "someone@elsewhere:1",
            "acquireTime": renew_time,
            "renewTime": renew_time,
            "leaseDurationSeconds": 3600,
        },
    }
    view = lease_view(lease)
    assert view is not None and view["holder"] == "someone@elsewhere:1"
    assert view["expires"] is not None
