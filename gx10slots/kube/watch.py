"""Watching objects: a thread per watch feeding one queue, so a caller can wait on several.

Each watch lists first (the state now, and the resourceVersion to watch from), then streams
changes; an expired version (410) or a dropped stream lists again, so no change is missed for
long. Errors reach the caller through the queue as ``("ERROR", SlotsError)`` after the retries
are used up.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gx10slots.errors import ApiError, ApiUnreachable, SlotsError
from gx10slots.kube.client import Kube, translate_api_exception

log = logging.getLogger("gx10slots.watch")

WATCH_SECONDS = 60
MAX_CONSECUTIVE_ERRORS = 5
# One watch event is one JSON line: an object of a few KB. A line longer than this, or a
# connection that sends more than WATCH_BYTES_CAP in one watch (at most WATCH_SECONDS long), is a
# hostile or broken server, refused before it can exhaust memory.
WATCH_LINE_CAP = 8 * 1024 * 1024
WATCH_BYTES_CAP = 64 * 1024 * 1024


class _BoundedStream:
    """A watch response whose body is counted as the client's line reader consumes it
    (kubernetes.watch.watch.iter_resp_lines buffers until a newline, without a limit)."""

    def __init__(self, response: Any, what: str) -> None:
        self._response = response
        self._what = what

    def __getattr__(self, name: str) -> Any:
        return getattr(self._response, name)

    def stream(self, amt: int | None = None, decode_content: bool | None = None) -> Any:
        total = 0
        since_newline = 0
        # The client asks for amt=None, which on a body without chunked encoding reads until the
        # connection closes, in one piece: read in bounded pieces instead.
        for segment in self._response.stream(amt or 65536, decode_content=decode_content):
            data = segment if isinstance(segment, bytes) else str(segment).encode()
            total += len(data)
            cut = data.rfind(b"\n")
            since_newline = len(data) - cut - 1 if cut >= 0 else since_newline + len(data)
            if since_newline > WATCH_LINE_CAP or total > WATCH_BYTES_CAP:
                self._response.close()
                limit = WATCH_LINE_CAP if since_newline > WATCH_LINE_CAP else WATCH_BYTES_CAP
                what = "one event" if since_newline > WATCH_LINE_CAP else "one watch"
                raise ApiError(
                    f"{self._what}: the API server sent more than {limit // (1024 * 1024)} MiB "
                    f"in {what}; stopped reading",
                    status=int(getattr(self._response, "status", 0) or 0),
                )
            yield segment


def _bounded(list_fn: Callable[..., Any], what: str) -> Callable[..., Any]:
    # kubernetes.watch.Watch inspects the function (signature, docstring) for its return type
    # and watch argument: functools.wraps keeps both visible through the wrapper.
    @functools.wraps(list_fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        response = list_fn(*args, **kwargs)
        return _BoundedStream(response, what) if kwargs.get("watch") else response

    return call


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
        self._watches: list[Any] = []

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
        from kubernetes import watch
        from kubernetes.client.exceptions import ApiException

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
                w = watch.Watch()
                self._watches.append(w)
                for event in w.stream(
                    _bounded(list_fn, f"watch {source}"),
                    self.kube.namespace,
                    resource_version=version,
                    timeout_seconds=WATCH_SECONDS,
                    _request_timeout=(5, WATCH_SECONDS + 10),
                    **selectors,
                ):
                    if self._stop.is_set():
                        w.stop()
                        return
                    errors = 0
                    self.events.put(
                        WatchEvent(source, str(event["type"]), dict(event["raw_object"]))
                    )
            except ApiException as exc:
                if exc.status == 410:
                    continue  # our version was compacted: list again
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
        for w in self._watches:
            w.stop()
            response = getattr(w, "_resp", None)  # the open urllib3 response of the stream
            if response is not None:
                with contextlib.suppress(Exception):
                    response.close()
        for thread in self._threads:
            thread.join(timeout=2)
