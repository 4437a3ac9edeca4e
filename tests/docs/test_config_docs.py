"""docs/config.md cannot rot: its examples parse, its key tables match what the parser accepts.

The accepted keys are taken from ``parse_config`` itself: put an unknown key into a mapping and the
parser refuses it, listing the keys it read there ("unknown key (expected one of: ...)"). Walking
every mapping of the documented examples that way gives the keys; a few keys are read only when
present, so the examples must show them (the dataclass check below catches a key nobody shows).
The documented defaults are checked by writing each one into the minimal example: the parsed
config must not change.
"""

from __future__ import annotations

import copy
import dataclasses
import re
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from gx10slots.config import Config, parse_config
from gx10slots.errors import ConfigError

CONFIG_MD = Path(__file__).resolve().parents[2] / "docs" / "config.md"
TEXT = CONFIG_MD.read_text(encoding="utf-8")
PROBE = "zz_probe"
SLOT_PLACEHOLDER = "<slot>"

_FENCE = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)
_UNKNOWN = re.compile(
    rf"^doc: (?:(?P<path>\S+)\.)?{PROBE}: unknown key \(expected one of: (?P<keys>[^)]*)\)$"
)
_TABLE_HEADER = "| key | type | default | meaning |"
_ROW = re.compile(r"^\| `(?P<key>[^`]+)` \| (?P<type>[^|]+) \| (?P<default>[^|]+) \|")
_SINGLE_VALUE = re.compile(r"^`([^`]+)`$")

# Dataclass fields whose YAML key is spelt differently (besides durations' "_s" suffix).
_FIELD_KEYS = {
    "model_env": "env.model",
    "served_name_env": "env.served_name",
    "secret_name": "secret.name",
    "secret_key": "secret.key",
}
# Fields that are not keys: the slot's name is its mapping key; `source` is the file path.
_NOT_KEYS = {"name", "source"}

Doc = dict[str, Any]


def examples() -> list[Doc]:
    docs = [yaml.safe_load(block) for block in _FENCE.findall(TEXT)]
    assert len(docs) >= 3, "expected the minimal example and two full examples"
    return docs


def _parse(doc: Any) -> Config:
    return parse_config(doc, source="doc")


def _refusal(doc: Doc) -> str:
    with pytest.raises(ConfigError) as info:
        _parse(doc)
    return info.value.message


def _at(doc: Doc, path: tuple[str, ...]) -> Doc:
    """The mapping at ``path``, made empty where the document leaves it out."""
    node = doc
    for part in path:
        node = node.setdefault(part, {})
    return node


def _probe(doc: Doc, path: tuple[str, ...]) -> list[str] | None:
    """The keys the parser reads in the mapping at ``path``; None when it is not a mapping."""
    probed = copy.deepcopy(doc)
    if path:
        parent = _at(probed, path[:-1])
        current = parent.get(path[-1])
        parent[path[-1]] = {**current, PROBE: 1} if isinstance(current, dict) else {PROBE: 1}
    else:
        probed[PROBE] = 1
    match = _UNKNOWN.match(_refusal(probed))
    if match is None or (match["path"] or "") != ".".join(path):
        return None
    return [k.strip() for k in match["keys"].split(",") if k.strip()]


def accepted_keys(doc: Doc) -> set[str]:
    """Dotted paths of every leaf key the parser reads, given this document."""
    _parse(doc)  # an invalid example fails here, with the parser's own message
    leaves: set[str] = set()

    def walk(path: tuple[str, ...]) -> None:
        keys = _probe(doc, path)
        assert keys is not None, f"{'.'.join(path) or '(top level)'} should be a mapping"
        for key in keys:
            child = (*path, key)
            if _probe(doc, child) is None:
                leaves.add(".".join(child))
            else:
                walk(child)

    walk(())
    return leaves


def _generic(key: str) -> str:
    """``slots.blue.endpoint`` -> ``slots.<slot>.endpoint``, as the tables write it."""
    parts = key.split(".")
    if len(parts) > 2 and parts[0] == "slots":
        parts[1] = SLOT_PLACEHOLDER
    return ".".join(parts)


def code_keys() -> set[str]:
    keys: set[str] = set()
    for doc in examples():
        keys |= {_generic(k) for k in accepted_keys(doc)}
    return keys


def table_rows() -> dict[str, str]:
    """Key -> default cell of every row of the `| key | type | default | meaning |` tables."""
    rows: dict[str, str] = {}
    in_table = False
    for line in TEXT.splitlines():
        if line.strip() == _TABLE_HEADER:
            in_table = True
            continue
        if in_table and not line.startswith("|"):
            in_table = False
        match = _ROW.match(line) if in_table else None
        if match:
            assert match["key"] not in rows, f"{match['key']} is documented twice"
            rows[match["key"]] = match["default"].strip()
    return rows


def test_every_example_parses() -> None:
    kinds = set()
    for doc in examples():
        config = _parse(doc)
        kinds.add(config.flag.kind)
    assert kinds == {"service-selector", "configmap", "httproute"}


def test_documented_keys_are_exactly_the_accepted_keys() -> None:
    documented = set(table_rows())
    accepted = code_keys()
    assert accepted - documented == set(), "accepted by parse_config but not documented"
    assert documented - accepted == set(), "documented but not accepted by parse_config"


def _field_keys(cls: Any, prefix: str = "") -> set[str]:
    """The key each dataclass field of ``Config`` should have, nested sections included."""
    keys: set[str] = set()
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in _NOT_KEYS:
            continue
        hint = hints[f.name]
        if dataclasses.is_dataclass(hint):
            keys |= _field_keys(hint, f"{prefix}{f.name}.")
        elif typing.get_origin(hint) is Mapping:
            keys |= _field_keys(typing.get_args(hint)[1], f"{prefix}{f.name}.{SLOT_PLACEHOLDER}.")
        else:
            name = _FIELD_KEYS.get(f.name, f.name.removesuffix("_s"))  # durations drop "_s"
            keys.add(prefix + name)
    return keys


def test_every_config_field_has_a_documented_key() -> None:
    missing = _field_keys(Config) - set(table_rows())
    assert missing == set(), "Config fields without a row in config.md (or a new spelling)"


def _set(doc: Doc, key: str, value: Any) -> None:
    paths = (
        [key.replace(SLOT_PLACEHOLDER, slot) for slot in ("blue", "green")]
        if SLOT_PLACEHOLDER in key
        else [key]
    )
    for path in paths:
        *parents, leaf = path.split(".")
        node = doc
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value


def test_documented_defaults_are_the_parser_defaults() -> None:
    minimal = examples()[0]
    baseline = _parse(minimal)
    checked = 0
    for key, default in table_rows().items():
        single = _SINGLE_VALUE.match(default)
        if single is None:
            continue  # "required", "unset" or a sentence: nothing to compare
        doc = copy.deepcopy(minimal)
        _set(doc, key, yaml.safe_load(single[1]))
        assert _parse(doc) == baseline, f"`{key}`: documented default {default} is not the default"
        checked += 1
    assert checked >= 15, f"only {checked} defaults were checkable; did the table format change?"
