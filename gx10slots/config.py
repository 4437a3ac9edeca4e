"""``slots.yaml`` read into typed, validated objects.

Every mistake becomes one :class:`ConfigError` naming the key (``flag.kind``), what was expected and
what was found; unknown keys are mistakes too, because a misspelt safety setting that is silently
ignored is worse than a refusal. The reference is ``docs/config.md``.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from gx10slots.durations import parse_duration
from gx10slots.errors import ConfigError
from gx10slots.flags import KINDS as FLAG_KINDS
from gx10slots.limits import (
    MAX_BURST,
    MAX_DURATION_S,
    MAX_GUARD_FAILURES,
    MAX_MODEL_LEN,
    MAX_TOKENS,
)
from gx10slots.smoke.profiles import PROFILES as ENGINES
from gx10slots.smoke.settings import (
    DEFAULT_PROMPT_TOKENS,
    MAX_PROMPTS,
    GoldenPrompt,
    golden_prompt_problem,
)

SLOT_NAMES: tuple[str, str] = ("blue", "green")
ACCESS_MODES = ("direct", "apiserver-proxy")

AccessMode = Literal["direct", "apiserver-proxy"]
GuardMode = Literal["act", "observe"]
GUARD_MODES: tuple[GuardMode, ...] = ("act", "observe")

# RFC 1123 DNS label / subdomain, as the API server checks object names.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# The events `notify.webhooks` receive (gx10slots.notify sends them).
NOTIFY_EVENTS: tuple[str, ...] = (
    "deploy",
    "flip",
    "flip-back",
    "auto-revert",
    "smoke-failed",
    "would-revert",
)
# A webhook URL: http(s), a host, then no whitespace or control character anywhere. The config
# checks a literal URL with it, gx10slots.notify one read from the environment.
WEBHOOK_URL = re.compile(r"^https?://[^\s/?#]+(?:[/?#][^\s\x00-\x1f\x7f]*)?$")
# Webhooks, gate queries: a longer list is a generated mistake, and each costs time per event.
MAX_LIST_ITEMS = 16
# A PromQL gate's name shows in reasons and reports; its query is sent as a URL parameter.
_GATE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,62}$")
MAX_QUERY_CHARS = 4096
# A protection longer than a week is a typo (1000h for 100h), not a policy.
MAX_PROTECT_FALLBACK_S = 7 * 24 * 3600.0
# The controller's leader Lease: renewed every third of it, so shorter is a renewal storm, and
# longer leaves a dead leader's slot unguarded for too long.
MIN_LEASE_S = 6.0
MAX_LEASE_S = 300.0


@dataclass(frozen=True)
class SlotConfig:
    name: str
    deployment: str
    service: str
    port: int
    endpoint: str | None


@dataclass(frozen=True)
class FlagConfig:
    kind: str  # a name in gx10slots.flags.KINDS
    name: str
    key: str
    endpoint: str | None
    # The Service production traffic enters through (for `apiserver-proxy` access and endpoint
    # checks); for `service-selector` it is the flag object itself.
    service: str
    port: int
    # How long a flip may take to show through production before it is switched back. A router
    # that reads a mounted ConfigMap follows the kubelet's sync period (often a minute).
    verify_window_s: float = 30.0


@dataclass(frozen=True)
class SmokeBaselineConfig:
    """smoke.baseline: measure production's active slot in the same run (capability parity and
    regressions); a regression is TTFT p95 more than ttft_ratio x AND margin worse, or tokens/s
    below tokens_ratio x (with the burst more than the margin slower)."""

    live: bool = True
    ttft_ratio: float = 2.0
    tokens_ratio: float = 0.5
    margin_s: float = 0.5


@dataclass(frozen=True)
class SmokeConfig:
    max_age_s: float = 1800.0
    prompt: str = "Reply with the single word pong."
    expect: str = "pong"
    max_tokens: int = 16
    probe_timeout_s: float = 30.0
    deadline_s: float = 300.0
    burst: int = 4
    tool_call: bool = False
    reasoning: bool = False
    max_model_len: int | None = None
    report_dir: str = "reports"
    formats: tuple[str, ...] = ("json", "md")
    # The team's golden prompts, each a probe `prompt:<name>`.
    prompts: tuple[GoldenPrompt, ...] = ()
    baseline: SmokeBaselineConfig = field(default_factory=SmokeBaselineConfig)


@dataclass(frozen=True)
class MemoryConfig:
    node_capacity_gib: float | None = None
    reserve_gib: float = 8.0
    node: str | None = None


@dataclass(frozen=True)
class GateQuery:
    """One named PromQL query of ``guard.prometheus`` and its threshold(s): a value above
    ``max`` or below ``min`` fails the guard's check (like Flagger's metric templates)."""

    name: str
    query: str
    max: float | None = None
    min: float | None = None


@dataclass(frozen=True)
class PrometheusConfig:
    url: str | None = None  # None: no gates on real traffic
    queries: tuple[GateQuery, ...] = ()
    # All of one check's queries share this budget: a slow Prometheus delays the check this
    # much at most, never more (an instant query answers in milliseconds; the controller checks
    # every 3 s).
    timeout_s: float = 2.0


@dataclass(frozen=True)
class GuardConfig:
    """Defaults of `slots guard` and `--guard` (the command line overrides the first three)."""

    window_s: float = 600.0
    interval_s: float = 30.0
    failures: int = 3
    # One check's known-answer probe may take this long (never longer than the interval).
    probe_timeout_s: float = 10.0
    # A check fails when more than this share of the guard's recent probes failed.
    error_share: float = 0.2
    # ...or when its time to first token exceeds ttft_ratio x the smoke report's TTFT p95, and
    # ttft_floor at least (a smoke on an idle engine can measure a few milliseconds).
    ttft_ratio: float = 3.0
    ttft_floor_s: float = 1.0
    prometheus: PrometheusConfig = field(default_factory=PrometheusConfig)
    # observe: judge and notify "would revert", never change anything (tuning thresholds on real
    # traffic first); act: flip back.
    mode: GuardMode = "act"


@dataclass(frozen=True)
class WebhookConfig:
    """One ``notify.webhooks`` entry. The URL is a secret (a Slack URL carries its token): it is
    left out of every repr and message; a webhook is named by its position and host only."""

    url: str | None = field(default=None, repr=False)
    url_env: str | None = None  # read when sending: a Secret mounted as an environment variable
    events: tuple[str, ...] = NOTIFY_EVENTS


@dataclass(frozen=True)
class NotifyConfig:
    webhooks: tuple[WebhookConfig, ...] = ()


@dataclass(frozen=True)
class ControllerConfig:
    """`slots controller`: after every flip it guards the new active slot as `slots guard` does,
    with checks fast enough to have production back on the fallback within 15 s of a wedge; in
    between, a light heartbeat on both slots."""

    # A check every 3 s, 2 failed in a row, each probe given 3 s: a wedge is detected in at most
    # 3 + 3 + 1 + 3 s and production is switched back (about 2 s more) within 15 s.
    interval_s: float = 3.0
    failures: int = 2
    probe_timeout_s: float = 3.0
    # A tiny generation on each slot this often when no flip is being guarded.
    heartbeat_s: float = 120.0
    # The leader Lease gx10slots-controller (client-go's leaderelection defaults).
    lease_duration_s: float = 15.0


@dataclass(frozen=True)
class FlipConfig:
    # After every flip the slot that served before is production's fallback: deploy into it and
    # park of it are refused this long (0: only while a guard watches). See gx10slots.fallback.
    protect_fallback_for_s: float = 3600.0


@dataclass(frozen=True)
class ApiKeySource:
    env: str | None = None
    secret_name: str | None = None
    secret_key: str | None = None


@dataclass(frozen=True)
class Config:
    namespace: str
    slots: Mapping[str, SlotConfig]
    container: str
    model_env: str
    served_name_env: str
    flag: FlagConfig
    engine: str
    access: AccessMode
    smoke: SmokeConfig = field(default_factory=SmokeConfig)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    api_key: ApiKeySource = field(default_factory=ApiKeySource)
    source: str = "slots.yaml"
    guard: GuardConfig = field(default_factory=GuardConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)
    flip: FlipConfig = field(default_factory=FlipConfig)
    notify: NotifyConfig = field(default_factory=NotifyConfig)

    def slot(self, name: str) -> SlotConfig:
        return self.slots[name]


class _Reader:
    """Walks one mapping of the document, remembering the dotted path for messages."""

    def __init__(self, data: Any, path: str, source: str) -> None:
        self.source = source
        self.path = path
        if not isinstance(data, Mapping):
            self.fail(path, f"expected a mapping, got {_describe(data)}")
        self.data: Mapping[str, Any] = data
        self.seen: set[str] = set()

    def fail(self, key: str, message: str) -> None:
        raise ConfigError(f"{self.source}: {key or '(top level)'}: {message}")

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def raw(self, name: str) -> Any:
        self.seen.add(name)
        return self.data.get(name)

    def has(self, name: str) -> bool:
        # A key asked about is a key this section knows: it belongs in "expected one of".
        self.seen.add(name)
        return name in self.data

    def string(
        self,
        name: str,
        default: str | None = None,
        *,
        pattern: re.Pattern[str] | None = None,
        what: str = "",
    ) -> str:
        value = self.raw(name)
        if value is None:
            if default is None:
                self.fail(self.key(name), "is required" + (f" ({what})" if what else ""))
            return default  # type: ignore[return-value]
        if not isinstance(value, str) or not value.strip():
            self.fail(self.key(name), f"expected a non-empty string, got {_describe(value)}")
        if pattern is not None and not pattern.match(value):
            self.fail(self.key(name), f"expected {what or 'a valid name'}, got {value!r}")
        return str(value)

    def optional_string(self, name: str) -> str | None:
        return None if self.raw(name) is None else self.string(name)

    def choice(self, name: str, choices: tuple[str, ...], default: str | None = None) -> str:
        value = self.string(name, default)
        if value not in choices:
            self.fail(self.key(name), f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    def number(
        self,
        name: str,
        default: float | None,
        *,
        minimum: float = 0.0,
        maximum: float | None = None,
        integer: bool = False,
    ) -> float | None:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(self.key(name), f"expected a number, got {_describe(value)}")
        if not _finite(value):
            self.fail(self.key(name), f"expected a finite number, got {_shown(value)}")
        if integer and not float(value).is_integer():
            self.fail(self.key(name), f"expected a whole number, got {value!r}")
        if value < minimum:
            self.fail(self.key(name), f"expected at least {minimum:g}, got {value!r}")
        if maximum is not None and value > maximum:
            self.fail(self.key(name), f"expected at most {maximum:g}, got {value!r}")
        return int(value) if integer else float(value)

    def integer(
        self, name: str, default: int, *, minimum: int = 0, maximum: int | None = None
    ) -> int:
        value = self.number(name, default, minimum=minimum, maximum=maximum, integer=True)
        return int(value) if value is not None else default

    def boolean(self, name: str, default: bool) -> bool:
        value = self.raw(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            self.fail(self.key(name), f"expected true or false, got {_describe(value)}")
        return bool(value)

    def duration(self, name: str, default: float, *, allow_zero: bool = False) -> float:
        value = self.raw(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            self.fail(
                self.key(name), f"expected a duration such as 90s or 30m, got {_describe(value)}"
            )
        if isinstance(value, int | float):
            if not _finite(value):
                self.fail(self.key(name), f"expected a finite duration, got {_shown(value)}")
            seconds = float(value)
        else:
            try:
                seconds = parse_duration(value)
            except ValueError as exc:
                self.fail(self.key(name), str(exc))
        if not math.isfinite(seconds):
            self.fail(self.key(name), f"expected a finite duration, got {value!r}")
        if seconds < 0 or (seconds == 0 and not allow_zero):
            self.fail(self.key(name), f"expected a positive duration, got {value!r}")
        if seconds > MAX_DURATION_S:
            self.fail(self.key(name), f"expected at most 24h, got {value!r}")
        return seconds

    def file_path(self, name: str, default: str) -> str:
        """A file system path: a string without control characters (a NUL cannot be in a path,
        and would otherwise surface later as a crash)."""
        value = self.string(name, default)
        if any(ord(c) < 32 or c == "\x7f" for c in value):
            self.fail(self.key(name), "expected a path, got one with a control character")
        return value

    def url(self, name: str, *, required: bool) -> str | None:
        value = self.raw(name)
        if value is None:
            if required:
                self.fail(self.key(name), "is required (an http:// or https:// URL)")
            return None
        if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
            self.fail(
                self.key(name), f"expected an http:// or https:// URL, got {_describe(value)}"
            )
        return str(value).rstrip("/")

    def items(self, name: str, *, limit: int = MAX_LIST_ITEMS) -> list[_Reader]:
        """A list of mappings (``notify.webhooks``), each read on its own (``key[0].url``)."""
        value = self.raw(name)
        if value is None:
            return []
        if not isinstance(value, list):
            self.fail(self.key(name), f"expected a list, got {_describe(value)}")
        if len(value) > limit:
            self.fail(self.key(name), f"expected at most {limit} entries, got {len(value)}")
        return [
            _Reader(item, f"{self.key(name)}[{i}]", self.source) for i, item in enumerate(value)
        ]

    def child(self, name: str, *, required: bool = False) -> _Reader:
        value = self.raw(name)
        if value is None:
            if required:
                self.fail(self.key(name), "is required")
            value = {}
        return _Reader(value, self.key(name), self.source)

    def done(self) -> None:
        unknown = sorted(str(k) for k in self.data if k not in self.seen)
        if unknown:
            self.fail(
                self.key(unknown[0]),
                f"unknown key (expected one of: {', '.join(sorted(self.seen))})",
            )


def _finite(value: float) -> bool:
    """A number a float can hold: YAML integers have no size limit (400 digits overflow)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _shown(value: float) -> str:
    text = repr(value)
    return text if len(text) <= 24 else f"a number of {len(text)} digits"


def _describe(value: Any) -> str:
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, Mapping):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{type(value).__name__} {value!r}"[:120]


def parse_config(data: Any, *, source: str = "slots.yaml") -> Config:
    """Validate a loaded YAML document; the only way a ``Config`` is made."""
    top = _Reader(data, "", source)
    namespace = top.string(
        "namespace", pattern=_DNS_LABEL, what="a namespace name (RFC 1123 label)"
    )
    engine = top.choice("engine", tuple(ENGINES), "vllm")
    access = top.choice("access", ACCESS_MODES, "direct")
    container = top.string("container", "engine", pattern=_DNS_LABEL, what="a container name")

    env = top.child("env")
    model_env = env.string("model", "MODEL", pattern=_ENV_NAME, what="an environment variable name")
    served_env = env.string(
        "served_name", "SERVED_MODEL_NAME", pattern=_ENV_NAME, what="an environment variable name"
    )
    env.done()

    slots_reader = top.child("slots", required=True)
    slots: dict[str, SlotConfig] = {}
    for name in SLOT_NAMES:
        s = slots_reader.child(name, required=True)
        deployment = s.string("deployment", pattern=_DNS_SUBDOMAIN, what="a Deployment name")
        slots[name] = SlotConfig(
            name=name,
            deployment=deployment,
            service=s.string("service", deployment, pattern=_DNS_LABEL, what="a Service name"),
            port=_port(s),
            endpoint=s.url("endpoint", required=access == "direct"),
        )
        s.done()
    slots_reader.done()
    if slots["blue"].deployment == slots["green"].deployment:
        top.fail("slots.green.deployment", "must differ from slots.blue.deployment")

    f = top.child("flag", required=True)
    kind = f.choice("kind", tuple(FLAG_KINDS))
    flag_kind = FLAG_KINDS[kind]
    flag_name = f.string("name", pattern=_DNS_SUBDOMAIN, what="an object name")
    if flag_kind.key_what:
        key = f.string(
            "key", flag_kind.default_key, pattern=flag_kind.key_pattern, what=flag_kind.key_what
        )
    else:
        key = ""
    if flag_kind.flag_is_service:
        flag_service = flag_name
    elif access == "apiserver-proxy" or f.has("service"):
        flag_service = f.string(
            "service",
            pattern=_DNS_LABEL,
            what="the router Service production traffic enters through",
        )
    else:
        flag_service = ""
    flag = FlagConfig(
        kind=kind,
        name=flag_name,
        key=key,
        endpoint=f.url("endpoint", required=access == "direct"),
        service=flag_service,
        port=_port(f),
        verify_window_s=f.duration("verify_window", FlagConfig.verify_window_s),
    )
    f.done()

    sm = top.child("smoke")
    formats = sm.raw("formats")
    if formats is None:
        formats_tuple = SmokeConfig.formats
    elif (
        isinstance(formats, list) and formats and all(x in ("json", "md", "junit") for x in formats)
    ):
        formats_tuple = tuple(str(x) for x in formats)
    else:
        sm.fail(
            sm.key("formats"),
            f"expected a list drawn from json, md, junit, got {_describe(formats)}",
        )
    expect = sm.string("expect", SmokeConfig.expect)
    try:
        re.compile(expect)
    except re.error as exc:
        sm.fail(sm.key("expect"), f"expected a regular expression: {exc}")
    max_model_len = sm.number("max_model_len", None, minimum=1, maximum=MAX_MODEL_LEN, integer=True)
    smoke = SmokeConfig(
        max_age_s=sm.duration("max_age", SmokeConfig.max_age_s),
        prompt=sm.string("prompt", SmokeConfig.prompt),
        expect=expect,
        max_tokens=sm.integer("max_tokens", SmokeConfig.max_tokens, minimum=1, maximum=MAX_TOKENS),
        probe_timeout_s=sm.duration("probe_timeout", SmokeConfig.probe_timeout_s),
        deadline_s=sm.duration("deadline", SmokeConfig.deadline_s),
        burst=sm.integer("burst", SmokeConfig.burst, minimum=1, maximum=MAX_BURST),
        tool_call=sm.boolean("tool_call", SmokeConfig.tool_call),
        reasoning=sm.boolean("reasoning", SmokeConfig.reasoning),
        max_model_len=int(max_model_len) if max_model_len is not None else None,
        report_dir=sm.file_path("report_dir", SmokeConfig.report_dir),
        formats=formats_tuple,
        prompts=_golden_prompts(sm),
        baseline=_smoke_baseline(sm.child("baseline")),
    )
    sm.done()

    mem = top.child("memory")
    memory = MemoryConfig(
        node_capacity_gib=mem.number("node_capacity_gib", None, minimum=1),
        reserve_gib=mem.number("reserve_gib", MemoryConfig.reserve_gib) or 0.0,
        node=mem.optional_string("node"),
    )
    mem.done()

    guard = _guard(top.child("guard"))
    controller = _controller(top.child("controller"))

    flip_reader = top.child("flip")
    protect = flip_reader.duration(
        "protect_fallback_for", FlipConfig.protect_fallback_for_s, allow_zero=True
    )
    if protect > MAX_PROTECT_FALLBACK_S:
        flip_reader.fail(
            flip_reader.key("protect_fallback_for"),
            f"expected at most 7 days (168h), got {flip_reader.raw('protect_fallback_for')!r}",
        )
    flip = FlipConfig(protect_fallback_for_s=protect)
    flip_reader.done()

    notify = _notify(top.child("notify"))

    key_reader = top.child("api_key")
    secret = key_reader.child("secret")
    api_key = ApiKeySource(
        env=key_reader.string("env", pattern=_ENV_NAME, what="an environment variable name")
        if key_reader.has("env")
        else None,
        secret_name=secret.string("name", pattern=_DNS_SUBDOMAIN, what="a Secret name")
        if secret.has("name") or secret.has("key")
        else None,
        secret_key=secret.string("key") if secret.has("name") or secret.has("key") else None,
    )
    secret.done()
    key_reader.done()
    top.done()

    return Config(
        namespace=namespace,
        slots=slots,
        container=container,
        model_env=model_env,
        served_name_env=served_env,
        flag=flag,
        engine=engine,
        access=access,  # type: ignore[arg-type]
        smoke=smoke,
        memory=memory,
        api_key=api_key,
        source=source,
        guard=guard,
        controller=controller,
        flip=flip,
        notify=notify,
    )


def _golden_prompts(sm: _Reader) -> tuple[GoldenPrompt, ...]:
    """smoke.prompts: a list of {name, prompt, expect[, max_tokens]}, each checked here (the
    expression compiled) so a mistake is a ConfigError naming its key, not a failed probe."""
    prompts: list[GoldenPrompt] = []
    for r in sm.items("prompts", limit=MAX_PROMPTS):
        golden = GoldenPrompt(
            name=r.string("name"),
            prompt=r.string("prompt"),
            expect=r.string("expect"),
            max_tokens=r.integer("max_tokens", DEFAULT_PROMPT_TOKENS, minimum=1),
        )
        r.done()
        problem = golden_prompt_problem(golden)
        if problem is None and any(p.name == golden.name for p in prompts):
            problem = f"name {golden.name!r} is used twice"
        if problem is not None:
            sm.fail(r.path, problem)
        prompts.append(golden)
    return tuple(prompts)


def _smoke_baseline(b: _Reader) -> SmokeBaselineConfig:
    d = SmokeBaselineConfig
    ttft_ratio = b.number("ttft_ratio", d.ttft_ratio, minimum=1, maximum=1000)
    tokens_ratio = b.number("tokens_ratio", d.tokens_ratio, minimum=0.01, maximum=1)
    values = SmokeBaselineConfig(
        live=b.boolean("live", d.live),
        ttft_ratio=ttft_ratio if ttft_ratio is not None else d.ttft_ratio,
        tokens_ratio=tokens_ratio if tokens_ratio is not None else d.tokens_ratio,
        margin_s=b.duration("margin", d.margin_s, allow_zero=True),
    )
    b.done()
    return values


def _guard(g: _Reader) -> GuardConfig:
    error_share = g.number("error_share", GuardConfig.error_share, minimum=0.0)
    if error_share is None or not 0 < error_share <= 1:
        g.fail(g.key("error_share"), f"expected a fraction between 0 and 1, got {error_share!r}")
    ttft_ratio = g.number("ttft_ratio", GuardConfig.ttft_ratio, minimum=1.0)
    guard = GuardConfig(
        window_s=g.duration("window", GuardConfig.window_s),
        interval_s=g.duration("interval", GuardConfig.interval_s),
        failures=g.integer("failures", GuardConfig.failures, minimum=1, maximum=MAX_GUARD_FAILURES),
        probe_timeout_s=g.duration("probe_timeout", GuardConfig.probe_timeout_s),
        error_share=float(error_share or GuardConfig.error_share),
        ttft_ratio=float(ttft_ratio or GuardConfig.ttft_ratio),
        ttft_floor_s=g.duration("ttft_floor", GuardConfig.ttft_floor_s),
        prometheus=_prometheus(g.child("prometheus")),
        mode=g.choice("mode", GUARD_MODES, GuardConfig.mode),  # type: ignore[arg-type]
    )
    g.done()
    return guard


def _prometheus(p: _Reader) -> PrometheusConfig:
    """``guard.prometheus``: named PromQL queries with thresholds; a breach fails a check."""
    queries: list[GateQuery] = []
    for q in p.items("queries"):
        name = q.string("name", pattern=_GATE_NAME, what="a name of letters, digits, _ and -")
        if any(known.name == name for known in queries):
            q.fail(q.key("name"), f"{name!r} is used by another query")
        query = q.string("query", what="a PromQL expression")
        if len(query) > MAX_QUERY_CHARS:
            q.fail(q.key("query"), f"expected at most {MAX_QUERY_CHARS} characters")
        high = q.number("max", None, minimum=-math.inf)
        low = q.number("min", None, minimum=-math.inf)
        if high is None and low is None:
            q.fail(
                q.path, "expected a threshold: max (fail above it), min (fail below it), or both"
            )
        if high is not None and low is not None and low > high:
            q.fail(q.key("min"), f"expected at most max ({high:g}), got {low:g}")
        q.done()
        queries.append(GateQuery(name=name, query=query, max=high, min=low))
    url = p.url("url", required=bool(queries))
    if url is not None and not queries:
        p.fail(p.key("queries"), "is required with url (at least one named query)")
    config = PrometheusConfig(
        url=url,
        queries=tuple(queries),
        timeout_s=p.duration("timeout", PrometheusConfig.timeout_s),
    )
    p.done()
    return config


def _notify(n: _Reader) -> NotifyConfig:
    """``notify.webhooks``: where events are POSTed. A URL is never quoted back in a message."""
    webhooks: list[WebhookConfig] = []
    for w in n.items("webhooks"):
        has_url, has_env = w.has("url"), w.has("url_env")
        if has_url == has_env:
            w.fail(
                w.path, "expected exactly one of url (the URL) or url_env (a variable holding it)"
            )
        url = None
        if has_url:
            url = w.raw("url")
            if not isinstance(url, str) or not WEBHOOK_URL.match(url):
                w.fail(
                    w.key("url"),
                    "expected an http:// or https:// URL without spaces (the value is not shown: "
                    "a webhook URL is a secret)",
                )
        env_name = (
            w.string("url_env", pattern=_ENV_NAME, what="an environment variable name")
            if has_env
            else None
        )
        events = w.raw("events")
        if events is None:
            chosen = NOTIFY_EVENTS
        elif (
            isinstance(events, list)
            and events
            and all(isinstance(e, str) and e in NOTIFY_EVENTS for e in events)
        ):
            chosen = tuple(e for e in NOTIFY_EVENTS if e in events)
        else:
            w.fail(
                w.key("events"),
                f"expected a list drawn from {', '.join(NOTIFY_EVENTS)}, got {_describe(events)}",
            )
        w.done()
        webhooks.append(WebhookConfig(url=url, url_env=env_name, events=chosen))
    n.done()
    return NotifyConfig(webhooks=tuple(webhooks))


def _controller(c: _Reader) -> ControllerConfig:
    interval = c.duration("interval", ControllerConfig.interval_s)
    probe_timeout = c.duration("probe_timeout", ControllerConfig.probe_timeout_s)
    if probe_timeout > interval:
        c.fail(
            c.key("probe_timeout"),
            f"expected at most controller.interval ({interval:g} s): a check fits its interval",
        )
    lease = c.duration("lease_duration", ControllerConfig.lease_duration_s)
    if not MIN_LEASE_S <= lease <= MAX_LEASE_S:
        c.fail(
            c.key("lease_duration"),
            f"expected {MIN_LEASE_S:g} s to {MAX_LEASE_S:g} s, got {c.raw('lease_duration')!r}",
        )
    controller = ControllerConfig(
        interval_s=interval,
        failures=c.integer(
            "failures", ControllerConfig.failures, minimum=1, maximum=MAX_GUARD_FAILURES
        ),
        probe_timeout_s=probe_timeout,
        heartbeat_s=c.duration("heartbeat", ControllerConfig.heartbeat_s),
        lease_duration_s=lease,
    )
    c.done()
    return controller


def _port(reader: _Reader) -> int:
    port = reader.integer("port", 8000, minimum=1)
    if port > 65535:
        reader.fail(reader.key("port"), f"expected a port number up to 65535, got {port}")
    return port


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping: YAML would keep the last one
    silently, and a safety setting overridden by a stray duplicate is worse than a refusal."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:
                continue  # an unhashable key: the base class reports it
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {str(key)[:60]!r}",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_config(path: str | os.PathLike[str]) -> Config:
    """Read and validate ``path``; every failure is a ``ConfigError`` (exit 2)."""
    from gx10slots.fileio import MAX_INPUT_FILE_BYTES, NotReadable, read_bounded

    p = Path(path)
    try:
        # Bounded, and only a regular file: `--config /dev/zero` or a FIFO nobody writes to
        # must be a refusal, not a MemoryError or a hang.
        text = read_bounded(p, MAX_INPUT_FILE_BYTES).decode("utf-8")
    except NotReadable as exc:
        if str(exc) == "not found":
            raise ConfigError(
                f"config file {p} not found",
                hint="pass --config PATH or set SLOTS_CONFIG; `slots sandbox up --dir DIR` "
                "writes one",
            ) from exc
        raise ConfigError(f"cannot read config file {p}: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"cannot read config file {p}: {exc}") from exc
    except ValueError as exc:  # a path holding NUL
        raise ConfigError(f"cannot read config file {p!r}: {exc}") from exc
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except RecursionError as exc:
        raise ConfigError(f"{p}: not valid YAML: nested too deeply to read") from exc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(f"{p}: not valid YAML{where}: {problem}") from exc
    return parse_config(data, source=str(p))
