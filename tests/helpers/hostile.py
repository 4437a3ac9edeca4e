"""Peers that misbehave on a real loopback socket: a TCP server answering every connection with
one behaviour (never a word, a byte at a time, without end, cut mid-body, not HTTP, reset).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Callable, Iterator

Behaviour = Callable[[socket.socket, threading.Event], None]


def read_request(conn: socket.socket) -> bytes:
    """The request's head (request line and headers); empty if the client left before it ended."""
    conn.settimeout(5)
    data = b""
    with contextlib.suppress(OSError):
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                return b""
            data += chunk
    return data if b"\r\n\r\n" in data else b""


def target(head: bytes) -> bytes:
    """The path (and query) a request head asks for."""
    return head.split(b" ", 2)[1]


# What an engine that is up answers to its health check, model list and metrics.
UP = {
    b"/health": b"{}",
    b"/metrics": b"",
    b"/v1/models": b'{"object": "list", "data": [{"id": "sandbox-ok"}]}',
}


def respond(conn: socket.socket, body: bytes, status: int = 200) -> None:
    """One whole JSON response, then the connection closes."""
    conn.sendall(
        f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body
    )


def silent(conn: socket.socket, stop: threading.Event) -> None:
    stop.wait(30)  # accept, read nothing, answer nothing


def trickle(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
    )
    while not stop.wait(0.05):
        conn.sendall(b" ")


def endless(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
    block = b'{"x": "' + b"a" * 65536
    while not stop.is_set():
        conn.sendall(block)


def endless_stream(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
    frame = b'data: {"choices":[{"delta":{"content":"pong "}}]}\n\n'
    while not stop.is_set():
        conn.sendall(frame * 256)


def cut_mid_body(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{"
    )
    conn.shutdown(socket.SHUT_RDWR)


def not_http(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\xff" * 64)


def reset(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")


@contextlib.contextmanager
def hostile(behaviour: Behaviour) -> Iterator[str]:
    """A TCP server on loopback answering every connection with ``behaviour``."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    server.settimeout(0.2)
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def handle(conn: socket.socket) -> None:
        with contextlib.suppress(OSError), conn:
            behaviour(conn, stop)

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except (TimeoutError, OSError):
                continue
            thread = threading.Thread(target=handle, args=(conn,), daemon=True)
            threads.append(thread)
            thread.start()

    acceptor = threading.Thread(target=accept, daemon=True)
    acceptor.start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        acceptor.join(timeout=5)
        server.close()
        for thread in threads:
            thread.join(timeout=5)
