"""Plain JSON over HTTPS to the API server: the one transport of the Kubernetes adapter.

Why not the official client's generated API classes: importing ``CoreV1Api`` and ``AppsV1Api``
builds hundreds of pydantic models, about a second of start-up for every command, to send a
handful of GET/PATCH requests whose answers we keep as plain dicts anyway (docs/benchmarks.md).
Here a request is a method, a path and a JSON body over one urllib3 pool; the credentials come
from :mod:`gx10slots.kube.kubeconfig` (our loader for plain kubeconfigs, the official loader
for everything else).

:class:`Group` keeps the names of the generated methods the product calls
(``kube.api("core").read_namespaced_service(name, namespace)``), so a call reads as before; a name
or keyword it does not know is refused before anything is sent (:class:`RefusedCall`).
"""

from __future__ import annotations

import json
import os
import ssl
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    import urllib3

JSON = "application/json"
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
USER_AGENT = "gx10slots"
# An error answer (a Status) is a few hundred bytes; more is read no further.
MAX_ERROR_BYTES = 64 * 1024


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to prove who we are, as a kubeconfig loader found them.

    ``headers`` is called for every request: the official loader's refresh hook (an exec plugin's
    expiring token) runs there. PEM material given inline (``*_data``) never touches the disk
    longer than it takes to load it into the TLS context."""

    host: str
    source: str
    verify: bool = True
    ca_file: str | None = None
    ca_data: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    cert_data: bytes | None = None
    key_data: bytes | None = None
    tls_server_name: str | None = None
    proxy: str | None = None
    headers: Callable[[], Mapping[str, str]] = field(default=dict, repr=False)

    def __repr__(self) -> str:  # never a credential in a repr, whatever a field holds
        return f"Credentials(host={self.host!r}, source={self.source!r})"

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context: the cluster CA (or none checked), and the client certificate."""
        context = ssl.create_default_context(
            cafile=self.ca_file or None, cadata=self.ca_data or None
        )
        if not self.verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if self.cert_data is not None and self.key_data is not None:
            _load_cert_chain_from_memory(context, self.cert_data, self.key_data)
        elif self.cert_file:
            context.load_cert_chain(self.cert_file, self.key_file or None)
        return context


def _load_cert_chain_from_memory(context: ssl.SSLContext, cert: bytes, key: bytes) -> None:
    """``load_cert_chain`` takes paths only: the PEM goes to a private directory for the moment
    it takes to load, then is deleted (the official loader leaves its copies in /tmp)."""
    with tempfile.TemporaryDirectory(prefix="gx10slots-tls-") as directory:
        paths = []
        for name, data in (("cert.pem", cert), ("key.pem", key)):
            path = os.path.join(directory, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            paths.append(path)
        context.load_cert_chain(paths[0], paths[1])


class HttpStatus(Exception):
    """A non-2xx answer: status, reason, (bounded) body and headers, the attributes
    :func:`gx10slots.kube.client.translate_api_exception` reads."""

    def __init__(self, status: int, reason: str, body: str, headers: Mapping[str, str]) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.body = body
        self.headers = headers


class TooLarge(Exception):
    """The server declared an answer over the cap: refused before reading it."""

    def __init__(self, declared: int, status: int) -> None:
        super().__init__(f"{declared} bytes")
        self.declared = declared
        self.status = status


class RefusedCall(TypeError):
    """A call the adapter does not know (a method name, a keyword, a missing argument)."""


class Transport:
    """One urllib3 pool to one API server, authenticated per request."""

    def __init__(self, credentials: Credentials, max_response_bytes: int) -> None:
        import urllib3

        self.credentials = credentials
        self.host = credentials.host.rstrip("/")
        self.max_response_bytes = max_response_bytes
        options: dict[str, Any] = {"num_pools": 2, "maxsize": 4, "retries": False}
        if self.host.startswith("https"):
            context = credentials.ssl_context()
            options.update(
                ssl_context=context,
                cert_reqs=context.verify_mode,
                assert_hostname=None if credentials.verify else False,
                server_hostname=credentials.tls_server_name or None,
            )
        self.pool: urllib3.PoolManager = (
            urllib3.ProxyManager(credentials.proxy, **options)
            if credentials.proxy
            else urllib3.PoolManager(**options)
        )

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = JSON,
        timeout: tuple[float, float] = (5.0, 15.0),
    ) -> urllib3.BaseHTTPResponse:
        """The answer, unread (the caller reads it, bounded); a non-2xx answer raises
        :class:`HttpStatus`, a declared size over the cap :class:`TooLarge`. urllib3's own
        exceptions (connection, TLS, timeouts) pass through: the caller translates them."""
        import urllib3

        headers = {"Accept": JSON, "User-Agent": USER_AGENT, **self.credentials.headers()}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        url = self.host + path
        if query:
            url += "?" + urlencode({k: _query_value(v) for k, v in query.items()})
        response = self.pool.request(
            method,
            url,
            body=data,
            headers=headers,
            timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]),
            preload_content=False,
            redirect=False,  # a redirect would carry our credentials elsewhere
            retries=False,  # never a blind retry of a write: the adapter owns retries
        )
        declared = str(response.headers.get("Content-Length", "") or "")
        if declared.isdigit() and int(declared) > self.max_response_bytes:
            response.close()
            raise TooLarge(int(declared), response.status)
        if not 200 <= response.status < 300:
            text = _read_at_most(response, MAX_ERROR_BYTES).decode("utf-8", "replace")
            raise HttpStatus(response.status, response.reason or "", text, response.headers)
        return response


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _read_at_most(response: Any, cap: int) -> bytes:
    body = bytearray()
    try:
        for chunk in response.stream(16384):
            body += chunk
            if len(body) >= cap:
                break
    finally:
        response.close()
    return bytes(body[:cap])


# -- the generated client's method names, over plain requests --------------------------------------

_GROUPS = {
    "core": "/api/v1",
    "apps": "/apis/apps/v1",
    "coordination": "/apis/coordination.k8s.io/v1",
    "events": "/apis/events.k8s.io/v1",
}
# (group, the generated name's resource part) -> (plural, namespaced)
_RESOURCES = {
    ("core", "service"): "services",
    ("core", "config_map"): "configmaps",
    ("core", "pod"): "pods",
    ("core", "pod_log"): "pods",  # the pod's log subresource: text
    ("core", "secret"): "secrets",
    ("core", "node"): "nodes",
    ("apps", "deployment"): "deployments",
    ("coordination", "lease"): "leases",
    ("events", "event"): "events",
}
# ("get" is CustomObjectsApi's name for a read: get_namespaced_custom_object)
_VERBS = {
    "read": "GET",
    "get": "GET",
    "list": "GET",
    "create": "POST",
    "replace": "PUT",
    "patch": "PATCH",
}
# keyword -> query parameter (the API's names); the underscored ones shape the request itself
_QUERY = {
    "field_manager": "fieldManager",
    "label_selector": "labelSelector",
    "field_selector": "fieldSelector",
    "resource_version": "resourceVersion",
    "timeout_seconds": "timeoutSeconds",
    "watch": "watch",
    "container": "container",
    "tail_lines": "tailLines",
}
_CONTROL = {"_request_timeout", "_preload_content"}


class Group:
    """``kube.api(name)``: the generated API's method names the product uses, as plain requests
    (``read_namespaced_service(name, namespace)``, ``list_namespaced_custom_object(group,
    version, namespace, plural)``...). Each returns the unread answer."""

    def __init__(self, transport: Transport, name: str) -> None:
        if name not in _GROUPS and name != "custom":
            raise RefusedCall(f"no API group {name!r}")
        self._transport = transport
        self._name = name

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        verb, _, rest = method.partition("_")
        namespaced = rest.startswith("namespaced_")
        resource = rest.removeprefix("namespaced_")
        custom = self._name == "custom" and resource == "custom_object"
        if verb not in _VERBS or not (custom or (self._name, resource) in _RESOURCES):
            raise RefusedCall(f"the Kubernetes adapter has no {self._name} call {method!r}")

        def call(*args: Any, **kwargs: Any) -> Any:
            positional = list(args)
            if custom:  # group, version, [namespace], plural
                prefix = f"/apis/{_take(positional, 'group')}/{_take(positional, 'version')}"
            else:
                prefix = _GROUPS[self._name]
            named = verb in ("read", "get", "replace", "patch")
            name = _take(positional, "name") if named and not custom else None
            namespace = _take(positional, "namespace") if namespaced else None
            plural = _take(positional, "plural") if custom else _RESOURCES[(self._name, resource)]
            if named and custom:
                name = _take(positional, "name")
            body = _take(positional, "body") if verb in ("create", "replace", "patch") else None
            if positional:
                raise RefusedCall(f"{method}: {len(positional)} argument(s) too many")
            unknown = set(kwargs) - set(_QUERY) - _CONTROL
            if unknown:
                raise RefusedCall(f"{method}: unexpected keyword(s) {', '.join(sorted(unknown))}")
            path = prefix
            if namespace is not None:
                path += f"/namespaces/{quote(namespace, safe='')}"
            path += f"/{plural}"
            if name is not None:
                path += f"/{quote(name, safe='')}"
            if resource == "pod_log":
                path += "/log"
            query = {_QUERY[k]: v for k, v in kwargs.items() if k in _QUERY and v is not None}
            content_type = JSON
            if verb == "patch":
                # A JSON patch is a list of operations; an object is a merge patch.
                content_type = JSON_PATCH if isinstance(body, list) else MERGE_PATCH
            options: dict[str, Any] = {}
            if kwargs.get("_request_timeout") is not None:
                options["timeout"] = tuple(kwargs["_request_timeout"])
            return self._transport.request(
                _VERBS[verb], path, query=query, body=body, content_type=content_type, **options
            )

        call.__name__ = method
        return call


def _take(args: list[Any], what: str) -> Any:
    if not args:
        raise RefusedCall(f"missing argument {what!r}")
    value = args.pop(0)
    if what != "body" and not (isinstance(value, str) and value):
        raise RefusedCall(f"{what} must be a non-empty string")
    return value
