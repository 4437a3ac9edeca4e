"""`access: apiserver-proxy`: reach the slots through the API server, as from a laptop."""

from __future__ import annotations

import pytest
import yaml

from tests.helpers.sandbox import Sandbox

pytestmark = pytest.mark.e2e


def _proxy_config(box: Sandbox) -> str:
    config = yaml.safe_load((box.dir / "slots.yaml").read_text())
    config["access"] = "apiserver-proxy"
    for slot in config["slots"].values():
        del slot["endpoint"]
    del config["flag"]["endpoint"]
    path = box.dir / "proxy.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_deploy_flip_and_flip_back_through_the_api_server_proxy(sandbox: Sandbox) -> None:
    config = _proxy_config(sandbox)
    deployed = sandbox.cli(
        "--config", config, "-o", "json", "deploy", "org/m", "--served-name", "via-proxy", "--flip"
    )
    assert deployed.code == 0, deployed.err
    assert "/api/v1/namespaces/gx10/services/gx10-green:8000/proxy" in deployed.err
    assert sandbox.production() == "via-proxy"
    assert sandbox.cli("--config", config, "flip-back").code == 0
    assert sandbox.production() == "sandbox-ok"


def test_an_engine_key_cannot_travel_through_the_api_server_proxy(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = _proxy_config(sandbox)
    monkeypatch.setenv("SLOTS_ENGINE_API_KEY", "sk-engine-secret")
    result = sandbox.cli("--config", config, "smoke", "active")
    assert result.code == 2
    assert "cannot pass through the API server's service proxy" in result.err
    assert "sk-engine-secret" not in result.err + result.out
