"""Unbounded reads and waits (issue 19, item 6): whatever a file, a plugin or a server does, the
tool ends promptly, with bounded memory, in a clear error (exit 2 for the files we were given,
4 for the cluster), never a MemoryError, a hang or a traceback.

Each case runs `slots` as a separate process with an address-space limit and a deadline: on a
tool that reads without bound the limit turns the blow-up into a failed assertion instead of a
machine out of memory, and the deadline turns a hang into one.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.helpers.config import KUBECONFIG_TOKEN, kubeconfig_doc, write_config
from tests.helpers.hostile import UP, hostile, read_request, respond, target
from tests.helpers.sandbox import Sandbox

MEMORY_LIMIT = 1024 * 1024 * 1024  # address space of the tool's process
DEADLINE_S = 25.0
Outcome = tuple[int, str, str, float]  # exit code, stdout, stderr, seconds


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def _slots(tmp_path: Path, *args: str, code: str | None = None) -> Outcome:
    """`slots -o json ARGS` in a bounded process: (exit code, stdout, stderr, seconds)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("SLOTS_") and k not in ("KUBECONFIG", "KUBERNETES_SERVICE_HOST")
    }
    env["HOME"] = str(tmp_path)
    program = code or "from gx10slots.cli import main; main()"
    started = time.monotonic()
    try:
        done = subprocess.run(
            [sys.executable, "-c", program, "-o", "json", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=DEADLINE_S,
            preexec_fn=_limit_memory,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"slots {' '.join(args)} still running after {DEADLINE_S:g} s")
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def _status(
    tmp_path: Path, kubeconfig: Path, code: str | None = None
) -> tuple[int, str, str, float]:
    """`slots status` with the minimal config and ``kubeconfig``, bounded as ``_slots``."""
    config = write_config(tmp_path)
    return _slots(
        tmp_path, "--config", str(config), "--kubeconfig", str(kubeconfig), "status", code=code
    )


def _expect(outcome: Outcome, code: int, *needles: str) -> None:
    exit_code, out, err, _ = outcome
    assert exit_code == code, (exit_code, err[-2000:])
    assert "Traceback" not in err + out and "MemoryError" not in err + out
    assert KUBECONFIG_TOKEN not in err + out
    error = json.loads(out)["error"]
    for needle in needles:
        assert needle in error["message"], error["message"]


def _fifo(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    os.mkfifo(path)  # nobody ever writes to it: opening it for reading would wait forever
    return path


def test_a_config_that_is_a_device_is_refused(tmp_path: Path) -> None:
    outcome = _slots(tmp_path, "--config", "/dev/zero", "status")
    _expect(outcome, 2, "/dev/zero", "not a regular file")


def test_a_config_that_is_a_fifo_is_refused_not_waited_on(tmp_path: Path) -> None:
    fifo = _fifo(tmp_path, "slots.yaml")
    outcome = _slots(tmp_path, "--config", str(fifo), "status")
    _expect(outcome, 2, "not a regular file")


def test_a_300_mb_config_is_refused_without_reading_it(tmp_path: Path) -> None:
    big = tmp_path / "slots.yaml"
    with big.open("wb") as handle:  # sparse: costs no disk
        handle.truncate(300 * 1024 * 1024)
    outcome = _slots(tmp_path, "--config", str(big), "status")
    _expect(outcome, 2, "over the 1024 KiB limit")
    assert outcome[3] < 10


def test_a_kubeconfig_that_is_a_fifo_or_a_device_is_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    for path in (str(_fifo(tmp_path, "kubeconfig")), "/dev/zero"):
        outcome = _slots(tmp_path, "--config", str(config), "--kubeconfig", path, "status")
        _expect(outcome, 2, "kubeconfig", "not a regular file")


@pytest.mark.parametrize("token_file", ["/dev/zero", "fifo", "huge"])
def test_a_token_file_that_never_ends_is_refused(tmp_path: Path, token_file: str) -> None:
    if token_file == "fifo":
        token_file = str(_fifo(tmp_path, "token"))
    elif token_file == "huge":
        huge = tmp_path / "token"
        with huge.open("wb") as handle:
            handle.truncate(50 * 1024 * 1024)
        token_file = str(huge)
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_doc(tokenFile=token_file)))
    outcome = _status(tmp_path, kubeconfig)
    _expect(outcome, 2, "tokenFile")


@pytest.mark.parametrize("kind", ["exec", "auth-provider-cmd-path"])
def test_a_credential_plugin_that_never_exits_is_stopped_at_its_deadline(
    tmp_path: Path, kind: str
) -> None:
    plugin = tmp_path / "credential-plugin"
    plugin.write_text("#!/bin/sh\nexec sleep 300\n")
    plugin.chmod(0o755)
    user: dict[str, Any] = {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1",
            "command": str(plugin),
            "interactiveMode": "Never",
        }
    }
    if kind != "exec":  # the legacy gcp provider's token command
        user = {"auth-provider": {"name": "gcp", "config": {"cmd-path": str(plugin)}}}
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump(kubeconfig_doc(**user)))
    # The deadline shortened to a second for the test (the default is 30 s).
    program = (
        "import gx10slots.kube.kubeconfig as k; k.EXEC_TIMEOUT_S = 1.0\n"
        "from gx10slots.cli import main; main()"
    )
    outcome = _status(tmp_path, kubeconfig, code=program)
    _expect(outcome, 2, "did not finish within 1 s")
    assert outcome[3] < 10


def _huge_answer(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        b'Content-Length: 3000000000\r\n\r\n{"items": ["'
    )
    block = b"a" * 65536
    while not stop.is_set():
        conn.sendall(block)


def _huge_chunked(conn: socket.socket, stop: threading.Event) -> None:
    read_request(conn)
    conn.sendall(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    )
    block = b"a" * 65536
    chunk = f"{len(block):x}\r\n".encode() + block + b"\r\n"
    while not stop.is_set():
        conn.sendall(chunk)


@pytest.mark.parametrize("behaviour", [_huge_answer, _huge_chunked], ids=["declared", "chunked"])
def test_an_api_answer_of_gigabytes_is_refused_with_memory_bounded(
    tmp_path: Path, behaviour: object
) -> None:
    with hostile(behaviour) as url:  # type: ignore[arg-type]
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(kubeconfig_doc(url)))
        outcome = _status(tmp_path, kubeconfig)
    _expect(outcome, 4, "MiB limit")


# -- every count bounded; the suite keeps its deadline and its signals (item 9) -----------------

UNBOUNDED = {
    "smoke.burst": ("smoke", "burst", 2000),
    "smoke.burst-20000": ("smoke", "burst", 20000),
    "smoke.max_tokens": ("smoke", "max_tokens", 10**9),
    "smoke.max_model_len": ("smoke", "max_model_len", 10**12),
    "smoke.probe_timeout": ("smoke", "probe_timeout", "100000h"),
    "smoke.deadline": ("smoke", "deadline", 10**9),
    "guard.failures": ("guard", "failures", 10**6),
}


@pytest.mark.parametrize("case", list(UNBOUNDED))
def test_every_count_in_the_config_has_a_documented_maximum(tmp_path: Path, case: str) -> None:
    from gx10slots.config import load_config
    from gx10slots.errors import ConfigError

    section, key, value = UNBOUNDED[case]
    doc = yaml.safe_load(write_config(tmp_path).read_text())
    doc.setdefault(section, {})[key] = value
    path = tmp_path / "slots.yaml"
    path.write_text(yaml.safe_dump(doc))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert f"{section}.{key}: expected at most" in info.value.message
    documented = (Path(__file__).parents[2] / "docs" / "config.md").read_text()
    assert f"`{section}.{key}`" in documented and "at most" in documented


def test_the_suite_refuses_an_unbounded_burst_given_directly() -> None:
    from gx10slots.errors import UsageError
    from gx10slots.smoke.settings import SuiteSettings

    with pytest.raises(UsageError, match="burst: expected at most 64"):
        SuiteSettings(burst=2000)


def test_the_largest_burst_against_a_silent_engine_ends_within_its_timeout() -> None:
    from gx10slots.limits import MAX_BURST
    from gx10slots.smoke.profiles import VLLM
    from gx10slots.smoke.settings import SuiteSettings
    from gx10slots.smoke.suite import run_suite
    from tests.helpers.hostile import silent

    settings = SuiteSettings(probes=("burst",), burst=MAX_BURST, probe_timeout_s=2.0, deadline_s=5)
    with hostile(silent) as endpoint:
        started = time.monotonic()
        report = run_suite(endpoint, "m", VLLM, settings)
        elapsed = time.monotonic() - started
    assert not report.passed and "timed out" in report.probes[0].detail
    assert elapsed < 2.0 + 1.5, elapsed


def _up_then_endless_streams(conn: socket.socket, stop: threading.Event) -> None:
    """An engine that is up (health, model list) and answers every generation with an endless
    event stream at full speed: the probes keep the event loop busy parsing frames, which is
    when a signal lands inside a probe's code rather than in the loop's idle wait."""
    data = read_request(conn)
    if not data:
        return
    path = target(data)
    if path in (b"/health", b"/v1/models", b"/metrics"):
        respond(conn, UP[path])
        return
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\n")
    frame = b'data: {"choices":[{"delta":{"content":"pong "}}]}\n\n'
    while not stop.is_set():
        conn.sendall(frame * 64)


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_signal_during_the_probes_ends_the_smoke_at_once(
    sandbox: Sandbox, signum: signal.Signals
) -> None:
    with hostile(_up_then_endless_streams) as endpoint:
        sandbox.set_endpoint("blue", endpoint)
        sandbox.set_smoke(probe_timeout="60s", deadline="5m", burst=64)
        process = sandbox.spawn("-o", "json", "smoke", "blue")
        assert process.stderr is not None
        seen = ""
        for line in process.stderr:  # until the burst has started
            seen += line
            if "streaming" in line:
                break
        assert "streaming" in seen, seen
        started = time.monotonic()
        process.send_signal(signum)
        try:
            out, err = process.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            out, err = process.communicate()
            pytest.fail(f"still running 15 s after {signum.name}: {seen}{err[-1500:]}")
        elapsed = time.monotonic() - started
    assert process.returncode == 130, (process.returncode, err[-1500:])
    assert elapsed < 5, elapsed
    assert "Traceback" not in err
    assert json.loads(out)["error"]["exit_code"] == 130
    assert "interrupted" in err or "SIGTERM" in err


def _endless_watch(conn: socket.socket, stop: threading.Event, chunked: bool = False) -> None:
    """Lists answer normally; a watch sends one event line that never ends."""
    data = read_request(conn)
    if not data:
        return
    if b"watch=true" not in target(data).lower():
        respond(
            conn, b'{"kind": "DeploymentList", "metadata": {"resourceVersion": "7"}, "items": []}'
        )
        return
    framing = b"Transfer-Encoding: chunked\r\n" if chunked else b"Connection: close\r\n"
    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n" + framing + b"\r\n")

    def send(data: bytes) -> None:
        conn.sendall(f"{len(data):x}\r\n".encode() + data + b"\r\n" if chunked else data)

    send(b'{"type": "ADDED", "object": {"metadata": {"name": "')
    block = b"a" * 65536
    while not stop.is_set():
        send(block)


@pytest.mark.parametrize("chunked", [False, True], ids=["until-close", "chunked"])
def test_a_watch_event_that_never_ends_is_refused_with_memory_bounded(
    tmp_path: Path, chunked: bool
) -> None:
    import functools
    import tracemalloc

    from gx10slots.kube.client import Kube, connect
    from gx10slots.kube.watch import WATCH_LINE_CAP, Watcher

    with hostile(functools.partial(_endless_watch, chunked=chunked)) as url:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(yaml.safe_dump(kubeconfig_doc(url)))
        kube = Kube(connect(str(kubeconfig), None), "gx10")
        watcher = Watcher(kube)
        tracemalloc.start()
        try:
            watcher.add("deployment", kube.api("apps").list_namespaced_deployment)
            deadline = time.monotonic() + 20
            error = None
            while error is None and time.monotonic() < deadline:
                event = watcher.events.get(timeout=max(deadline - time.monotonic(), 0.1))
                error = event.error if event.type == "ERROR" else None
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
            watcher.stop()
    assert error is not None, "the endless watch line was never refused"
    assert "MiB in one event" in error.message, error.message
    assert peak < 4 * WATCH_LINE_CAP, f"peak {peak / 2**20:.0f} MiB"
