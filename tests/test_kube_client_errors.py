"""Every exception of the Kubernetes adapter's transport reaches the user translated
(gx10slots.errors), chained with ``from``: a TLS failure is "unreachable" with a hint naming TLS
and the CA, and a call the adapter does not know (a method, a keyword) is a cluster error saying
nothing was sent, never a traceback."""

from __future__ import annotations

import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gx10slots.errors import ApiUnreachable, ClusterError
from gx10slots.kube import client as kube_client
from gx10slots.kube.client import Connection, Kube
from gx10slots.kube.rest import Credentials, Transport


def _certificate(directory: Path, name: str) -> tuple[Path, Path]:
    key, cert = directory / f"{name}.key", directory / f"{name}.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-days", "1", "-subj", f"/CN={name}", "-addext",
            "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[str, list[int]]]:
    """An HTTPS server with its own self-signed certificate; counts the handshakes tried."""
    cert, key = _certificate(tmp_path, "server")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.2)
    handshakes: list[int] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            handshakes.append(1)
            conn.settimeout(2)
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.recv(1024)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{listener.getsockname()[1]}", handshakes
    finally:
        stop.set()
        thread.join(5)
        listener.close()


def _kube(host: str, ca: Path | None = None) -> Kube:
    credentials = Credentials(host, "test", ca_file=str(ca) if ca else None)
    transport = Transport(credentials, kube_client.MAX_RESPONSE_BYTES)
    return Kube(Connection(transport, host, "test"), "gx10")


def test_a_wrong_ca_is_unreachable_naming_tls_and_is_not_retried(
    tls_server: tuple[str, list[int]], tmp_path: Path
) -> None:
    url, handshakes = tls_server
    other_ca, _ = _certificate(tmp_path, "someone-else")
    kube = _kube(url, other_ca)
    with pytest.raises(ApiUnreachable) as caught:
        kube.read("read ConfigMap gx10/x", kube.api("core").read_namespaced_config_map, "x", "gx10")
    error = caught.value
    assert error.exit_code == 4
    assert "TLS" in (error.hint or "") and "certificate-authority" in (error.hint or "")
    assert "certificate verify failed" in error.message
    assert error.__cause__ is not None  # chained with `from`
    assert len(handshakes) == 1  # the same CA fails the same way: tried once


def test_a_write_with_a_wrong_ca_is_not_an_unknown_outcome(
    tls_server: tuple[str, list[int]], tmp_path: Path
) -> None:
    """The handshake failed before the request was sent: nothing changed, and saying "the write
    may have been applied" would send the caller reading back for nothing."""
    url, _ = tls_server
    other_ca, _ = _certificate(tmp_path, "someone-else")
    kube = _kube(url, other_ca)
    with pytest.raises(ApiUnreachable) as caught:
        kube.write(
            "create ConfigMap gx10/x",
            kube.api("core").create_namespaced_config_map,
            "gx10",
            {"metadata": {"name": "x"}},
        )
    assert not isinstance(caught.value, kube_client.WriteOutcomeUnknown)
    assert "TLS" in (caught.value.hint or "")


def test_an_argument_the_adapter_refuses_is_a_cluster_error_not_a_traceback() -> None:
    """An unknown keyword (what `_content_type=` was to clients 30-35): translated, nothing sent
    (the port is closed: had anything been sent, this would be "unreachable")."""
    kube = _kube("http://127.0.0.1:9")
    core = kube.api("core")
    with pytest.raises(ClusterError) as caught:
        kube.read("read ConfigMap gx10/x", core.read_namespaced_config_map, "x", "gx10", bogus=1)
    assert not isinstance(caught.value, ApiUnreachable)
    assert caught.value.exit_code == 4
    assert "refused the call" in caught.value.message
    assert caught.value.__cause__ is not None


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("delete_namespaced_secret", ("x", "gx10")),  # a verb the adapter does not send
        ("read_namespaced_stateful_set", ("x", "gx10")),  # a resource it does not know
        ("read_namespaced_config_map", ("x",)),  # a missing argument
        ("read_namespaced_config_map", ("x", "gx10", "extra")),
    ],
)
def test_a_call_the_adapter_does_not_know_is_refused_before_sending(
    method: str, args: tuple[str, ...]
) -> None:
    kube = _kube("http://127.0.0.1:9")
    with pytest.raises(ClusterError) as caught:
        kube.write(f"{method}", lambda *a, **k: getattr(kube.api("core"), method)(*a, **k), *args)
    assert not isinstance(caught.value, ApiUnreachable)
    assert "refused the call" in caught.value.message


def test_a_tls_error_after_the_handshake_leaves_a_write_unknown() -> None:
    """A connection cut mid-answer (SSLEOFError) may come after the request was sent: the
    write's outcome is unknown, so the caller reads back rather than assuming nothing changed."""
    import urllib3.exceptions as u3

    def cut(*args: Any, **kwargs: Any) -> Any:
        raise u3.SSLError(ssl.SSLEOFError(8, "EOF occurred in violation of protocol"))

    kube = _kube("https://127.0.0.1:9")
    with pytest.raises(kube_client.WriteOutcomeUnknown) as caught:
        kube.write("patch Service gx10/gx10-model", cut, [])
    assert "TLS" in caught.value.message
    with pytest.raises(ApiUnreachable) as read:
        kube._call("read Service gx10/gx10-model", cut, (), {}, (1.0, 1.0), write=False)
    assert not isinstance(read.value, kube_client.WriteOutcomeUnknown)


@pytest.fixture
def flaky_api() -> Iterator[tuple[str, list[Any]]]:
    """An API server whose answers are taken, in order, from the list it yields (status codes;
    200 answers a ConfigMap); every request is counted in the same list's place."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    script: list[Any] = []  # a status, or (429, the Retry-After it sends)

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = script.pop(0) if script else 200
            retry_after = "0"
            if isinstance(status, tuple):
                status, retry_after = status
            body = (
                {"kind": "ConfigMap", "metadata": {"name": "x"}}
                if status == 200
                else {"kind": "Status", "code": status, "reason": "Nope", "message": "nope"}
            )
            data = json.dumps(body).encode()
            self.send_response(status)
            if status == 429:
                self.send_header("Retry-After", retry_after)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()


def test_a_read_rides_out_5xx_and_429_and_says_which_attempt(
    flaky_api: tuple[str, list[Any]], caplog: pytest.LogCaptureFixture
) -> None:
    url, script = flaky_api
    script += [503, 429, 500]
    kube = _kube(url)
    with caplog.at_level("WARNING", logger="gx10slots.kube"):
        got = kube.read(
            "read ConfigMap gx10/x", kube.api("core").read_namespaced_config_map, "x", "gx10"
        )
    assert got["metadata"]["name"] == "x"
    assert script == []  # all three failures were answered, then the fourth attempt succeeded
    assert [m for m in caplog.messages if "attempt" in m][-1].endswith("attempt 3/4, retrying")


@pytest.mark.parametrize("retry_after", ["-1", "NaN", "-Infinity", "1e400", "soon"])
def test_a_retry_after_that_is_no_wait_is_not_obeyed_and_never_a_crash(
    flaky_api: tuple[str, list[Any]], retry_after: str
) -> None:
    # A proxy in front of the API server may send anything: time.sleep() refuses a negative or
    # NaN wait with a ValueError, and 1e400 seconds would be forever.
    url, script = flaky_api
    script += [(429, retry_after)]
    kube = _kube(url)
    started = time.monotonic()
    got = kube.read(
        "read ConfigMap gx10/x", kube.api("core").read_namespaced_config_map, "x", "gx10"
    )
    assert got["metadata"]["name"] == "x" and script == []
    assert time.monotonic() - started < kube_client.RETRY_AFTER_CAP_S + 2


def test_a_read_gives_up_after_its_attempts_and_a_404_is_not_retried(
    flaky_api: tuple[str, list[Any]],
) -> None:
    from gx10slots.errors import ApiError, NotFound

    url, script = flaky_api
    kube = _kube(url)
    core = kube.api("core")
    script += [503] * 5
    with pytest.raises(ApiError) as caught:
        kube.read("read ConfigMap gx10/x", core.read_namespaced_config_map, "x", "gx10")
    assert caught.value.status == 503
    assert len(script) == 5 - kube_client.READ_ATTEMPTS
    script[:] = [404, 503]
    with pytest.raises(NotFound):
        kube.read("read ConfigMap gx10/x", core.read_namespaced_config_map, "x", "gx10")
    assert script == [503]  # asked once
