"""Every engine profile meets a server: the sandbox's fake engine imitating that engine (issue 15).

The fake server started with ``engine=NAME`` answers readiness, liveness, metrics, `/v1/models`
and the engine's own endpoints the way that engine does (gx10slots.sandbox.imitations, each fact
cited in gx10slots/smoke/profiles.py), so each profile's checks run against its engine's wire
shapes, not only against hand-written stubs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gx10slots.app import App, GlobalOptions
from gx10slots.config import parse_config
from gx10slots.ops.engine import cold_standby_warning, keep_loaded
from gx10slots.sandbox.imitations import IMITATIONS
from gx10slots.sandbox.seed import slot_deployment
from gx10slots.smoke import Report, get_profile, run_suite
from gx10slots.smoke.profiles import PROFILES, EngineProfile
from tests.helpers.config import ollama_app, valid
from tests.helpers.modelservers import QUICK_SUITE, Serve, failures, model_servers, results

pytestmark = pytest.mark.e2e

SERVED = "gx10"
SETTINGS = QUICK_SUITE


@pytest.fixture
def serve() -> Iterator[Serve]:
    with model_servers() as start:
        yield start


def smoke(server: Any, profile: EngineProfile, **kw: Any) -> Report:
    settings = kw.pop("settings", SETTINGS)
    return run_suite(server.url, kw.pop("served", SERVED), profile, settings, slot="green", **kw)


def test_every_profile_has_an_imitation_and_every_imitation_a_profile() -> None:
    assert set(IMITATIONS) == set(PROFILES)


@pytest.mark.parametrize("engine", sorted(PROFILES))
def test_each_profile_passes_against_the_engine_it_describes(serve: Serve, engine: str) -> None:
    profile = get_profile(engine)
    report = smoke(serve("sandbox/ok", engine=engine), profile)
    assert report.passed, failures(report)
    assert report.engine == engine
    r = results(report)
    assert r["readiness"].detail.startswith(f"{profile.readiness_path} answered HTTP 200")
    progress = r["progress"]
    if profile.metrics_format == "prometheus" and profile.generation_tokens_metric:
        # Judged on the engine's own counters at its own path, not skipped.
        assert not progress.skipped, progress.detail
        assert progress.detail.startswith(f"{profile.generation_tokens_metric} advanced by")
        if profile.progress_counter is not None:
            assert "no stall" in progress.detail
        else:
            assert "no stall check" in progress.detail
    else:
        assert progress.skipped, progress.detail
    assert r["keep-alive"].skipped == (profile.keep_alive_path is None)


def test_a_profile_fails_on_an_engine_that_is_not_the_one_it_describes(serve: Serve) -> None:
    # SGLang's readiness asks /health_generate, which vLLM does not have.
    settings = dataclasses.replace(SETTINGS, probes=("readiness",))
    report = smoke(serve("sandbox/ok", engine="vllm"), get_profile("sglang"), settings=settings)
    assert [name for name, _ in failures(report)] == ["readiness"]
    assert "/health_generate answered HTTP 404" in results(report)["readiness"].detail
    # trtllm's Prometheus text is at /prometheus/metrics (with return_perf_metrics): a server
    # without it gets no progress judgement, and the report says what to turn on.
    report = smoke(serve("sandbox/ok", engine="sglang"), get_profile("trtllm"))
    progress = results(report)["progress"]
    assert progress.skipped and "return_perf_metrics" in progress.detail
    # llama-server's counters are not vLLM's (both answer /health): progress says it.
    report = smoke(serve("sandbox/ok", engine="vllm"), get_profile("llama-server"))
    assert [name for name, _ in failures(report)] == ["progress"]
    assert "wrong engine profile" in results(report)["progress"].detail


LOADING = sorted(p.name for p in PROFILES.values() if 503 in p.loading_statuses)


@pytest.mark.parametrize("engine", LOADING)
def test_readiness_waits_through_the_engines_own_loading_answer(serve: Serve, engine: str) -> None:
    settings = dataclasses.replace(SETTINGS, probes=("readiness", "identity", "known-answer"))
    report = smoke(
        serve("sandbox/loading-0.6s", engine=engine), get_profile(engine), settings=settings
    )
    assert report.passed, failures(report)
    readiness = results(report)["readiness"]
    assert readiness.metrics["attempts"] > 1 and readiness.metrics["waited_ms"] >= 400


def test_nim_answers_liveness_while_loading_and_readiness_only_after(serve: Serve) -> None:
    server = serve("sandbox/loading-30s", engine="nim")
    assert httpx.get(f"{server.url}/v1/health/live").status_code == 200
    assert httpx.get(f"{server.url}/v1/health/ready").status_code == 503


def test_llama_server_names_its_alphabetically_first_alias(serve: Serve) -> None:
    server = serve("sandbox/ok", engine="llama-server", served_name="pong-v1", aliases=("b-old",))
    (card,) = httpx.get(f"{server.url}/v1/models").json()["data"]
    assert (card["id"], card["aliases"]) == ("b-old", ["b-old", "pong-v1"])
    report = smoke(server, get_profile("llama-server"), served="pong-v1", served_names=("b-old",))
    assert report.passed, failures(report)


def test_vllm_lora_adapters_are_listed_and_accepted(serve: Serve) -> None:
    server = serve("sandbox/ok", aliases=("old",), loras=("sql-lora",))
    data = httpx.get(f"{server.url}/v1/models").json()["data"]
    assert [(c["id"], c["parent"]) for c in data] == [
        (SERVED, None),
        ("old", None),
        ("sql-lora", SERVED),
    ]
    settings = dataclasses.replace(SETTINGS, max_model_len=4096)
    # The slot claims its names; the adapter card is an extra, and may itself be the served name.
    for served in (SERVED, "sql-lora"):
        report = smoke(
            server,
            get_profile("vllm"),
            settings=settings,
            served=served,
            served_names=(SERVED, "old"),
        )
        assert report.passed, (served, failures(report))


def _ps(server: Any) -> list[str]:
    return [m["name"] for m in httpx.get(f"{server.url}/api/ps").json()["models"]]


def test_an_ollama_standby_is_cold_until_asked_and_stays_loaded_after_the_smoke(
    serve: Serve,
) -> None:
    # OLLAMA_KEEP_ALIVE=0: the server unloads a model as soon as a request ends.
    server = serve("sandbox/ok", engine="ollama", keep_alive_s=0.0)
    assert _ps(server) == []
    report = smoke(server, get_profile("ollama"))
    assert report.passed, failures(report)
    r = results(report)
    assert "'gx10' was cold (not listed by /api/ps)" in r["readiness"].detail
    assert r["readiness"].metrics["warm"] == 0.0
    assert r["keep-alive"].detail == "'gx10' kept loaded (keep_alive -1), listed by /api/ps"
    # Every request of the suite reset the keep-alive to the server's 0; the last one pinned it.
    assert _ps(server) == ["gx10:latest"]
    again = smoke(
        server, get_profile("ollama"), settings=dataclasses.replace(SETTINGS, probes=("readiness",))
    )
    assert "'gx10' was loaded" in results(again)["readiness"].detail


def test_an_ollama_that_cannot_load_the_model_fails_keep_alive(serve: Serve) -> None:
    server = serve("sandbox/ok", engine="ollama")
    settings = dataclasses.replace(SETTINGS, probes=("readiness", "keep-alive"))
    report = smoke(server, get_profile("ollama"), settings=settings, served="not-pulled")
    assert failures(report) == [
        ("keep-alive", "/api/generate answered HTTP 404: model 'not-pulled' not found")
    ]


def test_status_says_an_ollama_standby_is_cold_when_api_ps_does_not_list_it(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLOTS_ENGINE_API_KEY", raising=False)
    server = serve("sandbox/ok", engine="ollama", keep_alive_s=0.0)
    app = ollama_app(server.url)
    warning = cold_standby_warning(app, "green", SERVED)
    assert warning is not None and warning.startswith("standby green is cold: /api/ps")
    smoke(server, get_profile("ollama"))  # loads it and keeps it loaded
    assert cold_standby_warning(app, "green", SERVED) is None
    # An engine that does not answer is said, not raised.
    unreachable = cold_standby_warning(ollama_app("http://127.0.0.1:1"), "green", SERVED)
    assert unreachable is not None and "cannot tell whether 'gx10' is loaded" in unreachable


def test_status_asks_no_engine_that_keeps_its_model_loaded() -> None:
    app = App(GlobalOptions())
    app.__dict__["config"] = parse_config(valid())  # vllm, endpoints that nothing serves
    assert cold_standby_warning(app, "green", SERVED) is None


def test_a_flip_asks_the_ollama_fallback_to_keep_its_model_loaded(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SLOTS_ENGINE_API_KEY", raising=False)
    # The old active slot served production: loaded until OLLAMA_KEEP_ALIVE (here 0) runs out.
    server = serve("sandbox/ok", engine="ollama", keep_alive_s=0.0)
    deployment = slot_deployment("green", model="sandbox/ok", served_name=SERVED, replicas=1)
    monkeypatch.setattr("gx10slots.ops.read.read_deployment", lambda app, slot: deployment)
    app = ollama_app(server.url)
    assert _ps(server) == []
    assert keep_loaded(app, "green") == "slot green keeps 'gx10' loaded (keep_alive -1)"
    assert _ps(server) == ["gx10:latest"]
    # An engine that cannot be reached is said, never raised: the flip itself is done.
    note = keep_loaded(ollama_app("http://127.0.0.1:1"), "green")
    assert note is not None and note.startswith("slot green: could not ask its engine")
    # vLLM keeps its model loaded: nothing is asked.
    vllm = App(GlobalOptions())
    vllm.__dict__["config"] = parse_config(valid())
    assert keep_loaded(vllm, "green") is None


def test_the_engines_table_of_the_docs_has_a_row_per_profile() -> None:
    text = (Path(__file__).parents[2] / "docs" / "config.md").read_text(encoding="utf-8")
    section = text[text.index("## Engines") :]
    section = section[: section.index("\n## ")]
    lines = section.splitlines()
    rows = {line.split("`")[1] for line in lines if line.startswith("| `")} - {"engine"}
    assert rows == set(PROFILES)
