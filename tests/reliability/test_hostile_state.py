"""Hostile values read from the cluster and hostile paths (issue 19, items 5 and 10).

Anyone with write access may put anything into an annotation or the history ConfigMap: a time at
the edge of the calendar, a number where a time belongs. Each becomes what it means ("long ago",
"dated in the future", "not a time") and the command does its job or refuses with a clear
message; never a traceback, and with -o json always one JSON document. The same for paths from
the config or a flag, and for the last-resort boundary itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gx10slots.cli import main
from tests.cli_helpers import Result, run_cli
from tests.e2e.conftest import NS, Sandbox
from tests.reliability.test_hostile_cluster import _config

CHANGED_AT = "gx10slots.io/changed-at"
SMOKE_AT = "gx10slots.io/smoke-at"


def _clean(result: Result, code: int) -> dict[str, object]:
    assert result.code == code, (result.code, result.err[-2000:])
    assert "Traceback" not in result.err + result.out
    assert "internal error" not in result.err
    doc = result.json()
    assert isinstance(doc, dict)
    return doc


@pytest.mark.e2e
@pytest.mark.parametrize("stamp", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_changed_at_at_the_edge_of_the_calendar_does_not_stop_flip_or_flip_back(
    two_warm_slots: Sandbox, stamp: str
) -> None:
    box = two_warm_slots
    box.merge_patch("service", "gx10-model", {"metadata": {"annotations": {CHANGED_AT: stamp}}})
    _clean(box.cli("-o", "json", "flip"), 0)
    assert box.flag() == "green"
    box.merge_patch("service", "gx10-model", {"metadata": {"annotations": {CHANGED_AT: stamp}}})
    _clean(box.cli("-o", "json", "flip-back"), 0)
    assert box.flag() == "blue"


@pytest.mark.e2e
def test_a_smoke_dated_after_the_last_representable_instant_is_a_future_date(
    two_warm_slots: Sandbox,
) -> None:
    box = two_warm_slots
    future = "9999-12-31T23:59:59-01:00"
    box.merge_patch("deployment", "gx10-green", {"metadata": {"annotations": {SMOKE_AT: future}}})
    status = _clean(box.cli("-o", "json", "status"), 0)
    green = status["slots"]["green"]  # type: ignore[index]
    assert green["smoke"]["at"] == future
    assert any("green" in w for w in status["warnings"])  # type: ignore[attr-defined]
    table = box.cli("status")
    assert table.code == 0 and "Traceback" not in table.err
    refused = _clean(box.cli("-o", "json", "flip"), 3)
    assert "dated in the future" in refused["error"]["message"]  # type: ignore[index]
    assert box.flag() == "blue"


@pytest.mark.e2e
@pytest.mark.parametrize("at", [5, None, ["x"], {"a": 1}, "not a time", "2026-13-45T99:00:00Z"])
def test_a_history_entry_whose_time_is_not_a_time_does_not_stop_flip_back(
    two_warm_slots: Sandbox, at: object
) -> None:
    box = two_warm_slots
    _clean(box.cli("-o", "json", "flip"), 0)
    entries = box.history()
    for entry in entries:
        entry["at"] = at
    cm = box.get("configmap", "gx10slots-history")
    cm["data"]["entries"] = json.dumps(entries)
    box.api("PUT", f"/api/v1/namespaces/{NS}/configmaps/gx10slots-history", cm)
    _clean(box.cli("-o", "json", "flip-back"), 0)
    assert box.flag() == "blue"
    history = box.cli("history")
    assert history.code == 0 and "Traceback" not in history.err


@pytest.mark.e2e
def test_flip_back_from_a_flag_that_names_no_slot_says_so_not_none(sandbox: Sandbox) -> None:
    # The flag points nowhere (an outside edit) but still records blue as the previous slot.
    sandbox.merge_patch(
        "service",
        "gx10-model",
        {
            "spec": {"selector": {"gx10slots.io/slot": "nowhere"}},
            "metadata": {"annotations": {"gx10slots.io/previous": "blue"}},
        },
    )
    result = sandbox.cli("-o", "json", "flip-back", "--force")
    assert result.code == 0, result.err[-2000:]
    assert sandbox.flag() == "blue"
    assert "None" not in result.err, result.err
    assert "production no slot -> blue" in result.err
    notes = json.dumps(sandbox.api("GET", f"/api/v1/namespaces/{NS}/events"))
    assert "production None" not in notes


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> Result:
    return run_cli(capsys, "-o", "json", *args)


def test_a_report_dir_holding_a_nul_is_a_config_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(tmp_path)
    doc = yaml.safe_load(path.read_text())
    doc["smoke"] = {"report_dir": "a\0b"}
    path.write_text(yaml.safe_dump(doc))
    result = _run(capsys, "--config", str(path), "smoke", "blue")
    error = _clean(result, 2)["error"]
    assert "smoke.report_dir" in error["message"]  # type: ignore[index]


def test_a_report_dir_flag_holding_a_nul_is_a_usage_error() -> None:
    from gx10slots.errors import UsageError
    from gx10slots.ops.smoke import check_report_dir

    with pytest.raises(UsageError, match="report directory"):
        check_report_dir("a\0b")


@pytest.mark.parametrize("directory", ["/proc/self/x", "/dev/null/x"])
def test_a_sandbox_dir_that_cannot_be_a_directory_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], directory: str
) -> None:
    result = _run(capsys, "sandbox", "up", "--detach", "--dir", directory)
    error = _clean(result, 2)["error"]
    assert "sandbox directory" in error["message"]  # type: ignore[index]


def test_an_unexpected_exception_is_a_short_internal_error_without_secrets(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gx10slots.ops import status as status_module

    def broken(app: object) -> None:
        raise RuntimeError("boom Authorization: Bearer sk-planted-0123456789 \x1b]0;x\x07")

    monkeypatch.setattr(status_module, "status", broken)
    for args in (("-o", "json"), ()):
        with pytest.raises(SystemExit) as info:
            main([*args, "--config", str(_config(tmp_path)), "status"])
        captured = capsys.readouterr()
        assert info.value.code == 1
        assert "Traceback" not in captured.err
        assert "sk-planted-0123456789" not in captured.out + captured.err
        assert "\x1b" not in captured.err
        assert "internal error (RuntimeError: boom" in captured.err
        assert "bug" in captured.err
        if args:
            assert json.loads(captured.out)["error"]["type"] == "internal"


@pytest.mark.e2e
def test_smoke_of_a_missing_deployment_is_exit_4_naming_it(sandbox: Sandbox) -> None:
    sandbox.api("DELETE", f"/apis/apps/v1/namespaces/{NS}/deployments/gx10-green")
    result = sandbox.cli("-o", "json", "smoke", "green")
    error = _clean(result, 4)["error"]
    assert "Deployment gx10-green not found in namespace gx10" in error["message"]  # type: ignore[index]
    assert not list((sandbox.dir / "reports").glob("*-green.json"))


@pytest.mark.e2e
@pytest.mark.parametrize(
    "name",
    [
        "org/model\u202egguf",  # right-to-left override
        "org/mod\u200bel",  # zero-width space
        "org/model\u2066x\u2069",  # isolates
        "org/model\ufeff",  # BOM / zero-width no-break space
        "org/mo\x7fdel",  # DEL
    ],
    ids=["rlo", "zwsp", "isolate", "bom", "del"],
)
def test_invisible_and_bidi_characters_in_a_model_name_are_refused(
    sandbox: Sandbox, name: str
) -> None:
    before = sandbox.versions()
    for args in (("deploy", name), ("deploy", "org/ok", "--served-name", name)):
        result = sandbox.cli("-o", "json", *args)
        error = _clean(result, 2)["error"]
        assert "formatting characters" in error["message"], error  # type: ignore[index]
        assert name not in result.out + result.err
    assert sandbox.versions() == before


@pytest.mark.e2e
def test_status_never_prints_the_userinfo_of_an_endpoint(sandbox: Sandbox) -> None:
    path = sandbox.dir / "slots.yaml"
    config = yaml.safe_load(path.read_text())
    endpoint = config["flag"]["endpoint"]
    config["flag"]["endpoint"] = endpoint.replace("http://", "http://admin:hunter2-secret@")
    path.write_text(yaml.safe_dump(config))
    for args in (("-o", "json", "status"), ("status",), ("-v", "status")):
        result = sandbox.cli(*args)
        assert result.code == 0, result.err
        assert "hunter2-secret" not in result.out + result.err
    doc = sandbox.cli("-o", "json", "status").json()
    assert doc["flag"]["endpoint"].startswith("http://[REDACTED]@127.0.0.1:")


def test_a_smoke_report_name_from_an_annotation_is_read_safely(tmp_path: Path) -> None:
    import os
    import threading

    from gx10slots.guard.run import load_baseline
    from gx10slots.slots import SlotState, SmokeRecord

    # A FIFO named like a report (nobody writes to it) and annotations naming it, or a NUL.
    os.mkfifo(tmp_path / "20260101T000000Z-green.json")
    outcomes: list[tuple[object, str]] = []
    for name in ("20260101T000000Z-green.json", "a\0b.json", "../../etc/passwd"):
        record = SmokeRecord(passed=True, at="2026-01-01T00:00:00Z", revision="r1", report=name)
        slot = SlotState("green", True, revision="r1", smoke=record)

        def load(slot: SlotState = slot) -> None:
            outcomes.append(load_baseline(slot, str(tmp_path)))

        worker = threading.Thread(target=load, daemon=True)
        worker.start()
        worker.join(timeout=10)
        assert not worker.is_alive(), f"reading the report named {name!r} hangs"
    assert [baseline for baseline, _ in outcomes] == [None, None, None]
