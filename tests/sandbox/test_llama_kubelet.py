"""The kubelet turns a llama-server slot's container into the real llama-server command line."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gx10slots.sandbox import kubelet, llamacpp, seed


def _pod(model: str, *, engine: str = "llama-server", **container: Any) -> dict[str, Any]:
    deployment = seed.slot_deployment(
        "green", model=model, served_name="pong-v1", replicas=1, engine=engine
    )
    template = deployment["spec"]["template"]
    (spec_container,) = template["spec"]["containers"]
    spec_container.update(container)
    return {"metadata": {"name": "gx10-green-abc", "uid": "u1"}, "spec": template["spec"]}


def _process(tmp_path: Path, pod: dict[str, Any], engine: str) -> kubelet.PodProcess:
    runtime: Any = SimpleNamespace(directory=tmp_path, engine=engine)
    return kubelet.PodProcess(runtime, pod)


def test_a_tiny_model_runs_the_real_llama_server_with_every_alias(tmp_path: Path) -> None:
    pod = _pod("tiny-pong")
    (container,) = pod["spec"]["containers"]
    container["args"][3] = "$(SERVED_MODEL_NAME),sandbox-ok,gx10slots/green"
    argv = _process(tmp_path, pod, "llama-server")._argv(8123)
    assert argv[0] == str(llamacpp.find_binary())
    assert argv[argv.index("--alias") + 1] == "pong-v1,sandbox-ok,gx10slots/green"
    assert argv[argv.index("--model") + 1] == str(tmp_path / "models" / "tiny-pong.gguf")
    assert (tmp_path / "models" / "tiny-pong.gguf").is_file()
    assert argv[argv.index("--port") + 1] == "8123"
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert "--metrics" in argv


def test_other_models_in_a_llama_server_sandbox_run_the_fake_with_the_same_names(
    tmp_path: Path,
) -> None:
    argv = _process(tmp_path, _pod("sandbox/ok"), "llama-server")._argv(8123)
    assert argv[1:3] == ["-m", "gx10slots.sandbox.modelserver"]
    assert argv[argv.index("--served-name") + 1] == "pong-v1"
    assert argv[argv.index("--alias") + 1] == "gx10slots/green"
    # It imitates llama-server, the engine the sandbox's slots.yaml names.
    assert argv[argv.index("--engine") + 1] == "llama-server"


@pytest.mark.parametrize(
    ("container", "key"),
    [
        ({"env": [{"name": "LLAMA_API_KEY", "value": "from-env"}]}, "from-env"),
        ({"args": ["--model", "$(MODEL)", "--api-key", "$(KEY)"]}, "from-arg"),
        ({"args": ["--model", "$(MODEL)", "--api-key=$(KEY)"]}, "from-arg"),
        ({}, None),
    ],
)
def test_the_api_key_comes_from_the_container(container: dict[str, Any], key: str | None) -> None:
    env = [{"name": "MODEL", "value": "tiny-pong"}, {"name": "KEY", "value": "from-arg"}]
    spec = {**container, "env": env + container.get("env", [])}
    assert kubelet._llama_api_key(spec) == key


def test_the_sandbox_shapes_llama_server_slots_like_the_manifests() -> None:
    (container,) = _pod("tiny-pong")["spec"]["containers"]
    assert container["image"].startswith("ghcr.io/ggml-org/llama.cpp:server")
    args = container["args"]
    assert args[args.index("--alias") + 1] == "$(SERVED_MODEL_NAME),gx10slots/green"
    assert "--metrics" in args and "command" not in container
