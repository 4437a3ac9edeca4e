"""Reaching the model servers: endpoints, the engine API key, and the quick deep probe.

The key comes from ``SLOTS_ENGINE_API_KEY``, else the config's env var, else the config's Secret;
it goes into an Authorization header and nowhere else (never a message, report or annotation).
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gx10slots.app import App
from gx10slots.errors import ConfigError, NotFound
from gx10slots.scrub import checked_key

if TYPE_CHECKING:
    # Only for annotations: importing httpx (and the rich/pygments its CLI pulls in) costs
    # ~140 ms, which `flip-back --force` would pay before its write rather than after it.
    import httpx

    from gx10slots.smoke._http import BoundedAnswer
    from gx10slots.smoke.report import Report
    from gx10slots.smoke.settings import SuiteSettings


@dataclass(frozen=True)
class ProbeVerdict:
    passed: bool
    detail: str
    # Every failed probe ran out of time (as Observation.timed_out: the detail says so): the
    # engine may be busy rather than broken.
    timed_out: bool = False


def slot_endpoint(app: App, slot: str) -> str:
    config = app.config
    if config.access == "apiserver-proxy":
        target = config.slot(slot)
        return app.kube.connection.service_proxy_url(config.namespace, target.service, target.port)
    endpoint = config.slot(slot).endpoint
    if endpoint is None:
        raise ConfigError(f"{config.source}: slots.{slot}.endpoint: required with access: direct")
    return endpoint


def production_endpoint(app: App) -> str:
    config = app.config
    if config.access == "apiserver-proxy":
        return app.kube.connection.service_proxy_url(
            config.namespace, config.flag.service, config.flag.port
        )
    endpoint = config.flag.endpoint
    if endpoint is None:
        raise ConfigError(f"{config.source}: flag.endpoint: required with access: direct")
    return endpoint


def probe_access(app: App) -> tuple[str | None, httpx.BaseTransport | None]:
    """The engine API key and the transport the probes use to reach the model servers.

    Through the API server's service proxy the Authorization header carries the *cluster*
    credentials (the API server consumes it), so an engine key cannot travel with it.
    """
    key = engine_api_key(app)
    if app.config.access != "apiserver-proxy":
        return key, None
    if key:
        raise ConfigError(
            f"{app.config.source}: api_key: an engine API key cannot pass through the API "
            "server's service proxy (its Authorization header is for the cluster)",
            hint="use access: direct with the slots' endpoints, or an engine without a key",
        )
    return None, app.kube.connection.http_transport()


_KEY_ATTRIBUTE = "_gx10slots_engine_api_key"


def engine_api_key(app: App) -> str | None:
    """The key, resolved once per App. Cached on the App itself: a module-level cache would keep
    every App (and its API connection pool, an open socket) alive for the life of the process."""
    if not hasattr(app, _KEY_ATTRIBUTE):
        setattr(app, _KEY_ATTRIBUTE, _engine_api_key(app))
    key: str | None = getattr(app, _KEY_ATTRIBUTE)
    return key


def _engine_api_key(app: App) -> str | None:
    explicit = os.environ.get("SLOTS_ENGINE_API_KEY")
    if explicit:
        return checked_key(explicit, "SLOTS_ENGINE_API_KEY")
    source = app.config.api_key
    if source.env:
        value = os.environ.get(source.env)
        if not value:
            raise ConfigError(
                f"{app.config.source}: api_key.env: environment variable {source.env} is not set"
            )
        return checked_key(value, f"{app.config.source}: api_key.env: {source.env}")
    if source.secret_name and source.secret_key:
        kube = app.kube
        try:
            secret = kube.read(
                f"read Secret {kube.namespace}/{source.secret_name}",
                kube.api("core").read_namespaced_secret,
                source.secret_name,
                kube.namespace,
            )
        except NotFound as exc:
            raise ConfigError(
                f"{app.config.source}: api_key.secret: Secret {source.secret_name} not found in "
                f"namespace {kube.namespace}"
            ) from exc
        encoded = (secret.get("data") or {}).get(source.secret_key)
        if encoded is None:
            raise ConfigError(
                f"{app.config.source}: api_key.secret: Secret {source.secret_name} has no key "
                f"{source.secret_key}"
            )
        where = (
            f"{app.config.source}: api_key.secret: Secret {source.secret_name} key "
            f"{source.secret_key}"
        )
        try:
            raw = base64.b64decode(str(encoded), validate=True)
        except ValueError:
            raise ConfigError(f"{where}: not valid base64 (its value is not shown)") from None
        return checked_key(raw, where)
    return None


def suite_settings(app: App, probes: tuple[str, ...] | None = None) -> SuiteSettings:
    from gx10slots.smoke.settings import PROBE_NAMES, SuiteSettings

    smoke = app.config.smoke
    return SuiteSettings(
        probes=probes or PROBE_NAMES,
        prompt=smoke.prompt,
        expect=smoke.expect,
        max_tokens=smoke.max_tokens,
        reasoning=smoke.reasoning,
        max_model_len=smoke.max_model_len,
        tool_call=smoke.tool_call,
        burst=smoke.burst,
        probe_timeout_s=smoke.probe_timeout_s,
        deadline_s=smoke.deadline_s,
        prompts=smoke.prompts,
        baseline_ttft_ratio=smoke.baseline.ttft_ratio,
        baseline_tokens_ratio=smoke.baseline.tokens_ratio,
        baseline_margin_ms=smoke.baseline.margin_s * 1000.0,
    )


def run_probes(
    app: App,
    endpoint: str,
    served_name: str,
    settings: SuiteSettings,
    served_names: Sequence[str] = (),
) -> Report:
    from gx10slots.smoke.profiles import get_profile
    from gx10slots.smoke.suite import run_suite

    api_key, transport = probe_access(app)
    return run_suite(
        endpoint,
        served_name,
        get_profile(app.config.engine),
        settings,
        api_key=api_key,
        transport=transport,
        served_names=served_names,
        # Without the slot's whole list, only "serves served_name" can be checked.
        exact_names=bool(served_names),
    )


def quick_probe(
    app: App,
    endpoint: str,
    served_name: str,
    *,
    timeout_s: float,
    served_names: Sequence[str] = (),
) -> ProbeVerdict:
    """One short deep check: the engine answers, lists every name in ``served_names`` (the
    slot's whole list; just ``served_name`` when empty), and gives the known answer to a request
    naming ``served_name``."""
    from dataclasses import replace

    settings = replace(
        suite_settings(app, ("readiness", "identity", "known-answer")),
        probe_timeout_s=timeout_s,
        timeouts={"readiness": timeout_s, "identity": timeout_s},
        deadline_s=timeout_s * 3,
    )
    report = run_probes(app, endpoint, served_name, settings, served_names)
    failed = [p for p in report.probes if not p.passed]
    if not failed:
        return ProbeVerdict(True, "answered " + ", ".join(p.name for p in report.probes))
    if all(p.detail.startswith("timed out") for p in failed):
        # Only out of time: the engine may be busy rather than broken (guard.rules.busy).
        return ProbeVerdict(False, "; ".join(f"{p.name}: {p.detail}" for p in failed), True)
    return ProbeVerdict(False, "; ".join(f"{p.name}: {p.detail}" for p in failed))


# How long `slots status` waits for an engine's list of loaded models: status must stay quick.
WARMTH_TIMEOUT_S = 3.0
# How long a flip waits for the fallback's engine to take a keep-alive (its model is loaded: it
# served production a moment ago, so the answer is quick).
KEEP_LOADED_TIMEOUT_S = 10.0


# At most this much of an engine's answer is read (Ollama's /api/ps lists a few models in a few
# KiB); the rest is left unread.
ENGINE_ANSWER_CAP = 256 * 1024


def _engine_request(
    app: App, slot: str, method: str, path: str, timeout_s: float, body: object = None
) -> BoundedAnswer:
    """One small request to ``slot``'s engine, the way the probes reach it (key, transport),
    bounded in time and size whatever the engine does (``request_bounded``); ConfigError or
    httpx.HTTPError when it cannot be made."""
    import httpx

    from gx10slots.smoke._http import request_bounded

    api_key, transport = probe_access(app)
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    with httpx.Client(
        base_url=slot_endpoint(app, slot),
        headers=headers,
        timeout=timeout_s,
        trust_env=False,
        transport=transport,
    ) as client:
        return request_bounded(
            client, method, path, timeout_s=timeout_s, cap=ENGINE_ANSWER_CAP, json_body=body
        )


def cold_standby_warning(app: App, slot: str, served_name: str) -> str | None:
    """A warning when the standby's engine has unloaded its model (Ollama lists what is loaded
    at `/api/ps` and unloads an idle model after OLLAMA_KEEP_ALIVE); None when it is loaded or
    the engine never unloads. Best effort: an answer that cannot be read is said, not raised."""
    from gx10slots.smoke.profiles import get_profile

    profile = get_profile(app.config.engine)
    path = profile.warmth_path
    if path is None:
        return None  # before any import below: `slots status` must not pay for httpx (~150 ms)
    import httpx

    from gx10slots.smoke import wire
    from gx10slots.smoke._failure import ProbeFailure

    unknown = f"standby {slot}: cannot tell whether {served_name!r} is loaded"
    try:
        answer = _engine_request(app, slot, "GET", path, WARMTH_TIMEOUT_S)
        if answer.status != 200:
            raise ProbeFailure(f"HTTP {answer.status}")
        if not answer.complete:
            raise ProbeFailure(f"an answer over {ENGINE_ANSWER_CAP // 1024} KiB")
        try:
            doc = json.loads(answer.body)
        except RecursionError:  # JSON nested deeper than the parser goes
            raise ProbeFailure("JSON nested too deeply") from None
        loaded = wire.loaded_models(doc, path)
    except ConfigError as exc:
        return f"{unknown} ({exc.message})"
    except (httpx.HTTPError, ValueError, ProbeFailure) as exc:
        reason = exc.detail if isinstance(exc, ProbeFailure) else type(exc).__name__
        return f"{unknown} ({path}: {reason})"
    if any(profile.same_model(name, served_name) for name in loaded):
        return None
    return (
        f"standby {slot} is cold: {path} does not list {served_name!r} (unloaded after its "
        f"keep-alive); flip would wait for a load: `slots smoke {slot}` loads it and keeps it "
        "loaded"
    )


def keep_loaded(app: App, slot: str) -> str | None:
    """Ask ``slot``'s engine to keep its model loaded, for an engine that unloads idle models
    (Ollama: production's requests kept the old slot loaded only for OLLAMA_KEEP_ALIVE after the
    last one, so the fallback a flip leaves would go cold). What was done, or why it could not
    be; None for an engine that never unloads. Best effort: it never raises for the engine."""
    from gx10slots.smoke.profiles import get_profile

    profile = get_profile(app.config.engine)
    path = profile.keep_alive_path
    if path is None:
        return None
    import httpx

    from gx10slots.errors import SlotsError
    from gx10slots.ops.read import read_deployment
    from gx10slots.slots import slot_state

    failed = f"slot {slot}: could not ask its engine to keep the model loaded"
    try:
        name = slot_state(slot, read_deployment(app, slot), app.config, None).served_name
        if not name:
            return f"{failed} (no served name)"
        body = {"model": name, "keep_alive": profile.keep_alive, "stream": False}
        answer = _engine_request(app, slot, "POST", path, KEEP_LOADED_TIMEOUT_S, body)
    except SlotsError as exc:
        return f"{failed} ({exc.message})"
    except httpx.HTTPError as exc:
        return f"{failed} ({type(exc).__name__})"
    if answer.status != 200:
        return f"{failed} ({path} answered HTTP {answer.status} for {name!r})"
    return f"slot {slot} keeps {name!r} loaded (keep_alive {profile.keep_alive})"
