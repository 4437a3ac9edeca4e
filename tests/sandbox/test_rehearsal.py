"""The controller manifest as the rehearsal script applies it."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from gx10slots.sandbox.rehearsal import main

MANIFESTS = Path(__file__).resolve().parents[2] / "docs" / "manifests"


def test_the_shipped_manifest_is_adapted_to_the_sandbox_and_nothing_else(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    slots = tmp_path / "slots.yaml"
    slots.write_text(
        yaml.safe_dump({"namespace": "gx10", "flag": {"endpoint": "http://127.0.0.1:1"}})
    )
    code = main(
        [str(slots), str(MANIFESTS / "controller.yaml"), str(MANIFESTS / "job-deploy.yaml")]
    )
    assert code == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    config_map, *rest = docs
    assert config_map["kind"] == "ConfigMap"
    config = yaml.safe_load(config_map["data"]["slots.yaml"])
    assert config["flag"]["endpoint"] == "http://127.0.0.1:1"  # the sandbox's, not the shipped
    assert config["smoke"]["report_dir"] == "/reports"
    shipped = [d for d in yaml.safe_load_all((MANIFESTS / "controller.yaml").read_text()) if d]
    assert [(d["kind"], d["metadata"]["name"]) for d in rest] == [
        (d["kind"], d["metadata"]["name"]) for d in shipped
    ]
    (deployment,) = (d for d in rest if d["kind"] == "Deployment")
    assert deployment["spec"]["replicas"] == 1
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["args"] == ["controller", "--metrics-addr=127.0.0.1:0"]
    assert [d for d in rest if d["kind"] != "Deployment"] == [
        d for d in shipped if d["kind"] != "Deployment"
    ]


def test_a_wrong_call_says_how_to_call_it(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "kubectl apply -f -" in capsys.readouterr().err


def test_missing_or_foreign_files_are_said_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([str(tmp_path / "nope"), "a", "b"]) == 2
    assert "cannot read the manifests: FileNotFoundError" in capsys.readouterr().err
    foreign = tmp_path / "foreign.yaml"
    foreign.write_text("kind: Pod\n")
    assert main([str(foreign), str(foreign), str(foreign)]) == 2
    assert "not the shipped manifests" in capsys.readouterr().err
