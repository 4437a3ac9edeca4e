"""The history ConfigMap stays well under a ConfigMap's 1 MiB data limit whatever its entries
hold: each entry's fields are bounded and the oldest entries go first, newest first always."""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

from gx10slots.errors import NotFound
from gx10slots.ops import audit
from gx10slots.ops.audit import HISTORY_MAX_BYTES, HistoryEntry, append_history

ONE_MIB = 1024 * 1024


class FakeKube:
    """The one ConfigMap, read and written as the API server would."""

    namespace = "gx10"

    def __init__(self, entries: list[dict[str, Any]] | None = None) -> None:
        self.cm: dict[str, Any] | None = None
        if entries is not None:
            self.cm = {
                "metadata": {"name": audit.HISTORY_CONFIGMAP, "resourceVersion": "1"},
                "data": {audit.HISTORY_KEY: json.dumps(entries)},
            }

    def api(self, name: str) -> Any:
        return SimpleNamespace(
            read_namespaced_config_map="read",
            create_namespaced_config_map="create",
            replace_namespaced_config_map="replace",
        )

    def read(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if self.cm is None:
            raise NotFound(what, status=404)
        return json.loads(json.dumps(self.cm))

    def write(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        body = args[-1]
        size = sum(len(k) + len(v.encode()) for k, v in body["data"].items())
        assert size <= ONE_MIB, f"the API server would refuse {size} bytes of data (422)"
        self.cm = body
        return body

    def stored(self) -> str:
        assert self.cm is not None
        return str(self.cm["data"][audit.HISTORY_KEY])


def _entry(n: int, detail: str = "", reason: str = "r") -> HistoryEntry:
    return HistoryEntry(
        at=f"2026-11-29T11:{n // 60:02d}:{n % 60:02d}Z",
        action="deploy",
        to="green",
        model=f"org/m-{n}",
        by="test",
        reason=reason,
        result="failed",
        id=f"e{n:05d}",
        detail=detail,
    )


def _append(kube: FakeKube, entry: HistoryEntry) -> None:
    append_history(SimpleNamespace(kube=kube), entry)  # type: ignore[arg-type]


def test_huge_details_never_grow_the_configmap_past_its_budget() -> None:
    """A failed deploy quotes a pod log or an engine's answer in its detail: 40 of them at
    100 KB each would be 4 MB, and the API server refuses any ConfigMap over 1 MiB."""
    kube = FakeKube()
    for n in range(40):
        _append(kube, _entry(n, detail="x" * 100_000, reason="y" * 50_000))
    stored = kube.stored()
    assert len(stored.encode()) <= HISTORY_MAX_BYTES < ONE_MIB
    entries = json.loads(stored)
    assert entries[0]["id"] == "e00039"  # newest first
    assert [e["id"] for e in entries] == [f"e{n:05d}" for n in range(39, 39 - len(entries), -1)]
    assert len(entries) >= 40  # bounded fields: every entry still fits
    assert len(entries[0]["detail"]) <= audit.DETAIL_MAX_CHARS
    assert len(entries[0]["reason"]) <= audit.FIELD_MAX_CHARS


def test_an_overfull_history_drops_its_oldest_entries_first() -> None:
    """200 entries written by an older version, each near 6 KB: over 1 MiB together. The next
    append keeps the newest that fit the budget, in order, and drops the oldest."""
    old = [
        {**_entry(n).to_dict(), "detail": f"{n}:" + "z" * 6000}
        for n in range(199, -1, -1)  # newest (199) first
    ]
    kube = FakeKube(old)
    assert len(kube.stored()) > ONE_MIB
    _append(kube, _entry(500, detail="the newest"))
    stored = kube.stored()
    assert len(stored.encode()) <= HISTORY_MAX_BYTES
    entries = json.loads(stored)
    assert entries[0]["id"] == "e00500"
    ids = [e["id"] for e in entries[1:]]
    assert ids == [f"e{n:05d}" for n in range(199, 199 - len(ids), -1)]
    assert 30 < len(ids) < 199  # the oldest went, a good many stayed


def test_a_hostile_entry_cannot_crowd_out_the_rest() -> None:
    """An entry someone wrote by hand with a 600 KB nested field and a thousand keys."""
    hostile: dict[str, Any] = {f"k{i}": "v" for i in range(1000)}
    hostile.update(id="hostile", nested={"blob": ["q" * 600_000]})
    kube = FakeKube([hostile, *(_entry(n).to_dict() for n in range(20, 0, -1))])
    _append(kube, _entry(100))
    entries = json.loads(kube.stored())
    assert len(kube.stored()) <= HISTORY_MAX_BYTES
    assert entries[0]["id"] == "e00100"
    assert entries[2]["id"] == "e00020"
    assert len(entries) == 22  # nothing was dropped: the hostile entry was cut to size
    assert all(len(json.dumps(e)) < 20_000 for e in entries)
