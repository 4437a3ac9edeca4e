"""The lease after its holder died: it expires, and it can be taken over, on the taker's clock.

The takeover rule waits a full lease duration (30 s) of the taker's own clock after first seeing
the record unchanged. In CI that is proven with the real 30 s duration on a fake clock (the Lock's
injectable clock and wait), against a record whose holder stopped renewing; the full run also
kills a real `slots flip` and waits the real time, end to end.
"""

from __future__ import annotations

import signal
import time
from datetime import UTC, datetime, timedelta

import pytest

from gx10slots.app import App, GlobalOptions
from gx10slots.errors import LockHeld
from gx10slots.kube.lease import HOLDER_PROCESS, LEASE_DURATION_S, Lock
from gx10slots.kube.values import micro_time
from tests.e2e.conftest import Sandbox, wait_for


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.waited = 0.0

    def __call__(self) -> float:
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += seconds
        self.waited += seconds


def _app(box: Sandbox) -> App:
    return App(
        GlobalOptions(
            config_path=str(box.dir / "slots.yaml"), kubeconfig=str(box.dir / "kubeconfig")
        )
    )


def _plant(box: Sandbox, holder: str, renewed_ago_s: float) -> None:
    """A lease held by ``holder``, last renewed ``renewed_ago_s`` seconds ago."""
    at = micro_time(datetime.now(UTC) - timedelta(seconds=renewed_ago_s))
    app = _app(box)
    with Lock(app.kube, holder="setup", duration_s=LEASE_DURATION_S):
        pass  # creates the Lease object
    box.merge_patch(
        "lease",
        "gx10slots-lock",
        {
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": LEASE_DURATION_S,
                "acquireTime": at,
                "renewTime": at,
            }
        },
    )


@pytest.mark.e2e
def test_an_abandoned_lease_is_taken_over_after_a_full_duration_on_the_takers_clock(
    sandbox: Sandbox,
) -> None:
    _plant(sandbox, "dead@host:1", renewed_ago_s=LEASE_DURATION_S + 5)
    clock = FakeClock()
    messages: list[str] = []
    lock = Lock(
        _app(sandbox).kube,
        holder="taker@host:2",
        duration_s=LEASE_DURATION_S,
        clock=clock,
        wait=clock.wait,
        on_wait=messages.append,
    )
    started = time.monotonic()
    lock.acquire()
    assert time.monotonic() - started < 5  # no real waiting
    assert clock.waited >= LEASE_DURATION_S
    assert "waiting 30 s to confirm it is abandoned" in messages[0]
    spec = sandbox.get("lease", "gx10slots-lock")["spec"]
    assert spec["holderIdentity"] == "taker@host:2"
    assert spec["leaseTransitions"] >= 1
    lock.release()
    assert sandbox.lease_holder() in (None, "")


@pytest.mark.e2e
def test_a_live_lease_is_refused_at_once_naming_its_holder(sandbox: Sandbox) -> None:
    _plant(sandbox, "alive@host:3", renewed_ago_s=1)
    clock = FakeClock()
    lock = Lock(_app(sandbox).kube, holder="me", clock=clock, wait=clock.wait)
    with pytest.raises(LockHeld, match="held by alive@host:3"):
        lock.acquire()
    assert clock.waited == 0


@pytest.mark.e2e
def test_a_holder_that_renews_during_the_wait_keeps_its_lease(sandbox: Sandbox) -> None:
    _plant(sandbox, "slow@host:4", renewed_ago_s=LEASE_DURATION_S + 5)
    clock = FakeClock()

    def wait(seconds: float) -> None:
        clock.wait(seconds)
        if clock.waited >= 10:  # the holder was only slow: it renews
            now = micro_time()
            sandbox.merge_patch("lease", "gx10slots-lock", {"spec": {"renewTime": now}})

    lock = Lock(_app(sandbox).kube, holder="me", clock=clock, wait=wait)
    with pytest.raises(LockHeld, match="held by slow@host:4"):
        lock.acquire()
    assert sandbox.lease_holder() == "slow@host:4"


@pytest.mark.e2e
@pytest.mark.reliability_full
def test_a_killed_flip_leaves_a_lease_that_a_rerun_takes_over_in_real_time(
    two_warm_slots: Sandbox,
) -> None:
    """End to end with the real 30 s lease: SIGKILL `slots flip` while it holds the lease, then
    re-run it as an operator would: refused while the lease is live, taken over after (for a
    holder whose process cannot be checked from here)."""
    box = two_warm_slots
    box.fault(action="hang", verb="patch", resource="services", name="gx10-model", seconds=120)
    proc = box.spawn("flip")
    wait_for(lambda: box.api("GET", "/_sandbox/faults")["fired"], timeout=60, what="the flag write")
    holder = box.lease_holder()
    assert holder and holder.endswith(f":{proc.pid}")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    killed_at = time.monotonic()
    # As if it had run on another machine: without the record of which process held it, its
    # death cannot be seen from here (a dead holder on this host is taken over at once, see
    # tests/e2e/test_fallback_and_lease.py), so only expiry frees it.
    box.merge_patch(
        "lease", "gx10slots-lock", {"metadata": {"annotations": {HOLDER_PROCESS: None}}}
    )
    box.clear_faults()
    early = box.spawn("flip")
    _, err = early.communicate(timeout=60)
    assert early.returncode == 3 and f"held by {holder}" in err, err

    def expired() -> bool:
        spec = box.get("lease", "gx10slots-lock")["spec"]
        renewed = datetime.fromisoformat(spec["renewTime"].replace("Z", "+00:00"))
        return datetime.now(UTC) - renewed > timedelta(seconds=spec["leaseDurationSeconds"])

    wait_for(expired, timeout=LEASE_DURATION_S + 15, what="the lease to expire")
    rerun = box.spawn("flip")
    _, err = rerun.communicate(timeout=180)
    elapsed = time.monotonic() - killed_at
    assert rerun.returncode == 0, err
    assert "to confirm it is abandoned" in err
    assert elapsed >= LEASE_DURATION_S
    assert box.flag() == "green" and box.production() == "sandbox-v2"
    assert box.lease_holder() in (None, "")
    print(f"takeover after SIGKILL: {elapsed:.1f} s")
