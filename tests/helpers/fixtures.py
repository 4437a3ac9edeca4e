"""Sandbox fixtures shared by the e2e and reliability suites (a pytest plugin, registered by
tests/conftest.py): each test gets its own sandbox, stopped when it ends.

tests/sandbox/conftest.py overrides ``sandbox`` there with the API server alone.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers.sandbox import Sandbox, started, warm_green


@pytest.fixture
def sandbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Sandbox]:
    with started(tmp_path / "sandbox", capsys, engine="fake") as box:
        yield box


@pytest.fixture
def make_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., Sandbox]]:
    """A sandbox with non-default options: ``make_sandbox(flag="configmap", router_lag=None)``
    (``router_lag`` in seconds; None: a stuck router)."""
    numbers = itertools.count()
    with contextlib.ExitStack() as stack:

        def make(
            *, flag: str = "service-selector", router_lag: float | None = 1.0, engine: str = "fake"
        ) -> Sandbox:
            directory = tmp_path / f"sandbox-{next(numbers)}"
            return stack.enter_context(
                started(directory, capsys, engine=engine, flag=flag, router_lag_s=router_lag)
            )

        yield make


@pytest.fixture
def llama_sandbox(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Sandbox]:
    """A sandbox shaped for llama-server whose tiny-* models run on llama.cpp's real one."""
    with started(tmp_path / "sandbox", capsys, engine="llama-server") as box:
        yield box


@pytest.fixture
def two_warm_slots(sandbox: Sandbox) -> Sandbox:
    """blue active, green deployed (served as sandbox-v2) and smoked: ready to flip."""
    return warm_green(sandbox)
