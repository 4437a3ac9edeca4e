"""Loading a kubeconfig with every read bounded and every wait time-limited.

Two loaders, one result (:class:`gx10slots.kube.rest.Credentials`):

- :func:`plain_credentials`, ours, for the common kubeconfig: one file whose context's user has a
  bearer token (``token``/``tokenFile``) and/or a client certificate, and whose cluster has a
  server, a CA (or ``insecure-skip-tls-verify``). It needs no import of the official client
  (about 300 ms of start-up: docs/benchmarks.md), and answers ``None`` for anything else;
- :func:`official_credentials`, the official client's loader, for the rest: exec plugins, auth
  providers (OIDC, gcp), basic auth, proxies, several merged files; and
  :func:`in_cluster_credentials` for a pod's service account.

The official client's loader does the merging, contexts and auth plugins as kubectl does; what it
does not do is distrust its input. Here, around it (and in our loader alike):

- each kubeconfig file, token file and certificate/key file must be a regular file of at most
  1 MiB (``fileio.check_regular_file``): ``tokenFile: /dev/zero`` or a kubeconfig given as a FIFO
  is a ConfigError, not a MemoryError or a hang;
- an exec credential plugin runs with a deadline and a cap on its output
  (:class:`BoundedExecProvider`): a plugin that never exits is a ConfigError after
  ``EXEC_TIMEOUT_S``;
- the bearer token is stripped of surrounding whitespace (as client-go does for token files) and
  refused when it holds anything that cannot travel in a header; every credential found is
  registered with :mod:`gx10slots.scrub`, so no message can quote it.

It leans on two private names of ``kubernetes.config.kube_config`` (``_get_kube_config_loader``
and ``KubeConfigLoader._load_authentication``, stable since client 12); the test suite exercises
both, so an upgrade that moves them fails there, not in production.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import functools
import json
import logging
import os
import selectors
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

from gx10slots import scrub
from gx10slots.errors import ConfigError, excerpt
from gx10slots.fileio import MAX_INPUT_FILE_BYTES, NotReadable, check_regular_file, read_bounded
from gx10slots.kube.rest import Credentials

# An exec plugin (aws eks get-token, gke-gcloud-auth-plugin, kubelogin) answers in a second or
# two; an interactive one (a browser login) may take a while, but not forever.
EXEC_TIMEOUT_S = 30.0
EXEC_INTERACTIVE_TIMEOUT_S = 120.0
# An ExecCredential is a few KB (a token, or a client certificate and key).
EXEC_OUTPUT_CAP = 1024 * 1024


def check_kubeconfig_paths(paths: list[str]) -> None:
    for path in paths:
        if os.path.exists(path):
            _check(path, "kubeconfig")


def _check(path: str, what: str) -> None:
    try:
        check_regular_file(path, MAX_INPUT_FILE_BYTES)
    except NotReadable as exc:
        raise ConfigError(f"cannot load Kubernetes credentials: {what} {path} {exc}") from exc


# What our loader understands; a kubeconfig with anything else in its chosen user or cluster
# (exec, auth-provider, username/password, proxy-url, tls-server-name, as/impersonation...) goes
# to the official loader, which knows them all.
PLAIN_USER_KEYS = frozenset(
    {
        "token",
        "tokenFile",
        "client-certificate",
        "client-certificate-data",
        "client-key",
        "client-key-data",
        "extensions",
    }
)
PLAIN_CLUSTER_KEYS = frozenset(
    {
        "server",
        "certificate-authority",
        "certificate-authority-data",
        "insecure-skip-tls-verify",
        "extensions",
    }
)


def plain_credentials(path: str, context: str | None) -> Credentials | None:
    """The credentials of a plain kubeconfig (see the module doc), read as the official loader
    reads them (kubernetes.config.kube_config.KubeConfigLoader: ``_load_cluster_info``,
    ``_load_user_token``; ``token`` wins over ``tokenFile``, ``*-data`` over the file, paths
    relative to the kubeconfig's directory); ``None`` when the official loader must do it."""
    import yaml

    paths = [p for p in path.split(os.pathsep) if p]
    if len(paths) != 1:
        return None  # several files: merged by the official loader, as kubectl merges them
    filename = os.path.expanduser(paths[0])
    _check(filename, "kubeconfig")
    doc = yaml.safe_load(read_bounded(filename))
    if not isinstance(doc, dict):
        return None
    name = context or doc.get("current-context")
    ctx = _named(doc.get("contexts"), name, "context")
    if ctx is None or not set(ctx) <= {"cluster", "user", "namespace", "extensions"}:
        return None
    cluster = _named(doc.get("clusters"), ctx.get("cluster"), "cluster")
    user = _named(doc.get("users"), ctx.get("user"), "user") if ctx.get("user") else {}
    if cluster is None or user is None:
        return None
    if not set(cluster) <= PLAIN_CLUSTER_KEYS or not set(user) <= PLAIN_USER_KEYS:
        return None
    server = cluster.get("server")
    if not isinstance(server, str) or not server.startswith(("https://", "http://")):
        return None
    insecure = cluster.get("insecure-skip-tls-verify", False)
    if not isinstance(insecure, bool):
        return None  # the official loader reads any truthy value (a string "false" too)
    base = os.path.dirname(os.path.abspath(filename))
    try:
        token = _file_or_data(user, "tokenFile", "token", base, decode=False)
        cert = _file_or_data(user, "client-certificate", "client-certificate-data", base)
        key = _file_or_data(user, "client-key", "client-key-data", base)
        ca = _file_or_data(cluster, "certificate-authority", "certificate-authority-data", base)
    except _NotPlain:
        return None
    headers: dict[str, str] = {}
    if token:
        headers["Authorization"] = f"Bearer {scrub.checked_key(token, KUBECONFIG_TOKEN)}"
    if (cert is None) != (key is None):
        return None  # half a key pair: let the official loader say what it makes of it
    if key is not None:
        scrub.remember(key.decode("ascii", "replace"))
    source = f"kubeconfig {path}" + (f" (context {context})" if context else "")
    https = server.startswith("https://")
    return Credentials(
        host=server.rstrip("/"),
        source=source,
        verify=not insecure,
        ca_data=ca.decode("ascii", "replace") if ca is not None and https else None,
        cert_data=cert if https else None,
        key_data=key if https else None,
        headers=lambda: headers,
    )


class _NotPlain(Exception):
    pass


def _named(items: Any, name: Any, what: str) -> dict[str, Any] | None:
    """The ``what`` entry of the one item called ``name`` in a kubeconfig list."""
    if not isinstance(items, list) or not isinstance(name, str):
        return None
    found = [item for item in items if isinstance(item, dict) and item.get("name") == name]
    if len(found) != 1:
        return None  # missing or ambiguous: the official loader says which
    value = found[0].get(what)
    return value if isinstance(value, dict) else ({} if value is None else None)


def _file_or_data(
    node: dict[str, Any], file_key: str, data_key: str, base: str, *, decode: bool = True
) -> bytes | None:
    """As the official loader's ``FileOrData``: inline data (base64 unless ``decode`` is
    False) before a file; every file bounded."""
    if data_key in node:
        value = node[data_key]
        if not isinstance(value, str):
            raise _NotPlain
        if not decode:
            return value.encode()
        try:
            return base64.b64decode(value, validate=False)
        except (binascii.Error, ValueError):
            raise _NotPlain from None
    if file_key in node:
        value = node[file_key]
        if not isinstance(value, str):
            raise _NotPlain
        path = os.path.normpath(os.path.join(base, value))
        try:
            return read_bounded(path)
        except NotReadable as exc:
            raise ConfigError(
                f"cannot load Kubernetes credentials: {file_key} {path} {exc}"
            ) from exc
    return None


def official_credentials(path: str, context: str | None) -> Credentials:
    """The official client's loader (bounded, see the module doc), as :class:`Credentials`."""
    from kubernetes import client
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    try:
        with _loader_errors() as logged:
            load(path, context, configuration)
    except ConfigException as exc:
        raise ConfigError(f"cannot load Kubernetes credentials: {excerpt(str(exc))}") from exc
    if logged:
        # The loader logs a failed exec credential plugin (or token refresh) and goes on
        # without credentials: every request would then be refused with no cause shown.
        raise ConfigError(
            f"cannot load Kubernetes credentials from {path}: {excerpt(logged[0], 200)}"
        )
    source = f"kubeconfig {path}" + (f" (context {context})" if context else "")
    return _from_configuration(configuration, source)


def in_cluster_credentials() -> Credentials:
    """A pod's service account, through the official loader (it re-reads the rotated token)."""
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    configuration = client.Configuration()
    try:
        config.load_incluster_config(client_configuration=configuration)
    except ConfigException as exc:
        raise ConfigError(f"cannot load Kubernetes credentials: {excerpt(str(exc))}") from exc
    return _from_configuration(configuration, "in-cluster service account")


def _from_configuration(configuration: Any, source: str) -> Credentials:
    remember_configuration(configuration)

    def headers() -> dict[str, str]:
        # As the official ApiClient applies them, refresh hooks (an exec plugin's expiring
        # token) included: auth_settings() calls get_api_key_with_prefix, which refreshes.
        found = {}
        for setting in configuration.auth_settings().values():
            if setting.get("in") == "header" and setting.get("value"):
                found[str(setting["key"])] = str(setting["value"])
        return found

    return Credentials(
        host=str(configuration.host).rstrip("/"),
        source=source,
        verify=bool(configuration.verify_ssl),
        ca_file=configuration.ssl_ca_cert or None,
        cert_file=configuration.cert_file or None,
        key_file=configuration.key_file or None,
        tls_server_name=getattr(configuration, "tls_server_name", None) or None,
        proxy=configuration.proxy or None,
        headers=headers,
    )


@contextlib.contextmanager
def _loader_errors() -> Iterator[list[str]]:
    """Errors the kubernetes config loader logs (through the root logger) instead of raising."""
    messages: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if "kubernetes" in record.pathname:
                messages.append(record.getMessage())

    handler = Collect(level=logging.ERROR)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield messages
    finally:
        root.removeHandler(handler)


def load(path: str, context: str | None, configuration: Any) -> None:
    """``config.load_kube_config(path, context, configuration)``, bounded (see the module doc)."""
    from kubernetes.config import kube_config

    check_kubeconfig_paths([os.path.expanduser(p) for p in path.split(os.pathsep) if p])
    # Module-wide, so token refreshes later in the run are bounded too.
    setattr(kube_config, "ExecProvider", bounded_exec_provider())  # noqa: B010
    setattr(kube_config, "CommandTokenSource", bounded_command_token_source())  # noqa: B010
    loader = kube_config._get_kube_config_loader(
        filename=path, active_context=context, persist_config=False
    )
    original = loader._load_authentication

    def bounded_authentication() -> None:
        _check_files(loader)
        original()
        _clean_token(loader)

    # An instance attribute: the client's refresh hook calls `self._load_authentication()` too.
    loader._load_authentication = bounded_authentication
    loader.load_and_set(configuration)


def _check_files(loader: Any) -> None:
    """Every file the loader is about to read for the chosen user and cluster."""
    user, cluster = loader._user, loader._cluster
    for node, file_key, data_key, what in (
        (user, "tokenFile", "token", "tokenFile"),
        (user, "client-certificate", "client-certificate-data", "client-certificate"),
        (user, "client-key", "client-key-data", "client-key"),
        (cluster, "certificate-authority", "certificate-authority-data", "certificate-authority"),
    ):
        if not node or data_key in node or file_key not in node:
            continue
        value = node[file_key]
        if not isinstance(value, str):
            raise ConfigError(f"cannot load Kubernetes credentials: {what}: expected a path")
        base = loader._get_base_path(node.path)
        _check(os.path.normpath(os.path.join(base, value)), what)


KUBECONFIG_TOKEN = "kubeconfig: the user's bearer token"


def _clean_token(loader: Any) -> None:
    """The Authorization value the loader made, with its credential checked and registered."""
    header = loader.__dict__.get("token")
    if not isinstance(header, str):
        return
    scheme, _, credential = header.partition(" ")
    scrub.remember(credential)
    if scheme.lower() == "basic":
        user = loader._user
        if user is not None and "password" in user:
            scrub.remember(str(user["password"]))
        return
    loader.token = f"{scheme} {scrub.checked_key(credential, KUBECONFIG_TOKEN)}"


def remember_configuration(configuration: Any) -> None:
    """Register whatever credential a loaded configuration carries (in-cluster included)."""
    for value in (configuration.api_key or {}).values():
        if isinstance(value, str):
            scrub.remember(value.partition(" ")[2] or value)
    if getattr(configuration, "password", None):
        scrub.remember(configuration.password)


@functools.cache
def bounded_exec_provider() -> type:
    """The client's ExecProvider with a deadline and an output cap (made on first use: the
    kubernetes package is imported only by commands that need it)."""
    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.exec_provider import ExecProvider

    base: Any = ExecProvider

    class Bounded(base):
        """The protocol as in kubernetes.config.exec_provider.ExecProvider.run
        (client.authentication.k8s.io ExecCredential), bounded in time and size."""

        def run(self, previous_response: Any = None) -> Any:
            interactive = hasattr(sys.stdout, "isatty") and sys.stdout.isatty()
            info: dict[str, Any] = {
                "apiVersion": self.api_version,
                "kind": "ExecCredential",
                "spec": {"interactive": interactive},
            }
            if previous_response:
                info["spec"]["response"] = previous_response
            # `cluster` (provideClusterInfo) exists on clients >= 31 only: the floor has none.
            cluster = getattr(self, "cluster", None)
            if cluster:
                info["spec"]["cluster"] = cluster.value
            self.env["KUBERNETES_EXEC_INFO"] = json.dumps(info)
            command = str(self.args[0])
            try:
                process = subprocess.Popen(
                    self.args,
                    stdout=subprocess.PIPE,
                    stderr=None if interactive else subprocess.PIPE,
                    stdin=None if interactive else subprocess.DEVNULL,
                    cwd=self.cwd,
                    env=self.env,
                    shell=getattr(self, "shell", False),  # clients <= 30 have no shell option
                )
            except OSError as exc:
                raise ConfigException(
                    f"exec: cannot run credential plugin {command}: {exc.strerror or exc}"
                ) from None
            limit = EXEC_INTERACTIVE_TIMEOUT_S if interactive else EXEC_TIMEOUT_S
            out, err = _communicate(process, command, limit, ConfigException)
            if process.returncode != 0:
                message = f"exec: credential plugin {command} exited with {process.returncode}"
                text = err.decode("utf-8", "replace").strip()
                raise ConfigException(message + (f": {text[-300:]}" if text else ""))
            try:
                data = json.loads(out)
            except ValueError:
                raise ConfigException(
                    f"exec: credential plugin {command} did not answer with JSON"
                ) from None
            if not isinstance(data, dict):
                raise ConfigException(f"exec: credential plugin {command}: not an object")
            for key in ("apiVersion", "kind", "status"):
                if key not in data:
                    raise ConfigException(f"exec: malformed response: missing key {key!r}")
            if data["apiVersion"] != self.api_version:
                raise ConfigException(
                    f"exec: plugin api version {data['apiVersion']!r:.60} does not match "
                    f"{self.api_version!r:.60}"
                )
            status = data["status"]
            if isinstance(status, dict) and isinstance(status.get("token"), str):
                scrub.remember(status["token"])
            return status

    return Bounded


@functools.cache
def bounded_command_token_source() -> type:
    """The legacy ``auth-provider`` ``cmd-path`` token command (gcp), bounded like exec plugins;
    the protocol as in kubernetes.config.kube_config.CommandTokenSource.token."""
    from collections import namedtuple

    from kubernetes.config.config_exception import ConfigException
    from kubernetes.config.dateutil import parse_rfc3339
    from kubernetes.config.kube_config import CommandTokenSource

    base: Any = CommandTokenSource
    Token = namedtuple("Token", ["token", "expiry"])

    class Bounded(base):
        def token(self) -> Any:
            command = str(self._cmd)
            try:
                process = subprocess.Popen(
                    [self._cmd, *self._args],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    stdin=subprocess.DEVNULL,
                )
            except OSError as exc:
                raise ConfigException(
                    f"cmd-path: cannot run {command}: {exc.strerror or exc}"
                ) from None
            out, err = _communicate(process, command, EXEC_TIMEOUT_S, ConfigException)
            if process.returncode != 0:
                text = err.decode("utf-8", "replace").strip()
                raise ConfigException(
                    f"cmd-path: {command} exited with {process.returncode}"
                    + (f": {text[-300:]}" if text else "")
                )
            try:
                credential = json.loads(out)["credential"]
                token = str(credential["access_token"])
                expiry = parse_rfc3339(credential["token_expiry"])
            except (ValueError, KeyError, TypeError):
                raise ConfigException(f"cmd-path: {command} did not answer a credential") from None
            scrub.remember(token)
            return Token(token=token, expiry=expiry)

    return Bounded


def _communicate(
    process: subprocess.Popen[bytes], command: str, limit: float, error: type[Exception]
) -> tuple[bytes, bytes]:
    """(stdout, stderr) of a process that must finish within ``limit`` seconds and write at
    most ``EXEC_OUTPUT_CAP`` bytes; killed otherwise."""
    deadline = time.monotonic() + limit
    buffers: dict[int, bytearray] = {}
    out_fd = process.stdout.fileno() if process.stdout is not None else -1
    err_fd = process.stderr.fileno() if process.stderr is not None else -1
    with selectors.DefaultSelector() as selector:
        for stream in (process.stdout, process.stderr):
            if stream is not None:
                selector.register(stream, selectors.EVENT_READ)
                buffers[stream.fileno()] = bytearray()
        try:
            while selector.get_map():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise error(
                        f"exec: credential plugin {command} did not finish within {limit:g} s"
                    )
                for key, _ in selector.select(min(remaining, 1.0)):
                    chunk = os.read(key.fd, 65536)
                    if not chunk:
                        selector.unregister(key.fileobj)
                        continue
                    buffers[key.fd] += chunk
                    if len(buffers[key.fd]) > EXEC_OUTPUT_CAP:
                        raise error(
                            f"exec: credential plugin {command} wrote more than "
                            f"{EXEC_OUTPUT_CAP // 1024} KiB"
                        )
            try:
                process.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                raise error(
                    f"exec: credential plugin {command} did not finish within {limit:g} s"
                ) from None
        except BaseException:
            process.kill()
            process.wait()
            raise
        finally:
            for stream in (process.stdout, process.stderr):
                if stream is not None:
                    stream.close()
    return bytes(buffers.get(out_fd, b"")), bytes(buffers.get(err_fd, b""))
