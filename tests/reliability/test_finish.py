"""A flip that says done is done (issue 19, items 1 and 8).

Item 1: whether the flag's last write is an unfinished run rests on the flag object alone
(``gx10slots.io/state``), never on the history: a history that lost the last flip (deleted,
garbled, or pushed out by 200 newer entries) must not make `slots flip` "complete" a finished flip
instead of flipping (exit 0, production unmoved), nor make `flip-back` or `deploy --flip` record
or redo it. A run that really was interrupted is still completed by re-running it.

Item 8: Ctrl-C after the flag write says where production is, read back, exactly as SIGTERM does.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from gx10slots.app import App, GlobalOptions
from gx10slots.config import parse_config
from gx10slots.errors import Refused
from gx10slots.flip.run import flip
from gx10slots.flip.unfinished import find_unfinished
from gx10slots.kube.lease import Lock
from tests.helpers.config import valid
from tests.helpers.sandbox import NS, Sandbox, clean_env
from tests.helpers.wait import poll

HISTORY_PATH = f"/api/v1/namespaces/{NS}/configmaps/gx10slots-history"
BLUE_SERVED = "sandbox-ok"
GREEN_SERVED = "sandbox-v2"


# -- damage done to the history, as found in clusters -------------------------------------------


def damage_history(box: Sandbox, how: str) -> None:
    """Make the history hold no entry for the last flip, the way ``how`` says."""
    if how == "missing":
        box.api("DELETE", HISTORY_PATH)
    elif how == "garbled":
        box.api(
            "PATCH",
            HISTORY_PATH,
            {"data": {"entries": "this is not json"}},
            "application/merge-patch+json",
        )
    elif how == "overflowed":
        # 200 deploys since the flip (the history keeps the newest 200): the flip fell out.
        newest = [
            {
                "at": "2099-01-01T00:00:00Z",
                "action": "deploy",
                "from": None,
                "to": "blue",
                "model": f"org/m{i}",
                "by": "ci@runner:1",
                "reason": "nightly",
                "result": "ok",
                "id": f"overflow{i:04d}",
            }
            for i in range(200)
        ]
        box.api(
            "PATCH",
            HISTORY_PATH,
            {"data": {"entries": json.dumps(newest)}},
            "application/merge-patch+json",
        )
    else:
        raise ValueError(how)


def flag_annotations(box: Sandbox) -> dict[str, str]:
    return dict(box.get("service", "gx10-model")["metadata"].get("annotations") or {})


def set_annotations(box: Sandbox, **values: str | None) -> None:
    box.merge_patch(
        "service",
        "gx10-model",
        {"metadata": {"annotations": {f"gx10slots.io/{k}": v for k, v in values.items()}}},
    )


def flip_entries(box: Sandbox) -> list[dict[str, Any]]:
    try:
        entries = box.history()
    except ValueError:  # garbled on purpose
        return []
    return [e for e in entries if e.get("action") in ("flip", "flip-back", "auto-revert")]


@pytest.fixture
def flipped(two_warm_slots: Sandbox) -> Sandbox:
    """blue smoked too, then a finished `slots flip`: production on green, blue warm."""
    box = two_warm_slots
    smoked = box.cli("smoke", "blue")
    assert smoked.code == 0, smoked.err
    done = box.cli("flip", "--reason", "the flip whose record gets lost")
    assert done.code == 0, done.err
    assert box.flag() == "green"
    return box


# -- item 1: the history is a record, never evidence --------------------------------------------


@pytest.mark.e2e
@pytest.mark.parametrize("how", ["missing", "garbled", "overflowed", "old-version"])
def test_flip_flips_when_the_history_lost_the_last_flip(flipped: Sandbox, how: str) -> None:
    box = flipped
    if how == "old-version":
        # A flag last written by the version before the state marker, and no history entry.
        set_annotations(box, state=None, run=None)
        damage_history(box, "missing")
    else:
        damage_history(box, how)

    # --rename: blue never served green's new name (sandbox-v2); the names gate is not this
    # test's subject.
    result = box.cli("-o", "json", "flip", "--rename", "--reason", "back to blue")

    assert result.code == 0, result.err
    assert box.flag() == "blue", "exit 0, but production did not move"
    assert box.production() == BLUE_SERVED
    assert result.json()["changed"] is True
    assert "interrupted" not in result.err


@pytest.mark.e2e
def test_flip_back_does_not_record_a_finished_flip_as_interrupted(flipped: Sandbox) -> None:
    box = flipped
    damage_history(box, "garbled")

    result = box.cli("-o", "json", "flip-back")

    assert result.code == 0, result.err
    assert box.flag() == "blue"
    assert box.production() == BLUE_SERVED
    entries = flip_entries(box)
    assert [(e["action"], e["result"]) for e in entries] == [("flip-back", "ok")], entries


@pytest.mark.e2e
def test_deploy_flip_does_not_redo_a_finished_flip(flipped: Sandbox) -> None:
    """`deploy MODEL --flip` with MODEL already in production: nothing to deploy, and (the
    history having lost the flip) no flip to complete either."""
    box = flipped
    damage_history(box, "overflowed")
    before = box.versions()

    result = box.cli("-o", "json", "deploy", "sandbox/ok", "--served-name", GREEN_SERVED, "--flip")

    assert result.code == 0, result.err
    assert result.json()["flip"] is None
    assert box.flag() == "green"
    assert box.versions()["blue"] == before["blue"], "deploy touched the fallback blue"
    assert flip_entries(box) == [], "a finished flip was recorded again"


@pytest.mark.e2e
@pytest.mark.parametrize("history", ["kept", "missing"])
def test_a_run_stopped_after_its_record_is_completed_once(flipped: Sandbox, history: str) -> None:
    """The crash window between the record and the done marker: the flag still says switching.
    Re-running the same command verifies through production and marks it done, without
    switching again and without a second history entry."""
    box = flipped
    recorded = [e for e in flip_entries(box) if e["result"] == "ok"]
    assert len(recorded) == 1
    set_annotations(box, state="switching")
    if history == "missing":
        damage_history(box, "missing")
    unfinished = box.cli("-o", "json", "status").json()["warnings"]
    assert any("did not finish" in w for w in unfinished), unfinished

    result = box.cli("-o", "json", "flip")

    assert result.code == 0, result.err
    doc = result.json()
    assert doc["changed"] is False and doc["completed"], doc
    assert box.flag() == "green"
    assert box.production() == GREEN_SERVED
    assert flag_annotations(box)["gx10slots.io/state"] == "done"
    after = [e for e in flip_entries(box) if e["result"] == "ok"]
    assert len(after) == 1, after
    assert after[0]["id"] == flag_annotations(box)["gx10slots.io/run"]
    assert not any(
        "did not finish" in w for w in box.cli("-o", "json", "status").json()["warnings"]
    )
    # Finished now: the next flip flips.
    again = box.cli("-o", "json", "flip", "--rename")
    assert again.code == 0, again.err
    assert box.flag() == "blue"


@pytest.mark.e2e
def test_a_failed_verification_leaves_no_run_switching(two_warm_slots: Sandbox) -> None:
    """A flip that fails verification and switches back marks the switch back done, so the next
    flip is a flip, not the completion of a revert."""
    box = two_warm_slots
    box.set_config("flag", verify_window="2s")
    box.fault(action="error", verb="list", resource="endpointslices", count=1000)
    failed = box.cli("flip")
    assert failed.code == 1, failed.err
    assert box.flag() == "blue"
    assert flag_annotations(box)["gx10slots.io/state"] == "done"
    box.clear_faults()
    result = box.cli("flip")
    assert result.code == 0, result.err
    assert box.flag() == "green"


@pytest.mark.e2e
def test_the_guards_revert_is_finished_on_the_flag_too(sandbox: Sandbox) -> None:
    """The guard's automatic revert marks its run done like every flag writer: with its history
    entry lost, the next flip is not told an "interrupted" revert happened."""
    box = sandbox
    # As in tests/e2e/test_guard_sandbox.py: five failed checks in a row trip on the error share.
    box.set_config("guard", interval="1s", failures=5)
    deployed = box.cli("deploy", "sandbox/flaky-50", "--served-name", GREEN_SERVED)
    assert deployed.code == 1  # its smoke fails; the slot is left running
    tripped = box.cli("-o", "json", "flip", "--force", "--guard", "60s")
    assert tripped.code == 1, tripped.err
    assert tripped.json()["guard"]["result"] == "tripped"
    assert box.flag() == "blue"
    damage_history(box, "missing")

    fixed = box.cli("-o", "json", "deploy", "sandbox/ok", "--served-name", GREEN_SERVED, "--flip")

    assert fixed.code == 0, fixed.err
    assert box.flag() == "green"
    assert box.production() == GREEN_SERVED
    reverts = [e for e in flip_entries(box) if e["action"] == "auto-revert"]
    assert reverts == [], f"the guard's finished revert was recorded as interrupted: {reverts}"


@pytest.mark.e2e
def test_a_run_still_switching_is_not_completed_by_a_caller_without_the_lease(
    flipped: Sandbox,
) -> None:
    """Only the lease tells a stopped run from one that is still verifying: a caller that does
    not hold it (a library user) is refused and touches neither the flag nor the history."""
    box = flipped
    set_annotations(box, state="switching")
    before = flag_annotations(box)
    entries = flip_entries(box)
    app = App(
        GlobalOptions(
            config_path=str(box.dir / "slots.yaml"), kubeconfig=str(box.dir / "kubeconfig")
        )
    )
    with pytest.raises(Refused) as info:
        flip(app, "flip", force=False, reason="x", dry_run=False, lock=Lock(app.kube, holder="lib"))
    assert info.value.exit_code == 3
    assert box.flag() == "green"
    assert flag_annotations(box) == before  # still switching: the lease holder completes it
    assert flip_entries(box) == entries
    # The command itself, holding the lease, completes it.
    result = box.cli("-o", "json", "flip")
    assert result.code == 0, result.err
    assert result.json()["completed"]
    assert box.flag() == "green"


# -- find_unfinished on plain objects -----------------------------------------------------------


def _app() -> App:
    app = App(GlobalOptions())
    app.__dict__["config"] = parse_config(valid())
    app.__dict__["kube"] = object()  # find_unfinished reads nothing: the flag object is all
    return app


def _flag(value: str, **notes: str) -> dict[str, Any]:
    base = {
        "active": value,
        "previous": "blue" if value == "green" else "green",
        "action": "flip",
        "changed-by": "alice@host:1",
        "changed-at": "2026-01-01T00:00:00Z",
        "run": "abc123",
        "state": "switching",
    }
    base.update(notes)
    return {
        "metadata": {
            "name": "gx10-model",
            "resourceVersion": "7",
            "annotations": {f"gx10slots.io/{k}": v for k, v in base.items() if v != "-"},
        },
        "spec": {"selector": {"gx10slots.io/slot": value}},
    }


@pytest.mark.parametrize(
    ("obj", "unfinished"),
    [
        (_flag("green"), True),
        (_flag("green", state="done"), False),
        (_flag("green", state="-"), False),  # written by the version before the marker
        (_flag("green", run="-"), False),
        (_flag("green", active="blue"), False),  # the selector was moved by hand since
        (_flag("green", action="-"), False),
    ],
    ids=["switching", "done", "old-version", "no-run", "moved-by-hand", "no-action"],
)
def test_unfinished_rests_on_the_flag_alone(obj: dict[str, Any], unfinished: bool) -> None:
    found = find_unfinished(_app(), obj)
    assert (found is not None) == unfinished
    if found is not None:
        assert (found.active, found.run) == ("green", "abc123")


# -- item 8: Ctrl-C after the flag write says where production is --------------------------------


def _spawn(box: Sandbox, *args: str) -> subprocess.Popen[str]:
    # SIGINT at its default, as in a terminal (a caller that ignores it would pass that on).
    return subprocess.Popen(
        [sys.executable, "-m", "gx10slots", *args],
        env=clean_env(box.dir),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def _stderr_until(proc: subprocess.Popen[str], marker: str) -> Iterator[str]:
    assert proc.stderr is not None
    for line in proc.stderr:
        yield line
        if marker in line:
            return
    raise AssertionError(f"the tool ended (exit {proc.wait()}) before printing {marker!r}")


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_a_signal_after_the_flag_write_says_where_production_is(
    two_warm_slots: Sandbox, signum: signal.Signals
) -> None:
    box = two_warm_slots
    # Verification's first list of the production EndpointSlices is held: the signal always lands
    # after the flag write and before the run could finish.
    box.fault(action="hang", verb="list", resource="endpointslices", seconds=60)
    proc = _spawn(box, "-o", "json", "flip", "--reason", "interrupted on purpose")
    try:
        seen = list(_stderr_until(proc, "flag switched"))
        poll(lambda: box.api("GET", "/_sandbox/faults")["fired"] >= 1, 30, "the held read")
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    err = "".join(seen) + err
    box.clear_faults()

    assert proc.returncode == 130, err
    assert "Traceback" not in err
    message = json.loads(out)["error"]["message"]
    said = re.findall(r"production is on (blue|green)", message)
    assert said, f"the message does not say where production is: {message!r}"
    assert set(said) == {box.flag()}, f"it says {said}, the flag names {box.flag()}"
    assert f"production is on {box.flag()}" in err
    assert box.lease_holder() in (None, ""), "the lease was not released"
    # The run is finished (verified and recorded) by running the same command again.
    again = box.cli("-o", "json", "flip")
    assert again.code == 0, again.err
    assert box.flag() == "green"
    assert box.production() == GREEN_SERVED
    ok = [e for e in flip_entries(box) if e["result"] == "ok"]
    assert len(ok) == 1, ok
