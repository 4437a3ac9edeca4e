"""The API server's service proxy: ``/api/v1/namespaces/NS/services/NAME[:PORT]/proxy/PATH``.

As with a real API server, a client that can reach only the API server (a laptop with a
kubeconfig) reaches a Service's pods through it, authenticated by the API server. The response
is relayed as it arrives, so SSE streams stay streams.
"""

from __future__ import annotations

import http.client
import re
from collections.abc import Callable
from typing import Any, Protocol
from urllib.parse import urlsplit

PROXY_PATH = re.compile(
    r"^/api/v1/namespaces/(?P<ns>[^/]+)/services/(?:https?:)?(?P<name>[^/:]+)(?::(?P<port>[^/]+))?"
    r"/proxy(?P<rest>/.*)?$"
)
# Headers that belong to one hop, and the caller's API credentials, which are for us only.
_DROPPED = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "authorization",
    "host",
    "content-length",
}
CHUNK = 64 * 1024

ServiceResolver = Callable[[str, str], str | None]


class Handler(Protocol):
    command: str
    headers: Any
    wfile: Any
    close_connection: bool

    def send_response(self, code: int, message: str | None = None) -> None: ...
    def send_header(self, keyword: str, value: str) -> None: ...
    def end_headers(self) -> None: ...


def match(path: str) -> tuple[str, str, str] | None:
    """(namespace, service, path on the service) when ``path`` is a service-proxy path."""
    found = PROXY_PATH.match(path)
    if not found:
        return None
    return found["ns"], found["name"], found["rest"] or "/"


def relay(handler: Handler, upstream: str, path: str, query: str, body: bytes) -> None:
    """Forward one request to ``upstream`` and stream the answer back, chunked."""
    target = urlsplit(upstream)
    connection = http.client.HTTPConnection(
        target.hostname or "127.0.0.1", target.port, timeout=None
    )
    headers = {k: v for k, v in handler.headers.items() if k.lower() not in _DROPPED}
    headers["Content-Length"] = str(len(body))
    try:
        connection.request(handler.command, path + (f"?{query}" if query else ""), body, headers)
        response = connection.getresponse()
        handler.send_response(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _DROPPED:
                handler.send_header(name, value)
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        while True:
            chunk = response.read1(CHUNK)
            if not chunk:
                break
            handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            handler.wfile.flush()
        handler.wfile.write(b"0\r\n\r\n")
        handler.wfile.flush()
    finally:
        connection.close()
