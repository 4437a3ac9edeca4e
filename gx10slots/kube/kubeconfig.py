"""Loading a kubeconfig with every read bounded and every wait time-limited.

The official client's loader does the merging, contexts and auth plugins as kubectl does; what it
does not do is distrust its input. Here, around it:

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

import functools
import json
import os
import selectors
import subprocess
import sys
import time
from typing import Any

from gx10slots import scrub
from gx10slots.errors import ConfigError
from gx10slots.fileio import MAX_INPUT_FILE_BYTES, NotReadable, check_regular_file

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
    from gx10slots.ops.engine import checked_key

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
    loader.token = f"{scheme} {checked_key(credential, KUBECONFIG_TOKEN)}"


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
            if self.cluster:
                info["spec"]["cluster"] = self.cluster.value
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
                    shell=self.shell,
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
