"""The lease's pure rules: who holds it, whether that process is gone, what status shows, and
what a holder writes (gx10slots.lock, gx10slots.cmdline)."""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from gx10slots import cmdline
from gx10slots.lock import (
    COMMAND,
    HOLDER_PROCESS,
    Here,
    Lock,
    ProcessInfo,
    ProcessMark,
    holder_gone,
    lease_view,
    micro_time,
    own_mark,
    parse_holder,
    process_info,
    record_duration_s,
    renew_interval_s,
)

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
    from gx10slots.lock import here as real_here

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
