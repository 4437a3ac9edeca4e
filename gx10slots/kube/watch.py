"""Watching objects: a thread per watch feeding one queue, so a caller can wait on several.

Each watch lists first (the state now, and the resourceVersion to watch from), then streams
changes; an expired version (410) or a dropped stream lists again, so no change is missed for
long. Errors reach the caller through the queue as ``("ERROR", SlotsError)`` after the retries
are used up.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gx10slots.errors import ApiError, ApiUnreachable, SlotsError, excerpt
from gx10slots.kube.client import Kube, translate_api_exception
from gx10slots.kube.rest import HttpStatus

log = logging.getLogger("gx10slots.watch")

WATCH_SECONDS = 60
MAX_CONSECUTIVE_ERRORS = 5
# One watch event is one JSON line: an object of a few KB. A line longer than this, or a
# connection that sends more than WATCH_BYTES_CAP in one watch (at most WATCH_SECONDS long), is a
# hostile or broken server, refused before it can exhaust memory.
WATCH_LINE_CAP = 8 * 1024 * 1024
WATCH_BYTES_CAP = 64 * 1024 * 1024


def _event_lines(response: Any, what: str) -> Iterator[bytes]:
    """The lines of a watch answer (one JSON event each), counted as they arrive: a line longer
    than WATCH_LINE_CAP, or more than WATCH_BYTES_CAP in one watch, is refused."""
    total = 0
    pending = bytearray()
    for chunk in response.stream(65536):
        total += len(chunk)
        pending += chunk
        lines: list[bytes] = []
        if b"\n" in chunk:
            *lines, rest = bytes(pending).split(b"\n")
            pending = bytearray(rest)
        if len(pending) > WATCH_LINE_CAP or total > WATCH_BYTES_CAP:
            response.close()
            over_line = len(pending) > WATCH_LINE_CAP
            limit = WATCH_LINE_CAP if over_line else WATCH_BYTES_CAP
            raise ApiError(
                f"{what}: the API server sent more than {limit // (1024 * 1024)} MiB "
                f"in {'one event' if over_line else 'one watch'}; stopped reading",
                status=int(getattr(response, "status", 0) or 0),
            )
        yield from (line for line in lines if line.strip())
    if pending.strip():
        yield bytes(pending)


class _BadEvent(Exception):
    """An ERROR event (a Status other than 410) or a line that is not an event: the stream is
    dropped and listed again, as for a dropped connection."""


class _Expired(Exception):
    """The watch's resourceVersion was compacted away (410 Gone): list again."""


def _event(line: bytes, source: str) -> WatchEvent:
    """One watch event line: ``{"type": ..., "object": {...}}``; an ERROR carries a Status."""
    try:
        doc = json.loads(line)
    except ValueError:
        text = excerpt(line.decode("utf-8", "replace"))
        raise _BadEvent(f"an event that is not JSON: {text}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("object"), dict):
        raise _BadEvent("an event that is not an object")
    kind, obj = str(doc.get("type") or ""), doc["object"]
    if kind == "ERROR":
        if obj.get("code") == 410:
            raise _Expired
        raise _BadEvent(f"{obj.get('code')} {excerpt(str(obj.get('message') or ''))}")
    return WatchEvent(source, kind, obj)


@dataclass
class WatchEvent:
    source: str  # which watch: e.g. "deployment" or "pods"
    type: str  # ADDED, MODIFIED, DELETED, LISTED, ERROR
    obj: dict[str, Any] = field(default_factory=dict)
    error: SlotsError | None = None


class Watcher:
    """Runs watches on background threads until ``stop()``; events arrive on ``events``."""

    def __init__(self, kube: Kube) -> None:
        self.kube = kube
        self.events: queue.Queue[WatchEvent] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._responses: list[Any] = []  # the open watch answers, closed by stop()
        # Set once a watch stream is open: changes from then on arrive as they happen.
        self.watching = threading.Event()

    def add(
        self,
        source: str,
        list_fn: Callable[..., Any],
        *,
        field_selector: str | None = None,
        label_selector: str | None = None,
    ) -> None:
        thread = threading.Thread(
            target=self._run,
            args=(source, list_fn, field_selector, label_selector),
            name=f"watch-{source}",
            daemon=True,
        )
        self._threads.append(thread)
        thread.start()

    def _run(
        self,
        source: str,
        list_fn: Callable[..., Any],
        field_selector: str | None,
        label_selector: str | None,
    ) -> None:
        selectors: dict[str, Any] = {}
        if field_selector:
            selectors["field_selector"] = field_selector
        if label_selector:
            selectors["label_selector"] = label_selector
        errors = 0
        while not self._stop.is_set():
            try:
                listed = self.kube.read(f"list {source}", list_fn, self.kube.namespace, **selectors)
                for item in listed.get("items") or []:
                    self.events.put(WatchEvent(source, "LISTED", item))
                version = listed.get("metadata", {}).get("resourceVersion")
                response = list_fn(
                    self.kube.namespace,
                    watch=True,
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                    _request_timeout=(5, WATCH_SECONDS + 10),
                    **selectors,
                )
                self._responses.append(response)
                self.watching.set()
                for line in _event_lines(response, f"watch {source}"):
                    if self._stop.is_set():
                        return
                    event = _event(line, source)
                    errors = 0
                    self.events.put(event)
            except _Expired:
                continue  # our version was compacted: list again
            except HttpStatus as exc:
                if exc.status == 410:
                    continue
                errors += 1
                if errors >= MAX_CONSECUTIVE_ERRORS or self._stop.is_set():
                    self._fail(source, translate_api_exception(exc, f"watch {source}"))
                    return
            except SlotsError as exc:
                self._fail(source, exc)
                return
            except Exception as exc:  # noqa: BLE001 - urllib3/socket errors of a dropped stream
                if self._stop.is_set():
                    return
                errors += 1
                log.debug("watch %s dropped (%s), attempt %d", source, exc, errors)
                if errors >= MAX_CONSECUTIVE_ERRORS:
                    self._fail(source, ApiUnreachable(f"watch {source} keeps failing: {exc}"))
                    return
            if errors:
                self._stop.wait(min(2.0, 0.2 * 2**errors))

    def _fail(self, source: str, error: SlotsError) -> None:
        self.events.put(WatchEvent(source, "ERROR", error=error))

    def stop(self) -> None:
        """Stop and close the streams now (not at their next event), then let the threads go."""
        self._stop.set()
        for response in self._responses:
            # Closing a response does not wake a thread blocked reading it; shutting its socket
            # down does (the plain socket's shutdown: the TLS layer's own would unwind its state
            # under the reading thread).
            sock = getattr(getattr(response, "connection", None), "sock", None)
            if sock is not None:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)
            with contextlib.suppress(Exception):
                response.close()
        for thread in self._threads:
            thread.join(timeout=2)
