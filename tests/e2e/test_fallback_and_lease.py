"""The fallback is protected, and the lease serves on-call (issue 13), on a real sandbox."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from gx10slots.kube.values import micro_time
from tests.e2e.conftest import Sandbox, wait_for

pytestmark = pytest.mark.e2e


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _blue(box: Sandbox) -> tuple[str, dict[str, object]]:
    deployment = box.get("deployment", "gx10-blue")
    return deployment["metadata"]["resourceVersion"], deployment["spec"]["template"]


def test_deploy_into_the_fallback_right_after_a_flip_is_refused_and_flip_back_still_works(
    two_warm_slots: Sandbox,
) -> None:
    box = two_warm_slots
    assert box.cli("flip").code == 0  # production on green; blue served before: the fallback
    flipped_at = datetime.now(UTC)
    before = box.versions()
    blue_before = _blue(box)
    for args in (("deploy", "sandbox/ok"), ("deploy", "sandbox/ok", "--slot", "blue")):
        result = box.cli(*args, "--served-name", "sandbox-v3")
        assert result.code == 3, result.err
        assert "production's fallback, protected until" in result.err
        assert "--replace-fallback" in result.err
    assert box.versions() == before
    assert _blue(box) == blue_before  # no Deployment written: same resourceVersion, template
    status = box.cli("-o", "json", "status").json()
    until = _parse(status["slots"]["blue"]["protected_until"])
    assert flipped_at + timedelta(minutes=59) < until <= flipped_at + timedelta(hours=1, seconds=5)
    assert status["slots"]["green"]["protected_until"] is None
    table = box.cli("status")
    assert "fallback: blue, protected until" in table.out

    back = box.cli("flip-back")
    assert back.code == 0, back.err
    assert box.flag() == "blue" and box.production() == "sandbox-ok"


def test_replace_fallback_deploys_into_it_and_history_records_it(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    assert box.cli("flip").code == 0
    blue_before = _blue(box)
    result = box.cli("deploy", "sandbox/ok", "--served-name", "sandbox-v3", "--replace-fallback")
    assert result.code == 0, result.err
    assert _blue(box)[1] != blue_before[1]  # blue runs the new revision
    assert box.flag() == "green" and box.production() == "sandbox-v2"
    newest = box.history()[0]
    assert (newest["action"], newest["to"], newest["result"]) == ("deploy", "blue", "ok")
    assert newest["replaced_fallback"] is True
    assert "replaced production's fallback" in newest["detail"]
    # What the protection kept is gone: blue is no longer protected, nothing to override twice.
    status = box.cli("-o", "json", "status").json()
    assert status["slots"]["blue"]["protected_until"] is None
    assert status["slots"]["blue"]["protected"] is False


def test_park_of_the_fallback_is_refused_and_the_override_parks_it(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    assert box.cli("flip").code == 0
    before = box.versions()
    refused = box.cli("park")
    assert refused.code == 3, refused.err
    assert "production's fallback, protected until" in refused.err
    assert box.versions() == before
    assert box.get("deployment", "gx10-blue")["spec"]["replicas"] == 1
    parked = box.cli("park", "--replace-fallback")
    assert parked.code == 0, parked.err
    assert box.get("deployment", "gx10-blue")["spec"]["replicas"] == 0
    newest = box.history()[0]
    assert (newest["action"], newest["from"], newest.get("replaced_fallback")) == (
        "park",
        "blue",
        True,
    )


def test_protection_ends_after_flip_protect_fallback_for(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    # Long enough that the flip, status and the refused park fit inside it on a loaded machine
    # (changed-at has whole seconds, so the protection can be up to 1 s shorter than this).
    box.set_config("flip", protect_fallback_for="15s")
    assert box.cli("flip").code == 0
    status = box.cli("-o", "json", "status").json()
    until = _parse(status["slots"]["blue"]["protected_until"])
    assert box.cli("park").code == 3
    wait_for(lambda: datetime.now(UTC) > until, timeout=30, what="the protection to end")
    assert box.cli("park").code == 0
    assert box.get("deployment", "gx10-blue")["spec"]["replicas"] == 0


def test_a_killed_deploy_leaves_a_lease_that_the_next_command_takes_at_once(
    sandbox: Sandbox,
) -> None:
    box = sandbox
    proc = box.spawn("deploy", "sandbox/loading-60s", "--served-name", "slow")
    wait_for(lambda: box.lease_holder(), what="the deploy to take the lease")
    holder = box.lease_holder()
    assert holder and holder.endswith(f":{proc.pid}")
    # While it holds the lease, status says who, doing what, since when.
    status = box.cli("-o", "json", "status").json()
    lock = status["lock"]
    assert lock["holder"] == holder
    assert lock["command"] == "slots deploy sandbox/loading-60s --served-name slow"
    assert lock["since"] and lock["expires"]
    assert _parse(lock["expires"]) > _parse(lock["since"])
    assert f"lock: held by {holder} running `slots deploy" in box.cli("status").out

    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert box.lease_holder() == holder  # it died holding the lease
    started = time.monotonic()
    result = box.cli("park", "green")  # the next mutating command, as on-call would run it
    elapsed = time.monotonic() - started
    assert result.code == 0, result.err
    assert elapsed < 10, f"took {elapsed:.1f} s"
    assert f"took over lease gx10slots-lock from {holder}" in result.err
    assert box.get("deployment", "gx10-green")["spec"]["replicas"] == 0
    assert box.cli("-o", "json", "status").json()["lock"] is None
    takeover = next(e for e in box.history() if e["action"] == "lock-takeover")
    assert holder in takeover["detail"] and "no longer exists" in takeover["detail"]
    assert "LeaseTakenOver" in box.kubectl("get", "events", "-o", "json").stdout


def _plant(box: Sandbox, holder: str, renewed_ago_s: float) -> None:
    """A lease held by ``holder`` on another host, last renewed ``renewed_ago_s`` s ago."""
    box.cli("park", "--dry-run")  # any command; the lease object appears with the first lock
    at = micro_time(datetime.now(UTC) - timedelta(seconds=renewed_ago_s))
    body = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": "gx10slots-lock",
            "annotations": {"gx10slots.io/command": "slots deploy org/big"},
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": 30,
            "acquireTime": at,
            "renewTime": at,
        },
    }
    box.api("POST", "/apis/coordination.k8s.io/v1/namespaces/gx10/leases", body)


def test_break_lock_takes_over_a_lease_nobody_renews_and_says_whose(
    two_warm_slots: Sandbox,
) -> None:
    box = two_warm_slots
    box.api("DELETE", "/apis/coordination.k8s.io/v1/namespaces/gx10/leases/gx10slots-lock")
    _plant(box, "bob@elsewhere:99", renewed_ago_s=12)  # not expired, not renewed for 12 s
    before = box.versions()
    refused = box.cli("flip")
    assert refused.code == 3
    assert "held by bob@elsewhere:99 running `slots deploy org/big` since" in refused.err
    assert box.versions() == before
    broken = box.cli("flip", "--break-lock")
    assert broken.code == 0, broken.err
    assert "took over lease gx10slots-lock from bob@elsewhere:99" in broken.err
    assert box.flag() == "green" and box.production() == "sandbox-v2"
    actions = [(e["action"], e["by"]) for e in box.history()[:2]]
    assert [a for a, _ in actions] == ["flip", "lock-takeover"]
    assert "bob@elsewhere:99" in box.history()[1]["detail"]


def test_break_lock_still_refuses_a_live_holder_on_another_host(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    box.api("DELETE", "/apis/coordination.k8s.io/v1/namespaces/gx10/leases/gx10slots-lock")
    _plant(box, "carol@elsewhere:7", renewed_ago_s=0)
    stop = threading.Event()

    def renew() -> None:  # carol's renewer, every second as a 3 s lease would
        while not stop.wait(1.0):
            box.merge_patch("lease", "gx10slots-lock", {"spec": {"renewTime": micro_time()}})

    renewer = threading.Thread(target=renew)
    renewer.start()
    try:
        before = box.versions()
        result = box.cli("flip", "--break-lock")
    finally:
        stop.set()
        renewer.join()
    assert result.code == 3, result.err
    assert "held by carol@elsewhere:7 running `slots deploy org/big`" in result.err
    assert box.versions() == before and box.flag() == "blue"
    assert box.lease_holder() == "carol@elsewhere:7"


def test_a_watching_guard_protects_the_fallback_after_the_time_is_up(
    two_warm_slots: Sandbox, tmp_path: Path
) -> None:
    box = two_warm_slots
    box.set_config("flip", protect_fallback_for="1s")
    assert box.cli("flip").code == 0
    log = tmp_path / "guard.err"
    with log.open("w") as err:
        guard = subprocess.Popen(
            [sys.executable, "-m", "gx10slots", "guard", "--for", "60s", "--interval", "1s"],
            env=box.env,
            stdout=subprocess.DEVNULL,
            stderr=err,
            text=True,
        )
    try:
        wait_for(lambda: "check 1 " in log.read_text(), what="the guard's first check")
        lease = box.get("lease", "gx10slots-guard")
        assert lease["spec"]["holderIdentity"].endswith(f":{guard.pid}")
        flipped_at = _parse(
            box.get("service", "gx10-model")["metadata"]["annotations"]["gx10slots.io/changed-at"]
        )
        # The protection time (1 s) is over; from now on only the guard protects.
        wait_for(
            lambda: datetime.now(UTC) > flipped_at + timedelta(seconds=2),
            what="flip.protect_fallback_for to pass",
        )
        status = box.cli("-o", "json", "status").json()
        until = _parse(status["slots"]["blue"]["protected_until"])
        assert until > datetime.now(UTC) + timedelta(seconds=50)  # the guard's window end
        before = box.versions()
        refused = box.cli("deploy", "sandbox/ok", "--served-name", "sandbox-v3")
        assert refused.code == 3, refused.err
        assert "guard:" in refused.err and "watches production" in refused.err
        assert box.versions() == before
        guard.send_signal(signal.SIGINT)  # Ctrl-C: the guard stops and ends its announcement
        guard.wait(timeout=30)
    finally:
        if guard.poll() is None:
            guard.kill()
            guard.wait()
    assert box.get("lease", "gx10slots-guard")["spec"].get("holderIdentity") in (None, "")
    status = box.cli("-o", "json", "status").json()
    assert status["slots"]["blue"]["protected_until"] is None
    assert box.cli("park").code == 0  # no longer protected
