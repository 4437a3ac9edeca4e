"""The human tables: whole values at 80 columns, the lease holder and the fallback's protection."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import yaml

from gx10slots.deploy.result import Deployed
from gx10slots.fallback import FallbackProtection
from gx10slots.flip.result import FlipResult
from gx10slots.flip.rules import FlipPlan
from gx10slots.guard.result import GuardResult
from gx10slots.ops.park import ParkResult
from gx10slots.ops.status import FlagView, StatusResult
from gx10slots.render import (
    deploy_summary,
    flip_summary,
    format_document,
    history_text,
    park_summary,
    status_text,
)

MODEL = "Qwen/Qwen3-30B-A3B-Instruct"
REVISION = "e4e5bf86bd01"


def _slot(role: str, **extra: Any) -> dict[str, Any]:
    return {
        "role": role,
        "model": MODEL,
        "served_name": "qwen3-30b-a3b-instruct",
        "image": "vllm/vllm-openai:v0.11.0",
        "ready": 1,
        "replicas": 1,
        "memory_gib": 60,
        "revision": REVISION,
        "smoke": {"passed": True, "age_s": 700},
        "protected": False,
        "protected_until": None,
        **extra,
    }


def _status(**extra: Any) -> dict[str, Any]:
    return {
        "namespace": "gx10",
        "active": "blue",
        "previous": "green",
        "flag": {
            "kind": "service-selector",
            "name": "gx10-model",
            "key": "gx10slots.io/slot",
            "value": "blue",
        },
        "slots": {
            "blue": _slot("active"),
            "green": _slot("standby", protected=True, protected_until="2026-11-27T09:46:46Z"),
        },
        "fallback": {
            "slot": "green",
            "protected": True,
            "until": "2026-11-27T09:46:46Z",
            "reasons": ["flipped 2m ago"],
        },
        "lock": {
            "holder": "alice@gx10-42",
            "command": "slots deploy x",
            "since": "2026-11-27T09:40:00Z",
            "expires": "2026-11-27T09:41:00Z",
            "expired": False,
        },
        "warnings": [],
        **extra,
    }


def test_status_fits_80_columns_with_whole_values() -> None:
    table = status_text(_status()).split("\n\n")[0]
    assert all(len(line) <= 80 for line in table.splitlines()), table
    assert MODEL in table and REVISION in table and "passed 12m ago" in table
    assert "…" not in table


def test_status_wide_shows_every_column() -> None:
    narrow, wide = status_text(_status()), status_text(_status(), wide=True)
    for header in ("SERVED NAME", "IMAGE", "MEMORY", "PROTECTED"):
        assert header not in narrow.splitlines()[0]
        assert header in wide.splitlines()[0]
    assert "vllm/vllm-openai:v0.11.0" in wide and "until 2026-11-27T09:46:46Z" in wide


def test_a_long_value_widens_its_column_never_cut() -> None:
    long_model = "org/" + "m" * 120
    doc = _status()
    doc["slots"]["blue"]["model"] = long_model
    assert long_model in status_text(doc)


def test_status_shows_the_lease_holder_and_the_fallbacks_protection() -> None:
    text = status_text(_status())
    assert "lock: held by alice@gx10-42 running `slots deploy x`" in text
    assert "fallback: green, protected until 2026-11-27T09:46:46Z (flipped 2m ago)" in text
    free = status_text(_status(lock=None, fallback={"slot": "green", "protected": False}))
    assert "lock: free" in free and "fallback: green, not protected" in free


def test_history_fits_80_columns_with_whole_times() -> None:
    entries = [
        {
            "at": "2026-11-27T09:46:46Z",
            "action": "flip-back",
            "from": "green",
            "to": "blue",
            "model": "sandbox/loading-30s",
            "by": "alice@a-very-long-host-name.example",
            "result": "ok",
            "reason": "the new model answers in Klingon",
        }
    ]
    text = history_text(entries)
    assert all(len(line) <= 80 for line in text.splitlines()), text
    assert "2026-11-27T09:46:46Z" in text
    wide = history_text(entries, wide=True)
    assert "alice@a-very-long-host-name.example" in wide and "Klingon" in wide


def test_a_flip_result_keeps_the_documents_keys_and_their_order() -> None:
    flipped = FlipResult(
        action="flip",
        source="blue",
        target="green",
        model="new",
        source_model="old",
        gates=["target ready"],
        detail="answered from green",
        duration_s=1.5,
    )
    assert list(flipped.to_dict()) == [
        "action", "changed", "from", "to", "model", "from_model", "verified", "detail", "gates",
        "warm", "duration_s",
    ]  # fmt: skip
    assert flipped.to_dict()["warm"] == "blue" and flipped.to_dict()["verified"] is True
    passed = GuardResult({"action": "guard", "result": "passed", "slot": "green"})
    completed = replace(flipped, changed=False, completed="bob@host", guard=passed)
    assert list(completed.to_dict())[:3] == ["action", "changed", "completed"]
    assert completed.to_dict()["guard"] == passed.to_dict()
    assert "completed the run by bob@host" in flip_summary(completed)
    assert flip_summary(flipped).startswith("production: blue -> green (new), verified in 1.50 s")


def test_a_flip_dry_run_shows_the_plan_and_its_patch() -> None:
    patch = [{"op": "replace", "path": "/spec/selector/slot", "value": "green"}]
    plan = FlipPlan("flip", "blue", "green", "new", "old", "new-name", patch, ["target ready"])
    preview = FlipResult.of(plan, "flip", dry_run=True)
    assert preview.to_dict() == {
        "action": "flip",
        "dry_run": True,
        "changed": False,
        **plan.to_dict(),
    }
    text = flip_summary(preview)
    assert "dry run: flip blue -> green (new)" in text and "gate passed: target ready" in text
    assert json.loads(format_document(preview, "json"))["patch"] == patch


def test_a_deploy_result_keeps_the_documents_keys_and_their_order() -> None:
    flipped = FlipResult(
        action="flip", source="blue", target="green", model="new", source_model="o"
    )
    deployed = Deployed(
        slot="green",
        model="new",
        served_name="new",
        revision="r2",
        changed=True,
        smoke_report="rep.json",
        reports=["rep.json", "rep.md"],
        flip=flipped,
    )
    doc = deployed.to_dict()
    assert list(doc) == [
        "action", "changed", "slot", "model", "served_name", "revision", "smoke", "reports",
        "duration_s", "replaced_fallback", "flip",
    ]  # fmt: skip
    assert doc["smoke"] == {"passed": True, "report": "rep.json"}
    assert doc["flip"] == flipped.to_dict()
    text = deploy_summary(deployed)
    assert "deployed new into slot green (revision r2); smoke passed; report rep.json" in text
    assert "production: blue -> green (new)" in text
    again = Deployed(
        slot="blue", model="new", served_name="new", revision="r2", changed=False,
        already_active=True,
    )  # fmt: skip
    assert list(again.to_dict()) == [
        "action", "changed", "already_active", "slot", "model", "served_name", "revision",
        "smoke", "reports", "duration_s", "flip",
    ]  # fmt: skip
    assert again.to_dict()["smoke"] is None and again.to_dict()["flip"] is None
    assert deploy_summary(again).startswith("production (slot blue) already runs new")


def test_a_park_result_keeps_the_documents_keys_and_shows_its_patch_only_in_a_dry_run() -> None:
    patch = [{"op": "replace", "path": "/spec/replicas", "value": 0}]
    parked = ParkResult(
        slot="green",
        model="old",
        replicas_before=1,
        dry_run=False,
        changed=True,
        detail="slot green (old) scaled to 0; flip-back to it needs a redeploy",
        replaced_fallback=True,
        replaced_fallback_note="replaced the fallback",
        patch=patch,
        unrecorded=("bob", "why"),
    )
    assert list(parked.to_dict()) == [
        "action", "slot", "model", "replicas_before", "dry_run", "changed", "replaced_fallback",
        "replaced_fallback_note", "detail",
    ]  # fmt: skip
    assert replace(parked, dry_run=True, changed=False).to_dict()["patch"] == patch
    already = ParkResult("green", "old", 0, False, False, "slot green is already parked")
    assert list(already.to_dict()) == [
        "action", "slot", "model", "replicas_before", "dry_run", "changed", "detail",
    ]  # fmt: skip
    assert park_summary(already) == "slot green is already parked"


def test_a_status_result_is_drawn_as_its_document_is() -> None:
    doc = _status()
    result = StatusResult(
        namespace="gx10",
        active="blue",
        previous="green",
        flag=FlagView(
            kind="service-selector",
            name="gx10-model",
            key="gx10slots.io/slot",
            value="blue",
            endpoint=None,
            changed_at="2026-11-27T09:44:46Z",
            changed_by="alice@gx10-42",
            flux_managed=False,
        ),
        node_capacity_gib=128.0,
        slots=doc["slots"],
        fallback=FallbackProtection(
            "green", True, datetime(2026, 11, 27, 9, 46, 46, tzinfo=UTC), ("flipped 2m ago",)
        ),
        lock=doc["lock"],
        warnings=["slot green: something"],
    )
    assert list(result.to_dict()) == [
        "namespace", "active", "previous", "flag", "node_capacity_gib", "slots", "fallback",
        "lock", "warnings",
    ]  # fmt: skip
    assert result.to_dict()["fallback"]["until"] == "2026-11-27T09:46:46Z"
    text = status_text(result, wide=True)
    assert text == status_text(result.to_dict(), wide=True)
    assert "changed 2026-11-27T09:44:46Z by alice@gx10-42" in text
    assert "fallback: green, protected until 2026-11-27T09:46:46Z (flipped 2m ago)" in text
    assert "warning: slot green: something" in text
    assert json.loads(format_document(result, "json"))["flag"]["value"] == "blue"
    no_fallback = replace(result, fallback=FallbackProtection(None, False, None))
    assert no_fallback.to_dict()["fallback"] is None


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> None:
        raise AssertionError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def test_a_number_that_is_not_finite_is_null_in_every_document_never_nan() -> None:
    # An engine's gauge or a Prometheus query (0/0) may read NaN or +Inf; Python's json writes
    # them as NaN/Infinity, which no JSON reader (jq, a webhook) accepts.
    from gx10slots.smoke.live import Observation

    probe = Observation(False, "timed out", running=float("nan"), recent_advance=float("inf"))
    doc = {"probe": probe.to_dict(), "gates": [{"value": float("-inf")}], "n": 1.5}
    parsed = _strict_json(format_document(doc, "json"))
    assert parsed["probe"]["running"] is None and parsed["probe"]["recent_advance"] is None
    assert parsed["gates"] == [{"value": None}] and parsed["n"] == 1.5
    assert yaml.safe_load(format_document(doc, "yaml")) == parsed
