"""A fault-injecting imitation of vLLM's OpenAI-compatible server, for the sandbox.

    python -m gx10slots.sandbox.modelserver --model sandbox/wedge --served-name gx10 --port 0

MODEL picks a behaviour (``Behaviour.parse``): ``sandbox/ok``, ``sandbox/wedge``,
``sandbox/loading-<dur>``, ``sandbox/wrong-name``, ``sandbox/no-tools``, ``sandbox/no-json``,
``sandbox/garbage``, ``sandbox/slow-<dur>``, ``sandbox/crash``, ``sandbox/flaky-<pct>``,
``sandbox/wedge-after-<dur>``; any name outside ``sandbox/`` behaves like ``sandbox/ok``. The
behaviour logic (answers, tool calls, failure decisions) is pure and separate from the HTTP
plumbing below it, which imitates the wire shapes of vLLM: ``/health``, ``/v1/models``,
``/v1/chat/completions`` (JSON and SSE), ``/v1/completions`` and Prometheus ``/metrics`` with
vLLM's metric names. With ``--engine NAME`` it answers readiness, metrics, ``/v1/models`` and the
engine's own endpoints as that engine does (gx10slots.sandbox.imitations: every smoke profile has
one); ``--lora`` adds adapter cards.

Stdlib only (plus the stdlib-only ``gx10slots.durations`` and ``gx10slots.sandbox.imitations``),
so it runs wherever a Python runs.
Time-based behaviours count from ``start()``.

``sandbox/one-slot-<dur>`` is an engine with one slot (llama-server ``--parallel 1``): one
generation at a time, the others wait their turn, <dur> per generated token. A request's
``ignore_eos`` (vLLM's and llama-server's option) runs the answer on to ``max_tokens``: with both,
a test holds a long streaming generation open.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import json
import os
import random
import signal
import socket
import socketserver
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, TypeGuard, cast
from urllib.parse import urlsplit

from gx10slots.durations import parse_duration
from gx10slots.sandbox.imitations import IMITATIONS, Imitation, imitation

VERSION = "0.0.0+sandbox"

# What ``sandbox/garbage`` generates when the request sets no max_tokens; a real engine would run
# to max_model_len, which only makes tests slow.
GARBAGE_WORDS = 48
# sandbox/loading-<dur> loads its "weights" in this many steps, logging a progress line per step.
LOADING_SHARDS = 5


class ModelSpecError(ValueError):
    """MODEL starts with ``sandbox/`` but names no behaviour we know (the CLI exits 2)."""

    exit_code = 2


class EngineCrash(RuntimeError):
    """``sandbox/crash``: the engine dies before the server listens (the CLI exits 1)."""

    exit_code = 1


# --------------------------------------------------------------------------------------------
# Behaviour: pure decisions, no I/O
# --------------------------------------------------------------------------------------------


class Kind(StrEnum):
    OK = "ok"
    WEDGE = "wedge"
    LOADING = "loading"
    WRONG_NAME = "wrong-name"
    NO_TOOLS = "no-tools"
    NO_JSON = "no-json"  # no guided decoding: response_format is accepted and ignored
    GARBAGE = "garbage"
    SLOW = "slow"
    CRASH = "crash"
    FLAKY = "flaky"
    WEDGE_AFTER = "wedge-after"
    ONE_SLOT = "one-slot"


_PLAIN_KINDS = {
    k.value: k
    for k in (Kind.OK, Kind.WEDGE, Kind.WRONG_NAME, Kind.NO_TOOLS, Kind.GARBAGE, Kind.CRASH)
}
_PLAIN_KINDS[Kind.NO_JSON.value] = Kind.NO_JSON
# Longest prefix first: "wedge-after-" must win over a bare "wedge".
_TIMED_KINDS = (
    ("wedge-after-", Kind.WEDGE_AFTER),
    ("loading-", Kind.LOADING),
    ("slow-", Kind.SLOW),
    ("one-slot-", Kind.ONE_SLOT),
)
_MODEL_HELP = (
    "sandbox/ok, sandbox/wedge, sandbox/loading-<dur>, sandbox/wrong-name, sandbox/no-tools, "
    "sandbox/no-json, "
    "sandbox/garbage, sandbox/slow-<dur>, sandbox/crash, sandbox/flaky-<pct>, "
    "sandbox/wedge-after-<dur>, sandbox/one-slot-<dur> (durations like 500ms, 1.5s, 30s, 2m, "
    "1h30m)"
)


@dataclass(frozen=True)
class Tool:
    name: str
    parameters: Mapping[str, Any]


@dataclass(frozen=True)
class GenRequest:
    """A chat or completion request, validated and reduced to what the behaviour looks at."""

    model: str | None
    prompt: str  # what the answer reacts to: the last user message, or the completion prompt
    prompt_tokens: int
    max_tokens: int | None = None
    temperature: float | None = None
    seed: int | None = None
    stream: bool = False
    include_usage: bool = False
    # vLLM's and llama-server's `ignore_eos`: generate max_tokens tokens whatever the answer.
    ignore_eos: bool = False
    tools: tuple[Tool, ...] = ()
    tool_choice: str = "none"  # "none" | "auto" | "required" | "named"
    tool_name: str | None = None  # with tool_choice "named"
    # The JSON schema response_format asks the answer to match (json_object: any object);
    # None: free text.
    response_schema: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # a JSON document, as OpenAI sends it


@dataclass(frozen=True)
class Answer:
    text: str | None  # None when the answer is only tool calls, as vLLM sends it
    finish_reason: str
    completion_tokens: int
    tool_calls: tuple[ToolCall, ...] = ()

    def words(self) -> list[str]:
        """The stream pieces: one word per chunk, spaces kept so that joining gives the text."""
        parts = (self.text or "").split(" ")
        return [parts[0], *(" " + p for p in parts[1:])] if self.text else []


_SENTENCES = (
    "Hello! I am a sandbox model and I have read your message.",
    "This is a simulated answer from the sandbox model server.",
    "Thanks for the question; the sandbox model keeps its answers short.",
)

# Word classes for fluent-looking nonsense; none contains "pong", so a known-answer probe fails.
_SALAD: tuple[tuple[str, ...], ...] = (
    ("the", "a", "every", "some", "our", "this"),
    ("quiet", "velvet", "recursive", "amber", "folded", "distant", "hollow", "granular"),
    ("lantern", "theorem", "harbor", "orchard", "membrane", "ledger", "compass", "meadow"),
    ("describes", "unfolds", "borrows", "measures", "remembers", "invites", "carries", "tilts"),
    ("beneath", "toward", "within", "across", "against", "beyond"),
)
_SALAD_PATTERN = (0, 1, 2, 3, 4, 0, 1, 2)

_STRING_HINTS = (
    (("city", "location", "place", "town"), "Paris"),
    (("country",), "France"),
    (("unit",), "celsius"),
    (("email",), "user@example.com"),
    (("url", "uri", "link"), "https://example.com"),
    (("date",), "2025-01-01"),
    (("query", "search", "question", "text", "prompt"), "sandbox"),
    (("name",), "Alice"),
    (("lang",), "en"),
)
_FORMAT_VALUES = {
    "date": "2025-01-01",
    "date-time": "2025-01-01T00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com",
    "uuid": "00000000-0000-4000-8000-000000000000",
}


def example_value(schema: Any, name: str = "") -> Any:
    """A plausible value for a JSON schema: what a model would fill into a tool call."""
    if not isinstance(schema, Mapping):
        return "example"
    if "const" in schema:
        return schema["const"]
    if "default" in schema:
        return schema["default"]
    for key in ("enum", "examples"):
        if isinstance(schema.get(key), list) and schema[key]:
            return schema[key][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            useful = [
                o for o in options if not (isinstance(o, Mapping) and o.get("type") == "null")
            ]
            return example_value((useful or options)[0], name)
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind is None:
        kind = "object" if "properties" in schema else "array" if "items" in schema else "string"
    if kind == "object":
        props = schema.get("properties")
        props = props if isinstance(props, Mapping) else {}
        required = schema.get("required")
        names = [r for r in required if isinstance(r, str)] if isinstance(required, list) else []
        return {key: example_value(props.get(key), key) for key in names}
    if kind == "array":
        count = schema.get("minItems")
        count = count if isinstance(count, int) and count > 0 else 1
        return [example_value(schema.get("items"), name.removesuffix("s")) for _ in range(count)]
    if kind in ("integer", "number"):
        low, above, high = (schema.get(k) for k in ("minimum", "exclusiveMinimum", "maximum"))
        value = low if _is_number(low) else above + 1 if _is_number(above) else 1
        if _is_number(high) and value > high:
            value = high
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return True
    if kind == "null":
        return None
    fmt = schema.get("format")
    if isinstance(fmt, str) and fmt in _FORMAT_VALUES:
        return _FORMAT_VALUES[fmt]
    lowered = name.lower()
    return next((v for keys, v in _STRING_HINTS if any(k in lowered for k in keys)), "example")


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def tool_call_text(name: str, arguments: str) -> str:
    """The Hermes-style text a model emits for a call, before the server's tool parser runs."""
    return f'<tool_call>{{"name": {json.dumps(name)}, "arguments": {arguments}}}</tool_call>'


@dataclass(frozen=True)
class Behaviour:
    """What a MODEL value makes the server do; every decision is a pure function of inputs."""

    kind: Kind = Kind.OK
    seconds: float = 0.0  # loading-, slow-, wedge-after-, one-slot- (the pace per token)
    percent: int = 0  # flaky-

    @classmethod
    def parse(cls, model: str) -> Behaviour:
        if not model.startswith("sandbox/"):
            return cls(Kind.OK)  # real model names rehearse like sandbox/ok
        name = model.removeprefix("sandbox/")
        if name in _PLAIN_KINDS:
            return cls(_PLAIN_KINDS[name])
        for prefix, kind in _TIMED_KINDS:
            if name.startswith(prefix):
                try:
                    return cls(kind, seconds=parse_duration(name.removeprefix(prefix)))
                except ValueError as exc:
                    raise ModelSpecError(f"{model}: {exc}") from None
        if name.startswith("flaky-"):
            pct = name.removeprefix("flaky-")
            if pct.isdigit() and 0 <= int(pct) <= 100:
                return cls(Kind.FLAKY, percent=int(pct))
            raise ModelSpecError(f"{model}: expected a percentage 0-100 after flaky-")
        raise ModelSpecError(f"unknown sandbox model {model!r}; expected one of {_MODEL_HELP}")

    def loading(self, uptime: float) -> bool:
        return self.kind is Kind.LOADING and uptime < self.seconds

    def wedged(self, uptime: float) -> bool:
        return self.kind is Kind.WEDGE or (self.kind is Kind.WEDGE_AFTER and uptime >= self.seconds)

    @property
    def ttft_delay(self) -> float:
        return self.seconds if self.kind is Kind.SLOW else 0.0

    @property
    def one_slot(self) -> bool:
        """``sandbox/one-slot-<dur>``: one generation at a time, the others wait their turn (an
        engine with one slot: llama-server ``--parallel 1``, vLLM ``--max-num-seqs 1``)."""
        return self.kind is Kind.ONE_SLOT

    @property
    def token_pace(self) -> float:
        """Seconds between two generated tokens (a real engine decodes at a rate)."""
        return self.seconds if self.kind is Kind.ONE_SLOT else 0.0

    def generate(self, req: GenRequest, *, index: int, seed: int) -> Answer:
        """The answer, run on to ``max_tokens`` when the request sets ``ignore_eos`` (the engine
        then never stops at the end-of-sequence token)."""
        answer = self.answer(req, index=index, seed=seed)
        if req.ignore_eos and req.max_tokens is not None and not answer.tool_calls:
            return _to_length(answer.text or "", req.max_tokens)
        return answer

    def served_id(self, served_name: str) -> str:
        return served_name + "-wrong" if self.kind is Kind.WRONG_NAME else served_name

    def fails(self, index: int, seed: int) -> bool:
        """Whether the index-th generation request (from 0) gets an HTTP 500."""
        if self.kind is not Kind.FLAKY:
            return False
        # Exactly `percent` failures in every aligned block of 100 requests, in an order drawn
        # from the seed: the share is exact from the start, the pattern is not a visible rhythm.
        block, slot = divmod(index, 100)
        return slot in random.Random(f"{seed}:{block}").sample(range(100), self.percent)

    def answer(self, req: GenRequest, *, index: int, seed: int) -> Answer:
        if self.kind is Kind.GARBAGE:
            rng = random.Random(f"{seed}:{req.prompt}")
            count = req.max_tokens or GARBAGE_WORDS
            salad = [rng.choice(_SALAD[_SALAD_PATTERN[i % 8]]) for i in range(count)]
            return Answer(" ".join(salad), "length", count)
        tool = _chosen_tool(req)
        if tool is not None:
            arguments = json.dumps(example_value(tool.parameters))
            raw = tool_call_text(tool.name, arguments)
            if req.max_tokens is not None and len(raw.split()) > req.max_tokens:
                return _limited(raw, req.max_tokens)  # cut mid-call: no parsable tool call
            if self.kind is Kind.NO_TOOLS:
                return Answer(raw, "stop", len(raw.split()))
            call = ToolCall(f"chatcmpl-tool-{uuid.uuid4().hex}", tool.name, arguments)
            return Answer(None, "tool_calls", len(raw.split()), (call,))
        if req.response_schema is not None and self.kind is not Kind.NO_JSON:
            # Guided decoding: JSON matching the schema (cut at max_tokens, as an engine would).
            return _limited(json.dumps(example_value(req.response_schema)), req.max_tokens)
        if "pong" in req.prompt.lower():
            return _limited("pong", req.max_tokens)
        if req.temperature == 0:
            return _limited(_SENTENCES[0], req.max_tokens)
        rng = random.Random(req.seed if req.seed is not None else f"{seed}:{index}")
        return _limited(rng.choice(_SENTENCES), req.max_tokens)


def _chosen_tool(req: GenRequest) -> Tool | None:
    # "auto" always calls, so the sandbox is deterministic: the tool named in the prompt, else
    # the first one.
    if not req.tools or req.tool_choice == "none":
        return None
    if req.tool_choice == "named":
        return next(t for t in req.tools if t.name == req.tool_name)
    prompt = req.prompt.lower()
    return next((t for t in req.tools if t.name.lower() in prompt), req.tools[0])


def _limited(text: str, max_tokens: int | None) -> Answer:
    words = text.split()
    if max_tokens is not None and len(words) > max_tokens:
        return Answer(" ".join(words[:max_tokens]), "length", max_tokens)
    return Answer(" ".join(words), "stop", max(1, len(words)))


def _to_length(text: str, tokens: int) -> Answer:
    """``ignore_eos``: ``text``, then the sentences over and over, exactly ``tokens`` words."""
    words = text.split() + " ".join(_SENTENCES).split() * (tokens // 20 + 1)
    return Answer(" ".join(words[:tokens]), "length", tokens)


def count_tokens(text: str) -> int:
    return len(text.split())


# --------------------------------------------------------------------------------------------
# Request parsing: JSON body → GenRequest, or a RequestError with vLLM's status
# --------------------------------------------------------------------------------------------


class RequestError(Exception):
    def __init__(self, message: str, status: int = 400, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, Mapping)]
        return " ".join(p for p in parts if isinstance(p, str))
    raise RequestError("message content must be a string, a list of parts or null")


def _common(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise RequestError("model must be a string")
    max_tokens = body.get("max_completion_tokens")
    max_tokens = body.get("max_tokens") if max_tokens is None else max_tokens
    if max_tokens is not None and (
        not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1
    ):
        raise RequestError("max_tokens must be an integer of at least 1")
    temperature = body.get("temperature")
    if temperature is not None and (
        not isinstance(temperature, int | float)
        or isinstance(temperature, bool)
        or not 0 <= temperature <= 2
    ):
        raise RequestError("temperature must be a number between 0 and 2")
    seed = body.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise RequestError("seed must be an integer")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("stream must be a boolean")
    options = body.get("stream_options")
    if options is not None and not stream:
        raise RequestError("Stream options can only be defined when `stream=True`.")
    include_usage = isinstance(options, Mapping) and options.get("include_usage") is True
    ignore_eos = body.get("ignore_eos", False)
    if not isinstance(ignore_eos, bool):
        raise RequestError("ignore_eos must be a boolean")
    return {
        "model": model,
        "max_tokens": max_tokens,
        "temperature": None if temperature is None else float(temperature),
        "seed": seed,
        "stream": stream,
        "include_usage": include_usage,
        "ignore_eos": ignore_eos,
    }


def _tools(body: Mapping[str, Any]) -> tuple[tuple[Tool, ...], str, str | None]:
    raw = body.get("tools") or []
    if not isinstance(raw, list):
        raise RequestError("tools must be a list")
    tools = []
    for entry in raw:
        fn = entry.get("function") if isinstance(entry, Mapping) else None
        name = fn.get("name") if isinstance(fn, Mapping) else None
        if not isinstance(name, str) or not name:
            raise RequestError("each tool must be {'type': 'function', 'function': {'name': …}}")
        params = cast(Mapping[str, Any], fn).get("parameters")
        tools.append(Tool(name, params if isinstance(params, Mapping) else {}))
    choice = body.get("tool_choice")
    if choice is None:
        return tuple(tools), ("auto" if tools else "none"), None
    if choice in ("none", "auto", "required"):
        if choice == "required" and not tools:
            raise RequestError("tool_choice 'required' needs at least one tool in tools")
        return tuple(tools), choice, None
    fn = choice.get("function") if isinstance(choice, Mapping) else None
    name = fn.get("name") if isinstance(fn, Mapping) else None
    if not isinstance(name, str):
        raise RequestError("tool_choice must be none, auto, required or a named function")
    if all(t.name != name for t in tools):
        raise RequestError(f"tool_choice names {name!r}, which is not in tools")
    return tuple(tools), "named", name


def _response_schema(body: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The schema of ``response_format`` as vLLM reads it (vllm/entrypoints/openai/protocol.py
    ResponseFormat: type "text" | "json_object" | "json_schema"; json_schema {name, schema,
    strict}, required for "json_schema")."""
    raw = body.get("response_format")
    if raw is None:
        return None
    kind = raw.get("type") if isinstance(raw, Mapping) else None
    if kind not in ("text", "json_object", "json_schema"):
        raise RequestError(
            "response_format.type must be one of 'text', 'json_object', 'json_schema'"
        )
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "object"}
    wrapper = cast(Mapping[str, Any], raw).get("json_schema")
    if not isinstance(wrapper, Mapping):
        raise RequestError("response_format.json_schema is required for type 'json_schema'")
    schema = wrapper.get("schema")
    return schema if isinstance(schema, Mapping) else {"type": "object"}


def parse_chat_request(body: Any) -> GenRequest:
    common = _common(body)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise RequestError("messages must be a non-empty list")
    texts: list[str] = []
    last_user = ""
    for message in messages:
        if not isinstance(message, Mapping) or not isinstance(message.get("role"), str):
            raise RequestError("each message must be an object with a role")
        text = _text_of(message.get("content"))
        texts.append(text)
        if message["role"] == "user":
            last_user = text
    tools, choice, name = _tools(body)
    tokens = max(1, sum(count_tokens(t) for t in texts))
    return GenRequest(
        prompt=last_user,
        prompt_tokens=tokens,
        tools=tools,
        tool_choice=choice,
        tool_name=name,
        response_schema=_response_schema(body),
        **common,
    )


def parse_completion_request(body: Any) -> GenRequest:
    common = _common(body)
    prompt = body.get("prompt")
    if isinstance(prompt, list) and all(isinstance(p, str) for p in prompt):
        prompt = "\n".join(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(p, int) for p in prompt):
        return GenRequest(prompt="", prompt_tokens=len(prompt), **common)  # token ids
    if not isinstance(prompt, str):
        raise RequestError("prompt must be a string, a list of strings or a list of token ids")
    return GenRequest(prompt=prompt, prompt_tokens=max(1, count_tokens(prompt)), **common)


def context_error(req: GenRequest, max_model_len: int) -> RequestError | None:
    """vLLM's 400 when prompt plus completion do not fit the context window."""
    if req.max_tokens is None:
        if req.prompt_tokens < max_model_len:
            return None
        return RequestError(
            f"This model's maximum context length is {max_model_len} tokens. However, your "
            f"request has {req.prompt_tokens} input tokens. Please reduce the length of the "
            "input messages."
        )
    total = req.prompt_tokens + req.max_tokens
    if total <= max_model_len:
        return None
    return RequestError(
        f"This model's maximum context length is {max_model_len} tokens. However, you requested "
        f"{total} tokens ({req.prompt_tokens} in the messages, {req.max_tokens} in the "
        "completion). Please reduce the length of the messages or completion."
    )


def error_body(message: str, kind: str, code: int) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# --------------------------------------------------------------------------------------------
# Metrics: vLLM's names, Prometheus text written by hand (keeps the server stdlib-only)
# --------------------------------------------------------------------------------------------

# vLLM's own bucket bounds, so dashboards and quantiles read the same as against the real engine.
# fmt: off
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0,
                7.5, 10.0, 20.0, 40.0, 80.0, 160.0, 640.0, 2560.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0,
               120.0, 240.0, 480.0, 960.0, 1920.0, 7680.0)
# fmt: on
FINISH_REASONS = ("stop", "length", "abort")


@dataclass
class _Histogram:
    buckets: tuple[float, ...]
    counts: list[int] = field(init=False)
    total: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * len(self.buckets)

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.count += 1


def _labels(**labels: str) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{esc(v)}"' for k, v in sorted(labels.items())) + "}"


class Metrics:
    """The engine counters a progress check reads; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.running = 0
        self.waiting = 0
        self.prompt_tokens = 0
        self.generation_tokens = 0
        # Tokens of finished requests only: the counter engines add to as a request ends
        # (llama-server's tokens_predicted_total, SGLang's and trtllm's generation_tokens_total).
        self.finished_tokens = 0
        # Each request runs on its own handler thread: its tokens so far.
        self._request = threading.local()
        self.success = dict.fromkeys(FINISH_REASONS, 0)
        self.ttft = _Histogram(TTFT_BUCKETS)
        self.e2e = _Histogram(E2E_BUCKETS)

    def begin(self, prompt_tokens: int) -> None:
        self._request.tokens = 0
        with self._lock:
            self.running += 1
            self.prompt_tokens += prompt_tokens

    def queued(self) -> None:
        """An accepted request waits for the engine's one slot: waiting, not running (vLLM's
        scheduler counts it in num_requests_waiting)."""
        with self._lock:
            self.running -= 1
            self.waiting += 1

    def admitted(self) -> None:
        with self._lock:
            self.waiting -= 1
            self.running += 1

    def first_token(self, seconds: float) -> None:
        with self._lock:
            self.ttft.observe(seconds)

    def generated(self, tokens: int) -> None:
        self._request.tokens = getattr(self._request, "tokens", 0) + tokens
        with self._lock:
            self.generation_tokens += tokens

    def counts(self) -> dict[str, float]:
        """Tokens as generated ("step"), tokens of finished requests ("end"), requests running."""
        with self._lock:
            return {
                "step": float(self.generation_tokens),
                "end": float(self.finished_tokens),
                "running": float(self.running),
            }

    def end(self, finish_reason: str, seconds: float) -> None:
        with self._lock:
            self.running -= 1
            self.finished_tokens += getattr(self._request, "tokens", 0)
            self.success[finish_reason] += 1
            if finish_reason != "abort":
                self.e2e.observe(seconds)

    def render(self, model_name: str) -> str:
        lbl = _labels(model_name=model_name)
        out: list[str] = []

        def family(name: str, kind: str, doc: str) -> None:
            out.append(f"# HELP {name} {doc}")
            out.append(f"# TYPE {name} {kind}")

        with self._lock:
            family("vllm:num_requests_running", "gauge", "Number of requests in model execution.")
            out.append(f"vllm:num_requests_running{lbl} {float(self.running)}")
            family("vllm:num_requests_waiting", "gauge", "Number of requests waiting.")
            out.append(f"vllm:num_requests_waiting{lbl} {float(self.waiting)}")
            family("vllm:kv_cache_usage_perc", "gauge", "KV-cache usage. 1 means 100 percent.")
            out.append(f"vllm:kv_cache_usage_perc{lbl} {min(1.0, self.running / 64)}")
            family("vllm:prompt_tokens", "counter", "Number of prefill tokens processed.")
            out.append(f"vllm:prompt_tokens_total{lbl} {float(self.prompt_tokens)}")
            family("vllm:generation_tokens", "counter", "Number of generation tokens processed.")
            out.append(f"vllm:generation_tokens_total{lbl} {float(self.generation_tokens)}")
            family("vllm:request_success", "counter", "Count of successfully processed requests.")
            for reason, n in self.success.items():
                labels = _labels(finished_reason=reason, model_name=model_name)
                out.append(f"vllm:request_success_total{labels} {float(n)}")
            for name, hist, doc in (
                ("vllm:time_to_first_token_seconds", self.ttft, "Time to first token in seconds."),
                ("vllm:e2e_request_latency_seconds", self.e2e, "End-to-end request latency."),
            ):
                family(name, "histogram", doc)
                for bound, n in zip(hist.buckets, hist.counts, strict=True):
                    bucket = _labels(le=str(bound), model_name=model_name)
                    out.append(f"{name}_bucket{bucket} {float(n)}")
                inf = _labels(le="+Inf", model_name=model_name)
                out.append(f"{name}_bucket{inf} {float(hist.count)}")
                out.append(f"{name}_count{lbl} {float(hist.count)}")
                out.append(f"{name}_sum{lbl} {hist.total}")
        return "\n".join(out) + "\n"


def render_imitated(metrics: Metrics, engine: Imitation, model_name: str) -> str:
    """Another engine's Prometheus families (its names and what each counts), from the same
    counters as the vLLM ones."""
    out: list[str] = []
    values = metrics.counts()
    for family in engine.metrics:
        base = family.name.removesuffix("_total") if family.kind == "counter" else family.name
        out.append(f"# TYPE {base} {family.kind}")
        labels = _labels(model_name=model_name, **family.labels)
        out.append(f"{family.name}{labels} {values[family.counts]}")
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------

MAX_BODY_BYTES = 16 * 1024 * 1024


@dataclass
class ServerConfig:
    model: str
    served_name: str | None = None  # defaults to model, as vLLM's --served-model-name does
    # Further names, as vLLM's --served-model-name takes several: each gets its own /v1/models
    # card and is accepted in requests; responses name the first (vllm/config/model.py).
    aliases: tuple[str, ...] = ()
    host: str = "127.0.0.1"
    port: int = 0
    api_key: str | None = None
    latency_ms: float = 0.0
    max_model_len: int = 8192
    seed: int = 0
    port_file: Path | None = None
    access_log: bool = True
    log: Callable[[str], None] | None = None  # default: print to stdout, flushed
    # Whose wire behaviour to imitate (gx10slots.sandbox.imitations): readiness, metrics,
    # /v1/models and the engine's own endpoints. "vllm" is the server's original shape.
    engine: str = "vllm"
    # LoRA adapters served on top of the model (vLLM's --lora-modules NAME=PATH): each gets a
    # /v1/models card with `parent` and is accepted in requests.
    loras: tuple[str, ...] = ()
    # Ollama's OLLAMA_KEEP_ALIVE: how long a model stays loaded after its last request.
    keep_alive_s: float = 300.0


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # stop() releases and joins its own handler threads with a deadline
    # A burst of concurrent connects must not overflow the accept queue (socketserver's default
    # is 5): a dropped SYN is retried after 1 s, which shows up as latency. uvicorn, which real
    # vLLM runs on, listens with a backlog of 2048.
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], owner: ModelServer) -> None:
        self.owner = owner
        self._conn_lock = threading.Lock()
        self._conns: dict[threading.Thread, socket.socket] = {}
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind resolves the host's FQDN, a DNS lookup that can stall for
        # seconds on a sandboxed machine; loopback needs no name.
        socketserver.TCPServer.server_bind(self)
        self.server_name = str(self.server_address[0])
        self.server_port = int(self.server_address[1])

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self.process_request_thread,
            args=(request, client_address),
            name=f"modelserver-{self.server_port}-conn",
            daemon=True,
        )
        with self._conn_lock:
            self._conns[thread] = request
        thread.start()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._conn_lock:
                self._conns.pop(threading.current_thread(), None)

    def handle_error(self, request: Any, client_address: Any) -> None:
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return  # the client hung up; nothing to report
        super().handle_error(request, client_address)

    def close_connections(self, timeout: float) -> None:
        """Unblock handlers parked in keep-alive reads, then join every handler thread."""
        with self._conn_lock:
            conns = list(self._conns.items())
        for _, sock in conns:
            with contextlib.suppress(OSError):  # already closed by its handler
                sock.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + timeout
        for thread, _ in conns:
            thread.join(max(0.0, deadline - time.monotonic()))


_ROUTES: dict[str, dict[str, str]] = {
    "/health": {"GET": "_health"},
    "/version": {"GET": "_version"},
    "/metrics": {"GET": "_metrics"},
    "/v1/models": {"GET": "_models"},
    "/v1/chat/completions": {"POST": "_chat"},
    "/v1/completions": {"POST": "_completions"},
}


class _Aborted(Exception):
    """The server is stopping while a request waits (a wedge, a delay): drop the connection."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "uvicorn"
    sys_version = ""
    disable_nagle_algorithm = True  # one small SSE chunk per word must not wait for ACKs
    timeout = 60  # idle keep-alive connections do not hold a thread forever

    _t0 = 0.0

    @property
    def owner(self) -> ModelServer:
        return cast(_HTTPServer, self.server).owner

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if self.owner.config.access_log:
            host, port = self.client_address[:2]
            phrase = self.responses.get(code, ("",))[0] if isinstance(code, int) else ""
            self.owner.log(
                "INFO", "uvicorn", f'{host}:{port} - "{self.requestline}" {code} {phrase}'
            )

    def log_message(self, format: str, *args: Any) -> None:
        self.owner.log("WARNING", "uvicorn", format % args)

    def _dispatch(self, method: str) -> None:
        self._t0 = time.monotonic()
        body = self._read_body() if method == "POST" else b""
        if body is None:
            return
        owner = self.owner
        path = urlsplit(self.path).path
        if owner.config.engine != "vllm" and self._imitate(method, path, body):
            return
        route = _ROUTES.get(path)
        if route is None:
            self._json(404, {"detail": "Not Found"})
        elif method not in route:
            self._json(405, {"detail": "Method Not Allowed"})
        elif owner.loading():
            self._json(503, {"error": {"message": "loading model", "code": 503}})
        elif path.startswith("/v1/") and not owner.authorized(self.headers.get("Authorization")):
            msg = "Unauthorized: missing or wrong bearer token"
            self._json(401, error_body(msg, "AuthenticationError", 401))
        else:
            try:
                getattr(self, route[method])(body)
            except _Aborted:
                self.close_connection = True
            except OSError:
                self.close_connection = True  # the client went away mid-response

    def _imitate(self, method: str, path: str, body: bytes) -> bool:
        """Answer ``path`` as the imitated engine does; False: the common routes answer it."""
        owner, engine = self.owner, self.owner.imitation
        if method == "GET" and path in engine.live_paths:
            text = engine.live_paths[path]
            self._send(200, text.encode(), "application/json" if text[:1] in "{[" else "text/plain")
        elif method == "GET" and path in engine.readiness_paths and path != "/v1/models":
            if owner.loading():
                self._send(503, engine.loading_body.encode(), "application/json")
            else:
                self._send(200, engine.ready_body.encode(), "application/json")
        elif owner.loading():
            self._json(503, {"error": {"message": "loading model", "code": 503}})
        elif method == "GET" and path == engine.metrics_path:
            text = render_imitated(owner.metrics, engine, owner.served_id)
            self._send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")
        elif method == "GET" and path in engine.json_paths:
            self._send(200, engine.json_paths[path].encode(), "application/json")
        elif method == "GET" and path == engine.ps_path:
            self._json(200, {"models": owner.ollama_loaded()})
        elif method == "POST" and path == engine.load_path:
            self._ollama_load(body)
        elif path in ("/health", "/metrics", "/version"):
            self._json(404, {"detail": "Not Found"})  # vLLM's, which this engine has not
        else:
            return False
        return True

    def _ollama_load(self, body: bytes) -> None:
        """Ollama's `POST /api/generate` without a prompt: load the model, keep it loaded."""
        owner = self.owner
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError):
            doc = None
        model = doc.get("model") if isinstance(doc, dict) else None
        if not isinstance(model, str) or not owner.accepts(model):
            self._json(404, {"error": f"model '{model}' not found"})
            return
        keep = doc.get("keep_alive") if isinstance(doc, dict) else None
        owner.ollama_touch(keep)
        done = {"model": model, "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        self._json(200, done | {"response": "", "done": True, "done_reason": "load"})

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            msg = "chunked request bodies are not supported; send Content-Length"
            self._json(411, error_body(msg, "BadRequestError", 411), Connection="close")
            return None
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY_BYTES:
            self._json(
                400, error_body("bad Content-Length", "BadRequestError", 400), Connection="close"
            )
            return None
        return self.rfile.read(length)

    def _send(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()
        self.wfile.write(body)

    def _json(self, status: int, doc: Any, **headers: str) -> None:
        self._send(status, _dumps(doc), "application/json", **headers)

    def _server_ms(self) -> str:
        return f"{(time.monotonic() - self._t0) * 1000:.3f}"

    # -- GET ---------------------------------------------------------------------------------

    def _health(self, _: bytes) -> None:
        self._send(200, b"", "application/json")  # vLLM: 200, empty body, even when wedged

    def _version(self, _: bytes) -> None:
        self._json(200, {"version": VERSION})

    def _metrics(self, _: bytes) -> None:
        text = self.owner.metrics.render(self.owner.served_id)
        self._send(200, text.encode(), "text/plain; version=0.0.4; charset=utf-8")

    def _models(self, _: bytes) -> None:
        owner = self.owner
        shape = owner.imitation.models_shape
        if shape != "cards":
            self._json(200, owner.imitated_models(shape))
            return
        cards: list[dict[str, Any]] = [
            {
                "id": name,
                "object": "model",
                "created": owner.created,
                "owned_by": "vllm",
                "root": owner.config.model,
                "parent": None,
                "max_model_len": owner.config.max_model_len,
                "permission": [],
            }
            for name in owner.served_ids
        ]
        cards += [
            {
                "id": lora,
                "object": "model",
                "created": owner.created,
                "owned_by": owner.imitation.owned_by,
                "root": f"/adapters/{lora}",
                "parent": owner.served_ids[0],
                "max_model_len": None,
                "permission": [],
            }
            for lora in owner.config.loras
        ]
        self._json(200, {"object": "list", "data": cards})

    # -- generation --------------------------------------------------------------------------

    def _chat(self, body: bytes) -> None:
        self._generate(body, chat=True)

    def _completions(self, body: bytes) -> None:
        self._generate(body, chat=False)

    def _generate(self, body: bytes, *, chat: bool) -> None:
        owner = self.owner
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:
            self._json(400, error_body(f"JSON decode error: {exc}", "BadRequestError", 400))
            return
        try:
            req = parse_chat_request(doc) if chat else parse_completion_request(doc)
            if req.model is not None and not owner.accepts(req.model):
                msg = f"The model `{req.model}` does not exist."
                raise RequestError(msg, 404, "NotFoundError")
            problem = context_error(req, owner.config.max_model_len)
            if problem is not None:
                raise problem
        except RequestError as exc:
            self._json(exc.status, error_body(exc.message, exc.kind, exc.status))
            return
        index = owner.next_index()
        if owner.imitation.ps_path is not None:
            owner.ollama_touch(None)  # Ollama loads on a request and keeps it for keep_alive
        if owner.behaviour.fails(index, owner.config.seed):
            msg = "EngineCore encountered an issue. See stack trace (above) for the root cause."
            self._json(500, error_body(msg, "InternalServerError", 500))
            return
        # wedge-after decides once, on arrival: requests already accepted complete normally.
        wedged = owner.behaviour.wedged(owner.uptime())
        owner.metrics.begin(req.prompt_tokens)
        finished = "abort"
        try:
            owner.pause(owner.config.latency_ms / 1000)
            run = self._stream if req.stream else self._respond
            finished = run(req, index, chat=chat, wedged=wedged)
        finally:
            owner.metrics.end(finished, time.monotonic() - self._t0)

    def _respond(self, req: GenRequest, index: int, *, chat: bool, wedged: bool) -> str:
        owner = self.owner
        with owner.turn():
            if wedged:
                owner.pause(None)
            owner.pause(owner.behaviour.ttft_delay)
            answer = owner.behaviour.generate(req, index=index, seed=owner.config.seed)
            owner.metrics.first_token(time.monotonic() - self._t0)
            pace = owner.behaviour.token_pace
            if pace > 0:  # one decode step per further token, counted as it is made
                owner.metrics.generated(1)
                for _ in range(answer.completion_tokens - 1):
                    owner.pause(pace)
                    owner.metrics.generated(1)
            else:
                owner.metrics.generated(answer.completion_tokens)
        choice: dict[str, Any]
        if chat:
            message = {
                "role": "assistant",
                "content": answer.text,
                "reasoning_content": None,
                "tool_calls": [_call_json(c) for c in answer.tool_calls],
            }
            choice = {"index": 0, "message": message}
        else:
            choice = {"index": 0, "text": answer.text or ""}
        choice |= {"logprobs": None, "finish_reason": answer.finish_reason, "stop_reason": None}
        doc = {
            "id": _completion_id(chat),
            "object": "chat.completion" if chat else "text_completion",
            "created": int(time.time()),
            "model": owner.served_id,
            "choices": [choice],
            "usage": _usage(req, answer),
        }
        self._json(200, doc, x_sandbox_server_ms=self._server_ms())
        return _engine_reason(answer.finish_reason)

    def _stream(self, req: GenRequest, index: int, *, chat: bool, wedged: bool) -> str:
        owner = self.owner
        # Headers go out before the first token, as vLLM's StreamingResponse does: a wedged or
        # slow engine shows as a 200 whose body stays silent.
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("x-sandbox-server-ms", self._server_ms())
        self.end_headers()
        with owner.turn():
            return self._stream_answer(req, index, chat=chat, wedged=wedged)

    def _stream_answer(self, req: GenRequest, index: int, *, chat: bool, wedged: bool) -> str:
        owner = self.owner
        if wedged:
            owner.pause(None)
        owner.pause(owner.behaviour.ttft_delay)
        answer = owner.behaviour.generate(req, index=index, seed=owner.config.seed)
        base = {
            "id": _completion_id(chat),
            "object": "chat.completion.chunk" if chat else "text_completion",
            "created": int(time.time()),
            "model": owner.served_id,
        }
        first = True
        for choice, tokens in _stream_choices(answer, chat=chat):
            if tokens and not first:
                owner.pause(owner.behaviour.token_pace)  # the engine's next decode step
            self._event(base | {"choices": [choice]})
            if tokens and first:
                owner.metrics.first_token(time.monotonic() - self._t0)
                first = False
            owner.metrics.generated(tokens)
        if req.include_usage:
            self._event(base | {"choices": [], "usage": _usage(req, answer)})
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")
        return _engine_reason(answer.finish_reason)

    def _event(self, doc: Mapping[str, Any]) -> None:
        self._chunk(b"data: " + _dumps(doc) + b"\n\n")

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


def _dumps(doc: Any) -> bytes:
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode()


def _completion_id(chat: bool) -> str:
    return f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"


def _engine_reason(finish_reason: str) -> str:
    return "stop" if finish_reason == "tool_calls" else finish_reason  # the engine stopped


def _usage(req: GenRequest, answer: Answer) -> dict[str, int]:
    return {
        "prompt_tokens": req.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "total_tokens": req.prompt_tokens + answer.completion_tokens,
    }


def _call_json(call: ToolCall) -> dict[str, Any]:
    return {
        "id": call.id,
        "type": "function",
        "function": {"name": call.name, "arguments": call.arguments},
    }


def _stream_choices(answer: Answer, *, chat: bool) -> Iterator[tuple[dict[str, Any], int]]:
    """(choice, tokens it carries) per SSE event; the last one carries finish_reason."""

    def choice(payload: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        key = "delta" if chat else "text"
        return {
            "index": 0,
            key: payload if chat else payload.get("content", ""),
            "logprobs": None,
            "finish_reason": finish,
        }

    if chat:
        yield choice({"role": "assistant", "content": ""}), 0
    for i, call in enumerate(answer.tool_calls):
        head = {
            "index": i,
            "id": call.id,
            "type": "function",
            "function": {"name": call.name, "arguments": ""},
        }
        yield choice({"tool_calls": [head]}), 0
        args = {"index": i, "function": {"arguments": call.arguments}}
        yield choice({"tool_calls": [args]}), answer.completion_tokens
    if answer.tool_calls:
        yield choice({}, answer.finish_reason), 0
        return
    words = answer.words()
    for i, word in enumerate(words):
        last = i == len(words) - 1
        yield choice({"content": word}, answer.finish_reason if last else None), 1


class ModelServer:
    """One imitation vLLM server: ``start()`` → url, ``stop()``; also a context manager."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.behaviour = Behaviour.parse(config.model)
        self.served_name = config.served_name or config.model
        self.served_id = self.behaviour.served_id(self.served_name)
        self.served_ids = (
            self.served_id,
            *(a for a in config.aliases if a and a != self.served_id),
        )
        self.imitation = imitation(config.engine)
        if self.imitation.first_alias_sorted:
            self.served_id = min(self.served_ids)
        # Ollama: loaded until this monotonic time (None: not loaded; inf: kept forever).
        self._loaded_until: float | None = None
        self.metrics = Metrics()
        self.created = int(time.time())
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._slot = threading.Lock()  # sandbox/one-slot-<dur>: the engine's one slot
        self._index = 0
        self._started = 0.0
        self._httpd: _HTTPServer | None = None
        self._threads: list[threading.Thread] = []
        self._url: str | None = None

    @property
    def url(self) -> str:
        if self._url is None:
            raise RuntimeError("the model server is not started")
        return self._url

    def log(self, level: str, source: str, message: str) -> None:
        self._raw(f"{level} {time.strftime('%m-%d %H:%M:%S')} [{source}] {message}")

    def _raw(self, line: str) -> None:
        """One log line as the engine writes it (a progress bar has no level or source)."""
        if self.config.log is not None:
            self.config.log(line)
        else:
            print(line, flush=True)

    def start(self) -> str:
        if self._httpd is not None:
            raise RuntimeError("the model server is already started")
        cfg = self.config
        self.log("INFO", "api_server.py", f"vLLM API server version {VERSION}")
        self.log(
            "INFO",
            "api_server.py",
            f"args: model={cfg.model!r}, served_model_name="
            f"{self.served_name!r}, max_model_len={cfg.max_model_len}, seed={cfg.seed}",
        )
        self.log("INFO", "loader.py", f"Loading model weights for {cfg.model}")
        if self.behaviour.kind is Kind.CRASH:
            self.log("ERROR", "core.py", "EngineCore failed to start.")
            self.log(
                "ERROR",
                "core.py",
                "RuntimeError: CUDA error: an illegal memory access was "
                "encountered (injected by sandbox/crash)",
            )
            raise EngineCrash(f"{cfg.model}: the engine crashed at start")
        httpd = _HTTPServer((cfg.host, cfg.port), self)
        self._httpd = httpd
        self._started = time.monotonic()
        # A short poll interval: shutdown() waits up to one interval, and tests stop many servers.
        serve = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            daemon=True,
            name=f"modelserver-{httpd.server_port}",
        )
        serve.start()
        self._threads.append(serve)
        self._url = f"http://{cfg.host}:{httpd.server_port}"
        if cfg.port_file is not None:
            try:
                _write_atomically(cfg.port_file, f"{httpd.server_port}\n")
            except OSError:
                self.stop()
                raise
        self.log("INFO", "uvicorn", f"Started server process [{os.getpid()}]")
        self.log("INFO", "uvicorn", f"Uvicorn running on {self._url} (Press CTRL+C to quit)")
        if self.behaviour.kind is Kind.LOADING:
            done = threading.Thread(target=self._finish_loading, daemon=True, name="loading")
            done.start()
            self._threads.append(done)
        else:
            self.log("INFO", "uvicorn", "Application startup complete.")
        return self._url

    def _finish_loading(self) -> None:
        # vLLM's weight loader reports its progress as a tqdm bar, one update per shard (the
        # format `slots deploy` reads back from the pod's log: gx10slots.progress).
        shards = LOADING_SHARDS
        step = self.behaviour.seconds / shards
        for done in range(shards + 1):
            if done and self._stopping.wait(step):
                return
            percent = 100 * done // shards
            self._raw(
                f"Loading safetensors checkpoint shards: {percent:3d}% Completed | "
                f"{done}/{shards} [00:00<00:00, {step:.2f}s/it]"
            )
        if not self._stopping.is_set():
            self.log("INFO", "loader.py", f"Model loading took {self.behaviour.seconds:g} seconds")
            self.log("INFO", "uvicorn", "Application startup complete.")

    def stop(self) -> None:
        httpd = self._httpd
        if httpd is None or self._stopping.is_set():
            return
        self._stopping.set()  # releases wedged and delayed handlers
        httpd.shutdown()
        httpd.server_close()
        httpd.close_connections(timeout=2.0)
        for thread in self._threads:
            thread.join(2.0)
        self.log("INFO", "uvicorn", "Shutting down")

    def __enter__(self) -> ModelServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- used by the handlers ----------------------------------------------------------------

    def uptime(self) -> float:
        return time.monotonic() - self._started

    def loading(self) -> bool:
        return self.behaviour.loading(self.uptime())

    def authorized(self, header: str | None) -> bool:
        if self.config.api_key is None:
            return True
        expected = f"Bearer {self.config.api_key}".encode()
        return hmac.compare_digest((header or "").encode(), expected)

    def accepts(self, model: str) -> bool:
        """Whether a request may name ``model`` (a served name or a LoRA adapter; for Ollama a
        name without a tag means `:latest`)."""
        names = (*self.served_ids, *self.config.loras)
        if self.imitation.ps_path is not None:
            return _ollama_full(model) in {_ollama_full(n) for n in names}
        return model in names

    def ollama_touch(self, keep_alive: Any) -> None:
        """A request loaded the model: keep it for ``keep_alive`` (Ollama's field: seconds or a
        duration; negative keeps it forever, 0 unloads), else OLLAMA_KEEP_ALIVE."""
        seconds = _keep_alive_seconds(keep_alive, self.config.keep_alive_s)
        with self._lock:
            if seconds < 0:
                self._loaded_until = float("inf")
            else:
                self._loaded_until = time.monotonic() + seconds

    def ollama_loaded(self) -> list[dict[str, Any]]:
        """`/api/ps`'s models: the served model while its keep-alive lasts."""
        with self._lock:
            until = self._loaded_until
        if until is None or time.monotonic() >= until:
            return []
        left = min(until - time.monotonic(), 1e10)
        name = _ollama_full(self.served_ids[0])
        expires = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + left))
        return [
            {
                "name": name,
                "model": name,
                "size": 1 << 30,
                "digest": "0" * 64,
                "details": {"format": "gguf", "family": "sandbox", "parameter_size": "1B"},
                "expires_at": expires,
                "size_vram": 1 << 30,
            }
        ]

    def imitated_models(self, shape: str) -> dict[str, Any]:
        """`/v1/models` as llama-server (one card, every name under `aliases`, id the
        alphabetically first) or Ollama (every local model, tagged) write it."""
        if shape == "llama-server":
            card = {
                "id": self.served_id,
                "aliases": sorted(self.served_ids),
                "object": "model",
                "created": self.created,
                "owned_by": "llamacpp",
                "meta": {"n_ctx": self.config.max_model_len},
            }
            return {"object": "list", "data": [card]}
        local = [*self.served_ids, "some-other-model"]
        data = [
            {
                "id": _ollama_full(n),
                "object": "model",
                "created": self.created,
                "owned_by": "library",
            }
            for n in local
        ]
        return {"object": "list", "data": data}

    def next_index(self) -> int:
        with self._lock:
            self._index += 1
            return self._index - 1

    @contextlib.contextmanager
    def turn(self) -> Iterator[None]:
        """The engine's slot for one generation: at once, or with ``sandbox/one-slot-<dur>``
        once the requests ahead are done (counted as waiting meanwhile)."""
        if not self.behaviour.one_slot:
            yield
            return
        self.metrics.queued()
        try:
            while not self._slot.acquire(timeout=0.05):
                if self._stopping.is_set():
                    raise _Aborted
        finally:
            self.metrics.admitted()
        try:
            yield
        finally:
            self._slot.release()

    def pause(self, seconds: float | None) -> None:
        """Sleep without burning CPU (None: until stop); raise _Aborted when the server stops."""
        if (seconds is None or seconds > 0) and self._stopping.wait(seconds):
            raise _Aborted
        if self._stopping.is_set():
            raise _Aborted


def _ollama_full(name: str) -> str:
    """An Ollama model name with its tag (`:latest` when none is given)."""
    return name if ":" in name.rsplit("/", 1)[-1] else f"{name}:latest"


def _keep_alive_seconds(value: Any, default: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value.strip():
        text = value.strip()
        if text.lstrip("-").replace(".", "", 1).isdigit():
            return float(text)
        try:
            return -1.0 if text.startswith("-") else parse_duration(text)
        except ValueError:
            return default
    return default


def _write_atomically(path: Path, text: str) -> None:
    # A supervisor polls for this file; it must never see it half-written.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _arg_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m gx10slots.sandbox.modelserver",
        description=f"Imitation vLLM server with injected faults. MODEL: {_MODEL_HELP}; any other "
        "name behaves like sandbox/ok.",
    )
    p.add_argument("--model", required=True)
    p.add_argument("--served-name", help="model id to serve (default: MODEL)")
    p.add_argument(
        "--alias",
        action="append",
        default=[],
        help="a further model id to serve (repeatable), as vLLM's --served-model-name A B",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="0 picks a free port")
    p.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    p.add_argument(
        "--api-key",
        default=os.environ.get("VLLM_API_KEY"),
        help="require this bearer token on /v1 (default: $VLLM_API_KEY)",
    )
    p.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="fixed server-side latency added to every generation",
    )
    p.add_argument("--max-model-len", type=int, default=8192)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-access-log", dest="access_log", action="store_false")
    p.add_argument(
        "--engine",
        default="vllm",
        choices=tuple(IMITATIONS),
        help="whose wire behaviour to imitate: readiness, metrics, /v1/models (default: vllm)",
    )
    p.add_argument(
        "--lora",
        action="append",
        default=[],
        help="a LoRA adapter name to serve on top of the model (repeatable)",
    )
    p.add_argument(
        "--keep-alive",
        type=parse_duration,
        default=300.0,
        help="ollama: how long the model stays loaded after a request (OLLAMA_KEEP_ALIVE)",
    )
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _arg_parser().parse_args(argv)
    config = ServerConfig(
        model=args.model,
        served_name=args.served_name,
        aliases=tuple(args.alias),
        host=args.host,
        port=args.port,
        api_key=args.api_key,
        latency_ms=args.latency_ms,
        max_model_len=args.max_model_len,
        seed=args.seed,
        port_file=args.port_file,
        access_log=args.access_log,
        engine=args.engine,
        loras=tuple(args.lora),
        keep_alive_s=args.keep_alive,
    )
    try:
        server = ModelServer(config)
        server.start()
    except ModelSpecError as exc:
        print(f"ERROR {time.strftime('%m-%d %H:%M:%S')} [api_server.py] {exc}", flush=True)
        return exc.exit_code
    except EngineCrash as exc:
        return exc.exit_code
    except OSError as exc:
        print(f"ERROR {time.strftime('%m-%d %H:%M:%S')} [uvicorn] cannot listen: {exc}", flush=True)
        return 1
    done = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not done.wait(0.5):  # a timed wait keeps the main thread responsive to signals
        pass
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
