"""Slot operations on a real sandbox: gates, compare-and-swap, lock, faults, audit (issue 5)."""

from __future__ import annotations

import signal

import pytest

from gx10slots.kube import client as kube_client
from gx10slots.kube.values import rfc3339
from tests.helpers.sandbox import Sandbox
from tests.helpers.wait import wait_for

pytestmark = pytest.mark.e2e


def test_flip_and_flip_back_switch_production_and_keep_the_old_slot_warm(
    two_warm_slots: Sandbox,
) -> None:
    box = two_warm_slots
    assert box.production() == "sandbox-ok"
    result = box.cli("-o", "json", "flip", "--reason", "new model")
    assert result.code == 0, result.err
    doc = result.json()
    assert (doc["from"], doc["to"], doc["verified"]) == ("blue", "green", True)
    assert box.production() == "sandbox-v2"
    status = box.cli("-o", "json", "status").json()
    assert status["active"] == "green" and status["previous"] == "blue"
    assert status["slots"]["blue"]["role"] == "standby" and status["slots"]["blue"]["ready"] == 1

    back = box.cli("flip-back")
    assert back.code == 0, back.err
    assert box.production() == "sandbox-ok"
    annotations = box.get("service", "gx10-model")["metadata"]["annotations"]
    assert annotations["gx10slots.io/active"] == "blue"
    assert annotations["gx10slots.io/previous"] == "green"
    actions = [(e["action"], e["from"], e["to"], e["result"]) for e in box.history()]
    assert actions == [
        ("flip-back", "green", "blue", "ok"),
        ("flip", "blue", "green", "ok"),
        ("deploy", None, "green", "ok"),
    ]
    assert box.lease_holder() in (None, "")
    events = box.kubectl("get", "events", "-o", "json")
    assert "FlippedBack" in events.stdout


@pytest.mark.parametrize(
    ("prepare", "args", "message"),
    [
        (None, ("flip",), "parked"),
        (None, ("flip-back",), "no previous slot is recorded"),
        (None, ("park", "blue"), "is the active slot"),
        (None, ("deploy", "org/model", "--slot", "blue"), "is the active slot"),
        (None, ("deploy", "org/big", "--memory-gib", "80"), "memory budget exceeded"),
    ],
)
def test_each_gate_refuses_with_exit_3_and_changes_nothing(
    sandbox: Sandbox, prepare: None, args: tuple[str, ...], message: str
) -> None:
    before = sandbox.versions()
    result = sandbox.cli(*args)
    assert result.code == 3, result.err
    assert message in result.err
    assert sandbox.versions() == before
    assert sandbox.history() == []


def test_flip_refuses_without_a_fresh_passing_smoke_for_the_current_revision(
    two_warm_slots: Sandbox,
) -> None:
    box = two_warm_slots
    # Any change to the pod template is a new revision: the earlier smoke no longer counts.
    box.merge_patch(
        "deployment",
        "gx10-green",
        {"spec": {"template": {"metadata": {"annotations": {"example.com/restarted": "1"}}}}},
    )
    wait_for(lambda: rolled_out(box, "gx10-green"), what="green's new revision available")
    before = box.versions()
    result = box.cli("flip")
    assert result.code == 3
    assert "no smoke result recorded for its current revision" in result.err
    assert box.versions() == before
    forced = box.cli("flip", "--force", "--reason", "emergency")
    assert forced.code == 0, forced.err
    assert box.flag() == "green"


def rolled_out(box: Sandbox, name: str) -> bool:
    """The Deployment's current generation is observed, updated and available (Recreate done)."""
    d = box.get("deployment", name)
    status = d.get("status") or {}
    return bool(
        status.get("observedGeneration") == d["metadata"]["generation"]
        and status.get("updatedReplicas") == 1
        and status.get("availableReplicas") == 1
    )


def test_dry_run_prints_the_patch_and_changes_nothing(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    before = box.versions()
    result = box.cli("-o", "json", "flip", "--dry-run")
    assert result.code == 0
    patch = result.json()["patch"]
    assert {"op": "replace", "path": "/spec/selector/gx10slots.io~1slot", "value": "green"} in patch
    assert box.versions() == before


def test_a_conflict_between_read_and_write_is_re_evaluated(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    box.fault(action="conflict", verb="patch", resource="services", name="gx10-model")
    result = box.cli("flip")
    assert result.code == 0, result.err
    assert "re-checking every gate" in result.err
    assert box.flag() == "green"
    assert [e["action"] for e in box.history()].count("flip") == 1


def test_reads_ride_out_500_and_429_with_retry_after(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    box.fault(action="error", verb="get", resource="services", name="gx10-model", count=2)
    box.fault(action="throttle", verb="get", resource="deployments", count=1, seconds=0.2)
    result = box.cli("-o", "json", "status")
    assert result.code == 0, result.err
    assert "attempt 1/4" in result.err
    assert result.json()["active"] == "blue"


def test_a_write_whose_answer_is_lost_is_settled_by_reading_back(
    two_warm_slots: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    box = two_warm_slots
    monkeypatch.setattr(kube_client, "WRITE_TIMEOUT", (2.0, 1.0))
    box.fault(
        action="hang", when="after", verb="patch", resource="services", name="gx10-model", seconds=5
    )
    result = box.cli("flip")
    assert result.code == 0, result.err
    assert "reading it back" in result.err
    assert box.flag() == "green"
    assert [e["action"] for e in box.history()].count("flip") == 1


def test_a_dropped_write_that_did_not_happen_is_reported_not_repeated(
    two_warm_slots: Sandbox,
) -> None:
    box = two_warm_slots
    before = box.versions()
    box.fault(action="drop", when="before", verb="patch", resource="services", name="gx10-model")
    result = box.cli("-o", "json", "flip")
    assert result.code == 4
    error = result.json()["error"]
    assert "did not happen" in error["message"] and "still on blue" in error["message"]
    assert box.versions()["flag"] == before["flag"]
    assert box.flag() == "blue"


def test_two_flips_at_once_exactly_one_wins(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    procs = [box.spawn("flip") for _ in range(2)]
    outcomes = [(p.wait(timeout=60), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 3], outcomes
    loser = next(err for code, err in outcomes if code == 3)
    assert "held by" in loser or "already the active slot" in loser
    assert box.flag() == "green"
    assert [e["action"] for e in box.history()].count("flip") == 1


def test_sigterm_mid_flip_releases_the_lease_and_says_where_production_is(
    two_warm_slots: Sandbox,
) -> None:
    box = two_warm_slots
    box.fault(action="hang", verb="patch", resource="services", name="gx10-model", seconds=30)
    proc = box.spawn("flip")
    wait_for(lambda: box.lease_holder(), what="the flip to take the lease")
    wait_for(lambda: box.api("GET", "/_sandbox/faults")["fired"], what="the write to hang")
    proc.send_signal(signal.SIGTERM)
    code = proc.wait(timeout=30)
    err = proc.stderr.read() if proc.stderr else ""
    assert code == 130, err
    assert "terminated by SIGTERM" in err and "production is on blue" in err
    assert box.lease_holder() in (None, "")
    assert box.flag() == "blue"
    assert box.production() == "sandbox-ok"


def test_failed_verification_switches_back_and_exits_1(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    box.set_config("flag", verify_window="1s")
    # Production's EndpointSlices cannot be read: verification cannot succeed.
    box.fault(action="error", verb="list", resource="endpointslices", count=1000)
    result = box.cli("flip")
    assert result.code == 1, result.err
    assert "switched back: production is on blue again" in result.err
    assert box.flag() == "blue"
    # The router follows the switch-back within its lag.
    wait_for(lambda: box.production() == "sandbox-ok", what="production back on blue")
    newest = box.history()[0]
    assert (newest["action"], newest["result"]) == ("flip", "failed")
    assert "reverted to blue" in newest["detail"]


def test_flux_owned_selector_is_refused_with_the_fix(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    box.merge_patch(
        "service",
        "gx10-model",
        {
            "metadata": {
                "labels": {
                    "kustomize.toolkit.fluxcd.io/name": "apps",
                    "kustomize.toolkit.fluxcd.io/namespace": "flux-system",
                }
            }
        },
    )
    before = box.versions()
    result = box.cli("flip")
    assert result.code == 3
    assert "kustomize.toolkit.fluxcd.io/ssa: IfNotPresent" in result.err
    assert box.versions() == before
    status = box.cli("-o", "json", "status").json()
    assert any("Flux drift risk" in w for w in status["warnings"])
    box.merge_patch(
        "service",
        "gx10-model",
        {"metadata": {"annotations": {"kustomize.toolkit.fluxcd.io/ssa": "IfNotPresent"}}},
    )
    assert box.cli("flip").code == 0


def test_park_scales_the_standby_and_records_it(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    result = box.cli("park")
    assert result.code == 0, result.err
    assert box.get("deployment", "gx10-green")["spec"]["replicas"] == 0
    assert box.history()[0]["action"] == "park"
    again = box.cli("park")
    assert again.code == 0 and "already parked" in again.out
    assert box.cli("flip").code == 3


def test_a_park_stopped_before_its_record_is_recorded_once_by_the_next(
    two_warm_slots: Sandbox,
) -> None:
    box = two_warm_slots
    # What a park killed between its scale and its history entry leaves: the scale, with who
    # parked it and when (written in the same patch), and no entry.
    box.merge_patch(
        "deployment",
        "gx10-green",
        {
            "spec": {"replicas": 0},
            "metadata": {
                "annotations": {
                    "gx10slots.io/parked-by": "carol@gone:7",
                    "gx10slots.io/parked-at": rfc3339(),  # as park writes it
                    "gx10slots.io/parked-reason": "free memory",
                }
            },
        },
    )
    result = box.cli("park", "-o", "json")
    assert result.code == 0, result.err
    doc = result.json()
    assert (doc["slot"], doc["changed"], doc["replicas_before"]) == ("green", False, 0)
    assert "unrecorded" not in doc and "patch" not in doc
    entry = box.history()[0]
    assert (entry["action"], entry["by"], entry["reason"]) == (
        "park",
        "carol@gone:7",
        "free memory",
    )
    assert box.cli("park").code == 0
    assert [e["action"] for e in box.history()].count("park") == 1


def test_history_limit_and_json(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    assert box.cli("flip").code == 0
    assert box.cli("flip-back").code == 0
    # Global options after the subcommand, as kubectl takes them; -l/--limit is the count.
    entries = box.cli("history", "-l", "2", "-o", "json").json()
    assert [e["action"] for e in entries] == ["flip-back", "flip"]
    for entry in entries:
        assert {"at", "action", "from", "to", "model", "by", "reason", "result"} <= entry.keys()
    assert [e["action"] for e in box.cli("history", "--limit", "1", "-o", "yaml").yaml()] == [
        "flip-back"
    ]
    assert box.cli("history", "--limit", "0").code == 2
    # After the subcommand -n is the namespace, as before it: another namespace has no history.
    assert box.cli("history", "-n", "elsewhere", "-o", "json").json() == []


def test_a_held_lease_refuses_naming_the_holder(two_warm_slots: Sandbox) -> None:
    box = two_warm_slots
    # The fixture's deploy released the lease (empty holder): someone else takes it now.
    box.merge_patch(
        "lease",
        "gx10slots-lock",
        {
            "spec": {
                "holderIdentity": "alice@laptop:42",
                "leaseDurationSeconds": 30,
                "acquireTime": _now(),
                "renewTime": _now(),
            }
        },
    )
    before = box.versions()
    result = box.cli("flip")
    assert result.code == 3
    assert "held by alice@laptop:42" in result.err
    assert box.versions() == before


def _now() -> str:
    from gx10slots.kube.values import micro_time

    return micro_time()


def test_flip_back_refuses_a_previous_slot_redeployed_since_it_served(
    two_warm_slots: Sandbox,
) -> None:
    box = two_warm_slots
    assert box.cli("flip").code == 0  # production on green; blue (previous) stays warm
    box.set_smoke(probe_timeout="2s")
    # Into blue, production's protected fallback: deliberately, with the override.
    failed = box.cli(
        "deploy", "sandbox/garbage", "--served-name", "sandbox-ok", "--replace-fallback"
    )
    assert failed.code == 1
    status = box.cli("-o", "json", "status").json()
    assert status["previous"] == "blue"
    assert any("no longer runs the revision that served" in w for w in status["warnings"])
    before = box.versions()
    result = box.cli("flip-back")
    assert result.code == 3, result.err
    assert "no longer runs the revision that served production" in result.err
    assert box.versions() == before
    assert box.production() == "sandbox-v2"
