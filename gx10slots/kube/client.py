"""The Kubernetes adapter: connection, error translation and the retry policy for reads.

Objects travel as plain dicts (the API's JSON), not the client's generated models: the plans we
compute are JSON patches over the same shapes, and unknown fields survive a read-modify-write.
Requests are plain JSON over one urllib3 pool (gx10slots.kube.rest); the official client's
kubeconfig loader is used only where a kubeconfig needs it (exec plugins, auth providers,
in-cluster credentials: gx10slots.kube.kubeconfig), and its generated API classes not at all:
importing them cost every command about a second (docs/benchmarks.md).

Retries: reads are retried for connection errors, 5xx and 429 (honouring ``Retry-After``), capped
and logged as "attempt n/N". Writes are never retried here; a write whose answer was lost raises
:class:`WriteOutcomeUnknown` so the caller settles it by reading back.
"""

from __future__ import annotations

import json
import logging
import os
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import yaml

from gx10slots.errors import (
    ApiError,
    ApiUnreachable,
    ClusterError,
    ConfigError,
    Conflict,
    Invalid,
    NotFound,
    Unauthorized,
    excerpt,
)
from gx10slots.kube.rest import Credentials, Group, HttpStatus, RefusedCall, TooLarge, Transport

if TYPE_CHECKING:
    import httpx

log = logging.getLogger("gx10slots.kube")

FIELD_MANAGER = "gx10slots"
READ_TIMEOUT = (5.0, 15.0)  # (connect, read) seconds per request
WRITE_TIMEOUT = (5.0, 15.0)
READ_ATTEMPTS = 4
RETRY_AFTER_CAP_S = 10.0
MAX_TEXT_BYTES = 64 * 1024
# The largest answer we read from the API server. Our reads are single objects and short lists
# in one namespace (well under a megabyte); a server (or a proxy in front of it) that declares or
# sends more is refused before it can exhaust memory.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
IN_CLUSTER_TOKEN = "/var/run/secrets/kubernetes.io/serviceaccount/token"


class WriteOutcomeUnknown(ApiUnreachable):
    """The write was sent but its answer was lost: it may or may not have been applied."""

    kind = "write-outcome-unknown"


class TlsFailure(ApiUnreachable):
    """The TLS handshake with the API server failed (a wrong CA, a certificate for another name,
    an expired one, or plain HTTP on the port): nothing was sent, and trying again cannot help."""


TLS_HINT = (
    "the API server is unreachable over TLS: check the kubeconfig's certificate-authority(-data) "
    "is the cluster's CA (a wrong CA is the usual cause), that the server name matches its "
    "certificate, and the clock"
)
CLIENT_HINT = (
    "nothing was sent: this is a bug in gx10slots (a call its Kubernetes adapter does not know); "
    "please report it with the command you ran"
)


@dataclass(frozen=True)
class Connection:
    transport: Transport
    host: str
    source: str  # "kubeconfig <path> (context <name>)" or "in-cluster service account"

    def service_proxy_url(self, namespace: str, service: str, port: int) -> str:
        """The API server's proxy to a Service: reach a slot from anywhere the API server is."""
        return (
            f"{self.host.rstrip('/')}/api/v1/namespaces/{namespace}/services/{service}:{port}/proxy"
        )

    def http_transport(self) -> httpx.BaseTransport:
        """An httpx transport that authenticates to the API server as our requests do (bearer
        token, refreshed by the loader's hook; client certificates; the cluster CA)."""
        return _kube_auth_transport(self.transport.credentials)


def connect(kubeconfig: str | None, context: str | None) -> Connection:
    """Credentials as kubectl finds them: given kubeconfig, else in-cluster, else ~/.kube/config.

    A plain kubeconfig (a token, a client certificate, a CA) is read by our own loader, which
    needs neither the official client nor its ~300 ms import; exec plugins, auth providers,
    several merged files and in-cluster credentials go through the official loader
    (gx10slots.kube.kubeconfig)."""
    from gx10slots.kube import kubeconfig as kubeconfig_loader

    in_cluster = (
        not kubeconfig
        and "KUBERNETES_SERVICE_HOST" in os.environ
        and os.path.exists(IN_CLUSTER_TOKEN)
    )
    path = kubeconfig or os.path.expanduser("~/.kube/config")
    try:
        if in_cluster:
            credentials = kubeconfig_loader.in_cluster_credentials()
        else:
            # As kubectl: KUBECONFIG may list several files; the official loader merges them.
            if not any(os.path.exists(p) for p in path.split(os.pathsep) if p):
                raise ConfigError(
                    f"kubeconfig {path} not found",
                    hint="pass --kubeconfig PATH or set KUBECONFIG",
                )
            credentials = kubeconfig_loader.plain_credentials(
                path, context
            ) or kubeconfig_loader.official_credentials(path, context)
    except yaml.YAMLError as exc:
        # Line and column only: a YAML error's snippet would quote the file, token and all.
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(
            f"cannot load Kubernetes credentials from {kubeconfig or 'the default kubeconfig'}: "
            f"not valid YAML{where}: {problem}"
        ) from exc
    except (OSError, ValueError, TypeError, KeyError, AttributeError, ssl.SSLError) as exc:
        # A malformed kubeconfig surfaces from a loader as whatever its parser tripped on.
        raise ConfigError(
            f"cannot load Kubernetes credentials from {kubeconfig or 'the default kubeconfig'}: "
            f"malformed ({type(exc).__name__}: {excerpt(str(exc), 120)})"
        ) from exc
    try:
        transport = Transport(credentials, MAX_RESPONSE_BYTES)
    except (OSError, ValueError, ssl.SSLError) as exc:
        # A CA or client certificate that is not PEM, a key that does not match the certificate.
        raise ConfigError(
            f"cannot load Kubernetes credentials from {credentials.source}: the certificate "
            f"material is unusable ({type(exc).__name__}: {excerpt(str(exc), 120)})"
        ) from exc
    return Connection(transport, credentials.host, credentials.source)


def _kube_auth_transport(credentials: Credentials) -> httpx.BaseTransport:
    # httpx is imported here, not at the top: only the apiserver-proxy path needs it, and at
    # module level it cost every command ~90 ms of start-up (`slots status` never uses it).
    import httpx

    class _KubeAuthTransport(httpx.HTTPTransport):
        def __init__(self, credentials: Credentials) -> None:
            super().__init__(verify=credentials.ssl_context())
            self._credentials = credentials

        def handle_request(self, request: httpx.Request) -> httpx.Response:
            # The loader's auth headers, refreshed per request as for our API calls.
            for key, value in self._credentials.headers().items():
                request.headers[key] = value
            return super().handle_request(request)

    return _KubeAuthTransport(credentials)


def translate_api_exception(exc: Any, what: str) -> ApiError:
    """An HTTP error answer (:class:`HttpStatus`, or anything with ``status``/``body``/``reason``)
    as the most specific error of ours, with a bounded message."""
    status = int(getattr(exc, "status", 0) or 0)
    body = getattr(exc, "body", None)
    reason = ""
    message = excerpt(body) or str(getattr(exc, "reason", "")) or "no message"
    try:
        doc = json.loads(body) if body else None
    except (TypeError, ValueError):
        doc = None
    if isinstance(doc, dict) and doc.get("kind") == "Status":
        reason = str(doc.get("reason") or "")
        message = excerpt(str(doc.get("message") or reason or "no message"))
    text = f"{what}: {status} {reason or ''} {message}".replace("  ", " ")
    cls: type[ApiError]
    hint = None
    if status == 404:
        cls = NotFound
    elif status == 409:
        cls = Conflict
    elif status == 422:
        cls = Invalid
    elif status in (401, 403):
        cls = Unauthorized
        hint = "check the kubeconfig's credentials and the service account's Role (docs/manifests)"
    else:
        cls = ApiError
    return cls(text, status=status, reason=reason, hint=hint)


def _retryable(exc: ApiError | ApiUnreachable) -> bool:
    if isinstance(exc, ApiError):
        return exc.status == 429 or exc.status >= 500
    # A failed TLS handshake fails the same way every time: no retry.
    return not isinstance(exc, TlsFailure)


def _retry_after(exc: Any) -> float | None:
    headers = getattr(exc, "headers", None) or {}
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        seconds = float(value) if value is not None else None
    except (TypeError, ValueError):
        return None
    # Anything may come through a proxy: a negative or NaN wait makes time.sleep() raise.
    if seconds is None or not seconds >= 0:
        return None
    return min(seconds, RETRY_AFTER_CAP_S)


class Kube:
    """The API calls with their retry policy and error translation; each returns the API's JSON
    as dicts."""

    def __init__(self, connection: Connection, namespace: str) -> None:
        self.connection = connection
        self.namespace = namespace
        self._apis: dict[str, Any] = {}

    def api(self, name: str) -> Any:
        """``core``, ``apps``, ``coordination``, ``events`` or ``custom``: the generated API's
        method names, sent as plain JSON requests (gx10slots.kube.rest.Group)."""
        if name not in self._apis:
            self._apis[name] = Group(self.connection.transport, name)
        return self._apis[name]

    # -- calls -----------------------------------------------------------------------------------

    def read(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """A GET/LIST with the read retry policy; ``what`` names it in messages and logs.

        Retried: connection errors (not a failed TLS handshake, which fails the same way every
        time), 5xx and 429, at most READ_ATTEMPTS times, waiting as the server's Retry-After asks
        (capped) or 0.2, 0.4, 0.8 s... (at most 2 s). A plain loop rather than tenacity: its
        import (asyncio included) was start-up time every command paid for a policy that is
        four lines."""
        for attempt in range(1, READ_ATTEMPTS + 1):
            try:
                return self._call(what, fn, args, dict(kwargs), READ_TIMEOUT, write=False)
            except (ApiError, ApiUnreachable) as exc:
                if attempt == READ_ATTEMPTS or not _retryable(exc):
                    raise
                after = getattr(exc, "retry_after", None)
                delay = float(after) if after is not None else min(0.2 * 2 ** (attempt - 1), 2.0)
                log.warning(
                    "%s failed (%s), attempt %d/%d, retrying", what, exc.message, attempt,
                    READ_ATTEMPTS,
                )  # fmt: skip
                time.sleep(delay)
        raise AssertionError("unreachable: the last attempt returns or raises")

    def read_text(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
        """A GET whose answer is text (pod logs), bounded; no retries (logs are best effort)."""
        kwargs["_raw_text"] = True
        doc = self._call(what, fn, args, kwargs, READ_TIMEOUT, write=False)
        return str(doc.get("text", ""))

    def write(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        """A mutating call, never retried; a lost answer raises :class:`WriteOutcomeUnknown`."""
        return self._call(what, fn, args, kwargs, WRITE_TIMEOUT, write=True)

    def _call(
        self,
        what: str,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: tuple[float, float],
        *,
        write: bool,
    ) -> dict[str, Any]:
        import urllib3.exceptions as u3

        raw_text = kwargs.pop("_raw_text", False)
        kwargs.setdefault("_request_timeout", timeout)
        kwargs["_preload_content"] = False
        started = time.monotonic()
        try:
            response = fn(*args, **kwargs)
            data = _read_body(response, MAX_RESPONSE_BYTES, what)
        except HttpStatus as exc:
            error = translate_api_exception(exc, what)
            error.retry_after = _retry_after(exc)
            raise error from exc
        except TooLarge as exc:
            raise ApiError(
                f"{what}: the API server announced a {exc.declared}-byte answer, over the "
                f"{MAX_RESPONSE_BYTES // (1024 * 1024)} MiB limit",
                status=exc.status,
            ) from exc
        except RefusedCall as exc:
            # An unknown method or keyword, a missing argument: refused before anything is sent.
            raise ClusterError(
                f"{what}: the Kubernetes adapter refused the call ({_cause(exc)})",
                hint=CLIENT_HINT,
            ) from exc
        except u3.SSLError as exc:
            raise self._tls_error(what, exc, write=write) from exc
        except (u3.NewConnectionError, u3.ConnectTimeoutError) as exc:
            # Nothing reached the server: safe to say nothing changed.
            raise ApiUnreachable(
                f"{what}: cannot reach the API server at {self.connection.host} ({_cause(exc)})",
                hint="is the cluster (or `slots sandbox up`) running, and the kubeconfig right?",
            ) from exc
        except (u3.HTTPError, OSError) as exc:
            elapsed = time.monotonic() - started
            cls = WriteOutcomeUnknown if write else ApiUnreachable
            raise cls(
                f"{what}: no answer from the API server after {elapsed:.1f} s ({_cause(exc)})"
            ) from exc
        if raw_text:
            return {"text": (data or b"")[-MAX_TEXT_BYTES:].decode("utf-8", errors="replace")}
        try:
            parsed = json.loads(data) if data else {}
        except ValueError as exc:
            raise ApiError(
                f"{what}: the API server answered with something that is not JSON: {excerpt(data)}",
                status=200,
            ) from exc
        if not isinstance(parsed, dict):
            raise ApiError(f"{what}: unexpected answer {excerpt(str(parsed))}", status=200)
        return parsed

    def _tls_error(self, what: str, cause: BaseException, *, write: bool) -> ApiUnreachable:
        """A failed handshake (the certificate, the protocol) happens before the request is
        sent: nothing changed, and it is not worth a retry. Any other TLS error may have cut a
        write whose request was already sent: its outcome is unknown."""
        message = (
            f"{what}: TLS with the API server at {self.connection.host} failed ({_cause(cause)})"
        )
        if write and not _handshake_failure(cause):
            return WriteOutcomeUnknown(message, hint=TLS_HINT)
        return TlsFailure(message, hint=TLS_HINT)


def _handshake_failure(cause: BaseException) -> bool:
    chain: list[BaseException] = []
    seen: BaseException | None = cause
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = (
            seen.__context__
            or seen.__cause__
            or next((a for a in getattr(seen, "args", ()) if isinstance(a, BaseException)), None)
        )
    if any(isinstance(e, (ssl.SSLCertVerificationError, ssl.CertificateError)) for e in chain):
        return True
    text = " ".join(str(e) for e in chain).upper()
    return any(
        marker in text
        for marker in (
            "CERTIFICATE_VERIFY_FAILED",
            "CERTIFICATE VERIFY FAILED",
            "WRONG_VERSION_NUMBER",
            "HANDSHAKE",
            "HOSTNAME",
        )
    )


def _read_body(response: Any, cap: int, what: str) -> bytes:
    """The answer's body, at most ``cap`` bytes (a declared or actual excess is an ApiError)."""
    if not hasattr(response, "stream"):
        return bytes(response.data or b"")  # an answer already in memory (tests' fakes)
    declared = str(response.headers.get("Content-Length", "") or "")
    if declared.isdigit() and int(declared) > cap:
        response.close()
        raise ApiError(
            f"{what}: the API server announced a {declared}-byte answer, over the "
            f"{cap // (1024 * 1024)} MiB limit",
            status=int(getattr(response, "status", 0) or 0),
        )
    body = bytearray()
    for chunk in response.stream(65536):
        body += chunk
        if len(body) > cap:
            response.close()
            raise ApiError(
                f"{what}: the API server's answer exceeds the {cap // (1024 * 1024)} MiB limit",
                status=int(getattr(response, "status", 0) or 0),
            )
    response.release_conn()
    return bytes(body)


def _cause(exc: BaseException) -> str:
    text = excerpt(str(exc), 160)
    # urllib3 messages embed the connection object's repr; keep the human part.
    if ">:" in text:
        text = text.split(">:", 1)[1].strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
