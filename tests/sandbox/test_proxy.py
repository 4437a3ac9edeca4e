"""The sandbox kube-proxy, checked the way a client of a Service sees it."""

from __future__ import annotations

import json
import select
import socket
import socketserver
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from gx10slots.sandbox.modelserver import ModelServer
from gx10slots.sandbox.proxy import BACKEND_HEADER, ServiceProxy
from tests.helpers.modelservers import model_servers

PONG = {"model": "a", "messages": [{"role": "user", "content": "Reply with the single word pong."}]}


def wait_until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Poll a condition with a deadline (the short sleep is the poll interval, not a guess)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


# -- a scripted backend ------------------------------------------------------------------------


class Backend:
    """A tiny upstream: ``/echo`` reflects the request, ``/sse`` sends one frame, waits for
    ``gate``, sends a second; ``/hold`` sends one frame, then waits for its peer to hang up;
    ``/eof`` answers with a body that ends at the end of the connection."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.gate = threading.Event()
        self.streaming = threading.Event()  # a stream's first frame is out
        self.hung_up = threading.Event()  # the peer of a /hold stream closed the connection
        self._httpd = _BackendServer(self)
        self.url = f"http://127.0.0.1:{self._httpd.server_port}"
        threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def stop(self) -> None:
        self.gate.set()
        self._httpd.shutdown()
        self._httpd.server_close()


class _BackendServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 128

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        super().__init__(("127.0.0.1", 0), _BackendHandler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)  # no FQDN lookup
        self.server_name, self.server_port = "127.0.0.1", int(self.server_address[1])


class _BackendHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        backend = cast(_BackendServer, self.server).backend
        url = urlsplit(self.path)
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if url.path == "/echo":
            doc = {
                "backend": backend.name,
                "method": self.command,
                "path": self.path,
                "headers": {k.lower(): v for k, v in self.headers.items()},
                "body": body.decode(),
            }
            data = json.dumps(doc).encode()
            self.send_response(int(parse_qs(url.query).get("status", ["200"])[0]))
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Echo", "yes")
            self.send_header("Set-Cookie", "a=1")
            self.send_header("Set-Cookie", "b=2")
            self.send_header("Keep-Alive", "timeout=5")  # hop-by-hop: must not reach the client
            self.end_headers()
            self.wfile.write(data)
        elif url.path in ("/sse", "/hold"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._chunk(b"data: 1\n\n")
            backend.streaming.set()
            if url.path == "/sse":
                backend.gate.wait(10)
                self._chunk(b"data: 2\n\n")
                self.wfile.write(b"0\r\n\r\n")
            else:
                # The proxy sends nothing after its request: readable means it hung up.
                readable, _, _ = select.select([self.connection], [], [], 10)
                if readable and not self.connection.recv(1):
                    backend.hung_up.set()
                self.close_connection = True
        elif url.path == "/eof":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"until the end")
        else:
            self.send_error(404)

    do_POST = do_GET

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def backend() -> Iterator[Callable[[str], Backend]]:
    started: list[Backend] = []

    def start(name: str) -> Backend:
        started.append(Backend(name))
        return started[-1]

    yield start
    for b in started:
        b.stop()


@pytest.fixture
def model() -> Iterator[Callable[[str], ModelServer]]:
    with model_servers() as start:
        yield lambda spec: start(spec, served_name="a")


@pytest.fixture
def proxy() -> Iterator[Callable[..., ServiceProxy]]:
    started: list[ServiceProxy] = []

    def start(backends: Callable[[], list[str]], **options: Any) -> ServiceProxy:
        p = ServiceProxy("svc", backends, **options)
        p.start()
        started.append(p)
        return p

    yield start
    for p in started:
        p.stop()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0, trust_env=False) as c:
        yield c


# -- tests -------------------------------------------------------------------------------------


def test_get_and_post_pass_through_to_the_model_server(model, proxy, client) -> None:
    server = model("sandbox/ok")
    p = proxy(lambda: [server.url])

    models = client.get(f"{p.url}/v1/models")
    assert models.status_code == 200
    assert models.headers["content-type"] == "application/json"
    assert models.headers[BACKEND_HEADER] == server.url
    assert models.json()["data"][0]["id"] == "a"

    chat = client.post(f"{p.url}/v1/chat/completions", json=PONG)
    assert chat.status_code == 200
    assert chat.json()["choices"][0]["message"]["content"] == "pong"

    missing = client.get(f"{p.url}/nope")
    assert (missing.status_code, missing.json()) == (404, {"detail": "Not Found"})


def test_requests_and_responses_are_forwarded_transparently(backend, proxy, client) -> None:
    b = backend("b")
    p = proxy(lambda: [b.url])
    r = client.post(
        f"{p.url}/echo?status=201&q=x%20y",
        content=b'{"k": 1}',
        headers={"X-Custom": "v", "Keep-Alive": "5", "Proxy-Authorization": "secret", "TE": "x"},
    )
    assert r.status_code == 201
    doc = r.json()
    assert (doc["method"], doc["path"], doc["body"]) == (
        "POST",
        "/echo?status=201&q=x%20y",
        '{"k": 1}',
    )
    sent = doc["headers"]
    assert sent["host"] == b.url.removeprefix("http://")
    assert sent["x-custom"] == "v"
    assert sent["content-length"] == "8"
    assert not {"keep-alive", "proxy-authorization", "te"} & sent.keys()
    assert r.headers["x-echo"] == "yes"
    assert r.headers.get_list("set-cookie") == ["a=1", "b=2"]
    assert "keep-alive" not in r.headers
    assert r.headers[BACKEND_HEADER] == b.url


def test_sse_frames_arrive_as_the_backend_sends_them(backend, proxy, client) -> None:
    b = backend("b")
    p = proxy(lambda: [b.url])
    with client.stream("GET", f"{p.url}/sse") as r:
        assert r.headers["content-type"] == "text/event-stream"
        lines = r.iter_lines()
        assert next(lines) == "data: 1"
        assert not b.gate.is_set()  # the first frame came through while the backend held the rest
        b.gate.set()
        assert [line for line in lines if line] == ["data: 2"]


def test_model_server_stream_passes_through_whole(model, proxy, client) -> None:
    server = model("sandbox/ok")
    p = proxy(lambda: [server.url])
    with client.stream("POST", f"{p.url}/v1/chat/completions", json=PONG | {"stream": True}) as r:
        data = [line.removeprefix("data: ") for line in r.iter_lines() if line]
    assert data[-1] == "[DONE]"
    text = "".join(json.loads(d)["choices"][0]["delta"].get("content") or "" for d in data[:-1])
    assert text == "pong"


def test_selector_change_keeps_the_stream_in_flight_and_moves_new_requests(
    backend, proxy, client
) -> None:
    old, new = backend("old"), backend("new")
    selected = [old.url]
    p = proxy(lambda: selected)
    with client.stream("GET", f"{p.url}/sse") as stream:
        lines = stream.iter_lines()
        assert next(lines) == "data: 1"
        selected = [new.url]  # the flip: the Service now selects the other pod
        after = client.get(f"{p.url}/echo")
        assert (after.json()["backend"], after.headers[BACKEND_HEADER]) == ("new", new.url)
        old.gate.set()
        assert [line for line in lines if line] == ["data: 2"]  # finished on the old pod
        assert stream.headers[BACKEND_HEADER] == old.url


def test_no_ready_endpoints_is_a_503(proxy, client) -> None:
    p = proxy(lambda: [])
    r = client.get(f"{p.url}/v1/models")
    assert r.status_code == 503
    assert r.json() == {"error": {"message": "no ready endpoints for service svc", "code": 503}}


def test_a_failing_endpoint_lookup_is_a_503(proxy, client) -> None:
    def broken() -> list[str]:
        raise RuntimeError("apiserver gone")

    r = client.get(f"{proxy(broken).url}/")
    assert r.status_code == 503
    assert "apiserver gone" in r.json()["error"]["message"]


@pytest.fixture
def dead_url() -> Iterator[str]:
    """A port bound but not listening: connecting to it is refused, and no one else takes it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def test_a_backend_that_is_down_is_a_502(proxy, client, dead_url) -> None:
    lines: list[str] = []
    r = client.get(f"{proxy(lambda: [dead_url], log=lines.append).url}/v1/models")
    assert r.status_code == 502
    assert r.headers[BACKEND_HEADER] == dead_url
    error = r.json()["error"]
    assert error["code"] == 502
    assert "service svc" in error["message"] and dead_url in error["message"]
    wait_until(lambda: bool(lines))  # the line is written after the response
    assert len(lines) == 1 and " 502 -> " in lines[0] and "refused" in lines[0]


def test_a_refused_connect_is_retried_on_the_next_backend(backend, proxy, client, dead_url) -> None:
    b = backend("b")
    p = proxy(lambda: [dead_url, b.url])
    served = [client.post(f"{p.url}/echo", content=b"x") for _ in range(4)]
    assert [r.status_code for r in served] == [200] * 4
    assert {r.headers[BACKEND_HEADER] for r in served} == {b.url}


def test_a_backend_that_answers_garbage_is_a_502(proxy, client) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"

        def garbage() -> None:
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"SSH-2.0-OpenSSH\r\n\r\n")

        threading.Thread(target=garbage, daemon=True).start()
        r = client.get(f"{proxy(lambda: [url]).url}/")
    assert r.status_code == 502
    assert "malformed status line" in r.json()["error"]["message"]


def test_round_robin_across_two_backends(backend, proxy, client) -> None:
    a, b = backend("a"), backend("b")
    p = proxy(lambda: [a.url, b.url])
    served = [client.get(f"{p.url}/echo").json()["backend"] for _ in range(6)]
    assert served == ["a", "b"] * 3


def test_a_client_that_hangs_up_mid_stream_closes_the_upstream(backend, proxy, client) -> None:
    b = backend("b")
    p = proxy(lambda: [b.url])
    with client.stream("GET", f"{p.url}/hold") as r:
        lines = r.iter_lines()  # kept: a dropped iterator closes httpx's connection at once
        assert next(lines) == "data: 1"
        assert not b.hung_up.is_set()
    # The backend stays silent: only the proxy watching its client can notice the hang-up.
    assert b.hung_up.wait(5)


def test_close_delimited_responses_reach_the_client_whole(backend, proxy, client) -> None:
    b = backend("b")
    r = client.get(f"{proxy(lambda: [b.url]).url}/eof")
    assert (r.status_code, r.text) == (200, "until the end")
    assert r.headers["transfer-encoding"] == "chunked"


def test_chunked_request_bodies_are_refused(backend, proxy, client) -> None:
    b = backend("b")
    r = client.post(f"{proxy(lambda: [b.url]).url}/echo", content=iter([b"a", b"b"]))
    assert r.status_code == 411
    assert r.json()["error"]["code"] == 411


def test_stop_ends_an_exchange_with_a_wedged_backend(model, proxy, client) -> None:
    server = model("sandbox/wedge")
    p = proxy(lambda: [server.url])
    outcome: list[BaseException | httpx.Response] = []

    def call() -> None:
        try:
            outcome.append(client.post(f"{p.url}/v1/chat/completions", json=PONG, timeout=30))
        except httpx.HTTPError as exc:
            outcome.append(exc)

    caller = threading.Thread(target=call)
    caller.start()
    wait_until(lambda: server.metrics.running == 1)  # the request sits in the wedged engine
    t0 = time.monotonic()
    p.stop()
    assert time.monotonic() - t0 < 1.5
    caller.join(5)
    assert not caller.is_alive()
    assert isinstance(outcome[0], httpx.RemoteProtocolError)
    with pytest.raises(httpx.ConnectError):
        client.get(f"{p.url}/health")


def test_a_hundred_concurrent_requests_all_succeed(backend, proxy) -> None:
    a, b = backend("a"), backend("b")
    p = proxy(lambda: [a.url, b.url])
    limits = httpx.Limits(max_connections=100)
    with (
        httpx.Client(timeout=10.0, trust_env=False, limits=limits) as c,
        ThreadPoolExecutor(max_workers=50) as pool,
    ):
        responses = list(
            pool.map(lambda i: c.post(f"{p.url}/echo", content=str(i).encode()), range(100))
        )
    assert [r.status_code for r in responses] == [200] * 100
    assert [r.json()["body"] for r in responses] == [str(i) for i in range(100)]
    assert Counter(r.headers[BACKEND_HEADER] for r in responses) == {a.url: 50, b.url: 50}
