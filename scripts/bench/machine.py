"""The machine the benchmark ran on, the kubectl it times, and the priorities."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

from .common import ROOT, BenchError

# -- the machine and the report --------------------------------------------------------------------


def resolve_kubectl(explicit: str | None) -> tuple[str, str]:
    """The kubectl binary to time, and a note on how it was chosen."""
    if explicit:
        return explicit, f"`{explicit}` (given with --kubectl)"
    found = shutil.which("kubectl")
    if found is None:
        subprocess.run([str(ROOT / "scripts" / "ensure-kubectl.sh")], check=True)
        found = shutil.which("kubectl")
    if found is None:
        raise BenchError("kubectl not found (scripts/ensure-kubectl.sh could not install it)")
    version = _kubectl_version(found)
    if "dispatcher" in version:
        # Google Cloud SDK's kubectl is a dispatcher that picks and execs a versioned binary; it
        # costs ~50 ms a call. Time the binary it runs, which makes the baseline stricter.
        match = re.match(r"v(\d+)\.(\d+)", version)
        real = Path(found).resolve().with_name(f"kubectl.{match[1]}.{match[2]}") if match else None
        if real is not None and real.exists():
            return str(real), (
                f"`{found}` is Google Cloud SDK's version dispatcher ({version}); the baseline "
                f"runs the binary it dispatches to, `{real}` ({_kubectl_version(str(real))}), "
                "directly (~50 ms a call faster: a stricter baseline)"
            )
    return found, f"`{found}` ({version})"


def _kubectl_version(binary: str) -> str:
    try:
        out = subprocess.run(
            [binary, "version", "--client", "-o", "json"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        return str(json.loads(out)["clientVersion"]["gitVersion"])
    except (OSError, ValueError, KeyError, subprocess.SubprocessError):
        return "unknown version"


def machine(kubectl_note: str) -> dict[str, str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.1f} GiB RAM"
    versions = []
    for package in ("kubernetes", "httpx", "pydantic", "click"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            versions.append(f"{package} {version(package)}")
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "CPU": f"{cpu}; {os.cpu_count()} logical CPUs ({usable} usable){memory}",
        "OS": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "Python": (
            f"{platform.python_implementation()} {platform.python_version()} ({sys.executable})"
        ),
        "kubectl": kubectl_note,
        "libraries": ", ".join(versions),
    }


def raise_priority(nice: int) -> str:
    """Let the observing side (watches, the detection loop, the stderr reader) wake promptly.

    With both cores busy (a command importing, a model server starting), an observer at normal
    priority can wake tens of ms late and time events late. The measured commands and the
    sandbox keep the priority this process started with (the spawner and the fault server
    set it back)."""
    try:
        os.setpriority(os.PRIO_PROCESS, 0, nice - 10)
    except PermissionError:
        return f"the benchmark runs at nice {nice} (not allowed to raise it): event times may lag"
    return (
        f"the benchmark itself (watches, detection loop, stderr reader) runs at nice {nice - 10} "
        f"so that it timestamps events promptly; every measured command, and the in-process "
        f"probe measurements, run at nice {nice}"
    )
