"""Reaching the model servers: endpoints, the engine API key, and the quick deep probe.

The key comes from ``SLOTS_ENGINE_API_KEY``, else the config's env var, else the config's Secret;
it goes into an Authorization header and nowhere else (never a message, report or annotation).
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from gx10slots.app import App
from gx10slots.errors import ConfigError, NotFound

if TYPE_CHECKING:
    from gx10slots.smoke.report import Report
    from gx10slots.smoke.settings import SuiteSettings


@dataclass(frozen=True)
class ProbeVerdict:
    passed: bool
    detail: str


def slot_endpoint(app: App, slot: str) -> str:
    endpoint = app.config.slot(slot).endpoint
    if endpoint is None:
        raise ConfigError(
            f"{app.config.source}: slots.{slot}.endpoint: required to reach the slot directly "
            "(apiserver-proxy access is not available in this version)"
        )
    return endpoint


def production_endpoint(app: App) -> str:
    endpoint = app.config.flag.endpoint
    if endpoint is None:
        raise ConfigError(
            f"{app.config.source}: flag.endpoint: required to verify through production "
            "(apiserver-proxy access is not available in this version)"
        )
    return endpoint


def engine_api_key(app: App) -> str | None:
    return _engine_api_key(app)


@cache
def _engine_api_key(app: App) -> str | None:
    explicit = os.environ.get("SLOTS_ENGINE_API_KEY")
    if explicit:
        return explicit
    source = app.config.api_key
    if source.env:
        value = os.environ.get(source.env)
        if not value:
            raise ConfigError(
                f"{app.config.source}: api_key.env: environment variable {source.env} is not set"
            )
        return value
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
        return base64.b64decode(encoded).decode("utf-8").strip()
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
    )


def run_probes(app: App, endpoint: str, served_name: str, settings: SuiteSettings) -> Report:
    from gx10slots.smoke.profiles import get_profile
    from gx10slots.smoke.suite import run_suite

    return run_suite(
        endpoint,
        served_name,
        get_profile(app.config.engine),
        settings,
        api_key=engine_api_key(app),
    )


def quick_probe(app: App, endpoint: str, served_name: str, *, timeout_s: float) -> ProbeVerdict:
    """One short deep check: the engine answers, names ``served_name``, gives the known answer."""
    from dataclasses import replace

    settings = replace(
        suite_settings(app, ("readiness", "identity", "known-answer")),
        probe_timeout_s=timeout_s,
        timeouts={"readiness": timeout_s, "identity": timeout_s},
        deadline_s=timeout_s * 3,
    )
    report = run_probes(app, endpoint, served_name, settings)
    failed = [p for p in report.probes if not p.passed]
    if not failed:
        return ProbeVerdict(True, "answered " + ", ".join(p.name for p in report.probes))
    return ProbeVerdict(False, "; ".join(f"{p.name}: {p.detail}" for p in failed))
