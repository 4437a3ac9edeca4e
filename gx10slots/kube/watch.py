"""Watching objects: a thread per watch feeding one queue, so a caller can wait on several.

Each watch lists first (the state now, and the resourceVersion to watch from), then streams
changes; an expired version (410) or a dropped stream lists again, so no change is missed for
long. Errors reach the caller through the queue as ``("ERROR", SlotsError)`` after the retries
are used up.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gx10slots.errors import ApiUnreachable, SlotsError
from gx10slots.kube.client import Kube, translate_api_exception

log = logging.getLogger("gx10slots.watch")

WATCH_SECONDS = 60
MAX_CONSECUTIVE_ERRORS = 5


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
                    list_fn,
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
