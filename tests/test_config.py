from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gx10slots.config import load_config, parse_config
from gx10slots.errors import ConfigError


def valid() -> dict[str, Any]:
    return {
        "namespace": "gx10",
        "engine": "vllm",
        "slots": {
            "blue": {"deployment": "gx10-blue", "endpoint": "http://127.0.0.1:8001"},
            "green": {
                "deployment": "gx10-green",
                "service": "green-svc",
                "endpoint": "http://127.0.0.1:8002/",
            },
        },
        "flag": {
            "kind": "service-selector",
            "name": "gx10-model",
            "endpoint": "http://127.0.0.1:8000",
        },
    }


def test_minimal_config_fills_defaults() -> None:
    config = parse_config(valid())
    assert config.namespace == "gx10"
    assert config.slot("blue").service == "gx10-blue"  # defaults to the Deployment name
    assert config.slot("green").service == "green-svc"
    assert config.slot("green").endpoint == "http://127.0.0.1:8002"  # trailing slash dropped
    assert config.flag.key == "gx10slots.io/slot"
    assert config.flag.service == "gx10-model"
    assert config.container == "engine"
    assert (config.model_env, config.served_name_env) == ("MODEL", "SERVED_MODEL_NAME")
    assert config.smoke.max_age_s == 1800
    assert config.memory.reserve_gib == 8
    assert config.access == "direct"


def test_durations_and_nested_sections() -> None:
    doc = valid()
    doc["smoke"] = {
        "max_age": "1h30m",
        "probe_timeout": "10s",
        "burst": 8,
        "formats": ["json", "junit"],
    }
    doc["memory"] = {"node_capacity_gib": 128, "reserve_gib": 4}
    doc["api_key"] = {"secret": {"name": "engine-key", "key": "token"}}
    config = parse_config(doc)
    assert config.smoke.max_age_s == 5400
    assert config.smoke.probe_timeout_s == 10
    assert config.smoke.formats == ("json", "junit")
    assert config.memory.node_capacity_gib == 128
    assert config.api_key.secret_name == "engine-key"


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d.pop("namespace"), "namespace: is required"),
        (lambda d: d.update(namespace="GX10"), "namespace: expected a namespace name"),
        (
            lambda d: d["flag"].update(kind="selector"),
            "flag.kind: expected one of service-selector, configmap, httproute, got 'selector'",
        ),
        (lambda d: d["slots"].pop("green"), "slots.green: is required"),
        (
            lambda d: d["slots"]["blue"].update(endpoint="127.0.0.1:8001"),
            "slots.blue.endpoint: expected an http:// or https:// URL",
        ),
        (
            lambda d: d["slots"]["blue"].update(port=70000),
            "slots.blue.port: expected a port number up to 65535",
        ),
        (lambda d: d.update(engine="tgi"), "engine: expected one of vllm, llama-server"),
        (lambda d: d.update(smoke={"max_age": "soon"}), "smoke.max_age: 'soon' is not a duration"),
        (lambda d: d.update(smoke={"burst": 0}), "smoke.burst: expected at least 1, got 0"),
        (
            lambda d: d.update(smoke={"burst": "four"}),
            "smoke.burst: expected a number, got str 'four'",
        ),
        (lambda d: d.update(smoke={"tool_call": "yes"}), "smoke.tool_call: expected true or false"),
        (lambda d: d.update(smoke={"expect": "("}), "smoke.expect: expected a regular expression"),
        (
            lambda d: d.update(smoke={"formats": ["pdf"]}),
            "smoke.formats: expected a list drawn from json, md, junit",
        ),
        (lambda d: d["flag"].update(colour="blue"), "flag.colour: unknown key"),
        (lambda d: d.update(slots=["blue", "green"]), "slots: expected a mapping, got a list"),
        (
            lambda d: d["slots"]["green"].update(deployment="gx10-blue"),
            "slots.green.deployment: must differ",
        ),
        (lambda d: d["flag"].update(key="not a key"), "flag.key: expected a label key"),
        (
            lambda d: d.update(env={"model": "1MODEL"}),
            "env.model: expected an environment variable name",
        ),
    ],
)
def test_each_mistake_is_one_precise_message(mutate: Any, expected: str) -> None:
    doc = valid()
    mutate(doc)
    with pytest.raises(ConfigError) as info:
        parse_config(doc, source="slots.yaml")
    assert info.value.exit_code == 2
    assert expected in info.value.message
    assert info.value.message.startswith("slots.yaml: ")


def test_direct_access_requires_endpoints_but_proxy_access_does_not() -> None:
    doc = valid()
    del doc["slots"]["blue"]["endpoint"]
    with pytest.raises(ConfigError, match=r"slots\.blue\.endpoint: is required"):
        parse_config(doc)
    doc["access"] = "apiserver-proxy"
    del doc["flag"]["endpoint"]
    config = parse_config(doc)
    assert config.slot("blue").endpoint is None


def test_configmap_flag_with_proxy_access_needs_the_router_service() -> None:
    doc = valid()
    doc["access"] = "apiserver-proxy"
    doc["flag"] = {"kind": "configmap", "name": "router-flag"}
    with pytest.raises(ConfigError, match=r"flag\.service: is required"):
        parse_config(doc)
    doc["flag"]["service"] = "router"
    config = parse_config(doc)
    assert (config.flag.service, config.flag.key) == ("router", "active-slot")


def test_load_config_reports_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("namespace: gx10\nslots: [blue\n")
    with pytest.raises(ConfigError, match=r"not valid YAML at line \d+, column \d+"):
        load_config(bad)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    with pytest.raises(ConfigError, match=r"\(top level\): expected a mapping, got nothing"):
        load_config(empty)


def test_load_config_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "slots.yaml"
    path.write_text(yaml.safe_dump(valid()))
    assert load_config(path).flag.name == "gx10-model"


def test_unknown_key_hint_lists_every_key_of_the_section() -> None:
    doc = valid()
    doc["api_key"] = {"evn": "ENGINE_KEY"}
    with pytest.raises(ConfigError) as info:
        parse_config(doc)
    assert "api_key.evn: unknown key (expected one of: env, secret)" in info.value.message


def test_verify_window_is_a_duration() -> None:
    doc = valid()
    doc["flag"]["verify_window"] = "2m"
    assert parse_config(doc).flag.verify_window_s == 120
    doc["flag"]["verify_window"] = "later"
    with pytest.raises(ConfigError, match=r"flag\.verify_window: 'later' is not a duration"):
        parse_config(doc)
