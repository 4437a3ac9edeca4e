"""Fixtures of the reliability suite: reusable sandboxes, the full-mode switch (a sandbox per
test, ``sandbox`` and ``two_warm_slots``, comes from tests/helpers/fixtures.py).

The full fault matrix and the 200-cycle soak carry the marker ``reliability_full`` and are
deselected unless asked for, with ``GX10_RELIABILITY_FULL=1`` or ``-m reliability_full``; CI
runs the quick subset (marker ``e2e``) on every change.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.helpers.harness import SandboxPool

FULL_ENV = "GX10_RELIABILITY_FULL"


def full_mode(config: pytest.Config) -> bool:
    if os.environ.get(FULL_ENV) == "1":
        return True
    expression = str(config.getoption("markexpr", "") or "")
    return "reliability_full" in expression and "not reliability_full" not in expression


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if full_mode(config):
        return
    # Deselected, not skipped: a hundred "skipped" lines would bury the ones that matter.
    kept = [item for item in items if "reliability_full" not in item.keywords]
    if len(kept) < len(items):
        config.hook.pytest_deselected(
            items=[item for item in items if "reliability_full" in item.keywords]
        )
        items[:] = kept


@pytest.fixture(scope="session")
def sandbox_pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxPool]:
    pool = SandboxPool(tmp_path_factory.mktemp("reliability"))
    try:
        yield pool
    finally:
        pool.close()
