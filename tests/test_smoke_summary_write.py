"""Writing the smoke summary ConfigMap: only under the lease, by compare-and-swap, best effort."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace
from typing import Any

import pytest

from gx10slots.errors import ApiError, Conflict, Invalid, LockHeld, NotFound
from gx10slots.ops.smokesummary import write_summary
from gx10slots.smoke.summary import KEY, SCHEMA

NAME = "gx10slots-smoke-green"
SUMMARY: dict[str, Any] = {"schema": SCHEMA, "slot": "green", "passed": True, "probes": []}


class FakeKube:
    """One ConfigMap as the API server keeps it: JSON Patch with a resourceVersion test."""

    namespace = "gx10"

    def __init__(self, cm: dict[str, Any] | None = None) -> None:
        self.cm = cm
        self.version = 1
        self.writes: list[str] = []
        self.refuse: list[Exception] = []  # raised by the next writes, in order
        self.on_read: Any = None

    def api(self, name: str) -> Any:
        return SimpleNamespace(
            read_namespaced_config_map="read",
            create_namespaced_config_map="create",
            patch_namespaced_config_map="patch",
        )

    def read(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.cm is None:
            raise NotFound(what, status=404)
        seen = copy.deepcopy(self.cm)
        if self.on_read is not None:
            self.on_read()  # someone else writes right after our read
        return seen

    def write(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.writes.append(fn)
        if self.refuse:
            raise self.refuse.pop(0)
        body = args[-1]
        if fn == "create":
            self.cm = {**body, "metadata": {**body["metadata"], "resourceVersion": "1"}}
            return body
        assert self.cm is not None
        test, *ops = body
        assert test == {"op": "test", "path": "/metadata/resourceVersion", "value": test["value"]}
        if test["value"] != self.cm["metadata"]["resourceVersion"]:
            raise Invalid("test failed", status=422)
        for op in ops:
            key = op["path"].lstrip("/")
            if op["op"] == "add":
                self.cm[key] = op["value"]
            else:
                del self.cm[key]
        self.bump()
        return self.cm

    def bump(self) -> None:
        assert self.cm is not None
        self.version += 1
        self.cm["metadata"]["resourceVersion"] = str(self.version)

    def stored(self) -> dict[str, Any]:
        assert self.cm is not None
        return dict(json.loads(self.cm["data"][KEY]))


class FakeLock:
    def __init__(self, lost: bool = False) -> None:
        self.lost = lost

    def check(self) -> None:
        if self.lost:
            raise LockHeld("bob@gx10:7", None, lease="gx10slots-lock")


def _write(kube: FakeKube, lock: FakeLock | None = None) -> bool:
    app: Any = SimpleNamespace(kube=kube)
    return write_summary(app, "green", SUMMARY, lock or FakeLock())  # type: ignore[arg-type]


def test_the_first_write_creates_it_labelled_as_ours() -> None:
    kube = FakeKube()
    assert _write(kube) is True
    assert kube.cm is not None and kube.cm["metadata"]["name"] == NAME
    assert kube.cm["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "gx10slots"
    assert kube.stored()["passed"] is True


def test_a_garbled_configmap_is_replaced_whole_foreign_keys_and_binary_data_too() -> None:
    kube = FakeKube(
        {
            "metadata": {"name": NAME, "resourceVersion": "1"},
            "data": {KEY: "{garbage", "huge": "x" * 900_000},
            "binaryData": {"blob": "AAAA"},
        }
    )
    assert _write(kube) is True
    assert kube.cm is not None and set(kube.cm["data"]) == {KEY} and "binaryData" not in kube.cm
    assert kube.stored()["slot"] == "green"


def test_a_configmap_that_changed_since_it_was_read_is_read_and_written_again() -> None:
    kube = FakeKube({"metadata": {"name": NAME, "resourceVersion": "1"}, "data": {}})
    reads = []

    def someone_writes_once() -> None:
        reads.append(1)
        if len(reads) == 2:  # between the compare-and-swap's read and its write
            kube.bump()

    kube.on_read = someone_writes_once
    assert _write(kube) is True
    assert len(kube.writes) == 2 and kube.stored()["passed"] is True


def test_a_lost_lease_writes_nothing_and_warns(capsys: pytest.CaptureFixture[str]) -> None:
    kube = FakeKube()
    assert _write(kube, FakeLock(lost=True)) is False
    assert kube.writes == [] and kube.cm is None
    err = capsys.readouterr().err
    assert f"was not kept in ConfigMap {NAME}" in err and "the verdict stands" in err


@pytest.mark.parametrize(
    "refusal",
    [ApiError("forbidden", status=403), ApiError("boom", status=500)],
)
def test_a_refused_write_warns_and_never_raises(
    refusal: Exception, capsys: pytest.CaptureFixture[str]
) -> None:
    kube = FakeKube()
    kube.refuse = [refusal]
    assert _write(kube) is False
    assert f"was not kept in ConfigMap {NAME}" in capsys.readouterr().err


def test_a_create_that_lost_the_race_updates_what_the_other_created() -> None:
    kube = FakeKube()
    original_write = kube.write

    def racing_write(what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if fn == "create":
            kube.writes.append(fn)
            kube.cm = {"metadata": {"name": NAME, "resourceVersion": "5"}, "data": {KEY: "x"}}
            raise Conflict("already exists", status=409)
        return original_write(what, fn, *args, **kwargs)

    kube.write = racing_write  # type: ignore[method-assign]
    assert _write(kube) is True
    assert kube.writes == ["create", "patch"] and kube.stored()["slot"] == "green"
