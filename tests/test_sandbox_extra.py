"""The sandbox's dependencies are an extra: a production install goes without them."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement

from gx10slots.sandbox import EXTRA_MODULES
from tests.cli_helpers import run_cli

SANDBOX_ONLY = {"jsonpatch", "kubernetes-validate", "jsonschema", "referencing"}


def test_a_production_install_pulls_none_of_the_sandbox_packages() -> None:
    """What pip installs for `pip install gx10slots`: the installed metadata's requirements
    without an extra marker."""
    core: set[str] = set()
    sandbox: set[str] = set()
    for text in importlib.metadata.requires("gx10slots") or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None:
            core.add(requirement.name)
        elif marker.evaluate({"extra": "sandbox"}):
            sandbox.add(requirement.name)
    assert not core & SANDBOX_ONLY
    assert sandbox >= SANDBOX_ONLY


def test_sandbox_up_without_the_extra_exits_2_with_the_install_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    real = importlib.util.find_spec

    def without_jsonpatch(name: str, *args: Any) -> Any:
        return None if name == "jsonpatch" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", without_jsonpatch)
    target = tmp_path / "box"
    result = run_cli(capsys, "sandbox", "up", "--dir", str(target), "--detach")
    assert result.code == 2
    assert "pip install 'gx10slots[sandbox]'" in result.err
    assert "jsonpatch" in result.err
    assert not target.exists()  # refused before anything was made


def test_the_extra_lists_what_the_check_looks_for() -> None:
    assert {name.replace("_", "-") for name in EXTRA_MODULES} == SANDBOX_ONLY
