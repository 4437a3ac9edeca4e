"""A webhook receiver on 127.0.0.1 for notification tests: a real HTTP server on its own threads
that records every POST and answers as told (``ok``: 200, ``fail``: 500, ``hang``: never
answers until closed, ``redirect``: 302, ``not-found``: 404)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal

Behaviour = Literal["ok", "fail", "hang", "redirect", "not-found"]
# A hanging handler gives up after this long even if the test forgets to close the receiver.
HANG_LIMIT_S = 30.0


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class Receiver:
    behaviour: Behaviour = "ok"
    received: list[Received] = field(default_factory=list)
    _release: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                try:
                    body: Any = json.loads(raw)
                except ValueError:
                    body = raw
                with receiver._lock:
                    receiver.received.append(Received(self.path, dict(self.headers), body))
                if receiver.behaviour == "hang":
                    receiver._release.wait(HANG_LIMIT_S)
                    return
                status = {"ok": 200, "fail": 500, "redirect": 302, "not-found": 404}[
                    receiver.behaviour
                ]
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "http://127.0.0.1:9/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: the tests read what was received

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}/hooks/T0SECRET/B0SECRET/xoxb-secret-token-{id(self)}"

    def events(self) -> list[str]:
        with self._lock:
            return [str(r.body.get("event")) for r in self.received if isinstance(r.body, dict)]

    def bodies(self, event: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [
                r.body
                for r in self.received
                if isinstance(r.body, dict) and (event is None or r.body.get("event") == event)
            ]

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        """Until ``count`` requests have arrived (a poll with a deadline, for wait=False)."""
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.received)} of {count} requests arrived")
            time.sleep(0.02)

    def close(self) -> None:
        self._release.set()
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def receiver(behaviour: Behaviour = "ok") -> Iterator[Receiver]:
    r = Receiver(behaviour)
    try:
        yield r
    finally:
        r.close()


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (the port was bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook-secret-path"
