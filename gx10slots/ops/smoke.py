"""`slots smoke [SLOT]`: the deep-liveness suite against a slot, reports, and the recorded result.

When production's active slot is another, ready slot, a short reference run against it comes first
(readiness, known-answer, streaming, tool-call and structured-output forced on): what it can do the
candidate must do too (capability parity). Then the candidate's suite, which measures the active
slot again interleaved with the candidate (its streaming right after the candidate's, its burst
right before the candidate's), so both slots' TTFT and tokens/s come from the same moments of the
machine: the live baseline the candidate's are judged against; the report holds them under
`baseline`. When the candidate looks like a regression, both are measured again back to back (a
burst each) and only a regression seen again fails (one slow moment of a busy machine is not a
slower model).

The result is recorded as annotations on the slot's Deployment, bound to the revision (pod
template hash) that was tested: a later change to image, env or args makes it stale for `flip`.
The suite runs without the lease (a smoke of the standby must never block an emergency
flip-back); only the short recording write takes it, and the write is a compare-and-swap that
refuses to record a result for a revision that changed while the suite ran. Under the same lease
a summary of the report goes to the ConfigMap gx10slots-smoke-<slot> (for `slots status` on any
machine; best effort: a failed write warns).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gx10slots import console, notify
from gx10slots.app import App
from gx10slots.config import SLOT_NAMES
from gx10slots.errors import ClusterError, LockHeld, SlotsError, UsageError
from gx10slots.kube.cas import annotation_ops, patch_until_settled
from gx10slots.kube.client import FIELD_MANAGER
from gx10slots.kube.lease import Lock
from gx10slots.kube.values import annotation_pointer, now_utc, rfc3339
from gx10slots.ops.engine import probe_access, slot_endpoint, suite_settings
from gx10slots.ops.lease import hold
from gx10slots.ops.read import read_deployment, read_flag_object, snapshot
from gx10slots.slots import (
    SMOKE_AT,
    SMOKE_PASSED,
    SMOKE_REPORT,
    SMOKE_REVISION,
    flag_state,
    other_slot,
    revision_of,
    slot_state,
)

if TYPE_CHECKING:
    import httpx

    from gx10slots.smoke.profiles import EngineProfile
    from gx10slots.smoke.report import Baseline, Report
    from gx10slots.smoke.result import ProbeResult

# The reference run against production's active slot: enough to learn what it does (tool calls,
# streaming with usage, structured output), nothing that waits long. How fast it is (TTFT,
# tokens/s) is measured in the candidate's run, interleaved with the candidate.
REFERENCE_PROBES = ("readiness", "known-answer", "streaming", "tool-call", "structured-output")


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


def _progress(result: ProbeResult, indent: str = "  ") -> None:
    verdict = "skip" if result.skipped and result.passed else "ok" if result.passed else "FAIL"
    console.progress(
        f"{indent}{verdict:4} {result.name:17} {result.duration_ms:8.1f} ms  {result.detail}"
    )


def _progress_reference(result: ProbeResult) -> None:
    _progress(result, "    active: ")


@dataclass(frozen=True)
class Reference:
    """Production's active slot as the reference run found it, and how to reach it again."""

    baseline: Baseline
    endpoint: str
    served_name: str


def reference_run(
    app: App,
    slot: str,
    profile: EngineProfile,
    api_key: str | None,
    transport: httpx.BaseTransport | None,
) -> Reference | None:
    """Production's active slot measured now, when it is another ready slot (else None, said)."""
    from gx10slots.smoke.report import Baseline
    from gx10slots.smoke.suite import run_suite

    config = app.config
    if not config.smoke.baseline.live:
        return None
    try:
        # The flag, then the active slot's Deployment only: two reads, not a whole snapshot
        # (each read costs on a busy API server, before every smoke).
        active = flag_state(read_flag_object(app), config).active
        if active is None or active == slot or active not in config.slots:
            return None
        state = slot_state(active, read_deployment(app, active), config, None)
    except SlotsError as exc:
        console.progress(f"no live baseline: cannot read production's active slot: {exc.message}")
        return None
    if not state.is_ready:
        console.progress(f"no live baseline: production's active slot {active} is not ready")
        return None
    settings = suite_settings(app, REFERENCE_PROBES)
    settings = replace(
        settings,
        tool_call=True,  # learn whether it makes tool calls, whatever smoke.tool_call says
        structured_output=True,  # and whether it returns JSON matching a schema
        prompts=(),
        # It serves production now: no model load to wait for.
        timeouts={"readiness": settings.probe_timeout_s},
        deadline_s=min(settings.deadline_s, 5 * settings.probe_timeout_s),
    )
    console.progress(
        f"reference run first: production's active slot {active} ({state.model}), for "
        "capability parity"
    )
    endpoint = slot_endpoint(app, active)
    served = state.served_name or state.model or ""
    report = run_suite(
        endpoint,
        served,
        profile,
        settings,
        api_key=api_key,
        transport=transport,
        on_probe=_progress_reference,
        slot=active,
        model=state.model or "",
        revision=state.revision or "",
    )
    baseline = Baseline.of(report)
    console.progress(
        f"  active slot {active}: tool calls {'yes' if baseline.tool_calls else 'no'}, streaming "
        f"usage {'yes' if baseline.stream_usage else 'no'}, structured output "
        f"{'yes' if baseline.structured_output else 'no'}; now the candidate {slot}, its speed "
        f"measured interleaved with {active}'s"
    )
    return Reference(baseline, endpoint, served)


def _confirm(
    app: App,
    report: Report,
    reference: Reference,
    candidate: tuple[str, str],
    profile: EngineProfile,
    api_key: str | None,
    transport: httpx.BaseTransport | None,
) -> Report:
    """Both slots measured again back to back (a burst each) and the baseline judged again.

    The candidate's burst goes first this time: the first measurement ran the active slot's
    burst first, so over the two neither slot always has the machine's earlier moment.
    """
    from gx10slots.smoke.report import Baseline
    from gx10slots.smoke.suite import confirm_baseline, run_suite

    settings = replace(suite_settings(app, ("burst",)), prompts=())
    console.progress("a regression against the active slot: measuring both again, back to back")

    def measure(
        slot: str, endpoint: str, served: str, on_probe: Callable[[ProbeResult], None]
    ) -> Report:
        return run_suite(
            endpoint,
            served,
            profile,
            settings,
            api_key=api_key,
            transport=transport,
            on_probe=on_probe,
            slot=slot,
        )

    candidate_again = measure(report.slot, *candidate, _progress)
    active_again = measure(
        reference.baseline.slot, reference.endpoint, reference.served_name, _progress_reference
    )
    confirmed = confirm_baseline(
        report, Baseline.of(active_again), candidate_again, suite_settings(app)
    )
    verdict = next(p for p in confirmed.probes if p.name == "baseline")
    console.progress(f"  {'ok' if verdict.passed else 'FAIL':4} baseline  {verdict.detail}")
    return confirmed


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
    from gx10slots.smoke.suite import LiveTarget, regression_seen, run_suite

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
    profile = get_profile(config.engine)
    reference = reference_run(app, slot, profile, api_key, transport)
    served = state.served_name or state.model or ""
    report = run_suite(
        endpoint,
        served,
        profile,
        suite_settings(app),
        api_key=api_key,
        transport=transport,
        on_probe=_progress,
        baseline=reference.baseline if reference is not None else None,
        # The live baseline: the active slot's TTFT and tokens/s, measured next to ours.
        live=LiveTarget(reference.endpoint, reference.served_name) if reference else None,
        on_active_probe=_progress_reference,
        slot=slot,
        model=state.model or "",
        revision=state.revision or "",
        # /v1/models must list every name the slot claims (its aliases and identity name too).
        served_names=state.served_names,
    )
    if reference is not None and regression_seen(report):
        report = _confirm(app, report, reference, (endpoint, served), profile, api_key, transport)
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
    verdict still decides the exit code; `flip` then simply finds no fresh result.

    Under the same lease the summary of the report is kept in the slot's ConfigMap
    (gx10slots.ops.smokesummary) for `slots status` on any machine; the gate reads only the
    Deployment's annotations."""
    if lock is not None:
        return _record_and_keep(app, slot, revision, report, report_name, lock)
    try:
        with hold(app) as own:
            return _record_and_keep(app, slot, revision, report, report_name, own)
    except LockHeld as exc:
        console.progress(f"smoke result not recorded on slot {slot}: {exc.message}")
        return False


def _record_and_keep(
    app: App, slot: str, revision: str, report: Report, report_name: str, lock: Lock
) -> bool:
    from gx10slots.ops.smokesummary import write_summary
    from gx10slots.smoke.summary import build_summary

    recorded = _record_locked(app, slot, revision, report, report_name, lock)
    summary = build_summary(
        report, by=lock.holder, command=lock.command, recorded=recorded, report_name=report_name
    )
    write_summary(app, slot, summary, lock)
    return recorded


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
