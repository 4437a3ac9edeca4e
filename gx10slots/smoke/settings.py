"""Every knob of the smoke suite, with defaults that fit a production chat model."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from gx10slots.errors import UsageError
from gx10slots.limits import MAX_BURST, MAX_DURATION_S, MAX_MODEL_LEN, MAX_TOKENS
from gx10slots.smoke.catalog import CATALOG, PROBE_NAMES

__all__ = ["PROBE_NAMES", "GoldenPrompt", "SuiteSettings", "golden_prompt_problem"]

MIB = 1024 * 1024


# Per-probe timeouts that differ from `probe_timeout_s` (the catalog's); progress holds a request
# open for the stall window (computed in `timeout_for`).
_DEFAULT_TIMEOUTS: Mapping[str, float] = MappingProxyType(
    {spec.name: spec.timeout_s for spec in CATALOG if spec.timeout_s is not None}
)

# Bounds of smoke.prompts: a regression set, not a benchmark.
MAX_PROMPTS = 20
MAX_PROMPT_BYTES = 4096
MAX_EXPECT_CHARS = 512
MAX_PROMPT_TOKENS = 1024
DEFAULT_PROMPT_TOKENS = 128
PROMPT_NAME = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class GoldenPrompt:
    """One of the team's golden prompts: the answer must match ``expect`` (``re.search``)."""

    name: str
    prompt: str
    expect: str
    max_tokens: int = DEFAULT_PROMPT_TOKENS

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(self.expect)


def golden_prompt_problem(prompt: GoldenPrompt) -> str | None:
    """What is wrong with a golden prompt (the config names the key), or None."""
    if not PROMPT_NAME.fullmatch(prompt.name):
        return (
            f"name {prompt.name[:80]!r}: expected lowercase letters, digits and '-' "
            "(at most 63, starting and ending with a letter or digit)"
        )
    if not prompt.prompt.strip():
        return "prompt: expected a non-empty text"
    if len(prompt.prompt.encode("utf-8")) > MAX_PROMPT_BYTES:
        return f"prompt: expected at most {MAX_PROMPT_BYTES} bytes"
    if not prompt.expect:
        return "expect: expected a regular expression, got an empty one (it would match anything)"
    if len(prompt.expect) > MAX_EXPECT_CHARS:
        return f"expect: expected at most {MAX_EXPECT_CHARS} characters"
    try:
        re.compile(prompt.expect)
    except re.error as exc:
        return f"expect: not a regular expression: {exc}"
    if not 1 <= prompt.max_tokens <= MAX_PROMPT_TOKENS:
        return f"max_tokens: expected 1 to {MAX_PROMPT_TOKENS}, got {prompt.max_tokens!r}"
    return None


@dataclass(frozen=True)
class SuiteSettings:
    # Which probes may run. `tool-call` also needs `tool_call=True`; `baseline` needs a baseline
    # report; `progress` needs an engine with Prometheus metrics.
    probes: tuple[str, ...] = PROBE_NAMES

    # Known answer: a prompt every chat model answers the same way, and what the answer must match.
    prompt: str = "Reply with the single word pong."
    expect: str = "pong"
    expect_ignore_case: bool = True
    max_tokens: int = 16
    # Fixed seed and temperature 0 so a healthy engine answers the same way every time.
    seed: int = 1234
    # A reasoning model may answer in `reasoning_content` with `content: null` when the token
    # budget ends inside its thinking; with `reasoning=True` the answer may be found there.
    reasoning: bool = False
    # When set, vLLM's `/v1/models` must report at least this context length.
    max_model_len: int | None = None

    # Tool calling: when the deployment relies on it, or (capability parity) when production's
    # active slot makes tool calls; then also a failure names the active slot.
    tool_call: bool = False
    tool_prompt: str = "What is the weather in Paris right now? Use the get_weather tool."

    # Structured output (response_format with a JSON schema): required when production's active
    # slot returns JSON matching the schema (capability parity); then also a failure names it.
    structured_output: bool = False
    json_prompt: str = "Report the weather in Paris as JSON: the city and the temperature in °C."

    # Burst: concurrent streamed requests; long enough answers to measure tokens/s.
    burst: int = 4
    burst_prompt: str = "Count from 1 to 20, separated by spaces."
    burst_max_tokens: int = 64

    # Time limits. Each probe ends within its own timeout; the suite within its deadline.
    probe_timeout_s: float = 30.0
    timeouts: Mapping[str, float] = field(default_factory=lambda: _DEFAULT_TIMEOUTS)
    deadline_s: float = 300.0
    # Pause between readiness polls (tests make it tiny).
    readiness_poll_s: float = 1.0

    # Progress: how long requests may run with a flat token counter before it is a wedge, how
    # often to sample, and how long to let counters catch up with answers already received.
    stall_window_s: float = 10.0
    stall_interval_s: float = 1.0
    progress_settle_s: float = 2.0

    # Capability parity: the streamed answer must carry usage (the active slot's does).
    require_stream_usage: bool = False

    # The team's golden prompts (smoke.prompts), each a probe `prompt:<name>`.
    prompts: tuple[GoldenPrompt, ...] = ()

    # Baseline (the active slot's figures): a regression is TTFT p95 more than `ttft_ratio` x AND
    # more than `margin_ms` worse, or tokens/s below `tokens_ratio` x the baseline's while the
    # burst took more than `margin_ms` longer than at the baseline's rate (so that a few
    # milliseconds of noise on a tiny answer is not "half the speed").
    baseline_ttft_ratio: float = 2.0
    baseline_tokens_ratio: float = 0.5
    baseline_margin_ms: float = 500.0

    # Byte budgets for what a server may send us (a hostile body ends in a failed probe).
    body_cap_bytes: int = MIB
    stream_cap_bytes: int = MIB
    metrics_cap_bytes: int = 4 * MIB

    def __post_init__(self) -> None:
        unknown = [p for p in self.probes if p not in PROBE_NAMES]
        if unknown:
            raise UsageError(
                f"smoke probes: unknown probe {', '.join(unknown)}; "
                f"expected some of {', '.join(PROBE_NAMES)}"
            )
        for name in self.timeouts:
            if name not in PROBE_NAMES:
                raise UsageError(f"smoke timeouts: {name!r} is not a probe")
        try:
            re.compile(self.expect)
        except re.error as exc:
            raise UsageError(
                f"smoke expect: {self.expect!r} is not a regular expression: {exc}"
            ) from None
        positive = {
            "max_tokens": self.max_tokens,
            "burst": self.burst,
            "burst_max_tokens": self.burst_max_tokens,
            "probe_timeout_s": self.probe_timeout_s,
            "deadline_s": self.deadline_s,
            "stall_window_s": self.stall_window_s,
            "stall_interval_s": self.stall_interval_s,
            "body_cap_bytes": self.body_cap_bytes,
            "stream_cap_bytes": self.stream_cap_bytes,
            "metrics_cap_bytes": self.metrics_cap_bytes,
            **{f"timeouts[{k}]": v for k, v in self.timeouts.items()},
        }
        for key, value in positive.items():
            if not value > 0:
                raise UsageError(f"smoke {key}: expected a positive number, got {value!r}")
        maxima = {
            "burst": (self.burst, MAX_BURST),
            "max_tokens": (self.max_tokens, MAX_TOKENS),
            "burst_max_tokens": (self.burst_max_tokens, MAX_TOKENS),
            "max_model_len": (self.max_model_len or 0, MAX_MODEL_LEN),
            "probe_timeout_s": (self.probe_timeout_s, MAX_DURATION_S),
            "deadline_s": (self.deadline_s, MAX_DURATION_S),
            **{f"timeouts[{k}]": (v, MAX_DURATION_S) for k, v in self.timeouts.items()},
        }
        for key, (value, limit) in maxima.items():
            if value > limit:
                raise UsageError(f"smoke {key}: expected at most {limit:g}, got {value!r}")
        if self.readiness_poll_s < 0 or self.progress_settle_s < 0:
            raise UsageError("smoke readiness_poll_s and progress_settle_s must not be negative")
        if not self.baseline_ttft_ratio >= 1:
            raise UsageError(
                f"smoke baseline ttft_ratio: expected at least 1, got {self.baseline_ttft_ratio!r}"
            )
        if not 0 < self.baseline_tokens_ratio <= 1:
            raise UsageError(
                "smoke baseline tokens_ratio: expected a fraction in (0, 1], got "
                f"{self.baseline_tokens_ratio!r}"
            )
        if not 0 <= self.baseline_margin_ms <= MAX_DURATION_S * 1000:
            raise UsageError(
                f"smoke baseline margin: expected 0 or more ms, got {self.baseline_margin_ms!r}"
            )
        if len(self.prompts) > MAX_PROMPTS:
            raise UsageError(f"smoke prompts: expected at most {MAX_PROMPTS}")
        seen: set[str] = set()
        for prompt in self.prompts:
            problem = golden_prompt_problem(prompt)
            if problem is None and prompt.name in seen:
                problem = f"name {prompt.name!r} is used twice"
            if problem is not None:
                raise UsageError(f"smoke prompts: {problem}")
            seen.add(prompt.name)

    @property
    def expect_pattern(self) -> re.Pattern[str]:
        return re.compile(self.expect, re.IGNORECASE if self.expect_ignore_case else 0)

    @property
    def expect_display(self) -> str:
        """The regex as operators write it: ``/pong/i``."""
        return f"/{self.expect}/{'i' if self.expect_ignore_case else ''}"

    def timeout_for(self, probe: str) -> float:
        if probe in self.timeouts:
            return self.timeouts[probe]
        if probe == "progress":
            # The stall check holds a request open for the whole window, then counters settle.
            return self.stall_window_s + self.progress_settle_s + self.probe_timeout_s
        return self.probe_timeout_s
