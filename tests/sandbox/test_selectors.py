"""Label and field selectors parse and match as the apiserver's do."""

from __future__ import annotations

import pytest

from gx10slots.sandbox.selectors import (
    SelectorError,
    format_selector,
    parse_field_selector,
    parse_label_selector,
    selector_from_spec,
)

LABELS = {"app": "model", "slot": "blue", "tier": "gpu"}


@pytest.mark.parametrize(
    ("text", "matches"),
    [
        ("", True),
        ("app=model", True),
        ("app==model", True),
        ("app=web", False),
        ("app!=web", True),
        ("missing!=x", True),  # != also matches objects without the label
        ("slot in (blue,green)", True),
        ("slot in (green)", False),
        ("slot notin (green, red)", True),
        ("missing notin (x)", True),
        ("slot", True),
        ("missing", False),
        ("!missing", True),
        ("!slot", False),
        ("app=model,slot in (blue),!canary", True),
        ("app=model,slot=green", False),
        ("example.com/team=", False),
    ],
)
def test_label_selector_matching(text: str, matches: bool) -> None:
    assert parse_label_selector(text).matches(LABELS) is matches


@pytest.mark.parametrize(
    "text",
    ["app=", "a b", "slot in blue", "slot in ()", "slot in (a,", "=x", "app=model,", "bad key!=x"],
)
def test_label_selector_syntax_errors(text: str) -> None:
    if text == "app=":  # an empty value is valid: it selects an empty label
        assert parse_label_selector(text).matches({"app": ""})
        return
    with pytest.raises(SelectorError):
        parse_label_selector(text)


def test_label_values_are_validated() -> None:
    with pytest.raises(SelectorError):
        parse_label_selector("app=" + "x" * 64)
    with pytest.raises(SelectorError):
        parse_label_selector("app=-bad")


def test_selector_from_spec_and_back() -> None:
    spec = {
        "matchLabels": {"app": "model"},
        "matchExpressions": [
            {"key": "slot", "operator": "In", "values": ["blue", "green"]},
            {"key": "canary", "operator": "DoesNotExist"},
        ],
    }
    selector = selector_from_spec(spec)
    assert selector.matches(LABELS)
    assert not selector.matches({**LABELS, "canary": "1"})
    assert format_selector(selector) == "app=model,slot in (blue,green),!canary"
    assert parse_label_selector(format_selector(selector)) == selector


def test_field_selectors() -> None:
    obj = {"metadata": {"name": "blue", "namespace": "gx10"}, "spec": {"nodeName": "gx10"}}
    assert parse_field_selector("metadata.name=blue").matches(obj)
    assert parse_field_selector("metadata.name==blue,metadata.namespace=gx10").matches(obj)
    assert not parse_field_selector("metadata.name!=blue").matches(obj)
    pods = ("metadata.name", "metadata.namespace", "spec.nodeName")
    assert parse_field_selector("spec.nodeName=gx10", pods).matches(obj)
    assert parse_field_selector("metadata.name=a\\,b").requirements == (
        ("metadata.name", True, "a,b"),
    )


@pytest.mark.parametrize("text", ["spec.replicas=1", "status.phase=Running", "metadata.name"])
def test_unsupported_or_malformed_field_selectors(text: str) -> None:
    with pytest.raises(SelectorError):
        parse_field_selector(text)
