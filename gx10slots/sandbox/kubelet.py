"""The simulated kubelet: each slot pod runs its model server as a real process on loopback.

A pod's status follows its process as on a node: ContainerCreating → Running (not ready) → Ready
once the engine's readiness answers; a process that exits is restarted with back-off and shows
CrashLoopBackOff; a server whose simulated memory need exceeds the container's limit is killed as
OOMKilled. Readiness keeps being probed like a readinessProbe (a cheap endpoint, so a wedged
engine stays "Ready", exactly as vLLM's /health does).

Processes run in their own process group, recorded in ``DIR/pids/<pod>.pid``, and die with the
sandbox (PR_SET_PDEATHSIG); ``slots sandbox down`` and the next ``up`` reap any survivors.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from gx10slots.memory import gpu_memory_utilization, parse_quantity_bytes
from gx10slots.sandbox.runtime import PodStatusWriter, terminated_state
from gx10slots.sandbox.store import Obj, Store

if TYPE_CHECKING:
    from gx10slots.sandbox.jobs import InClusterAccess

log = logging.getLogger("gx10slots.sandbox.kubelet")

NODE_MEMORY_GIB = 128.0
BACK_OFF_START_S = 1.0  # a real kubelet starts at 10 s; the sandbox is a rehearsal, keep it brisk
BACK_OFF_MAX_S = 10.0
READINESS_PERIOD_S = 0.2
READY_RECHECK_PERIOD_S = 2.0
STOP_GRACE_S = 5.0
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the sandbox process dies, however it dies."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env_of(container: Obj) -> dict[str, str]:
    return {
        str(e.get("name")): str(e.get("value"))
        for e in container.get("env") or []
        if e.get("value") is not None
    }


def _llama_api_key(container: Obj) -> str | None:
    """The key a llama-server container is given: ``--api-key KEY`` in its args ($(VAR)
    expanded), else its literal ``LLAMA_API_KEY`` (the variable llama-server reads for
    --api-key, common/arg.cpp)."""
    from gx10slots.servednames import container_argv

    argv = container_argv(container)
    for index, arg in enumerate(argv):
        if arg.startswith("--api-key="):
            return arg.split("=", 1)[1] or None
        if arg == "--api-key" and index + 1 < len(argv):
            return argv[index + 1] or None
    return _env_of(container).get("LLAMA_API_KEY") or None


def memory_need_gib(container: Obj) -> float | None:
    """What the engine will try to take: vLLM reserves its utilisation fraction of the node."""
    args = [str(a) for a in (container.get("command") or []) + (container.get("args") or [])]
    fraction = gpu_memory_utilization(args)
    return fraction * NODE_MEMORY_GIB if fraction is not None else None


def memory_limit_gib(container: Obj) -> float | None:
    limit = ((container.get("resources") or {}).get("limits") or {}).get("memory")
    try:
        return parse_quantity_bytes(limit) / 1024**3 if limit else None
    except ValueError:
        return None


class PodProcess:
    """One pod's container: its process, its supervisor thread and its log."""

    def __init__(self, runtime: ProcessRuntime, pod: Obj) -> None:
        self.runtime = runtime
        self.pod = pod
        self.name = pod["metadata"]["name"]
        self.container: Obj = (pod.get("spec") or {}).get("containers", [{}])[0]
        self.log_path = runtime.directory / "logs" / f"{self.name}.log"
        self.pid_path = runtime.directory / "pids" / f"{self.name}.pid"
        self.url: str | None = None
        self.ready = False
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._stop = threading.Event()
        from gx10slots.sandbox.jobs import runs_to_completion

        supervise = self.run_to_completion if runs_to_completion(pod) else self._supervise
        self._thread = threading.Thread(target=supervise, name=f"kubelet-{self.name}", daemon=True)

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def run_to_completion(self) -> None:
        """A Job's pod: its own command, once (gx10slots.sandbox.jobs)."""
        from gx10slots.sandbox.jobs import run_to_completion

        run_to_completion(self)

    def stop(self) -> None:
        self._stop.set()
        self._kill()
        self._thread.join(timeout=STOP_GRACE_S + 2)

    def _kill(self) -> None:
        process = self.process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=STOP_GRACE_S)
        self.pid_path.unlink(missing_ok=True)
        self.url = None
        self.ready = False

    # -- the process -------------------------------------------------------------------------------

    def _real_engine(self) -> bool:
        """This pod runs llama.cpp's llama-server (a tiny-* model in a llama-server sandbox)."""
        from gx10slots.sandbox.llamacpp import ENGINE

        model = _env_of(self.container).get("MODEL", "")
        return self.runtime.engine == ENGINE and model.startswith("tiny-")

    def _argv(self, port: int) -> list[str]:
        from gx10slots.sandbox.llamacpp import ENGINE
        from gx10slots.servednames import served_names

        env = _env_of(self.container)
        model = env.get("MODEL", "sandbox/ok")
        # The sandbox image behaves like its engine: it serves exactly the names its command line
        # passes (vLLM's --served-model-name, llama-server's comma-separated --alias, with $(VAR)
        # expanded as the kubelet does), else $SERVED_MODEL_NAME, else MODEL. A name the spec
        # does not wire is not served.
        dialect = ENGINE if self.runtime.engine == ENGINE else "vllm"
        names = served_names(self.container, dialect, "SERVED_MODEL_NAME", "MODEL") or [model]
        if self._real_engine():
            from gx10slots.sandbox.llamacpp import require_binary, server_argv
            from gx10slots.sandbox.tinymodels import ensure_tiny_model

            path = ensure_tiny_model(self.runtime.directory / "models", model)
            return server_argv(require_binary(), path, names, port)
        aliases = [arg for name in names[1:] for arg in ("--alias", name)]
        key = _llama_api_key(self.container) if dialect == ENGINE else None
        return [
            sys.executable,
            "-m",
            "gx10slots.sandbox.modelserver",
            "--model",
            model,
            "--served-name",
            names[0],
            *aliases,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            # The key a llama-server slot is given binds its fake server too.
            *(["--api-key", key] if key else []),
            # The fake answers as the sandbox's engine does (its /health, /metrics counters and
            # /v1/models shape), so the slots.yaml engine profile fits every pod.
            "--engine",
            dialect,
        ]

    def _readiness_path(self) -> str:
        # llama-server's /health (503 while loading) as the fake server's: see the manifests.
        return "/health"

    def _spawn(self) -> subprocess.Popen[bytes]:
        port = free_port()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.pid_path.parent.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("SLOTS_")}
        env["PYTHONUNBUFFERED"] = "1"
        if self._real_engine():
            from gx10slots.sandbox.llamacpp import LIBRARY_DIR, library_dir, server_env

            libraries = library_dir(self.runtime.directory / LIBRARY_DIR)
            env = server_env(env, api_key=_llama_api_key(self.container), library_path=libraries)
        with open(self.log_path, "ab") as out:
            process = subprocess.Popen(
                self._argv(port),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                # Only a prctl() between fork and exec: safe despite our threads.
                preexec_fn=_die_with_parent,
                env=env,
                cwd=self.runtime.directory,
            )
        self.pid_path.write_text(f"{process.pid}\n")
        self.url = f"http://127.0.0.1:{port}"
        return process

    def _oom(self) -> bool:
        need, limit = memory_need_gib(self.container), memory_limit_gib(self.container)
        return need is not None and limit is not None and need > limit

    def _supervise(self) -> None:
        status = self.runtime.status
        back_off = BACK_OFF_START_S
        last_state: Obj | None = None
        while not self._stop.is_set():
            if self._oom():
                with open(self.log_path, "ab") as out:
                    out.write(
                        f"engine reserving {memory_need_gib(self.container):.1f} GiB exceeds the "
                        f"container memory limit {memory_limit_gib(self.container):.1f} GiB: "
                        "killed by the kernel OOM killer\n".encode()
                    )
                exit_code, reason = 137, "OOMKilled"
            else:
                self.process = self._spawn()
                status.running(
                    self.pod, ready=False, restart_count=self.restarts, last_state=last_state
                )
                exit_code = self._watch_process(self.process)
                if self._stop.is_set():
                    return
                reason = "Error" if exit_code else "Completed"
                self.pid_path.unlink(missing_ok=True)
            self.url, self.ready = None, False
            self.restarts += 1
            last_state = terminated_state(reason, exit_code)
            status.crash_loop(
                self.pod, exit_code=exit_code, restart_count=self.restarts, reason=reason
            )
            if self._stop.wait(back_off):
                return
            back_off = min(back_off * 2, BACK_OFF_MAX_S)

    def _watch_process(self, process: subprocess.Popen[bytes]) -> int:
        """Probe readiness while the process lives; its exit code when it exits."""
        path = self._readiness_path()
        with httpx.Client(timeout=1.0) as client:
            while not self._stop.is_set():
                code = process.poll()
                if code is not None:
                    return code
                try:
                    ok = client.get(f"{self.url}{path}").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok != self.ready:
                    self.ready = ok
                    self.runtime.status.set_ready(self.pod, ok)
                self._stop.wait(READY_RECHECK_PERIOD_S if self.ready else READINESS_PERIOD_S)
        return process.poll() or 0

    def logs(self, tail_lines: int | None) -> str:
        try:
            with open(self.log_path, "rb") as handle:
                lines = deque(handle, maxlen=tail_lines or 10000)
        except OSError:
            return ""
        return b"".join(lines).decode("utf-8", errors="replace")


class ProcessRuntime:
    """The pod runtime the controller drives (see gx10slots/sandbox/runtime.py)."""

    def __init__(self, store: Store, directory: Path, *, engine: str = "fake") -> None:
        self.store = store
        self.directory = directory
        self.engine = engine
        self.status = PodStatusWriter(store)
        # Set by the data plane: the API server's address, CA and service-account tokens, for
        # the in-cluster credentials of Job pods (gx10slots.sandbox.jobs).
        self.in_cluster: InClusterAccess | None = None
        self._pods: dict[str, PodProcess] = {}
        self._lock = threading.Lock()

    def start(self, pod: Obj) -> None:
        process = PodProcess(self, pod)
        with self._lock:
            old = self._pods.pop(pod["metadata"]["uid"], None)
            self._pods[pod["metadata"]["uid"]] = process
        if old is not None:
            old.stop()
        process.start()

    def stop(self, pod: Obj) -> None:
        with self._lock:
            process = self._pods.pop(pod["metadata"]["uid"], None)
        if process is not None:
            process.stop()

    def stop_all(self) -> None:
        with self._lock:
            processes, self._pods = list(self._pods.values()), {}
        for process in processes:
            process.stop()

    def logs(self, pod: Obj, tail_lines: int | None) -> str:
        with self._lock:
            process = self._pods.get(pod["metadata"].get("uid", ""))
        if process is not None:
            return process.logs(tail_lines)
        path = self.directory / "logs" / f"{pod['metadata']['name']}.log"
        try:
            lines = path.read_text(errors="replace").splitlines(keepends=True)
        except OSError:
            return ""
        return "".join(lines[-tail_lines:] if tail_lines else lines)

    def url_of(self, pod: Obj) -> str | None:
        """Where a pod's server listens, while its process runs."""
        with self._lock:
            process = self._pods.get(pod["metadata"].get("uid", ""))
        return process.url if process is not None and process.ready else None

    def describe(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"pod": p.name, "url": p.url, "ready": p.ready, "restarts": p.restarts}
                for p in self._pods.values()
            ]
