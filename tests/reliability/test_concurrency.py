"""Ten flips at once: exactly one wins, nine are refused (exit 3), history neither loses nor
doubles an entry. Three ways: ten CLI processes (the contract's exit codes), ten threads released
by a barrier (true simultaneity on the Lease), and ten threads *without* the Lease (the flag's
own compare-and-swap is the second line of defence)."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import pytest

from gx10slots.app import App, GlobalOptions
from gx10slots.errors import Refused, SlotsError
from gx10slots.flip.result import FlipResult
from gx10slots.flip.run import flip
from gx10slots.kube.lease import Lock
from tests.helpers.sandbox import Sandbox

pytestmark = pytest.mark.e2e

N = 10


def _new_entries(box: Sandbox, before: set[str]) -> list[dict[str, Any]]:
    return [e for e in box.history() if e.get("id") not in before]


def _assert_one_flip_recorded(box: Sandbox, before: set[str]) -> None:
    new = _new_entries(box, before)
    assert [(e["action"], e["from"], e["to"], e["result"]) for e in new] == [
        ("flip", "blue", "green", "ok")
    ], new
    ids = [e["id"] for e in box.history()]
    assert len(ids) == len(set(ids))
    assert box.flag() == "green"
    assert box.production() == "sandbox-v2"
    assert box.lease_holder() in (None, "")


def test_ten_concurrent_flip_commands_one_wins_nine_exit_3(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    before = {e["id"] for e in box.history()}
    procs = [box.spawn("flip", "--reason", f"racer {i}") for i in range(N)]
    outcomes = []
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        outcomes.append((proc.returncode, err))
    codes = Counter(code for code, _ in outcomes)
    assert codes == Counter({0: 1, 3: N - 1}), outcomes
    for code, err in outcomes:
        if code == 3:
            assert "held by" in err or "already the active slot" in err, err
        assert "Traceback" not in err
    _assert_one_flip_recorded(box, before)


def _race(box: Sandbox, *, with_lease: bool) -> tuple[list[FlipResult], list[SlotsError]]:
    barrier = threading.Barrier(N)
    won: list[FlipResult] = []
    refused: list[SlotsError] = []
    failed: list[BaseException] = []
    guard = threading.Lock()

    def racer(i: int) -> None:
        app = App(
            GlobalOptions(
                config_path=str(box.dir / "slots.yaml"), kubeconfig=str(box.dir / "kubeconfig")
            )
        )
        app.config  # noqa: B018 - load before the barrier: race on the cluster, not the disk
        app.kube  # noqa: B018
        lock = Lock(app.kube, holder=f"racer-{i}")
        try:
            barrier.wait(timeout=60)
            if with_lease:
                with lock:
                    result = flip(
                        app, "flip", force=False, reason=f"racer {i}", dry_run=False, lock=lock
                    )
            else:
                # The lock object is never acquired: ten writers meet at the flag itself.
                result = flip(
                    app, "flip", force=False, reason=f"racer {i}", dry_run=False, lock=lock
                )
            with guard:
                won.append(result)
        except Refused as exc:
            with guard:
                refused.append(exc)
        except BaseException as exc:  # noqa: BLE001 - reported by the assertion below
            with guard:
                failed.append(exc)

    threads = [threading.Thread(target=racer, args=(i,)) for i in range(N)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=180)
    assert failed == [], failed
    return won, refused


def test_ten_threads_released_at_once_on_the_lease(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    before = {e["id"] for e in box.history()}
    won, refused = _race(box, with_lease=True)
    assert len(won) == 1 and len(refused) == N - 1, (won, [e.message for e in refused])
    assert all(e.exit_code == 3 for e in refused)
    _assert_one_flip_recorded(box, before)


def test_without_the_lease_the_flags_compare_and_swap_still_admits_one(
    two_warm_slots: Sandbox,
) -> None:
    box = two_warm_slots
    before = {e["id"] for e in box.history()}
    won, refused = _race(box, with_lease=False)
    assert len(won) == 1 and len(refused) == N - 1, (won, [e.message for e in refused])
    _assert_one_flip_recorded(box, before)
