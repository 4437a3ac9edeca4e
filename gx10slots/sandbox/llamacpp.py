"""Running llama-cpp-python's OpenAI-compatible server (``python -m llama_cpp.server``) per slot.

Facts about that server, verified against llama-cpp-python 0.3.36 (llama.cpp vendored in it) with
the tiny models of ``gx10slots.sandbox.tinymodels``:

Startup and readiness
    * The model is loaded *before* uvicorn binds the port (``create_app`` builds the model, then
      ``uvicorn.run`` listens). While loading, every connection is refused; there is no "loading"
      phase with an HTTP 503. With a tiny model the port answers about 0.4-0.6 s after exec (almost
      all of it Python imports). A model that fails to load makes the process exit (non-zero).
    * There is **no** ``/health``: ``GET /health`` and ``GET /`` answer 404 once listening.
    * Readiness = ``GET /v1/models`` answers 200 with
      ``{"object": "list", "data": [{"id": <model_alias>, "object": "model", "owned_by": "me",
      "permissions": []}]}``: the id is the ``--model_alias`` (the model path when no alias is
      given). ``GET /docs`` (Swagger UI) also answers 200. uvicorn logs
      ``Uvicorn running on http://127.0.0.1:PORT`` on stderr at the same moment.
    * ``/v1/models`` takes the same lock as the completions: while a completion runs it *waits* for
      it (it is not an independent liveness signal), and with the server's default
      ``interrupt_requests=True`` any request that arrives while a stream is running (a probe of
      ``/v1/models`` included) cuts that stream short: ``[DONE]`` early, then the connection is
      closed without the final chunk. ``server_argv`` therefore passes ``--interrupt_requests
      false``: requests queue instead.

Requests
    * ``POST /v1/chat/completions`` renders the GGUF's ``tokenizer.chat_template`` with Jinja when
      ``--chat_format`` is not given and the template is not one of the few it recognises by exact
      string (then it logs "Using gguf chat template"); without any template it falls back to
      ``llama-2``. We leave ``--chat_format`` unset so the tiny models' own template is used.
    * The request's ``model`` field is not checked: an unknown name is served by the default (only)
      model and the response echoes the *requested* name in ``model``. A served-name check must
      look at ``/v1/models``, not at the completion's ``model``.
    * Request defaults (server side): temperature 0.8, top_k 40, top_p 0.95, min_p 0.05,
      repeat_penalty 1.1, chat ``max_tokens`` unlimited (generation runs to the context size,
      finish_reason ``length``). End-of-sequence gives finish_reason ``stop``.
    * Streaming (``"stream": true``) is SSE: a first chunk with ``delta.role``, content chunks, a
      chunk with an empty delta and ``finish_reason``, then ``data: [DONE]``.
    * With an API key, every endpoint above (``/v1/models`` included) answers 401 without
      ``Authorization: Bearer <key>``. The key is read from ``--api_key`` or from the environment
      variable ``API_KEY``; ``server_env`` passes it in the environment so it never shows in argv.

Environment
    The settings are pydantic-settings models without a prefix and case-insensitive: any
    environment variable named like a setting (``MODEL``, ``N_CTX``, ``API_KEY``, ``VERBOSE``…) is
    read when the flag is not on the command line, and ``HOST``/``PORT`` override even the command
    line (``__main__`` calls ``os.getenv("HOST", …)``), ``CONFIG_FILE`` replaces the command line
    altogether. ``server_env`` removes all of them from the child's environment.

Shutdown
    SIGTERM makes uvicorn shut down gracefully (a few hundred ms when idle, waiting for open
    connections); uvicorn then re-raises the signal, so the exit status is -15 (SIGTERM), not 0.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gx10slots.errors import SlotsError, excerpt

INSTALL_HINT = (
    "llama-cpp-python is not installed: pip install 'gx10slots[llama]' "
    "(builds llama.cpp from source, about 5 minutes on 2 cores, cached afterwards)"
)

# The modules `python -m llama_cpp.server` needs (llama-cpp-python[server]).
SERVER_MODULES = (
    "llama_cpp",
    "fastapi",
    "uvicorn",
    "sse_starlette",
    "starlette_context",
    "pydantic_settings",
)

READY_PATH = "/v1/models"
# llama-cpp-python's server has no health endpoint (404); kept here so nobody probes it by mistake.
HEALTH_PATH: str | None = None

DEFAULT_N_CTX = 512

# Settings of llama_cpp.server (ModelSettings + ServerSettings, 0.3.x) that it reads from the
# environment, plus CONFIG_FILE; compared case-insensitively.
SERVER_ENV_NAMES = frozenset(
    {
        "api_key", "cache", "cache_size", "cache_type", "chat_format", "chat_template_kwargs",
        "clip_model_path", "disable_ping_events", "draft_model", "draft_model_num_pred_tokens",
        "embedding", "flash_attn", "hf_model_repo_id", "hf_pretrained_model_name_or_path",
        "hf_tokenizer_config_path", "host", "interrupt_requests", "kv_overrides",
        "last_n_tokens_size", "logits_all", "lora_base", "lora_path", "main_gpu", "model",
        "model_alias", "mul_mat_q", "n_batch", "n_ctx", "n_gpu_layers", "n_threads",
        "n_threads_batch", "n_ubatch", "numa", "offload_kqv", "port", "root_path",
        "rope_freq_base", "rope_freq_scale", "rope_scaling_type", "rpc_servers", "seed",
        "split_mode", "ssl_certfile", "ssl_keyfile", "tensor_split", "type_k", "type_v",
        "use_mlock", "use_mmap", "verbose", "vocab_only", "yarn_attn_factor", "yarn_beta_fast",
        "yarn_beta_slow", "yarn_ext_factor", "yarn_orig_ctx", "config_file",
    }
)  # fmt: skip


class LlamaServerError(SlotsError):
    """The llama.cpp server did not come up (exited, or no ready answer before the deadline)."""

    exit_code = 2
    kind = "engine-start"


def llama_cpp_available(python: str | None = None) -> bool:
    """Whether ``python -m llama_cpp.server`` can run (this interpreter unless ``python`` given).

    For this interpreter it only looks the modules up (no import, no shared library load); for
    another interpreter it imports the server app in a subprocess (about a second).
    """
    if python is None or os.path.realpath(python) == os.path.realpath(sys.executable):
        try:
            return all(importlib.util.find_spec(name) is not None for name in SERVER_MODULES)
        except (ImportError, ValueError):
            return False
    try:
        done = subprocess.run(
            [python, "-c", "import llama_cpp.server.app"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def server_argv(
    model_path: Path | str,
    served_name: str,
    port: int,
    *,
    host: str = "127.0.0.1",
    python: str | None = None,
    n_ctx: int = DEFAULT_N_CTX,
    n_threads: int = 1,
    seed: int = 0,
    verbose: bool = False,
    extra: Sequence[str] = (),
) -> list[str]:
    """The command line of a llama-cpp-python server for one slot.

    One thread (the node is shared), a small context, a fixed sampling seed (so that even
    temperature > 0 answers repeat across restarts), requests queued rather than interrupting a
    running stream, the GGUF's own chat template. Pass the API key through ``server_env``.
    """
    return [
        python or sys.executable,
        "-m",
        "llama_cpp.server",
        "--model",
        str(model_path),
        "--model_alias",
        served_name,
        "--host",
        host,
        "--port",
        str(port),
        "--n_ctx",
        str(n_ctx),
        "--n_batch",
        str(min(n_ctx, 512)),
        "--n_threads",
        str(n_threads),
        "--n_threads_batch",
        str(n_threads),
        "--n_gpu_layers",
        "0",
        "--seed",
        str(seed),
        "--interrupt_requests",
        "false",
        "--verbose",
        "true" if verbose else "false",
        *extra,
    ]


def server_env(
    base: Mapping[str, str] | None = None, *, api_key: str | None = None
) -> dict[str, str]:
    """The child's environment: ``base`` (default ``os.environ``) minus the variables the server
    would read as settings, plus ``API_KEY`` when a key is given."""
    source = os.environ if base is None else base
    env = {k: v for k, v in source.items() if k.lower() not in SERVER_ENV_NAMES}
    if api_key:
        env["API_KEY"] = api_key
    return env


def wait_until_ready(
    base_url: str,
    *,
    process: subprocess.Popen[Any] | None = None,
    served_name: str | None = None,
    api_key: str | None = None,
    timeout: float = 60.0,
    interval: float = 0.1,
) -> dict[str, Any]:
    """Poll ``GET {base_url}/v1/models`` until it answers 200 (listing ``served_name`` if given).

    Returns the models document. Raises ``LlamaServerError`` when ``process`` exits first or the
    deadline passes; the message names the last thing seen.
    """
    import httpx

    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    deadline = time.monotonic() + timeout
    last = "no answer yet"
    with httpx.Client(timeout=min(5.0, max(timeout, 0.1))) as client:
        while True:
            if process is not None and process.poll() is not None:
                raise LlamaServerError(
                    f"llama.cpp server exited with status {process.returncode} before it was "
                    f"ready ({last})",
                    hint="look at the server's log; a model that fails to load ends the process",
                )
            try:
                resp = client.get(base_url.rstrip("/") + READY_PATH, headers=headers)
            except httpx.HTTPError as exc:
                last = f"{type(exc).__name__}: {exc}"
            else:
                if resp.status_code == 200:
                    doc = _json_object(resp.text)
                    data = doc.get("data") if doc is not None else None
                    if not isinstance(data, list):
                        last = f"{READY_PATH} answered 200 without a model list"
                    else:
                        ids = [m.get("id") for m in data if isinstance(m, dict)]
                        if served_name is None or served_name in ids:
                            assert doc is not None
                            return doc
                        last = f"{READY_PATH} lists {ids}, not {served_name!r}"
                else:
                    last = f"{READY_PATH} answered {resp.status_code}: {excerpt(resp.text, 120)}"
            if time.monotonic() >= deadline:
                raise LlamaServerError(
                    f"llama.cpp server at {base_url} not ready after {timeout:g}s ({last})"
                )
            time.sleep(min(interval, max(0.0, deadline - time.monotonic())))


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
