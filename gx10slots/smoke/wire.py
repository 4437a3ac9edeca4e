"""The OpenAI chat wire format: request bodies built as data, answers read with type checks.

Pure functions, no I/O. An engine that sends the wrong shape (``choices`` a string, a number where
text belongs) gets a :class:`ProbeFailure` naming the field and what it held, never a
``TypeError`` from deep inside a probe.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gx10slots.smoke._failure import ProbeFailure
from gx10slots.smoke.profiles import EngineProfile

TOOL_NAME = "get_weather"
# The largest count read from an answer: every integer up to it is exact as a float.
MAX_COUNT = 2**53

WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": TOOL_NAME,
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "The city name"}},
            "required": ["city"],
        },
    },
}


# The structured-output probe's schema: small, and every engine's guided decoding handles it.
WEATHER_REPORT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "temperature_c": {"type": "integer"}},
    "required": ["city", "temperature_c"],
    "additionalProperties": False,
}

# OpenAI's response_format with a JSON schema, as the engines read it: vLLM's ResponseFormat
# (vllm/entrypoints/openai/protocol.py: type "text" | "json_object" | "json_schema", and
# json_schema {name, description, schema, strict}); llama-server reads
# response_format.json_schema.schema (tools/server/server-common.cpp, oaicompat_chat_params_parse)
# and answers 400 when it cannot build the grammar.
STRUCTURED_RESPONSE_FORMAT: dict[str, Any] = {
    "type": "json_schema",
    "json_schema": {"name": "weather_report", "schema": WEATHER_REPORT_SCHEMA, "strict": True},
}


def chat_body(
    profile: EngineProfile,
    served_name: str,
    prompt: str,
    *,
    max_tokens: int,
    seed: int,
    stream: bool = False,
    tools: Sequence[Mapping[str, Any]] | None = None,
    response_format: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A deterministic chat request in the dialect ``profile`` understands."""
    body: dict[str, Any] = {
        "model": served_name,
        "messages": [{"role": "user", "content": prompt}],
        "temperature": 0,
        # Which field caps the length differs: ollama and llama-cpp-python ignore
        # max_completion_tokens, vLLM/SGLang deprecate max_tokens (see profiles.py).
        profile.max_tokens_field: max_tokens,
    }
    if profile.accepts_seed:
        body["seed"] = seed
    if stream:
        body["stream"] = True
        # Only with stream=True: trtllm-serve rejects stream_options otherwise; engines that do
        # not know the field may reject it (strict schemas), so only where it is honoured.
        if profile.stream_usage:
            body["stream_options"] = {"include_usage": True}
    if tools:
        body["tools"] = list(tools)
        body["tool_choice"] = "auto"
    if response_format is not None:
        body["response_format"] = dict(response_format)
    return body


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ProbeFailure(f"`{where}` is {_kind(value)}, expected an object")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ProbeFailure(f"`{where}` is {_kind(value)}, expected a list")
    return value


def _opt_str(value: Any, where: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ProbeFailure(f"`{where}` is {_kind(value)}, expected a string or null")
    return value


def _opt_int(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ProbeFailure(f"`{where}` is {_kind(value)} ({value!r:.40}), expected an integer")
    # A count (tokens, a context length): JSON numbers have no size limit, and an int of 400
    # digits would overflow the float every figure is kept as.
    if not 0 <= value <= MAX_COUNT:
        shown = str(value) if len(str(value)) <= 20 else f"an integer of {len(str(value))} digits"
        raise ProbeFailure(f"`{where}` is {shown}, not a count (0 to 2**53)")
    return value


def error_message(doc: Any) -> str | None:
    """The message of an OpenAI-style error body, if ``doc`` is one."""
    if not isinstance(doc, dict):
        return None
    error = doc.get("error")
    if isinstance(error, dict):
        message = error.get("message")
        return message if isinstance(message, str) else str(error)
    if isinstance(error, str):
        return error
    detail = doc.get("detail")  # FastAPI's shape
    if isinstance(detail, str):
        return detail
    return None


@dataclass(frozen=True)
class ModelEntry:
    id: str
    max_model_len: int | None
    # llama-server lists further names of the same model under `aliases`
    # (tools/server/server-context.cpp get_res_model_info); vLLM gives each name its own card.
    aliases: tuple[str, ...] = ()
    # The base model a LoRA adapter card belongs to (vLLM and NIM: serving_models.py
    # show_available_models sets `parent` on adapter cards only); None for a model itself.
    parent: str | None = None

    @property
    def adapter(self) -> bool:
        return self.parent is not None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.id, *(a for a in self.aliases if a != self.id))


def parse_models(doc: Any) -> list[ModelEntry]:
    top = _object(doc, "/v1/models")
    entries = []
    for i, item in enumerate(_list(top.get("data"), "data")):
        card = _object(item, f"data[{i}]")
        model_id = card.get("id")
        if not isinstance(model_id, str):
            raise ProbeFailure(f"`data[{i}].id` is {_kind(model_id)}, expected a string")
        raw_aliases = card.get("aliases")
        aliases = (
            tuple(a for a in raw_aliases[:64] if isinstance(a, str))
            if isinstance(raw_aliases, list)
            else ()
        )
        parent = card.get("parent")
        entries.append(
            ModelEntry(
                model_id,
                _opt_int(card.get("max_model_len"), f"data[{i}].max_model_len"),
                aliases,
                parent if isinstance(parent, str) and parent else None,
            )
        )
    return entries


def loaded_models(doc: Any, where: str) -> list[str]:
    """The names in Ollama's `GET /api/ps` answer: ``{"models": [{"name", "model", ...}]}``
    (docs.ollama.com/api/ps), the models loaded in memory now; at most 256 looked at."""
    top = _object(doc, where)
    names: list[str] = []
    for i, item in enumerate(_list(top.get("models"), "models")[:256]):
        card = _object(item, f"models[{i}]")
        names += [v for v in (card.get("name"), card.get("model")) if isinstance(v, str)]
    return list(dict.fromkeys(names))


def served_ids(entries: Sequence[ModelEntry]) -> list[str]:
    """Every name the server says it serves, in order, each once."""
    return list(dict.fromkeys(name for entry in entries for name in entry.names))


@dataclass(frozen=True)
class ToolCall:
    name: str | None
    # As sent: the OpenAI format says a JSON-encoded string; some servers send an object.
    arguments: Any


@dataclass(frozen=True)
class ChatAnswer:
    content: str | None
    reasoning: str | None
    finish_reason: str | None
    completion_tokens: int | None
    tool_calls: tuple[ToolCall, ...]


def _reasoning(message: Mapping[str, Any], fields: Sequence[str], where: str) -> str | None:
    for name in fields:
        value = _opt_str(message.get(name), f"{where}.{name}")
        if value:
            return value
    return None


def _tool_calls(value: Any, where: str) -> tuple[ToolCall, ...]:
    if value is None:
        return ()
    calls = []
    for i, item in enumerate(_list(value, where)):
        call = _object(item, f"{where}[{i}]")
        function = _object(call.get("function"), f"{where}[{i}].function")
        calls.append(
            ToolCall(
                name=_opt_str(function.get("name"), f"{where}[{i}].function.name"),
                arguments=function.get("arguments"),
            )
        )
    return tuple(calls)


def _usage_tokens(doc: Mapping[str, Any]) -> int | None:
    usage = doc.get("usage")
    if usage is None:
        return None
    return _opt_int(_object(usage, "usage").get("completion_tokens"), "usage.completion_tokens")


def parse_chat_completion(doc: Any, reasoning_fields: Sequence[str]) -> ChatAnswer:
    top = _object(doc, "response")
    choices = _list(top.get("choices"), "choices")
    if not choices:
        raise ProbeFailure("`choices` is empty")
    choice = _object(choices[0], "choices[0]")
    message = _object(choice.get("message"), "choices[0].message")
    return ChatAnswer(
        content=_opt_str(message.get("content"), "choices[0].message.content"),
        reasoning=_reasoning(message, reasoning_fields, "choices[0].message"),
        finish_reason=_opt_str(choice.get("finish_reason"), "choices[0].finish_reason"),
        completion_tokens=_usage_tokens(top),
        tool_calls=_tool_calls(message.get("tool_calls"), "choices[0].message.tool_calls"),
    )


@dataclass(frozen=True)
class ChunkDelta:
    """What one streamed chunk adds."""

    content: str
    reasoning: str
    tool_call: bool
    finish_reason: str | None
    completion_tokens: int | None
    has_choices: bool


def parse_chunk(doc: Any, reasoning_fields: Sequence[str], frame: int) -> ChunkDelta:
    where = f"frame {frame}"
    top = _object(doc, where)
    message = error_message(top)
    if message is not None and "choices" not in top:
        raise ProbeFailure(f"the stream carried an error in {where}: {message:.200}")
    choices = _list(top.get("choices", []), f"{where}: choices")
    tokens = _usage_tokens(top)
    if not choices:
        # The usage chunk (OpenAI shape: `choices: []`), or a keep-alive.
        return ChunkDelta("", "", False, None, tokens, has_choices=False)
    choice = _object(choices[0], f"{where}: choices[0]")
    delta = choice.get("delta")
    delta_obj = _object(delta, f"{where}: choices[0].delta") if delta is not None else {}
    return ChunkDelta(
        content=_opt_str(delta_obj.get("content"), f"{where}: delta.content") or "",
        reasoning=_reasoning(delta_obj, reasoning_fields, f"{where}: delta") or "",
        tool_call=bool(_tool_calls(delta_obj.get("tool_calls"), f"{where}: delta.tool_calls")),
        finish_reason=_opt_str(choice.get("finish_reason"), f"{where}: finish_reason"),
        completion_tokens=tokens,
        has_choices=True,
    )
