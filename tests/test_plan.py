from __future__ import annotations

from datetime import timedelta
from typing import Any

import jsonpatch
import pytest

from gx10slots.errors import Refused
from gx10slots.flip.rules import Mode, clean_reason, plan_flip
from gx10slots.kube.values import now_utc, rfc3339
from gx10slots.slots import SlotState, SmokeRecord, flag_state
from tests.test_state import CONFIG, service

NOW = now_utc()


def slot(name: str, **kw: Any) -> SlotState:
    defaults: dict[str, Any] = dict(
        exists=True,
        model=f"org/{name}",
        served_name=name,
        replicas=1,
        ready=1,
        available=1,
        generation_observed=True,
        revision=f"rev-{name}",
        smoke=SmokeRecord(
            passed=True, at=rfc3339(NOW - timedelta(minutes=5)), revision=f"rev-{name}", report=None
        ),
    )
    defaults.update(kw)
    return SlotState(name=name, **defaults)


def plan(
    mode: Mode = "flip",
    *,
    blue: SlotState | None = None,
    green: SlotState | None = None,
    flag_obj: dict[str, Any] | None = None,
    force: bool = False,
    expected_source: str | None = None,
) -> Any:
    obj = flag_obj or service("blue", annotations={"gx10slots.io/previous": "green"})
    slots = {"blue": blue or slot("blue"), "green": green or slot("green")}
    return plan_flip(
        mode,
        slots,
        flag_state(obj, CONFIG),
        obj,
        CONFIG,
        force=force,
        by="me@host:1",
        reason="test",
        now=NOW,
        expected_source=expected_source,
    )


def test_flip_targets_the_standby_and_the_patch_is_a_cas_on_rv_and_value() -> None:
    p = plan()
    assert (p.source, p.target) == ("blue", "green")
    obj = service("blue", annotations={})
    applied = jsonpatch.apply_patch(obj, p.patch)
    assert applied["spec"]["selector"] == {"app": "x", "gx10slots.io/slot": "green"}
    annotations = applied["metadata"]["annotations"]
    assert annotations["gx10slots.io/active"] == "green"
    assert annotations["gx10slots.io/previous"] == "blue"
    assert annotations["gx10slots.io/changed-by"] == "me@host:1"
    moved = service("blue")
    moved["metadata"]["resourceVersion"] = "8"
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(moved, p.patch)
    flipped = service("green")
    with pytest.raises(jsonpatch.JsonPatchTestFailed):
        jsonpatch.apply_patch(flipped, p.patch)


def test_patch_never_touches_other_selector_keys() -> None:
    p = plan()
    touched = {op["path"] for op in p.patch if op["op"] != "test"}
    assert touched <= {"/spec/selector/gx10slots.io~1slot"} | {
        f"/metadata/annotations/gx10slots.io~1{k}"
        for k in (
            "active",
            "previous",
            "previous-revision",
            "changed-at",
            "changed-by",
            "reason",
            "action",
        )
    }


@pytest.mark.parametrize(
    ("green", "message"),
    [
        (slot("green", exists=False), "does not exist"),
        (slot("green", replicas=0, ready=0, available=0), "parked"),
        (slot("green", available=0, ready=0), "not ready"),
        (slot("green", generation_observed=False), "has not observed its latest generation"),
        (slot("green", smoke=None), "no smoke result recorded for its current revision"),
        (
            slot("green", smoke=SmokeRecord(False, rfc3339(NOW), "rev-green", "r.json")),
            "last smoke for revision rev-green failed",
        ),
        (
            slot(
                "green",
                smoke=SmokeRecord(True, rfc3339(NOW - timedelta(hours=1)), "rev-green", None),
            ),
            "stale",
        ),
    ],
)
def test_each_flip_gate_refuses(green: SlotState, message: str) -> None:
    with pytest.raises(Refused, match=message) as info:
        plan(green=green)
    assert info.value.exit_code == 3


def test_force_skips_smoke_but_never_readiness() -> None:
    assert plan(green=slot("green", smoke=None), force=True).target == "green"
    with pytest.raises(Refused, match="not ready"):
        plan(green=slot("green", available=0, ready=0, smoke=None), force=True)


def test_flip_back_to_the_revision_that_served_needs_no_smoke() -> None:
    served = service(
        "blue",
        annotations={
            "gx10slots.io/previous": "green",
            "gx10slots.io/previous-revision": "rev-green",
        },
    )
    p = plan("flip-back", green=slot("green", smoke=None), flag_obj=served)
    assert p.target == "green"
    assert "slot green still runs revision rev-green, which served before" in p.gates
    with pytest.raises(Refused, match="no previous slot is recorded"):
        plan("flip-back", flag_obj=service("blue"))


def test_flip_back_to_a_changed_previous_slot_needs_a_fresh_smoke_unless_forced() -> None:
    changed = service(
        "blue",
        annotations={"gx10slots.io/previous": "green", "gx10slots.io/previous-revision": "rev-old"},
    )
    with pytest.raises(Refused, match="no longer runs the revision that served production"):
        plan("flip-back", green=slot("green", smoke=None), flag_obj=changed)
    assert plan("flip-back", green=slot("green"), flag_obj=changed).target == "green"
    assert plan("flip-back", green=slot("green", smoke=None), flag_obj=changed, force=True)


def test_the_patch_records_which_revision_served_and_a_revert_trusts_none() -> None:
    p = plan()
    revision_op = next(o for o in p.patch if o["path"].endswith("previous-revision"))
    assert revision_op["value"] == "rev-blue"
    reverted = plan("revert", expected_source="blue")
    revision_op = next(o for o in reverted.patch if o["path"].endswith("previous-revision"))
    assert revision_op["value"] == ""


def test_flip_refuses_when_the_flag_names_no_slot() -> None:
    with pytest.raises(Refused, match="not a slot"):
        plan(flag_obj=service("purple"))


def test_flux_owned_selector_refuses_with_the_fix() -> None:
    obj = service(
        "blue",
        labels={
            "kustomize.toolkit.fluxcd.io/name": "a",
            "kustomize.toolkit.fluxcd.io/namespace": "b",
        },
    )
    with pytest.raises(Refused, match=r"kustomize\.toolkit\.fluxcd\.io/ssa: IfNotPresent"):
        plan(flag_obj=obj)


def test_revert_refuses_when_someone_else_flipped() -> None:
    with pytest.raises(Refused, match="no longer on green"):
        plan("revert", expected_source="green")


def test_reason_is_one_bounded_line() -> None:
    assert clean_reason("a\nb;  rm -rf /\t") == "a b; rm -rf /"
    assert len(clean_reason("x" * 300)) == 256


def test_a_smoke_dated_in_the_future_is_refused() -> None:
    future = SmokeRecord(True, rfc3339(NOW + timedelta(hours=1)), "rev-green", None)
    with pytest.raises(Refused, match="dated in the future"):
        plan(green=slot("green", smoke=future))
