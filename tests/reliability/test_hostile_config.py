"""Hostile config files: whatever slots.yaml holds, the answer is a config or exit 2 with a
precise message (the file, the key, what was expected), never a traceback.

Property-based (hypothesis): arbitrary YAML documents, arbitrary text and bytes, and single
mutations of a valid config (a value replaced by anything, a key removed, an unknown key added),
checked both at the loader and through the CLI's error boundary. Plus the YAML-specific attacks a
fuzzer rarely builds: deep nesting, alias bombs, duplicate keys, non-finite numbers, tags.
"""

from __future__ import annotations

import copy
import io
import math
import re
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gx10slots.cli import main
from gx10slots.config import Config, load_config
from gx10slots.errors import ConfigError

VALID: dict[str, Any] = {
    "namespace": "gx10",
    "engine": "vllm",
    "container": "engine",
    "env": {"model": "MODEL", "served_name": "SERVED_MODEL_NAME"},
    "slots": {
        "blue": {"deployment": "gx10-blue", "endpoint": "http://127.0.0.1:8001", "port": 8000},
        "green": {"deployment": "gx10-green", "endpoint": "http://127.0.0.1:8002"},
    },
    "flag": {
        "kind": "service-selector",
        "name": "gx10-model",
        "key": "gx10slots.io/slot",
        "endpoint": "http://127.0.0.1:8000",
    },
    "smoke": {
        "max_age": "30m",
        "probe_timeout": "10s",
        "deadline": "5m",
        "burst": 4,
        "tool_call": False,
        "formats": ["json", "md"],
        "expect": "pong",
    },
    "memory": {"reserve_gib": 8, "node_capacity_gib": 128},
    "api_key": {"secret": {"name": "gx10-engine-key", "key": "api-key"}},
}


def _paths(doc: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found: list[tuple[str, ...]] = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found.append((*prefix, key))
            found += _paths(value, (*prefix, key))
    return found


PATHS = _paths(VALID)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
    | st.sampled_from(["", " ", "0", "-1", "90s", "1h30m", "10x", "http://", "GX10", "a/b", "~"])
)
documents = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12) | st.integers(), children, max_size=4)
    ),
    max_leaves=20,
)


def _load(tmp_path: Path, text: str | bytes) -> Config | ConfigError:
    path = tmp_path / "slots.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass"))
    try:
        return load_config(path)
    except ConfigError as exc:
        return exc


def _precise(error: ConfigError, path: Path) -> None:
    """One line, naming the file, saying what was wrong; bounded."""
    assert str(path) in error.message, error.message
    assert "\n" not in error.message
    assert len(error.message) < 600
    assert "Traceback" not in error.message


_FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@_FUZZ
@given(doc=documents)
def test_any_yaml_document_is_a_config_or_a_precise_error(tmp_path: Path, doc: Any) -> None:
    text = yaml.safe_dump(doc, allow_unicode=True)
    outcome = _load(tmp_path, text)
    if isinstance(outcome, ConfigError):
        _precise(outcome, tmp_path / "slots.yaml")


@_FUZZ
@given(text=st.text(max_size=400) | st.binary(max_size=400).map(bytes))
def test_any_text_or_bytes_is_a_config_or_a_precise_error(
    tmp_path: Path, text: str | bytes
) -> None:
    outcome = _load(tmp_path, text)
    if isinstance(outcome, ConfigError):
        _precise(outcome, tmp_path / "slots.yaml")


def _set(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc[path[-1]] = value


def _remove(doc: dict[str, Any], path: tuple[str, ...]) -> None:
    for key in path[:-1]:
        doc = doc[key]
    doc.pop(path[-1])


@_FUZZ
@given(
    path=st.sampled_from(PATHS),
    how=st.sampled_from(["replace", "remove", "unknown"]),
    value=documents,
)
def test_one_mutation_of_a_valid_config_is_named_by_its_key(
    tmp_path: Path, path: tuple[str, ...], how: str, value: Any
) -> None:
    doc = copy.deepcopy(VALID)
    if how == "replace":
        _set(doc, path, value)
    elif how == "remove":
        _remove(doc, path)
    else:
        parent: Any = doc
        for key in path[:-1]:
            parent = parent[key]
        parent["zz-not-a-key"] = value
        path = (*path[:-1], "zz-not-a-key")
    outcome = _load(tmp_path, yaml.safe_dump(doc, allow_unicode=True))
    if isinstance(outcome, Config):
        return  # the mutation was still a valid config (a default, an equivalent value)
    _precise(outcome, tmp_path / "slots.yaml")
    # The message names the key that was changed, or the mapping it sits in (a required key
    # removed, or a mutation that broke a rule between keys).
    dotted = ".".join(path)
    names = [".".join(path[:i]) for i in range(len(path), 0, -1)] + ["(top level)"]
    assert any(f": {name}" in outcome.message for name in names), (dotted, outcome.message)


@settings(max_examples=40, deadline=None)
@given(doc=documents)
def test_through_the_cli_a_bad_config_is_exit_2_never_a_traceback(doc: Any) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "slots.yaml"
        path.write_text(yaml.safe_dump(doc, allow_unicode=True))
        out, err = io.StringIO(), io.StringIO()
        with redirect_stdout(out), redirect_stderr(err), pytest.raises(SystemExit) as exit_:
            main(["--config", str(path), "--kubeconfig", str(Path(tmp) / "none"), "status"])
    code = exit_.value.code
    assert code in (2, 4), (code, err.getvalue())  # 4: a valid config, no cluster to reach
    assert "Traceback" not in err.getvalue()
    assert err.getvalue().startswith("error: "), err.getvalue()


# -- the attacks a fuzzer rarely builds ---------------------------------------------------------


def _valid_with(**sections: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    for dotted, value in sections.items():
        _set(doc, tuple(dotted.split("__")), value)
    return doc


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: " + "[" * 5000 + "]" * 5000, "nested too deeply"),
        ("slots: " + "{a: " * 3000 + "1" + "}" * 3000, "nested too deeply"),
        ("namespace: a\nnamespace: b\n", "duplicate key 'namespace'"),
        ("namespace: !!python/object/apply:os.system [id]\n", "could not determine a constructor"),
        ("\ufeffnamespace: [\n", "not valid YAML at line"),
        ("\x00", "not valid YAML"),
    ],
    ids=["deep-lists", "deep-maps", "duplicate-key", "python-tag", "unclosed", "nul"],
)
def test_yaml_attacks_are_refused_precisely(tmp_path: Path, text: str, message: str) -> None:
    outcome = _load(tmp_path, text)
    assert isinstance(outcome, ConfigError), outcome
    assert message in outcome.message
    _precise(outcome, tmp_path / "slots.yaml")


def test_an_alias_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    lines = ["a: &a [x, x, x, x, x, x, x, x, x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    lines.append("namespace: *i")
    outcome = _load(tmp_path, "\n".join(lines))
    assert isinstance(outcome, ConfigError)
    assert "namespace: expected a non-empty string, got a list" in outcome.message


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("smoke__probe_timeout", math.inf),
        ("smoke__deadline", math.nan),
        ("smoke__max_age", -math.inf),
        ("memory__reserve_gib", math.nan),
        ("memory__node_capacity_gib", math.inf),
        ("slots__blue__port", math.inf),
        # YAML integers have no size limit: 400 digits are an int no float can hold.
        ("smoke__max_tokens", 10**400),
        ("smoke__probe_timeout", 10**400),
        ("memory__reserve_gib", -(10**400)),
        ("smoke__deadline", 10**400),
        ("slots__blue__port", 10**400),
    ],
    ids=lambda v: "400-digits" if isinstance(v, int) and abs(v) > 10**20 else None,
)
def test_non_finite_numbers_are_refused(tmp_path: Path, key: str, value: float) -> None:
    # `.inf` as a probe timeout would be a probe that never times out: exactly what the suite
    # exists to prevent.
    outcome = _load(tmp_path, yaml.safe_dump(_valid_with(**{key: value})))
    assert isinstance(outcome, ConfigError)
    assert re.search(r"expected a (finite|whole)", outcome.message), outcome.message
    assert key.replace("__", ".") in outcome.message
