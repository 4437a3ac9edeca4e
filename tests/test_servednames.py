"""Served names, aliases and the identity name (pure): read from the engine's command line."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from gx10slots.deploy.rules import plan_deploy
from gx10slots.errors import Refused, UsageError
from gx10slots.flip.rules import check_names_kept, distinguishing_names
from gx10slots.kube.values import now_utc
from gx10slots.sandbox.seed import slot_deployment
from gx10slots.servednames import alias_blocker, expand, served_names, with_names
from gx10slots.slots import SlotState, slot_state
from tests.test_state import CONFIG


def container(args: list[str], env: dict[str, str], command: list[str] | None = None) -> Any:
    return {
        "name": "engine",
        "command": command or ["vllm"],
        "args": args,
        "env": [{"name": k, "value": v} for k, v in env.items()],
    }


def names(c: Any, engine: str = "vllm") -> list[str]:
    return served_names(c, engine, "SERVED_MODEL_NAME", "MODEL")


def test_vllm_names_are_the_values_after_served_model_name_with_vars_expanded() -> None:
    c = container(
        ["serve", "$(MODEL)", "--served-model-name", "$(SERVED_MODEL_NAME)", "old", "gx10slots/b",
         "--port", "8000"],
        {"MODEL": "org/m", "SERVED_MODEL_NAME": "new"},
    )  # fmt: skip
    assert names(c) == ["new", "old", "gx10slots/b"]
    assert alias_blocker(c, "vllm", "SERVED_MODEL_NAME") is None


def test_a_var_expands_inside_one_argument_never_into_several() -> None:
    assert expand("$(A)", {"A": "x y"}) == "x y"
    assert expand("$$(A) $(B)", {"A": "x"}) == "$(A) $(B)"  # escaped; undefined stays
    c = container(["--served-model-name", "$(N)"], {"N": "a b", "SERVED_MODEL_NAME": "a"})
    assert names(c) == ["a b"]  # one name with a space: why deploy writes literal arguments


def test_without_the_option_the_slot_serves_its_env_name_and_cannot_alias() -> None:
    c = container(["--gpu-memory-utilization", "0.4"], {"MODEL": "m", "SERVED_MODEL_NAME": "n"})
    assert names(c) == ["n"]
    assert "do not pass --served-model-name" in str(alias_blocker(c, "vllm", "SERVED_MODEL_NAME"))
    assert names(container([], {"MODEL": "m"})) == ["m"]


def test_single_name_engines_cannot_alias() -> None:
    c = container(["--served-model-name", "$(SERVED_MODEL_NAME)"], {"SERVED_MODEL_NAME": "n"})
    assert alias_blocker(c, "llama-cpp-python", "SERVED_MODEL_NAME") == (
        "engine llama-cpp-python serves a single model name"
    )
    assert names(c, "llama-cpp-python") == ["n"]


def test_with_names_rewrites_vllm_and_llama_server_and_is_idempotent() -> None:
    c = container(
        ["serve", "x", "--served-model-name", "$(SERVED_MODEL_NAME)", "--port", "1"],
        {"SERVED_MODEL_NAME": "new"},
    )
    assert with_names(c, "vllm", "SERVED_MODEL_NAME", ["old", "gx10slots/green"])
    assert c["args"] == ["serve", "x", "--served-model-name", "$(SERVED_MODEL_NAME)", "old",
                         "gx10slots/green", "--port", "1"]  # fmt: skip
    assert not with_names(c, "vllm", "SERVED_MODEL_NAME", ["old", "gx10slots/green"])
    ls = container(["--alias", "$(SERVED_MODEL_NAME)"], {"SERVED_MODEL_NAME": "new"})
    assert with_names(ls, "llama-server", "SERVED_MODEL_NAME", ["old", "gx10slots/green"])
    assert ls["args"] == ["--alias", "$(SERVED_MODEL_NAME),old,gx10slots/green"]
    assert names(ls, "llama-server") == ["new", "old", "gx10slots/green"]


def _plan(served_name: str | None, extra: list[str], config: Any = CONFIG) -> Any:
    current = slot_deployment("green", model="org/old", served_name="old", replicas=0)
    current["metadata"].update(resourceVersion="7", generation=3)
    return plan_deploy(
        current,
        config,
        slot="green",
        model="org/new",
        image=None,
        served_name=served_name,
        env={},
        memory_gib=None,
        node_capacity_gib=128,
        by="me",
        now=now_utc(),
        extra_names=extra,
    )


def test_a_rename_keeps_production_names_and_the_identity_where_the_engine_can() -> None:
    p = _plan("new", ["old", "gx10slots/green"])
    state = slot_state("green", p.deployment, CONFIG, None)
    assert state.served_names == ("new", "old", "gx10slots/green")
    assert state.served_name == "new" and state.identity == "gx10slots/green"
    assert any(c.startswith("served names") for c in p.changes)


def test_an_engine_that_cannot_alias_is_noted_not_rewritten() -> None:
    config = dataclasses.replace(CONFIG, engine="llama-cpp-python")
    p = _plan("new", ["old", "gx10slots/green"], config)
    assert p.notes and "cannot also serve old" in p.notes[0] and "--rename" in p.notes[0]
    assert slot_state("green", p.deployment, config, None).served_names == ("new",)


def test_names_starting_with_a_dash_are_refused() -> None:
    with pytest.raises(UsageError, match="cannot start with '-'"):
        _plan("--port", [])


def _slot(name: str, served: tuple[str, ...]) -> SlotState:
    return SlotState(name=name, exists=True, served_name=served[0], served_names=served)


def test_flip_refuses_to_drop_a_name_production_serves_naming_the_failing_requests() -> None:
    source = _slot("blue", ("old", "gx10slots/blue"))
    with pytest.raises(Refused, match='clients asking for model "old" would get 404'):
        check_names_kept(source, _slot("green", ("new", "gx10slots/green")))
    # The other slot's identity name is never a name clients rely on.
    assert "serves every name" in check_names_kept(
        source, _slot("green", ("new", "old", "gx10slots/green"))
    )


def test_distinguishing_names_put_the_identity_first() -> None:
    blue = _slot("blue", ("same", "gx10slots/blue"))
    green = _slot("green", ("new", "same", "gx10slots/green"))
    assert distinguishing_names(green, blue) == ["gx10slots/green", "new"]
    assert distinguishing_names(_slot("green", ("same",)), _slot("blue", ("same",))) == []
