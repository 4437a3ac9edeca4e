"""A Kubernetes API server emulator over HTTP/1.1, for the official client and real kubectl.

It serves discovery (legacy JSON: kubectl falls back to it from aggregated discovery), the
resources of :mod:`gx10slots.sandbox.resources` with get/list/create/update/patch/delete/watch,
the ``status``/``scale``/``log`` subresources, server-side Table printing for ``kubectl get``,
optional bearer-token auth with RBAC authorization of every identity but the admin's
(:mod:`gx10slots.sandbox.rbac`; ``kubectl create token`` mints service-account tokens), optional
TLS with a self-signed certificate (kubectl and client-go send a kubeconfig token only over
https), and injectable faults
(:mod:`gx10slots.sandbox.faults`), also over the control API ``/_sandbox/faults`` so tests in
another process can inject them.

    server = ApiServer(token="s3cret", tls=True)
    url = server.start()          # https://127.0.0.1:PORT, served from a background thread
    server.seed(namespace_manifest)
    server.faults.add(FaultRule("throttle", verb="patch", resource="services"))
    server.stop()
"""

from __future__ import annotations

import contextlib
import copy
import ipaddress
import json
import logging
import math
import secrets
import select
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import yaml

from gx10slots.sandbox import apiproxy, customresources, protobuf, tables
from gx10slots.sandbox import resources as res
from gx10slots.sandbox.faults import FaultRule, Faults, RequestInfo
from gx10slots.sandbox.patching import PatchError, apply_patch, patch_type
from gx10slots.sandbox.quota import admit_pod
from gx10slots.sandbox.rbac import (
    ADMIN,
    Attributes,
    Authorizer,
    RoleSource,
    User,
    forbidden,
    name_from_field_selector,
    service_account_user,
)
from gx10slots.sandbox.resources import DEPLOYMENTS, NAMESPACES, PODS, RESOURCES, SERVICEACCOUNTS
from gx10slots.sandbox.selectors import (
    FieldSelector,
    LabelSelector,
    SelectorError,
    parse_field_selector,
    parse_label_selector,
)
from gx10slots.sandbox.store import (
    Cause,
    Obj,
    ResourceType,
    StatusError,
    Store,
    WatchEvent,
    bad_request,
    conflict,
    invalid,
    not_found,
)

log = logging.getLogger(__name__)

VERSION_INFO = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-gx10slots-sandbox",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2024-12-11T00:00:00Z",
    "goVersion": "go1.23.3",
    "compiler": "gc",
    "platform": "linux/amd64",
}
DEFAULT_WATCH_TIMEOUT = 1800.0
CONTROL_PREFIX = "/_sandbox/"
_OPEN_PATHS = ("/version", "/healthz", "/livez", "/readyz")


class LogSource(Protocol):
    """Where ``pods/log`` reads from: the pod runtime."""

    def logs(self, pod: Obj, tail_lines: int | None) -> str: ...


@dataclass
class Response:
    code: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, code: int, obj: Any, headers: dict[str, str] | None = None) -> Response:
        return cls(code, json.dumps(obj, separators=(",", ":")).encode(), headers=headers or {})

    @classmethod
    def error(cls, err: StatusError) -> Response:
        return cls.json(err.code, err.status(), err.headers)


@dataclass(frozen=True)
class Route:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None

    @property
    def resource(self) -> str:
        return f"{self.rt.plural}/{self.subresource}" if self.subresource else self.rt.plural


def _patch_status(err: PatchError) -> StatusError:
    causes = [{"reason": "UnexpectedServerResponse", "message": c} for c in err.causes]
    return StatusError(err.code, err.reason, err.message, {"causes": causes} if causes else None)


class _Dropped(Exception):
    """The response is to be no response at all: close the connection."""


def _not_found_path() -> StatusError:
    return StatusError(404, "NotFound", "the server could not find the requested resource", {})


def _method_not_allowed() -> StatusError:
    return StatusError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def parse_route(path: str) -> tuple[Route | None, bool]:
    """The resource a request path names, and whether it used the legacy ``/watch/`` prefix.
    Returns (None, False) for a discovery path; raises 404 for anything unknown."""
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif parts[:1] == ["apis"] and len(parts) >= 3:
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise _not_found_path()
    if not rest:
        return None, False
    legacy_watch = rest[0] == "watch"
    if legacy_watch:
        rest = rest[1:]
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        rt = res.lookup(group, version, rest[2])
        if rt is not None and rt.namespaced:
            namespace, rest = rest[1], rest[2:]
    rt = res.lookup(group, version, rest[0]) if rest else None
    if rt is None or len(rest) > 3:
        raise _not_found_path()
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if sub is not None and sub not in rt.subresources:
        raise _not_found_path()
    if rt.namespaced and name is not None and namespace is None:
        raise _not_found_path()
    return Route(rt, namespace, name, sub), legacy_watch


def _verb(method: str, route: Route, watch: bool) -> str:
    if method == "GET":
        if watch:
            return "watch"
        return "get" if route.name else "list"
    verbs = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
    verb = verbs.get(method)
    if verb is None:
        raise _method_not_allowed()
    if verb == "delete" and route.name is None:
        return "deletecollection"
    if verb == "create" and route.subresource is not None:
        return verb  # a create on a subresource of a named object: serviceaccounts/x/token
    if (verb == "create") != (route.name is None):
        raise _method_not_allowed()
    return verb


def _flag(query: dict[str, str], name: str) -> bool:
    return query.get(name, "").lower() in ("true", "1")


def _strip_type(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}


def _token_request_spec_from_protobuf(body: bytes) -> Obj:
    """spec of an authentication.k8s.io/v1 TokenRequest inside the k8s protobuf envelope
    (magic ``k8s\\0``, then runtime.Unknown whose field 2 holds the object)."""
    if not body.startswith(b"k8s\x00"):
        raise ValueError("not a Kubernetes protobuf envelope")
    raw = next((v for n, v in protobuf.fields(body[4:]) if n == 2), b"")
    spec: Obj = {}
    for number, value in protobuf.fields(raw if isinstance(raw, bytes) else b""):
        if number == 2 and isinstance(value, bytes):  # TokenRequest.spec
            for field_number, field_value in protobuf.fields(value):
                if field_number == 1 and isinstance(field_value, bytes):
                    spec.setdefault("audiences", []).append(field_value.decode())
                elif field_number == 4 and isinstance(field_value, int):
                    spec["expirationSeconds"] = field_value
    return spec


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], api: ApiServer) -> None:
        self.api = api
        self._connections: set[socket.socket] = set()
        self._conn_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._conn_lock:
            self._connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._conn_lock:
            self._connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that went away or spoke plain HTTP to the TLS port: not the server's problem.
        log.debug("sandbox apiserver: connection from %s failed", client_address, exc_info=True)

    def close_connections(self) -> None:
        with self._conn_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


def _tls_context(host: str) -> tuple[ssl.SSLContext, bytes]:
    """A server context with a fresh self-signed certificate for ``host`` (via openssl)."""
    names = ["DNS:localhost", "IP:127.0.0.1"]
    try:
        ipaddress.ip_address(host)
        names.append(f"IP:{host}")
    except ValueError:
        names.append(f"DNS:{host}")
    with tempfile.TemporaryDirectory(prefix="gx10-sandbox-tls-") as tmp:
        cert, key = Path(tmp, "tls.crt"), Path(tmp, "tls.key")
        try:
            subprocess.run(
                [
                    "openssl",
                    "req",
                    "-x509",
                    "-newkey",
                    "ec",
                    "-pkeyopt",
                    "ec_paramgen_curve:prime256v1",
                    "-nodes",
                    "-days",
                    "365",
                    "-subj",
                    "/CN=gx10-sandbox-apiserver",
                    "-addext",
                    f"subjectAltName={','.join(dict.fromkeys(names))}",
                    "-keyout",
                    str(key),
                    "-out",
                    str(cert),
                ],
                check=True,
                capture_output=True,
                timeout=30,
            )
        except (OSError, subprocess.SubprocessError) as err:
            raise RuntimeError(
                f"cannot make the sandbox's TLS certificate with openssl: {err}"
            ) from err
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        return context, cert.read_bytes()


class ApiServer:
    """The sandbox API server: ``start()`` serves in a background thread until ``stop()``."""

    def __init__(
        self,
        store: Store | None = None,
        *,
        token: str | None = None,
        log_source: LogSource | None = None,
        tls: bool = False,
        users: dict[str, User] | None = None,
    ) -> None:
        self.store = store if store is not None else Store()
        self.token = token
        # Bearer token -> (user, expiry on the monotonic clock or None). The admin token is
        # system:masters; others are authorized by the RBAC objects in the store.
        self._tokens: dict[str, tuple[User, float | None]] = {
            t: (u, None) for t, u in (users or {}).items()
        }
        if token is not None:
            self._tokens[token] = (ADMIN, None)
        self._tokens_lock = threading.Lock()
        self.authorizer = Authorizer(RoleSource(self._rbac_objects))
        self.log_source = log_source
        # Where `services/NAME/proxy` goes: (namespace, service) -> a base URL, or None when the
        # Service has no ready endpoints (the data plane plugs in its Service proxies).
        self.service_resolver: apiproxy.ServiceResolver | None = None
        self.tls = tls
        # With ``tls``: the self-signed certificate (PEM), the kubeconfig's certificate authority.
        self.certificate_pem: bytes | None = None
        self.faults = Faults()
        self.url = ""
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        if self._httpd is not None:
            raise RuntimeError("the API server is already running")
        self._stopping.clear()
        self._httpd = _HTTPServer((host, port), self)
        bound_port = self._httpd.server_port
        if self.tls:
            context, self.certificate_pem = _tls_context(host)
            # The handshake then runs on the connection's own thread, not the accepting one.
            self._httpd.socket = context.wrap_socket(
                self._httpd.socket, server_side=True, do_handshake_on_connect=False
            )
        self.url = f"{'https' if self.tls else 'http'}://{host}:{bound_port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"sandbox-apiserver-{bound_port}",
            daemon=True,
        )
        self._thread.start()
        return self.url

    def stop(self) -> None:
        """Stop serving and close every open connection (watches and hung requests end)."""
        self._stopping.set()
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> ApiServer:
        if self._httpd is None:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def seed(self, obj: Obj) -> Obj:
        """Create an object as a POST would (defaults, validation), without HTTP, auth or faults.
        Nodes keep the status they are seeded with."""
        rt = res.for_kind(str(obj.get("apiVersion")), str(obj.get("kind")))
        if rt is None:
            raise ValueError(
                f"the sandbox does not serve {obj.get('apiVersion')}/{obj.get('kind')}"
            )
        admitted = res.admit_create(rt, obj)
        stored = self.store.create(rt, res.to_storage(rt, admitted))
        return res.from_storage(rt, stored)

    @property
    def stopping(self) -> threading.Event:
        return self._stopping

    # -- identities --------------------------------------------------------------------------

    def add_user(self, token: str, user: User) -> None:
        with self._tokens_lock:
            self._tokens[token] = (user, None)

    def mint_token(self, user: User, seconds: float) -> str:
        token = secrets.token_urlsafe(32)
        with self._tokens_lock:
            self._tokens[token] = (user, time.monotonic() + seconds)
        return token

    def user_of(self, token: str) -> User | None:
        with self._tokens_lock:
            found = self._tokens.get(token)
        if found is None:
            return None
        user, expires = found
        return user if expires is None or time.monotonic() < expires else None

    def _rbac_objects(self, plural: str, namespace: str | None) -> list[Obj]:
        rt = res.lookup("rbac.authorization.k8s.io", "v1", plural)
        assert rt is not None
        items, _ = self.store.list(rt, namespace)
        return items


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, the body waits for the client's
    # delayed ACK of the headers (~40 ms a request). A real API server sets TCP_NODELAY.
    disable_nagle_algorithm = True
    server: _HTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    @property
    def api(self) -> ApiServer:
        return self.server.api

    # -- plumbing ----------------------------------------------------------------------------

    def _handle(self) -> None:
        self._warnings: list[str] = []
        url = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        try:
            body = self._read_body()
            self._user = self._authenticate(url.path)
            response: Response | None
            proxied = apiproxy.match(url.path)
            if proxied is not None:
                self._authorize_proxy(url.path)
                self._proxy_service(*proxied, url.query, body)
                return
            if url.path.startswith(CONTROL_PREFIX):
                response = self._control(url.path, body)
            else:
                response = self._serve(url.path, query, body)
        except _Dropped:
            self.close_connection = True
            return
        except StatusError as err:
            response = Response.error(err)
        except (ConnectionError, TimeoutError):
            self.close_connection = True
            return
        except Exception as err:  # the one boundary: any bug becomes a 500 Status
            log.exception("sandbox apiserver: %s %s failed", self.command, self.path)
            if self._streaming:
                self.close_connection = True
                return
            response = Response.error(
                StatusError(500, "InternalError", f"Internal error occurred: {err}")
            )
        if response is not None:
            self._send(response)

    def _proxy_service(self, namespace: str, name: str, path: str, query: str, body: bytes) -> None:
        resolver = self.api.service_resolver
        upstream = resolver(namespace, name) if resolver is not None else None
        if upstream is None:
            raise StatusError(
                503, "ServiceUnavailable", f'no endpoints available for service "{name}"'
            )
        self._streaming = True
        try:
            apiproxy.relay(self, upstream, path, query, body)
        except OSError as err:
            self.close_connection = True
            log.debug("service proxy to %s failed: %s", upstream, err)

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, response: Response) -> None:
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("Cache-Control", "no-cache, private")
        for name, value in response.headers.items():
            self.send_header(name, value)
        for warning in self._warnings:
            self.send_header("Warning", f"299 - {json.dumps(warning)}")
        self.end_headers()
        self.wfile.write(response.body)

    def _authenticate(self, path: str) -> User:
        if self.api.token is None:
            return ADMIN  # authentication off: everyone may do everything
        header = self.headers.get("Authorization")
        if header is None and path in _OPEN_PATHS:
            # Anonymous requests may read these, as system:public-info-viewer.
            return User("system:anonymous", ("system:unauthenticated",))
        scheme, _, credential = (header or "").partition(" ")
        # The scheme is case-insensitive (apiserver pkg/authentication/request/bearertoken:
        # `strings.ToLower(parts[0]) != "bearer"`); the Python client's in-cluster loader sends
        # "bearer".
        user = self.api.user_of(credential.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            raise StatusError(401, "Unauthorized", "Unauthorized")
        return user

    def _authorize_proxy(self, path: str) -> None:
        """`services/proxy` as the apiserver authorizes it: the verb from the method, the name
        as written in the URL (``gx10-blue:8000``, ``https:dashboard:``)."""
        parts = path.split("/")  # "", api, v1, namespaces, NS, services, NAME, proxy, ...
        verbs = {"GET": "get", "HEAD": "get", "POST": "create", "PUT": "update"}
        attrs = Attributes(
            user=self._user,
            verb=verbs.get(self.command, self.command.lower()),
            resource="services",
            subresource="proxy",
            namespace=parts[4],
            name=parts[6],
        )
        if not self.api.authorizer.authorize(attrs).allowed:
            raise forbidden(attrs)

    def _authorize(self, verb: str, route: Route, query: dict[str, str]) -> None:
        name = route.name or ""
        if not name and verb in ("list", "watch"):
            name = name_from_field_selector(query.get("fieldSelector"))
        attrs = Attributes(
            user=self._user,
            verb=verb,
            api_group=route.rt.group,
            resource=route.rt.plural,
            subresource=route.subresource or "",
            namespace=route.namespace or "",
            name=name,
        )
        if not self.api.authorizer.authorize(attrs).allowed:
            raise forbidden(attrs)

    def _decode(self, body: bytes) -> Obj:
        content_type = (self.headers.get("Content-Type") or "application/json").split(";")[0]
        try:
            if content_type in ("application/yaml", "application/x-yaml"):
                obj = yaml.safe_load(body)
            elif content_type == "application/json":
                obj = json.loads(body)
            elif content_type == protobuf.MEDIA_TYPE:
                # kubectl's typed clients (create configmap/secret/...) send protobuf and no
                # discovery answer can stop them: see gx10slots/sandbox/protobuf.py.
                obj = self._decode_protobuf(body)
            else:
                raise StatusError(
                    415,
                    "UnsupportedMediaType",
                    f"the body of the request was in an unknown format - accepted media types "
                    f'include: application/json, application/yaml (got "{content_type}")',
                )
        except (ValueError, yaml.YAMLError) as err:
            raise bad_request(f"the body of the request could not be decoded: {err}") from err
        if not isinstance(obj, dict):
            raise bad_request("the body of the request must be a JSON object")
        return obj

    def _decode_protobuf(self, body: bytes) -> Obj:
        try:
            return protobuf.decode(body)
        except protobuf.UnsupportedKind as err:
            raise StatusError(
                415,
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types "
                f"include: application/json, application/yaml (the sandbox decodes "
                f"{protobuf.MEDIA_TYPE} only for ConfigMap, Secret, Namespace and "
                f"ServiceAccount; got {err})",
            ) from err

    # -- fault injection ---------------------------------------------------------------------

    def _control(self, path: str, body: bytes) -> Response:
        if not self._user.is_master:
            raise forbidden(Attributes(self._user, self.command.lower(), path=path))
        if path.rstrip("/") == "/_sandbox/authz":
            # The authorizer's decisions for everyone but system:masters, oldest first.
            if self.command == "DELETE":
                self.api.authorizer.clear()
            elif self.command != "GET":
                raise _method_not_allowed()
            return Response.json(200, {"decisions": self.api.authorizer.decisions()})
        if path.rstrip("/") != "/_sandbox/faults":
            raise _not_found_path()
        faults = self.api.faults
        if self.command == "GET":
            return Response.json(200, faults.snapshot())
        if self.command == "DELETE":
            faults.clear()
            return Response.json(200, faults.snapshot())
        if self.command == "POST":
            try:
                rule = FaultRule.from_dict(json.loads(body or b"null"))
            except (ValueError, TypeError) as err:
                raise bad_request(f"invalid fault rule: {err}") from err
            faults.add(rule)
            return Response.json(201, rule.to_dict())
        raise _method_not_allowed()

    def _fault(self, rule: FaultRule, route: Route) -> Response:
        if rule.action in ("hang", "drop"):
            if rule.action == "hang":
                self.api.stopping.wait(rule.duration)
            raise _Dropped()
        if rule.action == "conflict":
            return Response.error(conflict(route.rt, route.name or ""))
        if rule.action == "throttle":
            seconds = max(1, math.ceil(rule.duration))
            return Response.error(
                StatusError(
                    429,
                    "TooManyRequests",
                    rule.message or "Too many requests, please try again later.",
                    {"causes": [], "retryAfterSeconds": seconds},
                    headers={"Retry-After": str(seconds)},
                )
            )
        message = rule.message or "injected fault"
        return Response.error(
            StatusError(
                500,
                "InternalError",
                f"Internal error occurred: {message}",
                {"causes": [{"message": message}]},
            )
        )

    # -- the API -----------------------------------------------------------------------------

    def _serve(self, path: str, query: dict[str, str], body: bytes) -> Response | None:
        path = path.rstrip("/") or "/"
        discovery = self._discovery(path)
        if discovery is not None:
            return discovery
        route, legacy_watch = parse_route(path)
        if route is None:
            return self._resource_list(path)
        watch = legacy_watch or _flag(query, "watch")
        verb = _verb(self.command, route, watch)
        self._authorize(verb, route, query)
        rule = self.api.faults.take(RequestInfo(verb, route.resource, route.namespace, route.name))
        if rule is not None and (rule.when == "before" or verb == "watch"):
            return self._fault(rule, route)
        response = self._dispatch(verb, route, query, body)
        if rule is not None:
            return self._fault(rule, route)
        return response

    def _discovery(self, path: str) -> Response | None:
        if self.command != "GET":
            return None
        if path in ("/healthz", "/livez", "/readyz"):
            return Response(200, b"ok", "text/plain; charset=utf-8")
        if path == "/version":
            return Response.json(200, VERSION_INFO)
        if path == "/api":
            address = self.headers.get("Host") or f"127.0.0.1:{self.server.server_port}"
            return Response.json(200, res.api_versions(address))
        if path == "/apis":
            return Response.json(200, res.api_group_list())
        if path == "/openapi/v3":
            return Response.json(200, res.openapi_v3_root())
        parts = path.strip("/").split("/")
        if parts[:2] == ["openapi", "v3"]:
            gv = parts[2:]
            doc = None
            if gv[:1] == ["api"] and len(gv) == 2:
                doc = res.openapi_v3_document("", gv[1])
            elif gv[:1] == ["apis"] and len(gv) == 3:
                doc = res.openapi_v3_document(gv[1], gv[2])
            if doc is None:
                raise _not_found_path()
            return Response.json(200, doc)
        if len(parts) == 2 and parts[0] == "apis":
            group = res.api_group(parts[1])
            if group is None:
                raise _not_found_path()
            return Response.json(200, group)
        return None

    def _resource_list(self, path: str) -> Response:
        parts = path.strip("/").split("/")
        group, version = ("", "v1") if parts[0] == "api" else (parts[1], parts[2])
        listing = res.api_resource_list(group, version)
        if listing is None or self.command != "GET":
            raise _not_found_path()
        return Response.json(200, listing)

    def _dispatch(
        self, verb: str, route: Route, query: dict[str, str], body: bytes
    ) -> Response | None:
        dry_run = query.get("dryRun") == "All"
        self._field_validation = query.get("fieldValidation") or "Warn"
        if verb == "watch":
            self._watch(route, query)
            return None
        if verb == "get":
            return self._get(route, query)
        if verb == "list":
            return self._list(route, query)
        if verb == "create" and route.subresource == "token":
            return self._token_request(route, self._decode_token_request(body))
        if verb == "create":
            return self._create(route, self._decode(body), dry_run)
        if verb == "update":
            return self._update(route, self._decode(body), dry_run)
        if verb == "patch":
            return self._patch(route, body, dry_run)
        if verb == "delete":
            return self._delete(route, body, query)
        return self._delete_collection(route, query, dry_run)

    def _present(self, route: Route, obj: Obj) -> Obj:
        return res.from_storage(route.rt, obj)

    def _get(self, route: Route, query: dict[str, str]) -> Response:
        assert route.name is not None
        obj = self._present(route, self.api.store.get(route.rt, route.namespace, route.name))
        if route.subresource == "scale":
            return Response.json(200, res.scale_of(obj))
        if route.subresource == "log":
            return self._logs(obj, query)
        if tables.wants_table(self.headers.get("Accept")):
            return Response.json(
                200,
                tables.table(
                    route.rt,
                    [obj],
                    resource_version=obj["metadata"].get("resourceVersion"),
                    include_object=query.get("includeObject", "Metadata"),
                ),
            )
        return Response.json(200, obj)

    def _logs(self, pod: Obj, query: dict[str, str]) -> Response:
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = query.get("container") or (containers[0] if containers else "")
        if container not in containers:
            raise bad_request(
                f"container {container} is not valid for pod {pod['metadata']['name']}"
            )
        statuses = {
            cs.get("name"): cs for cs in (pod.get("status") or {}).get("containerStatuses") or []
        }
        waiting = ((statuses.get(container) or {}).get("state") or {}).get("waiting") or {}
        if container not in statuses or waiting.get("reason") in (
            "ContainerCreating",
            "PodInitializing",
        ):
            reason = waiting.get("reason") or "ContainerCreating"
            raise bad_request(
                f'container "{container}" in pod "{pod["metadata"]["name"]}" is waiting to '
                f"start: {reason}"
            )
        tail = query.get("tailLines")
        try:
            tail_lines = int(tail) if tail else None
        except ValueError as err:
            raise bad_request(f"tailLines: Invalid value: {tail!r}") from err
        source = self.api.log_source
        text = source.logs(pod, tail_lines) if source is not None else ""
        return Response(200, text.encode(), "text/plain")

    def _selectors(
        self, route: Route, query: dict[str, str]
    ) -> tuple[LabelSelector, FieldSelector]:
        try:
            labels = parse_label_selector(query.get("labelSelector"))
            fields = parse_field_selector(
                query.get("fieldSelector"), res.supported_field_selectors(route.rt)
            )
        except SelectorError as err:
            raise bad_request(str(err)) from err
        return labels, fields

    def _list(self, route: Route, query: dict[str, str]) -> Response:
        labels, fields = self._selectors(route, query)
        rt = route.rt
        items, rv = self.api.store.list(rt, route.namespace)
        presented = [self._present(route, o) for o in items]
        matching = [
            o
            for o in presented
            if labels.matches(o["metadata"].get("labels")) and fields.matches(o)
        ]
        if tables.wants_table(self.headers.get("Accept")):
            return Response.json(
                200,
                tables.table(
                    rt,
                    matching,
                    resource_version=rv,
                    include_object=query.get("includeObject", "Metadata"),
                ),
            )
        return Response.json(
            200,
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": rv},
                "items": [_strip_type(o) for o in matching],
            },
        )

    def _check_identity(self, route: Route, obj: Obj, *, create: bool) -> None:
        rt = route.rt
        if obj.get("apiVersion") not in (None, rt.api_version) or obj.get("kind") not in (
            None,
            rt.kind,
        ):
            raise bad_request(
                f"the object provided is {obj.get('apiVersion')}, Kind={obj.get('kind')}; "
                f"the endpoint serves {rt.api_version}, Kind={rt.kind}"
            )
        meta = obj.setdefault("metadata", {})
        if not isinstance(meta, dict):
            raise bad_request("metadata must be an object")
        if rt.namespaced:
            if meta.get("namespace") not in (None, "", route.namespace):
                raise bad_request(
                    "the namespace of the provided object does not match the namespace sent on "
                    "the request"
                )
            meta["namespace"] = route.namespace
        else:
            meta.pop("namespace", None)
        if not create and meta.get("name") != route.name:
            raise bad_request(
                f"the name of the object ({meta.get('name') or ''}) does not match the name on "
                f"the URL ({route.name})"
            )

    def _create(self, route: Route, obj: Obj, dry_run: bool) -> Response:
        if route.subresource == "token":
            return self._token_request(route, obj)
        if route.subresource is not None:
            raise _method_not_allowed()
        self._check_identity(route, obj, create=True)
        store = self.api.store
        if route.rt.namespaced and store.find(NAMESPACES, None, str(route.namespace)) is None:
            raise not_found(NAMESPACES, str(route.namespace))
        admitted = res.admit_create(
            route.rt, obj, field_validation=self._field_validation, warnings=self._warnings
        )
        with store.atomic():  # quota admission and the create as one step, as quota reserves
            if route.rt is PODS:
                admit_pod(store, admitted)
            stored = store.create(route.rt, res.to_storage(route.rt, admitted), dry_run=dry_run)
        return Response.json(201, self._present(route, stored))

    def _decode_token_request(self, body: bytes) -> Obj:
        """A TokenRequest body: JSON, or the protobuf the typed client (`kubectl create token`)
        sends, of which only spec.audiences and spec.expirationSeconds matter here."""
        content_type = (self.headers.get("Content-Type") or "").split(";")[0]
        if content_type != "application/vnd.kubernetes.protobuf":
            return self._decode(body) if body.strip() else {}
        try:
            return {"spec": _token_request_spec_from_protobuf(body)}
        except (IndexError, ValueError) as err:
            raise bad_request(f"the body of the request could not be decoded: {err}") from err

    def _token_request(self, route: Route, body: Obj) -> Response:
        """TokenRequest (what `kubectl create token NAME` posts): a bearer token for the service
        account, authorized afterwards by the RBAC objects that bind it."""
        assert route.namespace is not None and route.name is not None
        self.api.store.get(SERVICEACCOUNTS, route.namespace, route.name)  # 404 when missing
        spec = body.get("spec") or {}
        seconds = spec.get("expirationSeconds") or 3600
        if not isinstance(seconds, int) or isinstance(seconds, bool) or seconds < 600:
            raise invalid(
                ResourceType("authentication.k8s.io", "v1", "tokenrequests", "TokenRequest"),
                route.name,
                [
                    Cause(
                        "spec.expirationSeconds",
                        "FieldValueInvalid",
                        f"Invalid value: {json.dumps(seconds)}: may not specify a duration less "
                        "than 10 minutes",
                    )
                ],
            )
        user = service_account_user(route.namespace, route.name)
        token = self.api.mint_token(user, seconds)
        expires = datetime.now(UTC) + timedelta(seconds=seconds)
        return Response.json(
            201,
            {
                "kind": "TokenRequest",
                "apiVersion": "authentication.k8s.io/v1",
                "metadata": {
                    "name": route.name,
                    "namespace": route.namespace,
                    "creationTimestamp": None,
                },
                "spec": {
                    "audiences": spec.get("audiences") or ["https://kubernetes.default.svc"],
                    "expirationSeconds": seconds,
                    "boundObjectRef": spec.get("boundObjectRef"),
                },
                "status": {
                    "token": token,
                    "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
                },
            },
        )

    def _update(self, route: Route, obj: Obj, dry_run: bool) -> Response:
        if route.subresource == "scale":
            return self._write_scale(route, lambda current: obj, dry_run)
        self._check_identity(route, obj, create=False)
        return self._write(route, lambda current: obj, dry_run)

    def _patch(self, route: Route, body: bytes, dry_run: bool) -> Response:
        content_type = self.headers.get("Content-Type")
        custom = customresources.definition(route.rt) is not None

        def patched(current: Obj) -> Obj:
            try:
                return apply_patch(current, body, content_type, custom=custom)
            except PatchError as err:
                raise _patch_status(err) from err

        try:
            patch_type(content_type, custom=custom)  # before the lookup, as the apiserver does
        except PatchError as err:
            raise _patch_status(err) from err

        if route.subresource == "scale":
            return self._write_scale(route, patched, dry_run)

        def checked(current: Obj) -> Obj:
            obj = patched(current)
            self._check_identity(route, obj, create=False)
            return obj

        return self._write(route, checked, dry_run, patch=True)

    def _write(self, route: Route, make: Any, dry_run: bool, *, patch: bool = False) -> Response:
        """Read, compute the new object, admit and store it, atomically."""
        store, rt = self.api.store, route.rt
        assert route.name is not None
        with store.atomic():
            current = self._present(route, store.get(rt, route.namespace, route.name))
            new = make(copy.deepcopy(current))
            admitted = res.admit_update(
                rt,
                current,
                new,
                route.subresource,
                field_validation=self._field_validation,
                warnings=self._warnings,
                patch=patch,
            )
            stored = store.update(rt, res.to_storage(rt, admitted), dry_run=dry_run)
        return Response.json(200, self._present(route, stored))

    def _write_scale(self, route: Route, make: Any, dry_run: bool) -> Response:
        store = self.api.store
        assert route.name is not None
        with store.atomic():
            current = store.get(DEPLOYMENTS, route.namespace, route.name)
            scale = make(res.scale_of(current))
            meta = scale.get("metadata") or {}
            if meta.get("name") not in (None, route.name):
                raise bad_request(
                    f"the name of the object ({meta.get('name')}) does not match the name on "
                    f"the URL ({route.name})"
                )
            new = res.apply_scale(current, scale)
            admitted = res.admit_update(DEPLOYMENTS, current, new)
            stored = store.update(DEPLOYMENTS, admitted, dry_run=dry_run)
        return Response.json(200, res.scale_of(stored))

    def _delete(self, route: Route, body: bytes, query: dict[str, str]) -> Response:
        assert route.name is not None
        options = self._decode(body) if body.strip() else {}
        preconditions = options.get("preconditions") or {}
        dry_run = query.get("dryRun") == "All" or "All" in (options.get("dryRun") or [])
        store, rt = self.api.store, route.rt
        with store.atomic():
            if rt is NAMESPACES and not dry_run:
                store.get(rt, None, route.name)
                store.delete_namespaced(route.name, RESOURCES)
            gone = store.delete(
                rt,
                route.namespace,
                route.name,
                dry_run=dry_run,
                uid=preconditions.get("uid"),
                resource_version=preconditions.get("resourceVersion"),
            )
        if rt.key in res.RETURNS_DELETED_OBJECT:
            return Response.json(200, self._present(route, gone))
        details: Obj = {"name": route.name}
        if rt.group:
            details["group"] = rt.group
        details.update(kind=rt.plural, uid=gone["metadata"].get("uid"))
        return Response.json(
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            },
        )

    def _delete_collection(self, route: Route, query: dict[str, str], dry_run: bool) -> Response:
        labels, fields = self._selectors(route, query)
        store, rt = self.api.store, route.rt
        deleted = []
        with store.atomic():
            items, _ = store.list(rt, route.namespace)
            for obj in items:
                presented = self._present(route, obj)
                if not (
                    labels.matches(obj["metadata"].get("labels")) and fields.matches(presented)
                ):
                    continue
                meta = obj["metadata"]
                deleted.append(
                    store.delete(rt, meta.get("namespace"), meta["name"], dry_run=dry_run)
                )
            rv = store.resource_version
        return Response.json(
            200,
            {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": rv},
                "items": [_strip_type(self._present(route, o)) for o in deleted],
            },
        )

    # -- watch -------------------------------------------------------------------------------

    def _watch(self, route: Route, query: dict[str, str]) -> None:
        labels, fields = self._selectors(route, query)
        if route.name:
            name_filter = parse_field_selector(f"metadata.name={route.name}")
            fields = FieldSelector(fields.requirements + name_filter.requirements)
        try:
            timeout = float(query.get("timeoutSeconds") or DEFAULT_WATCH_TIMEOUT)
        except ValueError as err:
            raise bad_request("timeoutSeconds must be a number") from err
        as_table = tables.wants_table(self.headers.get("Accept"))
        include = query.get("includeObject", "Metadata")
        try:
            sub = self.api.store.watch(route.rt, route.namespace, query.get("resourceVersion"))
        except StatusError as err:
            if err.code != 410:
                raise
            self._start_stream()
            self._write_chunk({"type": "ERROR", "object": err.status()})
            self._end_stream()
            return
        deadline = time.monotonic() + timeout
        self._start_stream()
        try:
            for event in self._events(sub, deadline):
                out = self._watch_event(route, event, labels, fields)
                if out is None:
                    continue
                kind, obj = out
                if as_table:
                    obj = tables.table(
                        route.rt,
                        [obj],
                        resource_version=obj["metadata"].get("resourceVersion"),
                        include_object=include,
                    )
                self._write_chunk({"type": kind, "object": obj})
            self._end_stream()
        except OSError:
            self.close_connection = True
        finally:
            sub.close()

    def _events(self, sub: Any, deadline: float) -> Iterator[WatchEvent]:
        yield from sub.initial
        stopping = self.api.stopping
        while not stopping.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            event = sub.get(timeout=min(remaining, 0.5))
            if event is not None:
                yield event
            elif self._client_gone():
                raise ConnectionResetError("watch client went away")

    def _client_gone(self) -> bool:
        """A watch client sends nothing after its request: a readable socket means it left."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            if isinstance(self.connection, ssl.SSLSocket):
                return True  # EOF or close_notify; TLS sockets cannot peek
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _watch_event(
        self, route: Route, event: WatchEvent, labels: LabelSelector, fields: FieldSelector
    ) -> tuple[str, Obj] | None:
        """The event a selecting watcher sees: objects entering the selection are ADDED,
        objects leaving it DELETED, as the apiserver's watch cache reports them."""
        obj = self._present(route, event.object)

        def selected(o: Obj) -> bool:
            return labels.matches(o["metadata"].get("labels")) and fields.matches(o)

        now_in = selected(obj)
        if event.type != "MODIFIED" or event.old is None:
            return (event.type, obj) if now_in else None
        old = self._present(route, event.old)
        was_in = selected(old)
        if now_in and was_in:
            return "MODIFIED", obj
        if now_in:
            return "ADDED", obj
        if was_in:  # the object as it was, at the revision it left
            rv = obj["metadata"].get("resourceVersion")
            return "DELETED", {**old, "metadata": {**old["metadata"], "resourceVersion": rv}}
        return None

    _streaming = False

    def _start_stream(self) -> None:
        self._streaming = True
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()

    def _write_chunk(self, event: Obj) -> None:
        data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()
        self.close_connection = True
