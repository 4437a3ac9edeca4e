"""Fault injection for the sandbox API server: make the next N matching requests misbehave.

A rule matches on verb (``get``, ``list``, ``watch``, ``create``, ``update``, ``patch``,
``delete``, ``deletecollection`` or ``*``), resource (plural, ``deployments/status`` for a
subresource, or ``*``) and optionally namespace and name. Actions:

    conflict   409 Conflict, as if the resourceVersion had moved
    throttle   429 TooManyRequests with ``Retry-After: <seconds>`` (default 1)
    error      500 InternalError
    hang       hold the request without answering for ``seconds`` (default 60), then close
    drop       close the connection without any response

``when="before"`` (default) answers instead of doing the request; ``when="after"`` performs the
request (a write is applied) and then answers with the fault: the write that timed out but
happened.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, fields
from typing import Any

ACTIONS = ("conflict", "throttle", "error", "hang", "drop")
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "*")
WHEN = ("before", "after")
DEFAULT_HANG_SECONDS = 60.0
DEFAULT_RETRY_AFTER_SECONDS = 1.0


@dataclass(frozen=True)
class RequestInfo:
    """What a fault rule matches on: the apiserver's view of a request."""

    verb: str
    resource: str  # "deployments", "deployments/status"
    namespace: str | None = None
    name: str | None = None


@dataclass
class FaultRule:
    action: str
    verb: str = "*"
    resource: str = "*"
    namespace: str | None = None
    name: str | None = None
    count: int = 1
    when: str = "before"
    seconds: float | None = None
    message: str | None = None

    def __post_init__(self) -> None:
        if self.action not in ACTIONS:
            raise ValueError(f"action must be one of {', '.join(ACTIONS)}, not {self.action!r}")
        if self.verb not in VERBS:
            raise ValueError(f"verb must be one of {', '.join(VERBS)}, not {self.verb!r}")
        if self.when not in WHEN:
            raise ValueError(f"when must be 'before' or 'after', not {self.when!r}")
        if not isinstance(self.count, int) or isinstance(self.count, bool) or self.count < 1:
            raise ValueError(f"count must be a positive integer, not {self.count!r}")
        if self.seconds is not None and (
            not isinstance(self.seconds, int | float) or self.seconds < 0
        ):
            raise ValueError(f"seconds must be a non-negative number, not {self.seconds!r}")

    @property
    def duration(self) -> float:
        """Hang time or Retry-After, with the action's default."""
        if self.seconds is not None:
            return float(self.seconds)
        return DEFAULT_HANG_SECONDS if self.action == "hang" else DEFAULT_RETRY_AFTER_SECONDS

    def matches(self, request: RequestInfo) -> bool:
        return (
            self.verb in ("*", request.verb)
            and self.resource in ("*", request.resource)
            and self.namespace in (None, request.namespace)
            and self.name in (None, request.name)
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> FaultRule:
        if not isinstance(data, dict):
            raise ValueError("a fault rule is a JSON object")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown fault rule fields: {', '.join(unknown)}")
        if "action" not in data:
            raise ValueError("a fault rule needs an action")
        return cls(**data)


class Faults:
    """The server's pending fault rules; the first matching rule fires and is used up."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []
        self._fired = 0

    def add(self, rule: FaultRule) -> None:
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        with self._lock:
            self._rules.clear()
            self._fired = 0

    @property
    def fired(self) -> int:
        with self._lock:
            return self._fired

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return [FaultRule(**r.to_dict()) for r in self._rules]

    def take(self, request: RequestInfo) -> FaultRule | None:
        """The rule this request triggers (counted as fired), or None."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(request):
                    rule.count -= 1
                    if rule.count == 0:
                        self._rules.remove(rule)
                    self._fired += 1
                    return FaultRule(**{**rule.to_dict(), "count": 1})
            return None

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {"rules": [r.to_dict() for r in self._rules], "fired": self._fired}
