"""The sandbox's etcd: a thread-safe in-memory object store with the apiserver's bookkeeping.

One monotonic resourceVersion counter for every object (a string in objects, as in Kubernetes),
``uid`` and ``creationTimestamp`` on create, ``generation`` bumped only when ``spec`` changes (for
the kinds that track it), optimistic concurrency on ``metadata.resourceVersion``, no-op writes that
change nothing (no new resourceVersion, no event, as etcd3 storage does), and a bounded history of
watch events: a watch from a resourceVersion older than the history answers 410 Expired.

The store checks concurrency and identity, not API semantics: defaulting, validation and the
status-subresource rules live in :mod:`gx10slots.sandbox.resources`. Objects handed out are deep
copies; objects inside :class:`WatchEvent` are shared and must not be mutated.
"""

from __future__ import annotations

import contextlib
import copy
import queue
import secrets
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gx10slots.kube.values import rfc3339
from gx10slots.sandbox.selectors import FieldSelector, LabelSelector

DEFAULT_HISTORY = 2000
# k8s.io/apimachinery/pkg/util/rand: no vowels, no confusable digits.
ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"

Obj = dict[str, Any]


def random_suffix(length: int = 5) -> str:
    return "".join(secrets.choice(ALPHANUMS) for _ in range(length))


@dataclass(frozen=True)
class ResourceType:
    """A REST resource as discovery describes it, plus what the store needs to know about it."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    tracks_generation: bool = False
    # Main-resource writes keep the stored status; only the status subresource changes it.
    status_subresource: bool = False
    # Another resource whose storage this one shares (events.k8s.io Events are core Events).
    storage_of: str | None = None
    field_selectors: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        """The group-qualified resource, as in messages: ``deployments.apps``, ``pods``."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def storage(self) -> str:
        return self.storage_of or self.key

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified_kind(self) -> str:
        """The group-qualified kind, as in Invalid messages: ``Deployment.apps``."""
        return f"{self.kind}.{self.group}" if self.group else self.kind


class StatusError(Exception):
    """An API error, rendered as a ``Status`` body with its HTTP code."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
        *,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        self.headers = headers or {}

    def status(self) -> Obj:
        body: Obj = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def _details(rt: ResourceType, name: str) -> dict[str, Any]:
    details: dict[str, Any] = {"name": name}
    if rt.group:
        details["group"] = rt.group
    details["kind"] = rt.plural
    return details


def not_found(rt: ResourceType, name: str) -> StatusError:
    return StatusError(404, "NotFound", f'{rt.key} "{name}" not found', _details(rt, name))


def already_exists(rt: ResourceType, name: str) -> StatusError:
    return StatusError(
        409, "AlreadyExists", f'{rt.key} "{name}" already exists', _details(rt, name)
    )


def conflict(
    rt: ResourceType,
    name: str,
    why: str = "the object has been modified; please apply your changes to the latest version "
    "and try again",
) -> StatusError:
    return StatusError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {rt.key} "{name}": {why}',
        _details(rt, name),
    )


def bad_request(message: str) -> StatusError:
    return StatusError(400, "BadRequest", message)


@dataclass(frozen=True)
class Cause:
    """One field error of a 422 Invalid, as ``field.Error`` renders it."""

    field: str
    reason: str  # FieldValueRequired, FieldValueInvalid, FieldValueNotSupported, ...
    message: str

    def text(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


def field_path(parts: Any) -> str:
    """A JSON path as field errors name it: ``spec.rules[0].backendRefs[1].weight``."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def invalid(rt: ResourceType, name: str, causes: list[Cause]) -> StatusError:
    texts = [c.text() for c in causes]
    summary = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    details = _details(rt, name)
    details["kind"] = rt.kind
    details["causes"] = [
        {"reason": c.reason, "message": c.message, "field": c.field} for c in causes
    ]
    return StatusError(
        422, "Invalid", f'{rt.qualified_kind} "{name}" is invalid: {summary}', details
    )


@dataclass(frozen=True)
class WatchEvent:
    type: str  # ADDED, MODIFIED, DELETED
    storage: str
    namespace: str
    object: Obj
    old: Obj | None
    resource_version: int


@dataclass(eq=False)
class Subscription:
    """A live feed of the store's events, optionally limited to one storage and namespace."""

    storage: str | None
    namespace: str | None
    _store: Store
    initial: list[WatchEvent] = field(default_factory=list)
    _queue: queue.SimpleQueue[WatchEvent] = field(default_factory=queue.SimpleQueue)

    def wants(self, event: WatchEvent) -> bool:
        return (self.storage is None or event.storage == self.storage) and (
            self.namespace is None or event.namespace == self.namespace
        )

    def get(self, timeout: float | None = None) -> WatchEvent | None:
        try:
            return self._queue.get(timeout=timeout)
        except queue.Empty:
            return None

    def close(self) -> None:
        self._store._unsubscribe(self)


def _namespace(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("namespace") or "")


class Store:
    def __init__(self, *, history_size: int = DEFAULT_HISTORY) -> None:
        self._lock = threading.RLock()
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._history: deque[WatchEvent] = deque()
        self._history_size = history_size
        self._compacted = 0  # events up to and including this revision are no longer kept
        self._subscribers: list[Subscription] = []

    @contextlib.contextmanager
    def atomic(self) -> Iterator[None]:
        """Hold the store's lock across several calls (a read-modify-write, a cascade)."""
        with self._lock:
            yield

    # -- reads -------------------------------------------------------------------------------

    @property
    def resource_version(self) -> str:
        with self._lock:
            return str(self._rv)

    @property
    def subscriptions(self) -> int:
        """How many watches and controllers are subscribed."""
        with self._lock:
            return len(self._subscribers)

    def find(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        with self._lock:
            obj = self._bucket(rt).get((self._ns(rt, namespace), name))
            return copy.deepcopy(obj) if obj is not None else None

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self.find(rt, namespace, name)
        if obj is None:
            raise not_found(rt, name)
        return obj

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> tuple[list[Obj], str]:
        """Matching objects sorted by namespace and name, and the list's resourceVersion."""
        with self._lock:
            items = [
                copy.deepcopy(obj)
                for (ns, _), obj in sorted(self._bucket(rt).items())
                if (not namespace or ns == namespace)
                and (labels is None or labels.matches(obj["metadata"].get("labels")))
                and (fields is None or fields.matches(obj))
            ]
            return items, str(self._rv)

    # -- writes ------------------------------------------------------------------------------

    def create(self, rt: ResourceType, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Store a new object: name from ``generateName`` if needed, uid, timestamps, RV."""
        new = copy.deepcopy(obj)
        meta = new.setdefault("metadata", {})
        with self._lock:
            bucket = self._bucket(rt)
            ns = self._ns(rt, meta.get("namespace"))
            if ns:
                meta["namespace"] = ns
            else:
                meta.pop("namespace", None)
            if not meta.get("name"):
                prefix = meta.get("generateName")
                if not prefix:
                    raise invalid(
                        rt,
                        "",
                        [
                            Cause(
                                "metadata.name",
                                "FieldValueRequired",
                                "Required value: name or generateName is required",
                            )
                        ],
                    )
                meta["name"] = prefix + random_suffix()
                while (ns, meta["name"]) in bucket:
                    meta["name"] = prefix + random_suffix()
            if (ns, meta["name"]) in bucket:
                raise already_exists(rt, meta["name"])
            for system in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion"):
                meta.pop(system, None)
            meta["uid"] = str(uuid.uuid4())
            meta["creationTimestamp"] = rfc3339()
            if rt.tracks_generation:
                meta["generation"] = 1
            else:
                meta.pop("generation", None)
            if dry_run:
                return new
            meta["resourceVersion"] = self._next_rv()
            bucket[(ns, meta["name"])] = new
            self._emit("ADDED", rt, new, None)
            return copy.deepcopy(new)

    def update(self, rt: ResourceType, obj: Obj, *, dry_run: bool = False) -> Obj:
        """Replace an object; a set ``metadata.resourceVersion`` (or uid) must match the stored."""
        new = copy.deepcopy(obj)
        meta = new.setdefault("metadata", {})
        with self._lock:
            key = (self._ns(rt, meta.get("namespace")), str(meta.get("name") or ""))
            current = self._bucket(rt).get(key)
            if current is None:
                raise not_found(rt, key[1])
            cur_meta = current["metadata"]
            rv = meta.get("resourceVersion")
            if rv and rv != cur_meta["resourceVersion"]:
                raise conflict(rt, key[1])
            uid = meta.get("uid")
            if uid and uid != cur_meta["uid"]:
                raise conflict(
                    rt,
                    key[1],
                    f"Precondition failed: UID in precondition: {uid}, "
                    f"UID in object meta: {cur_meta['uid']}",
                )
            for system in ("uid", "creationTimestamp", "deletionTimestamp", "generation"):
                if system in cur_meta:
                    meta[system] = cur_meta[system]
                else:
                    meta.pop(system, None)
            if rt.tracks_generation and new.get("spec") != current.get("spec"):
                meta["generation"] = int(cur_meta.get("generation") or 0) + 1
            meta["resourceVersion"] = cur_meta["resourceVersion"]
            if new == current or dry_run:
                return new
            meta["resourceVersion"] = self._next_rv()
            self._bucket(rt)[key] = new
            self._emit("MODIFIED", rt, new, current)
            return copy.deepcopy(new)

    def mutate(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        change: Callable[[Obj], Obj | None],
        *,
        uid: str | None = None,
    ) -> Obj | None:
        """Atomic read-modify-write: ``change`` gets a copy and returns the new object (or None
        to write nothing). Returns the stored object, or None if it is gone or its uid differs."""
        with self._lock:
            current = self.find(rt, namespace, name)
            if current is None or (uid and current["metadata"].get("uid") != uid):
                return None
            changed = change(current)
            if changed is None:
                return current
            changed.setdefault("metadata", {})["resourceVersion"] = ""
            return self.update(rt, changed)

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        dry_run: bool = False,
        uid: str | None = None,
        resource_version: str | None = None,
    ) -> Obj:
        """Remove an object at once (optionally preconditioned); return it as last stored."""
        with self._lock:
            key = (self._ns(rt, namespace), name)
            current = self._bucket(rt).get(key)
            if current is None:
                raise not_found(rt, name)
            meta = current["metadata"]
            if uid and uid != meta["uid"]:
                raise conflict(
                    rt,
                    name,
                    f"Precondition failed: UID in precondition: {uid}, "
                    f"UID in object meta: {meta['uid']}",
                )
            if resource_version and resource_version != meta["resourceVersion"]:
                raise conflict(
                    rt,
                    name,
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{resource_version}, ResourceVersion in object meta: "
                    f"{meta['resourceVersion']}",
                )
            if dry_run:
                return copy.deepcopy(current)
            del self._bucket(rt)[key]
            # The DELETED event carries the revision of the deletion, as etcd3 watches do.
            gone = {**current, "metadata": {**meta, "resourceVersion": self._next_rv()}}
            self._emit("DELETED", rt, gone, current)
            return copy.deepcopy(gone)

    def delete_namespaced(self, namespace: str, resources: Iterable[ResourceType]) -> None:
        """Delete everything in a namespace (a namespace deletion, without the finalizer wait)."""
        with self._lock:
            for rt in resources:
                if not rt.namespaced or rt.storage_of:
                    continue
                for ns, name in [k for k in self._bucket(rt) if k[0] == namespace]:
                    self.delete(rt, ns, name)

    # -- watch -------------------------------------------------------------------------------

    def watch(
        self, rt: ResourceType | None, namespace: str | None, resource_version: str | None
    ) -> Subscription:
        """Subscribe from ``resource_version``: unset or "0" starts with a synthetic ADDED for
        each current object; a revision older than the kept history raises 410 Expired."""
        with self._lock:
            sub = Subscription(rt.storage if rt else None, namespace or None, self)
            if resource_version in (None, "", "0"):
                buckets = [rt.storage] if rt else sorted(self._objects)
                for storage in buckets:
                    for (ns, _), obj in sorted(self._objects.get(storage, {}).items()):
                        event = WatchEvent(
                            "ADDED", storage, ns, obj, None, int(obj["metadata"]["resourceVersion"])
                        )
                        if sub.wants(event):
                            sub.initial.append(event)
            else:
                try:
                    since = int(str(resource_version))
                except ValueError:
                    raise bad_request(
                        f"resourceVersion: Invalid value: {resource_version!r}: "
                        "must be a non-negative integer"
                    ) from None
                if since < self._compacted:
                    raise StatusError(
                        410,
                        "Expired",
                        f"too old resource version: {since} ({self._compacted + 1})",
                    )
                sub.initial = [
                    e for e in self._history if e.resource_version > since and sub.wants(e)
                ]
            self._subscribers.append(sub)
            return sub

    def subscribe(self) -> Subscription:
        """Every future event, for controllers."""
        with self._lock:
            sub = Subscription(None, None, self)
            self._subscribers.append(sub)
            return sub

    def compact(self) -> None:
        """Forget the watch history, as an etcd compaction does: older RVs now get 410."""
        with self._lock:
            self._history.clear()
            self._compacted = self._rv

    # -- internals ---------------------------------------------------------------------------

    def _unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subscribers:
                self._subscribers.remove(sub)

    def _bucket(self, rt: ResourceType) -> dict[tuple[str, str], Obj]:
        return self._objects.setdefault(rt.storage, {})

    @staticmethod
    def _ns(rt: ResourceType, namespace: str | None) -> str:
        return (namespace or "") if rt.namespaced else ""

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    def _emit(self, kind: str, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        event = WatchEvent(kind, rt.storage, _namespace(obj), obj, old, self._rv)
        self._history.append(event)
        while len(self._history) > self._history_size:
            self._compacted = self._history.popleft().resource_version
        for sub in self._subscribers:
            if sub.wants(event):
                sub._queue.put(event)
