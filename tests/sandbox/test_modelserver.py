"""The fault-injecting model server, checked the way a client (a smoke probe) sees it."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from gx10slots.sandbox.modelserver import (
    _SALAD,
    Behaviour,
    EngineCrash,
    GenRequest,
    Kind,
    ModelServer,
    ModelSpecError,
    ServerConfig,
    example_value,
)
from tests.helpers.modelservers import Serve, model_servers

REPO = Path(__file__).resolve().parents[2]
PONG = [{"role": "user", "content": "Reply with the single word pong."}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                "days": {"type": "integer", "minimum": 1, "maximum": 7},
                "detailed": {"type": "boolean"},
            },
            "required": ["city", "unit", "days"],
        },
    },
}
CLOCK = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}


@pytest.fixture
def serve() -> Iterator[Serve]:
    with model_servers() as start:
        yield start


def chat(
    url: str, messages: list[dict[str, Any]] = PONG, *, timeout: float = 5.0, **body: Any
) -> httpx.Response:
    body = {"model": "gx10", "messages": messages} | body
    return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout)


def events(response: httpx.Response) -> list[Any]:
    data = [line.removeprefix("data: ") for line in response.iter_lines() if line]
    return [d if d == "[DONE]" else json.loads(d) for d in data]


def sample(url: str, name: str, **labels: str) -> float:
    text = httpx.get(f"{url}/metrics").text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


def wait_until(check: Callable[[], bool], within: float) -> float:
    """Poll with a deadline; returns the seconds it took."""
    start = time.monotonic()
    while not check():
        assert time.monotonic() - start < within, f"not true within {within}s"
        time.sleep(0.05)
    return time.monotonic() - start


def times_out(url: str) -> bool:
    try:
        chat(url, timeout=0.3)
    except httpx.ReadTimeout:
        return True
    return False


# -- pure behaviour ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "kind", "seconds", "percent"),
    [
        ("sandbox/ok", Kind.OK, 0, 0),
        ("org/some-model", Kind.OK, 0, 0),
        ("sandbox/wedge", Kind.WEDGE, 0, 0),
        ("sandbox/loading-30s", Kind.LOADING, 30, 0),
        ("sandbox/slow-1.5s", Kind.SLOW, 1.5, 0),
        ("sandbox/slow-500ms", Kind.SLOW, 0.5, 0),
        ("sandbox/wedge-after-2m", Kind.WEDGE_AFTER, 120, 0),
        ("sandbox/flaky-50", Kind.FLAKY, 0, 50),
        ("sandbox/crash", Kind.CRASH, 0, 0),
    ],
)
def test_parse(model: str, kind: Kind, seconds: float, percent: int) -> None:
    assert Behaviour.parse(model) == Behaviour(kind, seconds, percent)


@pytest.mark.parametrize(
    "model", ["sandbox/nope", "sandbox/loading-", "sandbox/slow-3x", "sandbox/flaky-101"]
)
def test_parse_rejects(model: str) -> None:
    with pytest.raises(ModelSpecError, match="sandbox/"):
        Behaviour.parse(model)


def test_flaky_share_is_exact_and_seeded() -> None:
    flaky = Behaviour.parse("sandbox/flaky-30")
    first = [flaky.fails(i, seed=7) for i in range(200)]
    assert sum(first[:100]) == sum(first[100:]) == 30
    assert first == [flaky.fails(i, seed=7) for i in range(200)]
    assert first != [flaky.fails(i, seed=8) for i in range(200)]
    assert not any(Behaviour.parse("sandbox/ok").fails(i, seed=7) for i in range(100))


def test_example_values_follow_the_schema() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": "string"},
            "when": {"type": "string", "format": "date"},
            "count": {"type": "integer", "exclusiveMinimum": 3},
            "ratio": {"type": "number", "maximum": 0.5},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "filter": {
                "type": "object",
                "properties": {"on": {"type": "boolean"}},
                "required": ["on"],
            },
            "maybe": {"anyOf": [{"type": "null"}, {"type": "integer"}]},
            "optional": {"type": "string"},
        },
        "required": ["city", "when", "count", "ratio", "tags", "filter", "maybe"],
    }
    assert example_value(schema) == {
        "city": "Paris",
        "when": "2025-01-01",
        "count": 4,
        "ratio": 0.5,
        "tags": ["example", "example"],
        "filter": {"on": True},
        "maybe": 1,
    }


def test_garbage_never_says_pong() -> None:
    assert not any("pong" in word for words in _SALAD for word in words)
    garbage = Behaviour.parse("sandbox/garbage")
    for seed in range(20):
        req = GenRequest(model=None, prompt=f"say pong {seed}", prompt_tokens=3)
        answer = garbage.answer(req, index=seed, seed=seed)
        assert answer.finish_reason == "length"
        assert answer.text is not None and "pong" not in answer.text.lower()


# -- sandbox/ok over HTTP ------------------------------------------------------------------------


def test_ok_health_and_models(serve: Serve) -> None:
    url = serve(max_model_len=4096).url
    health = httpx.get(f"{url}/health")
    assert (health.status_code, health.content) == (200, b"")
    models = httpx.get(f"{url}/v1/models").json()
    assert models["object"] == "list"
    (card,) = models["data"]
    assert card | {"created": 0} == card | {
        "id": "gx10",
        "object": "model",
        "created": 0,
        "owned_by": "vllm",
        "root": "sandbox/ok",
        "parent": None,
        "max_model_len": 4096,
    }


def test_further_names_each_get_a_card_and_answer_as_the_first(serve: Serve) -> None:
    url = serve(aliases=("old", "gx10slots/green")).url
    ids = [card["id"] for card in httpx.get(f"{url}/v1/models").json()["data"]]
    assert ids == ["gx10", "old", "gx10slots/green"]
    answer = chat(url, model="old")
    assert answer.status_code == 200 and answer.json()["model"] == "gx10"  # as vLLM does
    assert chat(url, model="other").status_code == 404


def test_ok_answers_pong(serve: Serve) -> None:
    response = chat(serve().url)
    assert response.status_code == 200
    doc = response.json()
    assert doc["object"] == "chat.completion" and doc["model"] == "gx10"
    (choice,) = doc["choices"]
    assert choice["message"]["content"] == "pong"
    assert (choice["finish_reason"], choice["message"]["tool_calls"]) == ("stop", [])
    assert doc["usage"] == {"prompt_tokens": 6, "completion_tokens": 1, "total_tokens": 7}
    assert float(response.headers["x-sandbox-server-ms"]) >= 0


def test_ok_other_prompts_get_a_deterministic_sentence(serve: Serve) -> None:
    url = serve().url
    hello = [{"role": "user", "content": "Hello, who are you?"}]
    first = chat(url, hello, temperature=0).json()["choices"][0]["message"]["content"]
    assert first == chat(url, hello, temperature=0).json()["choices"][0]["message"]["content"]
    assert "pong" not in first and len(first.split()) > 3
    seeded = [chat(url, hello, seed=5, temperature=1).json() for _ in range(2)]
    assert seeded[0]["choices"][0]["message"] == seeded[1]["choices"][0]["message"]


def test_ok_streams_words_usage_and_done(serve: Serve) -> None:
    body = {"stream": True, "stream_options": {"include_usage": True}}
    with httpx.stream(
        "POST",
        f"{serve().url}/v1/chat/completions",
        json={"model": "gx10", "messages": [{"role": "user", "content": "Tell me a story"}]} | body,
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        got = events(response)
    assert got[-1] == "[DONE]"
    usage_chunk = got[-2]
    assert usage_chunk["choices"] == []
    chunks = got[:-2]
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    words = [c["choices"][0]["delta"]["content"] for c in chunks[1:]]
    assert all(len(w.split()) == 1 for w in words)
    assert usage_chunk["usage"]["completion_tokens"] == len(words)
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}


def test_stream_without_include_usage_has_no_usage_chunk(serve: Serve) -> None:
    with httpx.stream(
        "POST", f"{serve().url}/v1/chat/completions", json={"messages": PONG, "stream": True}
    ) as response:
        got = events(response)
    assert got[-1] == "[DONE]"
    assert all(c["choices"] for c in got[:-1])
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in got[:-1]) == "pong"


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        (None, "get_weather"),
        ("auto", "get_weather"),
        ("required", "get_weather"),
        ({"type": "function", "function": {"name": "get_time"}}, "get_time"),
    ],
)
def test_ok_makes_valid_tool_calls(serve: Serve, tool_choice: Any, expected: str) -> None:
    extra = {} if tool_choice is None else {"tool_choice": tool_choice}
    messages = [{"role": "user", "content": "What is the weather in Paris?"}]
    doc = chat(serve().url, messages, tools=[WEATHER, CLOCK], **extra).json()
    (choice,) = doc["choices"]
    assert choice["finish_reason"] == "tool_calls"
    (call,) = choice["message"]["tool_calls"]
    assert call["type"] == "function" and call["id"] and call["function"]["name"] == expected
    arguments = json.loads(call["function"]["arguments"])
    if expected == "get_weather":
        assert arguments == {"city": "Paris", "unit": "celsius", "days": 1}


def test_tool_choice_none_answers_in_text(serve: Serve) -> None:
    doc = chat(serve().url, tools=[WEATHER], tool_choice="none").json()
    assert doc["choices"][0]["message"] == doc["choices"][0]["message"] | {
        "content": "pong",
        "tool_calls": [],
    }


def test_ok_streams_tool_calls(serve: Serve) -> None:
    with httpx.stream(
        "POST",
        f"{serve().url}/v1/chat/completions",
        json={"messages": PONG, "tools": [WEATHER], "stream": True},
    ) as response:
        got = events(response)
    deltas = [c["choices"][0]["delta"] for c in got[:-1]]
    calls = [d["tool_calls"][0] for d in deltas if "tool_calls" in d]
    assert calls[0]["function"]["name"] == "get_weather" and calls[0]["id"]
    arguments = "".join(c["function"]["arguments"] for c in calls)
    assert json.loads(arguments)["city"] == "Paris"
    assert got[-2]["choices"][0]["finish_reason"] == "tool_calls"


@pytest.mark.parametrize("key", ["max_tokens", "max_completion_tokens"])
def test_max_tokens_truncates_with_length(serve: Serve, key: str) -> None:
    hello = [{"role": "user", "content": "hello"}]
    doc = chat(serve().url, hello, **{key: 2}).json()
    choice = doc["choices"][0]
    assert (choice["finish_reason"], len(choice["message"]["content"].split())) == ("length", 2)
    assert doc["usage"]["completion_tokens"] == 2


def test_context_window_overflow_is_400(serve: Serve) -> None:
    response = chat(serve(max_model_len=10).url, max_tokens=8)
    assert response.status_code == 400
    assert "maximum context length is 10 tokens" in response.json()["error"]["message"]


def test_completions(serve: Serve) -> None:
    url = serve().url
    doc = httpx.post(f"{url}/v1/completions", json={"model": "gx10", "prompt": "say pong"}).json()
    assert doc["object"] == "text_completion"
    assert (doc["choices"][0]["text"], doc["choices"][0]["finish_reason"]) == ("pong", "stop")
    assert doc["usage"]["total_tokens"] == 3


def test_metrics_parse_and_count(serve: Serve) -> None:
    url = serve().url
    chat(url)
    chat(url, max_tokens=1, messages=[{"role": "user", "content": "hello"}])
    families = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{url}/metrics").text)}
    assert {"vllm:generation_tokens", "vllm:prompt_tokens", "vllm:request_success"} <= set(families)
    assert families["vllm:num_requests_running"].type == "gauge"
    assert families["vllm:time_to_first_token_seconds"].type == "histogram"
    assert families["vllm:e2e_request_latency_seconds"].type == "histogram"
    assert families["vllm:kv_cache_usage_perc"].samples[0].labels == {"model_name": "gx10"}
    assert sample(url, "vllm:generation_tokens_total", model_name="gx10") == 2
    assert sample(url, "vllm:request_success_total", finished_reason="length") == 1
    assert sample(url, "vllm:time_to_first_token_seconds_count") == 2
    assert sample(url, "vllm:num_requests_running") == 0


# -- errors --------------------------------------------------------------------------------------


def test_api_key(serve: Serve) -> None:
    url = serve(api_key="s3cret").url
    assert httpx.get(f"{url}/health").status_code == 200  # as vLLM: only /v1 is guarded
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        response = httpx.get(f"{url}/v1/models", headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == 401
    ok = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200


def test_bad_json_unknown_model_and_unknown_path(serve: Serve) -> None:
    url = serve().url
    bad = httpx.post(f"{url}/v1/chat/completions", content=b"{nope")
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "BadRequestError"
    missing = chat(url, model="other")
    assert missing.status_code == 404
    assert missing.json() == {
        "error": {
            "message": "The model `other` does not exist.",
            "type": "NotFoundError",
            "param": None,
            "code": 404,
        }
    }
    assert httpx.get(f"{url}/nope").status_code == 404
    assert httpx.get(f"{url}/v1/chat/completions").status_code == 405


def test_latency_is_reported(serve: Serve) -> None:
    response = chat(serve(latency_ms=50).url)
    assert float(response.headers["x-sandbox-server-ms"]) >= 50


# -- the faults ----------------------------------------------------------------------------------


def test_wedge_keeps_health_but_never_answers(serve: Serve) -> None:
    server = serve("sandbox/wedge")
    url = server.url
    assert httpx.get(f"{url}/health").status_code == 200
    assert httpx.get(f"{url}/v1/models").status_code == 200
    with pytest.raises(httpx.ReadTimeout):
        chat(url, timeout=0.5)
    # A stream gets its 200 headers, as from vLLM, and then silence.
    body = {"messages": PONG, "stream": True}
    with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=0.5) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.ReadTimeout):
            response.read()
    # The progress-check signature: requests running, generation counter flat.
    before = sample(url, "vllm:generation_tokens_total")
    assert sample(url, "vllm:num_requests_running") == 2
    assert sample(url, "vllm:generation_tokens_total") == before == 0
    # Stopping releases the parked handlers: no thread of this server outlives it.
    prefix = f"modelserver-{url.rsplit(':', 1)[1]}"
    assert any(t.name.startswith(prefix) for t in threading.enumerate())
    server.stop()
    assert not any(t.name.startswith(prefix) for t in threading.enumerate())


def test_loading_is_503_then_healthy(serve: Serve) -> None:
    url = serve("sandbox/loading-1s").url
    health = httpx.get(f"{url}/health")
    assert health.status_code == 503
    assert health.json() == {"error": {"message": "loading model", "code": 503}}
    assert httpx.get(f"{url}/v1/models").status_code == 503
    assert chat(url).status_code == 503
    took = wait_until(lambda: httpx.get(f"{url}/health").status_code == 200, within=5)
    assert took > 0.5
    assert chat(url).json()["choices"][0]["message"]["content"] == "pong"


def test_wrong_name(serve: Serve) -> None:
    url = serve("sandbox/wrong-name").url
    (card,) = httpx.get(f"{url}/v1/models").json()["data"]
    assert card["id"] != "gx10"
    assert chat(url).status_code == 404
    served = chat(url, model=card["id"]).json()
    assert served["model"] == card["id"]


def test_no_tools_puts_the_call_in_content(serve: Serve) -> None:
    doc = chat(serve("sandbox/no-tools").url, tools=[WEATHER]).json()
    choice = doc["choices"][0]
    assert (choice["finish_reason"], choice["message"]["tool_calls"]) == ("stop", [])
    content = choice["message"]["content"]
    assert content.startswith("<tool_call>") and '"get_weather"' in content


WEATHER_REPORT = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature_c": {"type": "integer"}},
    "required": ["city", "temperature_c"],
}


def test_a_json_schema_in_response_format_is_answered_with_matching_json(serve: Serve) -> None:
    url = serve("sandbox/ok").url
    asked = {"type": "json_schema", "json_schema": {"name": "w", "schema": WEATHER_REPORT}}
    content = chat(url, response_format=asked).json()["choices"][0]["message"]["content"]
    assert json.loads(content) == {"city": "Paris", "temperature_c": 1}
    # Streamed, the pieces join into the same JSON.
    with httpx.stream(
        "POST",
        f"{url}/v1/chat/completions",
        json={"model": "gx10", "messages": PONG, "stream": True, "response_format": asked},
        timeout=5,
    ) as response:
        frames = [e for e in events(response) if e != "[DONE]"]
    text = "".join(f["choices"][0]["delta"].get("content") or "" for f in frames if f["choices"])
    assert json.loads(text) == {"city": "Paris", "temperature_c": 1}
    # json_object: some JSON object; "text": as without it.
    obj = chat(url, response_format={"type": "json_object"}).json()["choices"][0]["message"]
    assert isinstance(json.loads(obj["content"]), dict)
    plain = chat(url, response_format={"type": "text"}).json()["choices"][0]["message"]
    assert plain["content"] == "pong"


def test_a_malformed_response_format_is_refused_as_vllm_does(serve: Serve) -> None:
    url = serve("sandbox/ok").url
    for bad in (
        "json",
        {"type": "yaml"},
        {"type": "json_schema"},
        {"type": "json_schema", "json_schema": []},
    ):
        assert chat(url, response_format=bad).status_code == 400, bad


def test_no_json_ignores_response_format(serve: Serve) -> None:
    asked = {"type": "json_schema", "json_schema": {"name": "w", "schema": WEATHER_REPORT}}
    doc = chat(serve("sandbox/no-json").url, response_format=asked).json()
    assert doc["choices"][0]["message"]["content"] == "pong"


def test_garbage_fails_the_known_answer(serve: Serve) -> None:
    doc = chat(serve("sandbox/garbage").url, max_tokens=20).json()
    choice = doc["choices"][0]
    assert choice["finish_reason"] == "length"
    assert "pong" not in choice["message"]["content"].lower()
    assert len(choice["message"]["content"].split()) == 20


def test_slow_delays_the_first_token(serve: Serve) -> None:
    url = serve("sandbox/slow-1s").url
    start = time.monotonic()
    assert httpx.get(f"{url}/health").status_code == 200
    with httpx.stream(
        "POST", f"{url}/v1/chat/completions", json={"messages": PONG, "stream": True}
    ) as response:
        lines = (line for line in response.iter_lines() if line)
        first = next(lines)
        ttft = time.monotonic() - start
        assert first.startswith("data: {")
        assert list(lines)[-1] == "data: [DONE]"
    assert ttft >= 1.0
    assert sample(url, "vllm:time_to_first_token_seconds_sum") >= 1.0


def test_crash_raises_before_listening() -> None:
    lines: list[str] = []
    server = ModelServer(ServerConfig(model="sandbox/crash", log=lines.append))
    with pytest.raises(EngineCrash):
        server.start()
    assert any(line.startswith("ERROR") and "CUDA" in line for line in lines)
    with pytest.raises(RuntimeError, match="not started"):
        _ = server.url


def test_flaky_fails_its_share(serve: Serve) -> None:
    url = serve("sandbox/flaky-50", seed=3).url
    with httpx.Client(base_url=url, timeout=5) as client:
        codes = [
            client.post("/v1/chat/completions", json={"messages": PONG}).status_code
            for _ in range(100)
        ]
    assert set(codes) == {200, 500}
    assert 45 <= codes.count(500) <= 55


def test_wedge_after(serve: Serve) -> None:
    url = serve("sandbox/wedge-after-1s").url
    assert chat(url).status_code == 200
    took = wait_until(lambda: times_out(url), within=5)
    assert took > 0.5
    assert httpx.get(f"{url}/health").status_code == 200


# -- the command line ----------------------------------------------------------------------------


def run_module(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gx10slots.sandbox.modelserver", *args],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.e2e
def test_cli_port_file_and_sigterm(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    proc = run_module(
        "--model", "sandbox/ok", "--served-name", "gx10", "--port-file", str(port_file)
    )
    try:
        wait_until(port_file.exists, within=10)
        port = int(port_file.read_text())
        assert httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200
        assert chat(f"http://127.0.0.1:{port}").json()["choices"][0]["message"]["content"] == "pong"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0
    assert "Loading model weights for sandbox/ok" in out
    assert f"Uvicorn running on http://127.0.0.1:{port}" in out


@pytest.mark.e2e
@pytest.mark.parametrize(("model", "code"), [("sandbox/crash", 1), ("sandbox/bogus", 2)])
def test_cli_exit_codes(tmp_path: Path, model: str, code: int) -> None:
    port_file = tmp_path / "port"
    proc = run_module("--model", model, "--port-file", str(port_file))
    out, _ = proc.communicate(timeout=10)
    assert proc.returncode == code
    assert "ERROR" in out
    assert not port_file.exists()


# -- one slot, paced: a long generation holds the engine --------------------------------------


def test_one_slot_parses_its_pace() -> None:
    one = Behaviour.parse("sandbox/one-slot-50ms")
    assert (one.kind, one.one_slot, one.token_pace) == (Kind.ONE_SLOT, True, 0.05)
    assert not Behaviour.parse("sandbox/ok").one_slot
    assert Behaviour.parse("sandbox/ok").token_pace == 0


def test_ignore_eos_runs_to_max_tokens() -> None:
    long = GenRequest(model=None, prompt="pong", prompt_tokens=1, max_tokens=300, ignore_eos=True)
    answer = Behaviour.parse("sandbox/ok").generate(long, index=0, seed=0)
    assert (answer.completion_tokens, answer.finish_reason) == (300, "length")
    words = (answer.text or "").split()
    assert len(words) == 300 and words[0] == "pong"  # the answer, then on and on


def test_ignore_eos_must_be_a_boolean(serve: Serve) -> None:
    url = serve("sandbox/ok").url
    assert chat(url, ignore_eos="yes").status_code == 400


def test_one_slot_streams_at_its_pace_and_queues_the_next_request(serve: Serve) -> None:
    """A paced long stream holds the one slot: the generation counter moves token by token, a
    second request waits (vLLM's waiting gauge says so) and is answered once the first is done."""
    url = serve("sandbox/one-slot-20ms").url
    body = {"messages": PONG, "stream": True, "max_tokens": 100, "ignore_eos": True}
    words: list[str] = []
    streamed = threading.Event()

    def long_stream() -> None:
        with httpx.stream("POST", f"{url}/v1/chat/completions", json=body, timeout=30) as r:
            for line in r.iter_lines():
                if line.startswith("data: {"):
                    delta = json.loads(line.removeprefix("data: "))["choices"][0]["delta"]
                    words.append(delta.get("content") or "")
        streamed.set()

    started = time.monotonic()
    worker = threading.Thread(target=long_stream, daemon=True)
    worker.start()
    wait_until(lambda: sample(url, "vllm:num_requests_running") == 1, within=5)
    before = sample(url, "vllm:generation_tokens_total")
    # The counter moves during the stream (one decode step at a time), not only at its end.
    wait_until(lambda: sample(url, "vllm:generation_tokens_total") > before, within=1)
    assert not streamed.is_set()
    queued: list[httpx.Response] = []
    short = threading.Thread(target=lambda: queued.append(chat(url, timeout=30)), daemon=True)
    short.start()
    wait_until(lambda: sample(url, "vllm:num_requests_waiting") == 1, within=5)
    assert not queued, "the second request was answered while the slot was busy"
    short.join(30)
    assert streamed.is_set() and queued[0].status_code == 200
    # 100 tokens, 99 steps of 20 ms apart: the stream took about 2 s, not milliseconds.
    assert time.monotonic() - started >= 99 * 0.02
    assert len("".join(words).split()) == 100
    assert sample(url, "vllm:num_requests_waiting") == 0
    assert sample(url, "vllm:num_requests_running") == 0


def test_one_slot_stops_with_requests_waiting_their_turn(serve: Serve) -> None:
    server = serve("sandbox/one-slot-50ms")
    body = {"messages": PONG, "stream": True, "max_tokens": 1000, "ignore_eos": True}
    ended: list[str] = []

    def request() -> None:
        try:
            with httpx.stream(
                "POST", f"{server.url}/v1/chat/completions", json=body, timeout=30
            ) as r:
                for _ in r.iter_lines():
                    pass
        except httpx.HTTPError as exc:
            ended.append(type(exc).__name__)
        else:
            ended.append("complete")

    threads = [threading.Thread(target=request, daemon=True) for _ in range(2)]
    for thread in threads:
        thread.start()
    wait_until(lambda: sample(server.url, "vllm:num_requests_waiting") == 1, within=5)
    started = time.monotonic()
    server.stop()  # the running one and the waiting one are both let go
    for thread in threads:
        thread.join(10)
    assert len(ended) == 2 and time.monotonic() - started < 5
