"""slots.yaml's smoke.prompts and smoke.baseline: parsed, bounded, each mistake a ConfigError."""

from __future__ import annotations

from typing import Any

import pytest

from gx10slots.config import parse_config
from gx10slots.errors import ConfigError
from gx10slots.smoke.settings import GoldenPrompt


def valid() -> dict[str, Any]:
    return {
        "namespace": "gx10",
        "engine": "vllm",
        "slots": {
            "blue": {"deployment": "gx10-blue", "endpoint": "http://127.0.0.1:8001"},
            "green": {"deployment": "gx10-green", "endpoint": "http://127.0.0.1:8002"},
        },
        "flag": {
            "kind": "service-selector",
            "name": "gx10-model",
            "endpoint": "http://127.0.0.1:8000",
        },
    }


def with_smoke(**smoke: Any) -> dict[str, Any]:
    doc = valid()
    doc["smoke"] = smoke
    return doc


def test_golden_prompts_and_baseline_thresholds_are_read() -> None:
    config = parse_config(
        with_smoke(
            prompts=[
                {"name": "capital-fr", "prompt": "Capital of France?", "expect": "(?i)paris"},
                {"name": "sum", "prompt": "2+2?", "expect": r"\b4\b", "max_tokens": 8},
            ],
            baseline={"ttft_ratio": 3, "tokens_ratio": 0.25, "margin": "1s", "live": False},
        )
    )
    smoke = config.smoke
    assert smoke.prompts == (
        GoldenPrompt("capital-fr", "Capital of France?", "(?i)paris"),
        GoldenPrompt("sum", "2+2?", r"\b4\b", max_tokens=8),
    )
    assert (smoke.baseline.ttft_ratio, smoke.baseline.tokens_ratio) == (3.0, 0.25)
    assert smoke.baseline.margin_s == 1.0 and smoke.baseline.live is False


def test_the_contracts_defaults() -> None:
    smoke = parse_config(valid()).smoke
    assert smoke.prompts == ()
    assert smoke.baseline.live is True
    assert (smoke.baseline.ttft_ratio, smoke.baseline.tokens_ratio) == (2.0, 0.5)
    assert smoke.baseline.margin_s == 0.5


def prompt(**overrides: Any) -> dict[str, Any]:
    return {"name": "p", "prompt": "Say pong.", "expect": "pong", **overrides}


@pytest.mark.parametrize(
    ("smoke", "expected"),
    [
        ({"prompts": "pong"}, "smoke.prompts: expected a list"),
        (
            {"prompts": [prompt(name=f"p{i}") for i in range(21)]},
            "smoke.prompts: expected at most 20 entries, got 21",
        ),
        ({"prompts": [prompt(expect="(")]}, "smoke.prompts[0]: expect: not a regular expression"),
        ({"prompts": [prompt(name="Capital_FR")]}, "smoke.prompts[0]: name 'Capital_FR'"),
        ({"prompts": [prompt(prompt="x" * 4097)]}, "prompt: expected at most 4096 bytes"),
        ({"prompts": [prompt(expect="a" * 513)]}, "expect: expected at most 512 characters"),
        ({"prompts": [prompt(), prompt()]}, "smoke.prompts[1]: name 'p' is used twice"),
        ({"prompts": [prompt(colour="red")]}, "smoke.prompts[0].colour: unknown key"),
        ({"prompts": [{"name": "p", "prompt": "x"}]}, "smoke.prompts[0].expect: is required"),
        ({"prompts": [prompt(max_tokens=5000)]}, "max_tokens: expected 1 to 1024"),
        ({"baseline": {"ttft_ratio": 0.5}}, "smoke.baseline.ttft_ratio: expected at least 1"),
        ({"baseline": {"tokens_ratio": 2}}, "smoke.baseline.tokens_ratio: expected at most 1"),
        ({"baseline": {"margin": "soon"}}, "smoke.baseline.margin"),
        ({"baseline": {"ratio": 0.7}}, "smoke.baseline.ratio: unknown key"),
    ],
)
def test_each_mistake_names_its_key(smoke: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(with_smoke(**smoke))
    assert expected in info.value.message
