"""Kubernetes value helpers, one home each: times (``metav1.Time``, ``MicroTime``) and JSON
Pointers (RFC 6901) into objects. Pure functions; everything read is hostile (bounded, clamped).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any


def now_utc() -> datetime:
    return datetime.now(UTC)


def rfc3339(moment: datetime | None = None) -> str:
    """A ``metav1.Time``: RFC 3339 in UTC with second precision (now when no moment is given)."""
    return (moment or now_utc()).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_rfc3339(text: object) -> datetime | None:
    """A time read from the cluster (annotations, history entries), in UTC; None when it is not
    a time at all. Anyone with write access may have put anything there: a number, a date
    without a zone, or a valid time at the edge of the calendar (``0001-01-01T00:00:00+01:00`` is
    before the first representable UTC instant) which is clamped, so that "long ago" and "dated in
    the future" keep their meaning instead of overflowing."""
    if not isinstance(text, str) or not text or len(text) > 64:
        return None
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # as the API server writes times: UTC
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        edge = datetime.min if moment.year == 1 else datetime.max
        return edge.replace(tzinfo=UTC)


def micro_time(moment: datetime | None = None) -> str:
    """A ``MicroTime`` as the API server writes it: always six fractional digits, in UTC.

    A real API server parses ``RFC3339Micro`` ("2006-01-02T15:04:05.000000Z07:00") strictly;
    ``%f`` always gives six digits (apimachinery pkg/apis/meta/v1/micro_time.go)."""
    return (moment or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_micro(text: Any) -> datetime | None:
    """A lease's ``MicroTime``, clamped to years 1000..9000 so that adding a lease duration to a
    record from the edge of the calendar (hostile, or a broken clock) can never overflow."""
    moment = parse_rfc3339(text)
    return None if moment is None else min(max(moment, _EARLIEST), _LATEST)


_EARLIEST = datetime(1000, 1, 1, tzinfo=UTC)
_LATEST = datetime(9000, 1, 1, tzinfo=UTC)


def pointer(*parts: str) -> str:
    """A JSON Pointer (RFC 6901) to ``parts``: ``~`` and ``/`` inside a part are escaped, so an
    annotation key like ``gx10slots.io/active`` stays one step of the path."""
    return "/" + "/".join(p.replace("~", "~0").replace("/", "~1") for p in parts)


def annotation_pointer(key: str) -> str:
    return pointer("metadata", "annotations", key)
