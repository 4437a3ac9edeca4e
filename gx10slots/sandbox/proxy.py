"""The sandbox's kube-proxy: one loopback reverse proxy per Kubernetes Service.

    proxy = ServiceProxy("gx10-model", lambda: endpoints_of("gx10-model"))
    url = proxy.start()  # http://127.0.0.1:PORT
    ...
    proxy.stop()

``backends()`` returns the base URLs of the Ready pods the Service selects *now*; it is called once
per request, so a selector change reaches the next request at once, while an exchange already in
flight (an SSE stream, a wedged completion) stays on the backend it started on until it ends, as
conntrack keeps established flows to a de-selected pod in iptables mode. Unlike kube-proxy, which
pins a whole TCP connection, the choice is per request: a client's keep-alive connection follows a
selector change at its next request.

``backends()`` may instead raise :class:`~gx10slots.sandbox.routing.NoRoute` for a status the
router answers itself (a Gateway's 500 for a route with no valid backend).

Round-robin among the backends; one retry on the next backend when a connect is refused (nothing
reached a backend, so it is safe for any method). No backend: 503 (a real cluster refuses the
connection; the JSON says why). A backend that fails before its first response byte: 502. Every
proxied response carries ``x-gx10-backend: <backend base URL>``.

Threads: one per client connection (``ThreadingHTTPServer``), blocking I/O, one fresh upstream
connection per request (``Connection: close``: no pool to drain on a selector change or stop).
Responses stream chunk by chunk as they arrive; while it waits for the backend, a handler also
watches its client, so a client that hangs up closes the upstream connection even when the backend
is silent. ``stop()`` shuts down every client and upstream socket, which ends wedged exchanges.
Stdlib only (and the router's pure :mod:`gx10slots.sandbox.routing`).
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import json
import selectors
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, cast
from urllib.parse import urlsplit

from gx10slots.sandbox.routing import NoRoute

BACKEND_HEADER = "x-gx10-backend"
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_HEAD_BYTES = 64 * 1024
_RECV_BYTES = 64 * 1024

# Hop-by-hop fields (RFC 9110 7.6.1) describe one connection, not the message; the Proxy-* family
# and the names a Connection field lists go too.
_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade"}
)
# Request fields the proxy sets itself (Host: the backend; the framing of the body it read) or has
# already answered (BaseHTTPRequestHandler sends "100 Continue" for Expect).
_REQUEST_OWN = frozenset({"host", "content-length", "expect"})


class ServiceProxy:
    """One Service's proxy: ``start()`` → base URL, ``stop()``; also a context manager."""

    def __init__(
        self,
        name: str,
        backends: Callable[[], Sequence[str]],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        connect_timeout: float = 2.0,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self.name = name
        self.backends = backends
        self.host = host
        self.connect_timeout = connect_timeout
        self._requested_port = port
        self._log = log
        self._next = itertools.count()  # round-robin position; next() on it is atomic in CPython
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._clients: dict[threading.Thread, socket.socket] = {}
        self._upstreams: set[socket.socket] = set()
        self._httpd: _Server | None = None
        self._serve_thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError(f"the proxy for service {self.name} is not started")
        return self._httpd.server_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        if self._httpd is not None:
            raise RuntimeError(f"the proxy for service {self.name} is already started")
        httpd = _Server((self.host, self._requested_port), self)
        self._httpd = httpd
        self._serve_thread = threading.Thread(
            target=self._serve, args=(httpd,), daemon=True, name=f"proxy-{self.name}"
        )
        self._serve_thread.start()
        return self.url

    def _serve(self, httpd: _Server) -> None:
        # handle_request() blocks in select() without a timeout until a connection arrives;
        # stop() wakes it with a connection of its own. serve_forever() would poll instead.
        while not self._stopping.is_set():
            httpd.handle_request()

    def stop(self) -> None:
        """Close the listener and every connection, in flight or idle; join the threads."""
        httpd = self._httpd
        if httpd is None or self._stopping.is_set():
            return
        with self._lock:
            self._stopping.set()
        with contextlib.suppress(OSError):
            socket.create_connection((self.host, httpd.server_port), timeout=1.0).close()
        if self._serve_thread is not None:
            self._serve_thread.join(2.0)
        httpd.server_close()
        with self._lock:
            threads = list(self._clients)
            # Clients first: a handler that wakes on its upstream's end then finds its client
            # gone too and drops it, rather than answering a misleading 502.
            sockets = [*self._clients.values(), *self._upstreams]
        for sock in sockets:
            # shutdown(), not close(): it wakes a thread blocked on the socket, and the handler
            # still owns the descriptor (closing it here could close a reused fd).
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + 2.0
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def __enter__(self) -> ServiceProxy:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- used by the server and handlers -----------------------------------------------------

    @property
    def logging(self) -> bool:
        return self._log is not None

    def log(self, line: str) -> None:
        if self._log is not None:
            self._log(line)

    def track_client(self, thread: threading.Thread, sock: socket.socket) -> None:
        with self._lock:
            self._clients[thread] = sock

    def untrack_client(self, thread: threading.Thread) -> None:
        with self._lock:
            self._clients.pop(thread, None)

    def connect(self, backends: Sequence[str]) -> tuple[str, socket.socket]:
        """A connected socket to the next backend round-robin, or _Failure (502)."""
        first = next(self._next)
        tries = min(2, len(backends))
        for i in range(tries):
            backend = backends[(first + i) % len(backends)]
            try:
                host, port, _, _ = _target(backend)
                sock = socket.create_connection((host, port), timeout=self.connect_timeout)
            except ConnectionRefusedError:
                if i + 1 < tries:
                    continue  # the request reached no backend: retrying is safe for any method
                raise _Failure(backend, "refused the connection") from None
            except (OSError, ValueError) as exc:
                raise _Failure(backend, f"could not be reached: {exc}") from None
            # A silent backend keeps the client waiting, as in a cluster: no read timeout.
            sock.settimeout(None)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if not self._stopping.is_set():
                    self._upstreams.add(sock)
                    return backend, sock
            sock.close()
            raise _Failure(backend, "not used: the proxy is stopping")
        raise AssertionError("unreachable: backends is not empty")

    def release(self, sock: socket.socket) -> None:
        with self._lock:
            self._upstreams.discard(sock)
        sock.close()


@functools.lru_cache(maxsize=256)
def _target(url: str) -> tuple[str, int, str, str]:
    """(host, port, Host field, path prefix) of a backend base URL; cached: it runs per request."""
    parts = urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"not an http:// base URL: {url!r}")
    port = parts.port or 80
    return parts.hostname, port, parts.netloc, parts.path.rstrip("/")


def _dropped(fields: Iterable[tuple[str, str]]) -> frozenset[str]:
    """Lower-cased names not to forward: hop-by-hop ones and those the Connection field lists."""
    listed = (
        token.strip().lower()
        for name, value in fields
        if name.lower() == "connection"
        for token in value.split(",")
    )
    return _HOP_BY_HOP | frozenset(listed)


def _forwarded(name: str, dropped: frozenset[str]) -> bool:
    lower = name.lower()
    return lower not in dropped and not lower.startswith("proxy-")


class _Failure(Exception):
    """The backend failed before the client got a response byte: a 502."""

    def __init__(self, backend: str, what: str) -> None:
        super().__init__(what)
        self.backend = backend


class _ClientGone(Exception):
    """The client hung up while the proxy waited for the backend."""


class _BadResponse(Exception):
    """The backend sent something that is not HTTP/1.x, or ended a response early."""


class _Upstream:
    """Reads a backend's response from its socket. Every wait also watches the client socket, so
    a client that hangs up while the backend is silent (a wedge, a slow first token) ends the
    exchange at once instead of at the backend's next byte."""

    def __init__(self, sock: socket.socket, client: socket.socket) -> None:
        self._sock = sock
        self._client = client
        self._buf = bytearray()
        self._selector = selectors.DefaultSelector()
        self._selector.register(sock, selectors.EVENT_READ)
        self._selector.register(client, selectors.EVENT_READ)

    def close(self) -> None:
        self._selector.close()

    def _recv(self) -> bytes:
        while True:
            for key, _ in self._selector.select():
                if key.fileobj is self._sock:
                    return self._sock.recv(_RECV_BYTES)
                self._check_client()

    def _check_client(self) -> None:
        try:
            peeked = self._client.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        except OSError:
            raise _ClientGone from None
        if not peeked:
            raise _ClientGone
        # The client already sent its next request: it stays in the socket for the handler, and
        # the client is watched no more (its socket would stay readable: a busy loop).
        self._selector.unregister(self._client)

    def _until(self, marker: bytes) -> bytes:
        """The bytes before the next ``marker``, which is consumed too."""
        end = self._buf.find(marker)
        while end < 0:
            if len(self._buf) > MAX_HEAD_BYTES:
                raise _BadResponse("an over-long response head or chunk line")
            data = self._recv()
            if not data:
                what = "mid-response" if self._buf else "without a response"
                raise _BadResponse(f"closed the connection {what}")
            self._buf += data
            end = self._buf.find(marker)
        line = bytes(self._buf[:end])
        del self._buf[: end + len(marker)]
        return line

    def read_head(self) -> tuple[int, str, list[tuple[str, str]]]:
        status_line, *lines = self._until(b"\r\n\r\n").decode("latin-1").split("\r\n")
        version, _, rest = status_line.partition(" ")
        code, _, reason = rest.partition(" ")
        if not version.startswith("HTTP/1.") or len(code) != 3 or not code.isdigit():
            raise _BadResponse(f"a malformed status line {status_line[:80]!r}")
        fields = []
        for line in lines:
            name, colon, value = line.partition(":")
            if not colon or not name or name != name.strip():
                raise _BadResponse(f"a malformed header line {line[:80]!r}")
            fields.append((name, value.strip()))
        return int(code), reason, fields

    def read_line(self) -> bytes:
        return self._until(b"\r\n")

    def read_some(self, limit: int) -> bytes:
        """Up to ``limit`` bytes, as soon as any are there; b"" at the end of the stream."""
        if not self._buf:
            data = self._recv()
            if len(data) <= limit:
                return data
            self._buf += data
        piece = bytes(self._buf[:limit])
        del self._buf[:limit]
        return piece


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() shuts the connections down and joins the handlers itself
    # A burst of concurrent connects must not overflow the accept queue: dropped SYNs are
    # retried after 1 s, which would show up as latency (the default is 5).
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], proxy: ServiceProxy) -> None:
        self.proxy = proxy
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup that can stall for
        # seconds on a sandboxed machine; loopback needs no name.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def verify_request(self, request: Any, client_address: Any) -> bool:
        return not self.proxy._stopping.is_set()  # refuses stop()'s wake-up connection

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            daemon=True,
            name=f"proxy-{self.proxy.name}-conn",
        )
        self.proxy.track_client(thread, request)
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.proxy.untrack_client(threading.current_thread())

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], OSError):
            return  # a peer hung up, or stop() shut the socket down
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # SSE frames are small writes: do not hold them for ACKs

    _status = 0
    _backend: str | None = None
    _note = ""

    @property
    def proxy(self) -> ServiceProxy:
        return cast(_Server, self.server).proxy

    def log_message(self, format: str, *args: Any) -> None:
        self.proxy.log(f"{self.proxy.name}: {format % args}")

    def do_GET(self) -> None:
        t0 = time.monotonic()
        self._status, self._backend, self._note = 0, None, ""
        try:
            self._proxy_request()
        finally:
            if self.proxy.logging:  # one line per request, formatted only when someone reads it
                ms = (time.monotonic() - t0) * 1000
                self.proxy.log(
                    f'{self.proxy.name}: "{self.command} {self.path}" {self._status or "-"} '
                    f"-> {self._backend or '-'} in {ms:.1f} ms{self._note}"
                )

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _proxy_request(self) -> None:
        proxy = self.proxy
        body = self._read_body()
        if body is None:
            return
        try:
            backends = list(proxy.backends())
        except NoRoute as answer:  # a router's answer instead of a backend (Gateway API 500s)
            self._error(answer.status, answer.message)
            return
        except Exception as exc:  # noqa: BLE001 - a failing endpoint lookup is this request's 503
            self._error(503, f"cannot list the endpoints of service {proxy.name}: {exc}")
            return
        if not backends:
            self._error(503, f"no ready endpoints for service {proxy.name}")
            return
        try:
            backend, sock = proxy.connect(backends)
        except _Failure as failure:
            self._backend = failure.backend
            self._error(502, f"service {proxy.name}: backend {failure.backend} {failure}")
            return
        self._backend = backend
        upstream = _Upstream(sock, self.connection)
        try:
            self._exchange(backend, sock, upstream, body)
        finally:
            upstream.close()
            proxy.release(sock)  # at once, also when the client hung up mid-stream

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True  # the unread body would be taken for the next request
            self._error(411, "chunked request bodies are not supported; send Content-Length")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self.close_connection = True
            self._error(400 if length < 0 else 413, "bad or too large Content-Length")
            return None
        body = self.rfile.read(length) if length else b""
        if len(body) < length:
            self.close_connection = True  # the client hung up mid-body
            self._note = " (client hung up)"
            return None
        return body

    def _request_head(self, backend: str, body: bytes) -> bytes:
        _, _, authority, prefix = _target(backend)
        fields = self.headers.items()
        dropped = _dropped(fields) | _REQUEST_OWN
        lines = [f"{self.command} {prefix}{self.path} HTTP/1.1", f"Host: {authority}"]
        lines += [f"{name}: {value}" for name, value in fields if _forwarded(name, dropped)]
        if "Content-Length" in self.headers:
            lines.append(f"Content-Length: {len(body)}")
        # One exchange per upstream connection: nothing pooled to drain at a selector change.
        lines.append("Connection: close")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _exchange(self, backend: str, sock: socket.socket, up: _Upstream, body: bytes) -> None:
        name = self.proxy.name
        try:
            sock.sendall(self._request_head(backend, body) + body)
            status, reason, fields = up.read_head()
            while 100 <= status < 200:  # interim responses (100 Continue, 103) are not forwarded
                status, reason, fields = up.read_head()
            framing = self._framing(status, fields)
        except _ClientGone:
            self.close_connection = True
            self._note = " (client hung up)"
            return
        except (OSError, _BadResponse) as exc:
            self._error(502, f"service {name}: backend {backend} failed before responding: {exc}")
            return
        try:
            self._send_head(status, reason, fields, framing, backend)
            self._copy_body(up, framing)
        except (_ClientGone, OSError, _BadResponse) as exc:
            # The head is out: all that is left is to cut the response short, as a pod that dies
            # mid-stream does (a chunked body without its last chunk is visibly incomplete).
            self.close_connection = True
            self._note = f" (cut short: {type(exc).__name__} {exc})"

    def _framing(self, status: int, fields: list[tuple[str, str]]) -> tuple[str, int]:
        """(how the backend frames the body, Content-Length); the first of none, length,
        chunked, close."""
        if self.command == "HEAD" or status in (204, 304):
            return "none", 0
        codings = [v.lower() for n, v in fields if n.lower() == "transfer-encoding"]
        if codings:
            # Only chunked is understood; anything else runs to the end of the connection.
            return ("chunked" if codings[-1].rstrip().endswith("chunked") else "close"), 0
        lengths = {v for n, v in fields if n.lower() == "content-length"}
        if not lengths:
            return "close", 0
        if len(lengths) > 1 or not next(iter(lengths)).isdigit():
            raise _BadResponse(f"an invalid Content-Length {sorted(lengths)}")
        return "length", int(lengths.pop())

    def _send_head(
        self,
        status: int,
        reason: str,
        fields: list[tuple[str, str]],
        framing: tuple[str, int],
        backend: str,
    ) -> None:
        kind, length = framing
        if self.request_version != "HTTP/1.1":
            self.close_connection = True  # HTTP/1.0 knows no chunked: close-delimited
        self._status = status
        self.send_response_only(status, reason or None)
        dropped = _dropped(fields) | {BACKEND_HEADER}  # ours names the pod that served
        if kind != "none":  # a HEAD or 304 answer keeps the length of the body it describes
            dropped |= {"content-length"}
        for name, value in fields:
            if _forwarded(name, dropped):
                self.send_header(name, value)
        if kind == "length":
            self.send_header("Content-Length", str(length))
        elif kind in ("chunked", "close") and not self.close_connection:
            self.send_header("Transfer-Encoding", "chunked")
        if self.close_connection:
            self.send_header("Connection", "close")
        self.send_header(BACKEND_HEADER, backend)
        self.end_headers()

    def _copy_body(self, up: _Upstream, framing: tuple[str, int]) -> None:
        """Forward each piece as soon as it arrives: SSE frames must not wait in a buffer."""
        kind, left = framing
        if kind == "none":
            return
        rechunk = not self.close_connection and kind != "length"
        write = self.wfile.write  # unbuffered (wbufsize 0): one send per piece

        def out(data: bytes) -> None:
            write(b"%x\r\n%s\r\n" % (len(data), data) if rechunk else data)

        if kind == "chunked":
            while size := _chunk_size(up.read_line()):
                while size:
                    data = up.read_some(size)
                    if not data:
                        raise _BadResponse("closed the connection mid-chunk")
                    out(data)
                    size -= len(data)
                if up.read_line():
                    raise _BadResponse("a chunk without its CRLF")
            while up.read_line():  # trailer fields are not forwarded
                pass
        elif kind == "length":
            while left:
                data = up.read_some(min(left, _RECV_BYTES))
                if not data:
                    raise _BadResponse("closed the connection before Content-Length bytes")
                out(data)
                left -= len(data)
        else:  # close-delimited: the backend's EOF ends the body
            while data := up.read_some(_RECV_BYTES):
                out(data)
        if rechunk:
            write(b"0\r\n\r\n")

    def _error(self, status: int, message: str) -> None:
        self._status = status
        self._note = f" ({message})"
        body = json.dumps({"error": {"message": message, "code": status}}).encode()
        with contextlib.suppress(OSError):  # the client may be gone already
            self.send_response_only(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            if self._backend is not None:
                self.send_header(BACKEND_HEADER, self._backend)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)


def _chunk_size(line: bytes) -> int:
    digits = line.split(b";", 1)[0].strip()  # chunk extensions are ignored
    try:
        if digits.isalnum():  # int() alone would also take "-1", "+1" and "1_0"
            return int(digits, 16)
    except ValueError:
        pass
    raise _BadResponse(f"a malformed chunk size line {line[:40]!r}")
