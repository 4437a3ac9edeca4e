"""The audit trail: the bounded history ConfigMap and Kubernetes Events.

History is one JSON list under the key ``entries`` of the ConfigMap ``gx10slots-history``, newest
first, the last 200 kept and never more than ``HISTORY_MAX_BYTES`` of JSON (the oldest go first;
each entry's fields are bounded, so one entry can never crowd out the rest). Each append is a
compare-and-swap replace (a conflict re-reads and re-applies, so concurrent writers never lose
or double an entry: entries carry an ``id`` and an append whose id is already present is a
no-op). Events expire after about an hour, which is why the flag object's annotations and this
ConfigMap carry the durable record.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gx10slots import scrub
from gx10slots.app import App
from gx10slots.errors import ApiError, ApiUnreachable, ClusterError, Conflict, NotFound, SlotsError
from gx10slots.kube.values import micro_time

log = logging.getLogger("gx10slots.audit")

HISTORY_CONFIGMAP = "gx10slots-history"
HISTORY_KEY = "entries"
HISTORY_LIMIT = 200
# A ConfigMap's data may total at most 1 MiB (kubernetes pkg/apis/core/validation/validation.go,
# ValidateConfigMap: `if totalSize > core.MaxSecretSize` with MaxSecretSize = 1 * 1024 * 1024 in
# pkg/apis/core/types.go), and etcd's request limit (1.5 MiB) holds the whole object. A quarter of
# that leaves room for the object's metadata and for whatever else someone keeps beside us.
HISTORY_MAX_BYTES = 256 * 1024
# Per entry: the free-text fields quote engines, pod logs and servers, so they are cut.
DETAIL_MAX_CHARS = 2000
FIELD_MAX_CHARS = 256
ENTRY_MAX_FIELDS = 32
APPEND_ATTEMPTS = 5
REPORTING_CONTROLLER = "gx10slots.io/slots"


@dataclass(frozen=True)
class HistoryEntry:
    at: str
    action: str  # deploy, flip, flip-back, park, auto-revert, lock-takeover
    to: str | None
    model: str | None
    by: str
    reason: str
    result: str  # ok or failed
    id: str = ""
    detail: str = ""
    from_model: str | None = None
    from_: str | None = None
    revision: str | None = None
    # A deploy into / park of production's protected fallback with --replace-fallback.
    replaced_fallback: bool = False

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["from"] = doc.pop("from_")
        if not doc["replaced_fallback"]:
            del doc["replaced_fallback"]  # only entries that did it carry the field
        return doc


def new_entry_id() -> str:
    return secrets.token_hex(6)


def _parse_entries(cm: Mapping[str, Any]) -> list[dict[str, Any]]:
    raw = (cm.get("data") or {}).get(HISTORY_KEY)
    if not raw:
        return []
    try:
        entries = json.loads(raw)
    except ValueError:
        log.warning(
            "history ConfigMap %s holds invalid JSON; starting it afresh", HISTORY_CONFIGMAP
        )
        return []
    return [e for e in entries if isinstance(e, dict)] if isinstance(entries, list) else []


def _bound_value(value: Any, limit: int) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if not isinstance(value, str):
        # Nothing we write nests; an entry from elsewhere that does is kept as bounded text.
        value = json.dumps(value, separators=(",", ":"), default=str)
    return _bounded(value, limit)


def bound_entry(entry: Mapping[str, Any]) -> dict[str, Any]:
    """An entry whose every field is bounded: at most ``ENTRY_MAX_FIELDS`` fields, short keys,
    ``detail`` at most ``DETAIL_MAX_CHARS``, any other text at most ``FIELD_MAX_CHARS``."""
    bounded: dict[str, Any] = {}
    for key, value in list(entry.items())[:ENTRY_MAX_FIELDS]:
        name = _bounded(str(key), 64)
        bounded[name] = _bound_value(
            value, DETAIL_MAX_CHARS if name == "detail" else FIELD_MAX_CHARS
        )
    return bounded


def _fit(entries: list[dict[str, Any]]) -> str:
    """The history as stored: newest first, at most ``HISTORY_LIMIT`` entries and
    ``HISTORY_MAX_BYTES`` of JSON; the oldest are dropped first."""
    kept: list[str] = []
    size = 2  # the brackets
    for entry in entries[:HISTORY_LIMIT]:
        # ensure_ascii (the default): one character is one byte, the size is exact.
        text = json.dumps(bound_entry(entry), separators=(",", ":"), default=str)
        added = len(text) + (1 if kept else 0)
        if size + added > HISTORY_MAX_BYTES:
            break
        kept.append(text)
        size += added
    return "[" + ",".join(kept) + "]"


def read_history(app: App) -> list[dict[str, Any]]:
    kube = app.kube
    try:
        cm = kube.read(
            f"read ConfigMap {kube.namespace}/{HISTORY_CONFIGMAP}",
            kube.api("core").read_namespaced_config_map,
            HISTORY_CONFIGMAP,
            kube.namespace,
        )
    except NotFound:
        return []
    return _parse_entries(cm)


def _transient(exc: SlotsError) -> bool:
    """A failed write worth another read-and-try: throttled, a server error, or no answer."""
    if isinstance(exc, ApiError):
        return exc.status == 429 or exc.status >= 500
    return isinstance(exc, ApiUnreachable)


def append_history(app: App, entry: HistoryEntry) -> None:
    """Append with compare-and-swap; raises only when the cluster keeps refusing.

    Every attempt re-reads the ConfigMap and appends only if the entry's id is not there yet, so
    a write that failed (409), was throttled (429), hit a server error or lost its answer may be
    tried again: it can never double the entry."""
    kube = app.kube
    core = kube.api("core")
    # A detail may quote an engine, a pod log or a server: no credential is ever stored.
    doc = scrub.redact_doc(entry.to_dict())
    for attempt in range(1, APPEND_ATTEMPTS + 1):
        try:
            cm: dict[str, Any] | None = kube.read(
                f"read ConfigMap {kube.namespace}/{HISTORY_CONFIGMAP}",
                core.read_namespaced_config_map,
                HISTORY_CONFIGMAP,
                kube.namespace,
            )
        except NotFound:
            cm = None
        entries = _parse_entries(cm or {})
        if entry.id and any(e.get("id") == entry.id for e in entries):
            return
        data = {HISTORY_KEY: _fit([doc, *entries])}
        try:
            if cm is None:
                kube.write(
                    f"create ConfigMap {kube.namespace}/{HISTORY_CONFIGMAP}",
                    core.create_namespaced_config_map,
                    kube.namespace,
                    {
                        "apiVersion": "v1",
                        "kind": "ConfigMap",
                        "metadata": {
                            "name": HISTORY_CONFIGMAP,
                            "labels": {"app.kubernetes.io/managed-by": "gx10slots"},
                        },
                        "data": data,
                    },
                    field_manager="gx10slots",
                )
            else:
                cm["data"] = data
                cm["metadata"].pop("managedFields", None)
                kube.write(
                    f"update ConfigMap {kube.namespace}/{HISTORY_CONFIGMAP}",
                    core.replace_namespaced_config_map,
                    HISTORY_CONFIGMAP,
                    kube.namespace,
                    cm,
                    field_manager="gx10slots",
                )
            return
        except Conflict:
            continue
        except (ApiError, ApiUnreachable) as exc:
            if not _transient(exc) or attempt == APPEND_ATTEMPTS:
                raise
            log.warning(
                "recording the history entry failed (%s), attempt %d/%d, retrying",
                exc.message,
                attempt,
                APPEND_ATTEMPTS,
            )
            wait = getattr(exc, "retry_after", None)
            time.sleep(float(wait) if wait is not None else min(2.0, 0.2 * 2**attempt))
    raise ClusterError(
        f"could not record the history entry: ConfigMap {HISTORY_CONFIGMAP} kept changing"
    )


def _bounded(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def emit_event(
    app: App,
    *,
    regarding: Mapping[str, Any],
    reason: str,
    action: str,
    note: str,
    warning: bool = False,
    instance: str,
) -> None:
    """Best effort: an Event that cannot be written is logged, never fails the operation."""
    kube = app.kube
    metadata = regarding.get("metadata", {})
    body = {
        "apiVersion": "events.k8s.io/v1",
        "kind": "Event",
        "metadata": {"generateName": "gx10slots-", "namespace": kube.namespace},
        "eventTime": micro_time(),
        "reportingController": REPORTING_CONTROLLER,
        "reportingInstance": _bounded(instance, 128),
        "action": _bounded(scrub.redact(action), 128),
        "reason": _bounded(scrub.redact(reason), 128),
        "type": "Warning" if warning else "Normal",
        "note": _bounded(scrub.redact(note), 1000),
        "regarding": {
            "apiVersion": regarding.get("apiVersion", "v1"),
            "kind": regarding.get("kind", ""),
            "name": metadata.get("name"),
            "namespace": metadata.get("namespace", kube.namespace),
            "uid": metadata.get("uid"),
            "resourceVersion": metadata.get("resourceVersion"),
        },
    }
    try:
        kube.write(
            f"create Event in {kube.namespace}",
            kube.api("events").create_namespaced_event,
            kube.namespace,
            body,
        )
    except SlotsError as exc:
        log.warning("could not write the Event (%s); the history entry has the record", exc.message)
