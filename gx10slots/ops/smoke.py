"""`slots smoke [SLOT]`: the deep-liveness suite against a slot, reports, and the recorded result.

The result is recorded as annotations on the slot's Deployment, bound to the revision (pod
template hash) that was tested: a later change to image, env or args makes it stale for `flip`.
The suite runs without the lease (a smoke of the standby must never block an emergency
flip-back); only the short recording write takes it, and the write is a compare-and-swap that
refuses to record a result for a revision that changed while the suite ran.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gx10slots import console, notify
from gx10slots.app import App
from gx10slots.config import SLOT_NAMES
from gx10slots.errors import ClusterError, LockHeld, UsageError
from gx10slots.kube.cas import annotation_ops, patch_until_settled
from gx10slots.kube.client import FIELD_MANAGER
from gx10slots.kube.lease import Lock
from gx10slots.kube.values import annotation_pointer, now_utc, rfc3339
from gx10slots.ops.engine import probe_access, slot_endpoint, suite_settings
from gx10slots.ops.lease import hold
from gx10slots.ops.read import read_deployment, snapshot
from gx10slots.slots import (
    SMOKE_AT,
    SMOKE_PASSED,
    SMOKE_REPORT,
    SMOKE_REVISION,
    other_slot,
    revision_of,
    slot_state,
)

if TYPE_CHECKING:
    from gx10slots.smoke.report import Report
    from gx10slots.smoke.result import ProbeResult


@dataclass(frozen=True)
class SmokeOutcome:
    report: Report
    report_paths: list[str]
    recorded: bool

    @property
    def passed(self) -> bool:
        return self.report.passed

    @property
    def report_path(self) -> str:
        return self.report_paths[0] if self.report_paths else ""

    @property
    def failure_summary(self) -> str:
        failed = [p for p in self.report.probes if not p.passed and not p.skipped]
        return "; ".join(f"{p.name}: {p.detail}" for p in failed) or "failed"

    def to_dict(self) -> dict[str, Any]:
        return {**self.report.to_dict(), "reports": self.report_paths, "recorded": self.recorded}


def resolve_slot(app: App, requested: str) -> str:
    if requested in SLOT_NAMES:
        return requested
    if requested not in ("active", "standby"):
        raise UsageError(f"slot must be blue, green, active or standby, got {requested!r}")
    flag = snapshot(app).flag
    if flag.active is None:
        raise UsageError(f"the flag names no slot, so '{requested}' is unknown: name blue or green")
    return flag.active if requested == "active" else other_slot(flag.active)


def parse_formats(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    from gx10slots.smoke.report import FORMATS

    formats = tuple(f.strip() for f in text.split(",") if f.strip())
    unknown = [f for f in formats if f not in FORMATS]
    if unknown or not formats:
        raise UsageError(
            f"--format {text!r}: expected a comma-separated list drawn from {', '.join(FORMATS)}"
        )
    return formats


def _progress(result: ProbeResult) -> None:
    verdict = "skip" if result.skipped and result.passed else "ok" if result.passed else "FAIL"
    console.progress(
        f"  {verdict:4} {result.name:13} {result.duration_ms:8.1f} ms  {result.detail}"
    )


def smoke_slot(
    app: App,
    slot: str,
    *,
    report_dir: str | None = None,
    formats: tuple[str, ...] | None = None,
    lock: Lock | None = None,
) -> SmokeOutcome:
    from gx10slots.smoke.profiles import get_profile
    from gx10slots.smoke.report import write_reports
    from gx10slots.smoke.suite import run_suite

    config = app.config
    directory = check_report_dir(report_dir or config.smoke.report_dir)
    deployment = read_deployment(app, slot)
    if deployment is None:
        # Exit 4, not 1: nothing was tested, so no check failed; the cluster does not hold what
        # the config names (the contract gives `smoke` the codes 0, 1, 2 and 4).
        raise ClusterError(
            f"slot {slot}: Deployment {config.slot(slot).deployment} not found in namespace "
            f"{config.namespace}: there is nothing to smoke (nothing tested or recorded)",
            hint=f"check slots.{slot}.deployment and the namespace (-n); apply the slot's manifest",
        )
    state = slot_state(slot, deployment, config, None)
    endpoint = slot_endpoint(app, slot)
    console.progress(
        f"smoke {slot} ({state.model}, revision {state.revision}) at {endpoint}, engine "
        f"{config.engine}"
    )
    api_key, transport = probe_access(app)
    report = run_suite(
        endpoint,
        state.served_name or state.model or "",
        get_profile(config.engine),
        suite_settings(app),
        api_key=api_key,
        transport=transport,
        on_probe=_progress,
        slot=slot,
        model=state.model or "",
        revision=state.revision or "",
        # /v1/models must list every name the slot claims (its aliases and identity name too).
        served_names=state.served_names,
    )
    wanted = ("json", *(f for f in (formats or config.smoke.formats) if f != "json"))
    paths = [str(p) for p in write_reports(report, directory, wanted)]
    recorded = _record(app, slot, state.revision or "", report, Path(paths[0]).name, lock)
    outcome = SmokeOutcome(report, paths, recorded)
    if not outcome.passed:
        notify.notify(config, "smoke-failed", _failed_smoke_fields(outcome, state.model))
    return outcome


def _failed_smoke_fields(outcome: SmokeOutcome, model: str | None) -> dict[str, Any]:
    report = outcome.report
    return {
        "slot": report.slot,
        "model": model,
        "revision": report.revision,
        "result": "failed",
        "detail": outcome.failure_summary,
        "report": outcome.report_path,
    }


def check_report_dir(directory: str) -> Path:
    """Refuse an unusable report directory before anything runs or changes (exit 2)."""
    from gx10slots.fileio import writable_directory

    return writable_directory(
        directory,
        "report directory",
        hint="choose a writable directory with --report-dir (or smoke.report_dir)",
    )


def _record(
    app: App, slot: str, revision: str, report: Report, report_name: str, lock: Lock | None
) -> bool:
    """Best effort: a result that cannot be recorded (lease held elsewhere) is said, and the
    verdict still decides the exit code; `flip` then simply finds no fresh result."""
    if lock is not None:
        return _record_locked(app, slot, revision, report, report_name, lock)
    try:
        with hold(app) as own:
            return _record_locked(app, slot, revision, report, report_name, own)
    except LockHeld as exc:
        console.progress(f"smoke result not recorded on slot {slot}: {exc.message}")
        return False


def _record_locked(
    app: App, slot: str, revision: str, report: Report, report_name: str, lock: Lock
) -> bool:
    annotations = {
        SMOKE_REVISION: revision,
        SMOKE_PASSED: "true" if report.passed else "false",
        SMOKE_AT: rfc3339(report.finished_at),
        SMOKE_REPORT: report_name,
    }

    def plan(current: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
        if current is None or revision_of(current) != revision:
            console.progress(
                f"slot {slot} changed while the suite ran: the result is not recorded "
                "(it is for an older revision)"
            )
            return None
        lock.check()
        return annotation_ops(current, annotations)

    written = _patch_slot(app, slot, "record smoke result on", plan)
    if written is None:
        console.progress(f"slot {slot} kept changing: the smoke result is not recorded")
    return bool(written)


def invalidate_smoke(app: App, slot: str, why: str, lock: Lock) -> bool:
    """Mark the slot's recorded smoke as failed (the guard saw it fail under real traffic), so
    that `flip` refuses it until a new smoke passes."""

    def plan(current: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
        annotations = (current or {}).get("metadata", {}).get("annotations") or {}
        if current is None or SMOKE_REVISION not in annotations:
            return None
        lock.check()
        return [
            {"op": "replace", "path": annotation_pointer(SMOKE_PASSED), "value": "false"},
            *annotation_ops(current, {SMOKE_AT: rfc3339(now_utc()), SMOKE_REPORT: why[:250]}),
        ]

    return bool(_patch_slot(app, slot, "mark smoke failed on", plan))


def _patch_slot(
    app: App,
    slot: str,
    what: str,
    plan: Callable[[Mapping[str, Any] | None], list[dict[str, Any]] | None],
) -> bool | None:
    """A compare-and-swap patch of the slot's Deployment (gx10slots.kube.cas)."""
    kube, config = app.kube, app.config
    name = config.slot(slot).deployment
    return patch_until_settled(
        lambda: read_deployment(app, slot),
        plan,
        lambda ops: kube.write(
            f"{what} Deployment {config.namespace}/{name}",
            kube.api("apps").patch_namespaced_deployment,
            name,
            config.namespace,
            ops,
            field_manager=FIELD_MANAGER,
        ),
    )
