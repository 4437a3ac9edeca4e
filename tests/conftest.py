"""Hermetic tests: no test reads the caller's kubeconfig, config or environment."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

_CALLER_ENV = (
    "KUBECONFIG",
    "SLOTS_CONFIG",
    "SLOTS_CONTEXT",
    "SLOTS_NAMESPACE",
    "SLOTS_OUTPUT",
    "SLOTS_ENGINE_API_KEY",
    "SLOTS_SANDBOX_DIR",
    "KUBERNETES_SERVICE_HOST",
)


@pytest.fixture(autouse=True)
def hermetic(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name in _CALLER_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    # The CLI run in-process sets the process's verbosity (-q, -v) and may leave a live progress
    # sink behind: the next test starts from the defaults, as a new process would.
    from gx10slots import console

    console.configure(0)
    console.set_sink(None)


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path
