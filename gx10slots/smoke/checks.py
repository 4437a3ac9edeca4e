"""Pure judgements over answers: is this the known answer, a leaked template, a leaked tool call.

Each function returns the problems it found as short sentences (empty when all is well), so the
probes only join them into a detail line.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from gx10slots.smoke.redact import Redactor
from gx10slots.smoke.wire import TOOL_NAME, ChatAnswer

# Special tokens of common chat templates. In a healthy engine the chat template and the
# detokenizer consume them; when they reach `content` the template is wrong or the model is broken.
TEMPLATE_TOKENS: tuple[str, ...] = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|begin_of_text|>",
    "<|end_of_text|>",
    "<|python_tag|>",
    "<|end|>",
    "<|user|>",
    "<|assistant|>",
    "<|channel|>",
    "<|message|>",
    "<|return|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<tool_call>",
    "</tool_call>",
    "[TOOL_CALLS]",
    "[INST]",
    "[/INST]",
    "</s>",
)

# Markers that a tool call was written as text instead of being parsed into `tool_calls`
# (tool parser missing or misconfigured: Hermes/Qwen `<tool_call>`, Llama 3 `<|python_tag|>`,
# Mistral `[TOOL_CALLS]`, functionary/Llama 3.1 `<function=`).
TOOL_CALL_MARKERS: tuple[str, ...] = (
    "<tool_call>",
    "<|python_tag|>",
    "[TOOL_CALLS]",
    "<function=",
    "<|tool_call_begin|>",
    "<|tool_calls_section_begin|>",
)

ACCEPTED_FINISH = ("stop", "length")

# Scanning a hostile 1 MB content for JSON objects is bounded by these.
_SCAN_CHARS = 64 * 1024
_SCAN_OBJECTS = 64


def template_tokens_in(text: str | None) -> list[str]:
    if not text:
        return []
    return [token for token in TEMPLATE_TOKENS if token in text]


def leaked_tool_call(content: str | None) -> str | None:
    """Where ``content`` holds a tool call written as text, the part that shows it; else None."""
    if not content:
        return None
    for marker in TOOL_CALL_MARKERS:
        at = content.find(marker)
        if at >= 0:
            return content[at:]
    decoder = json.JSONDecoder()
    text = content[:_SCAN_CHARS]
    start = text.find("{")
    tries = 0
    while start >= 0 and tries < _SCAN_OBJECTS:
        tries += 1
        try:
            value, _ = decoder.raw_decode(text, start)
        except (ValueError, RecursionError):
            value = None
        if _looks_like_call(value):
            return text[start:]
        start = text.find("{", start + 1)
    return None


def _looks_like_call(value: Any) -> bool:
    if not isinstance(value, dict):
        return False
    if isinstance(value.get("function"), dict):
        value = value["function"]
    return isinstance(value.get("name"), str) and ("arguments" in value or "parameters" in value)


def answer_problems(
    *,
    content: str | None,
    reasoning: str | None,
    finish_reason: str | None,
    completion_tokens: int | None,
    max_tokens: int,
    expect: re.Pattern[str],
    expect_display: str,
    reasoning_allowed: bool,
    usage_required: bool,
    redact: Redactor,
) -> list[str]:
    """What is wrong with an answer to the known-answer prompt (streamed or not)."""
    problems = []
    for where, text in (("content", content), ("reasoning", reasoning)):
        tokens = template_tokens_in(text)
        if tokens:
            problems.append(
                f"raw template token {', '.join(tokens)} in {where}: {redact.quote(text)}"
            )
    searched = content or ""
    if reasoning_allowed and reasoning:
        # Decision: for a reasoning model the answer counts when found in its reasoning too,
        # because a small token budget can end inside the thinking (content null, finish length).
        searched = f"{searched}\n{reasoning}"
    if not expect.search(searched):
        if not content and reasoning and not reasoning_allowed:
            problems.append(
                f"content is {'null' if content is None else 'empty'} and the text is in the "
                f"reasoning field ({redact.quote(reasoning)}); set smoke reasoning for a "
                "reasoning model"
            )
        elif not content and not reasoning:
            problems.append(f"expected {expect_display}, got no text at all")
        else:
            got = content if content or not reasoning_allowed else reasoning
            problems.append(f"expected {expect_display}, got {redact.quote(got)}")
    if finish_reason is None:
        problems.append("no finish_reason")
    elif finish_reason not in ACCEPTED_FINISH:
        problems.append(f"finish_reason {finish_reason!r}, expected stop or length")
    if completion_tokens is None:
        if usage_required:
            problems.append("no usage.completion_tokens")
    elif completion_tokens < 1:
        problems.append(f"usage.completion_tokens is {completion_tokens}, expected at least 1")
    elif completion_tokens > max_tokens:
        problems.append(
            f"usage.completion_tokens {completion_tokens} exceeds max_tokens {max_tokens}: the "
            "engine ignored the length limit"
        )
    return problems


def tool_call_problems(answer: ChatAnswer, redact: Redactor) -> list[str]:
    """What is wrong with the answer to the tool-call prompt."""
    if not answer.tool_calls:
        leak = leaked_tool_call(answer.content) or leaked_tool_call(answer.reasoning)
        if leak is not None:
            return [f"tool call leaked into content: {redact.clip(leak, 120)}"]
        return [
            "no tool call: finish_reason "
            f"{answer.finish_reason!r}, content {redact.quote(answer.content)}"
        ]
    problems = []
    call = answer.tool_calls[0]
    if call.name != TOOL_NAME:
        problems.append(f"called {call.name!r}, expected {TOOL_NAME!r}")
    arguments = call.arguments
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except (ValueError, RecursionError):
            problems.append(f"arguments are not JSON: {redact.quote(call.arguments)}")
            arguments = {}
    if not isinstance(arguments, dict):
        problems.append(f"arguments are not a JSON object: {redact.quote(str(call.arguments))}")
    if answer.finish_reason != "tool_calls":
        problems.append(f"finish_reason {answer.finish_reason!r}, expected 'tool_calls'")
    return problems


# The JSON the structured-output probe parses is bounded (the chat reader bounds it first).
_JSON_CHARS = 64 * 1024
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,),
    "array": (list,),
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
}


def schema_problems(value: Any, schema: Mapping[str, Any], where: str = "the answer") -> list[str]:
    """Where ``value`` breaks ``schema``: the subset of JSON Schema the probe's own schema uses
    (type, properties, required, additionalProperties false). Not a general validator: the
    schema is ours, the value is hostile."""
    kind = schema.get("type")
    if isinstance(kind, str) and kind in _JSON_TYPES:
        wrong_bool = isinstance(value, bool) and kind in ("integer", "number")
        if wrong_bool or not isinstance(value, _JSON_TYPES[kind]):
            return [f"{where} is {_json_kind(value)}, expected {kind}"]
    if not isinstance(value, dict):
        return []
    props = schema.get("properties") or {}
    problems = [
        f"{where} lacks {key!r}" for key in schema.get("required") or () if key not in value
    ]
    if schema.get("additionalProperties") is False:
        extra = [key for key in value if key not in props]
        if extra:
            problems.append(f"{where} has keys the schema does not allow: {extra[:5]!r}")
    for key, sub in props.items():
        if key in value and isinstance(sub, Mapping):
            problems += schema_problems(value[key], sub, f"{where}[{key!r}]")
    return problems


def _json_kind(value: Any) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean"}
    if value is None:
        return "null"
    return names.get(type(value), "a number" if isinstance(value, int | float) else "a value")


def structured_output_problems(
    content: str | None, finish_reason: str | None, schema: Mapping[str, Any], redact: Redactor
) -> list[str]:
    """What is wrong with an answer that was asked for JSON matching ``schema``."""
    if not content or not content.strip():
        return [f"no content (finish_reason {finish_reason!r})"]
    text = content.strip()[:_JSON_CHARS]
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        cut = " (cut at max_tokens)" if finish_reason == "length" else ""
        return [f"the answer is not JSON{cut}: {redact.quote(content)}"]
    return [redact.clip(p, 200) for p in schema_problems(value, schema)]


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100) by linear interpolation; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100.0
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def baseline_problems(
    *,
    ttft_p95_ms: float,
    tokens_per_s: float,
    burst_tokens: int,
    baseline_ttft_p95_ms: float | None,
    baseline_tokens_per_s: float | None,
    ttft_ratio: float,
    tokens_ratio: float,
    margin_ms: float,
) -> list[str]:
    """Regressions against production's active slot (the contract's rule, its defaults 2, 0.5
    and 500 ms): TTFT p95 more than ``ttft_ratio`` x AND more than ``margin_ms`` worse; tokens/s
    below ``tokens_ratio`` x the baseline's while the burst's ``burst_tokens`` took more than
    ``margin_ms`` longer than at the baseline's rate (a tiny answer's milliseconds of noise are
    not a regression). A baseline figure of None was not measured and is not compared.
    """
    problems = []
    base_ttft = baseline_ttft_p95_ms
    if base_ttft is not None and base_ttft > 0:
        worse_by = ttft_p95_ms - base_ttft
        if ttft_p95_ms > base_ttft * ttft_ratio and worse_by > margin_ms:
            problems.append(
                f"TTFT p95 {ttft_p95_ms:.0f} ms against the active slot's {base_ttft:.0f} ms: "
                f"more than {ttft_ratio:g}x and {worse_by:.0f} ms (> {margin_ms:g} ms) worse"
            )
    base_rate = baseline_tokens_per_s
    if base_rate is not None and base_rate > 0 and tokens_per_s > 0:
        extra_ms = (burst_tokens / tokens_per_s - burst_tokens / base_rate) * 1000.0
        if tokens_per_s < base_rate * tokens_ratio and extra_ms > margin_ms:
            problems.append(
                f"{tokens_per_s:.1f} tokens/s is below {tokens_ratio:g} x the active slot's "
                f"{base_rate:.1f} (its burst took {extra_ms:.0f} ms longer)"
            )
    return problems
