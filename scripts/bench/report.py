"""The Markdown report (docs/benchmarks.md) from a run's figures."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    pass

from .common import LATENCY_MS, POLL_S, Figure
from .probes import DIAGNOSTIC

if TYPE_CHECKING:
    from .runs import Bench


def _ratio(figure: Figure) -> str:
    return f"{figure.ratio:.2f}x" if figure.ratio is not None else ""


def summary_table(figures: Sequence[Figure]) -> str:
    lines = [
        "| figure | ours: median [IQR] min..max | baseline: median [IQR] min..max | ratio | target "
        "| met |",
        "|---|---|---|---|---|---|",
    ]
    for f in figures:
        base = (
            f"{f.baseline.fmt(digits=f.digits)} {f.unit}<br>{f.baseline_label}"
            if f.baseline
            else "—"
        )
        met = {True: "✅", False: "❌", None: ""}[f.met]
        lines.append(
            f"| {f.title} | {f.ours.fmt(digits=f.digits)} {f.unit}<br>{f.ours_label} | {base} "
            f"| {_ratio(f)} | {f.target} | {met} |"
        )
    return "\n".join(lines)


def _signed(stats: dict[str, Any]) -> str:
    if not stats:
        return "?"
    return (
        f"{stats['median']:.1f} [{stats['q1']:.1f}..{stats['q3']:.1f}], "
        f"{stats['min']:.1f}..{stats['max']:.1f}"
    )


def _ms(stats: dict[str, Any]) -> str:
    return f"{stats['median']:.0f} [{stats['q1']:.0f}..{stats['q3']:.0f}]"


def render(
    bench: Bench,
    facts: dict[str, str],
    args: argparse.Namespace,
    elapsed_s: float,
    load: tuple[tuple[float, ...], tuple[float, ...]],
) -> str:
    figures = bench.figures
    missed = [f for f in figures if f.met is False]
    extra = bench.extra
    command = ".venv/bin/python scripts/bench" + (" --quick" if args.quick else "")
    out = [
        "# Benchmarks",
        "",
        "Written by `scripts/bench` (issues #8, #17); do not edit by hand. Rerun from the "
        "repository root (a fresh clone works too: `python3 scripts/bench` sets up `.venv` "
        "first):",
        "",
        "```sh",
        command,
        "```",
        "",
        f"Run at {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: {bench.runs} runs per figure "
        f"(cheap in-process figures: more), {elapsed_s:.0f} s in all. Load average "
        f"{load[0][0]:.2f} before, {load[1][0]:.2f} after (other work may share the machine: "
        "medians, with the interquartile range and min..max).",
        "",
        "## Machine",
        "",
        *[f"- **{k}**: {v}" for k, v in facts.items()],
        "",
        "## Summary",
        "",
        "All on the sandbox (`slots sandbox up`, fake engine), each command a separate process "
        "started the way an operator starts it (`.venv/bin/slots …`, KUBECONFIG and SLOTS_CONFIG "
        "set), each figure interleaved with its baseline. The sandbox's router runs with "
        "`--router-lag 0s`: the figures are the tool's own time.",
        "",
        summary_table(figures),
        "",
        "## Time to restore, step by step",
        "",
        "Milliseconds from spawning the command (median [IQR]): when a watch on the flag Service "
        "saw the selector change (the write), when the production endpoint first answered with "
        "the target's served name (what users see), and when the command exited. The last row "
        "is a diagnostic, not an operator's command: `flip-back --force` in an interpreter that "
        "imports everything the command loads first and reports when that is done.",
        "",
        "| command | imports done | flag written | production answers | command exits |",
        "|---|---|---|---|---|",
    ]
    for label, parts in extra.get("restore", {}).items():
        imported = _ms(parts["imported_ms"]) if parts["imported_ms"]["n"] else ""
        out.append(
            f"| `{label}` | {imported} | {_ms(parts['written_ms'])} | {_ms(parts['detect_ms'])} "
            f"| {_ms(parts['exit_ms'])} |"
        )
    imports = extra.get("imports", {})
    importtime = extra.get("importtime_status", {})
    out += [
        "",
        "## Where the time goes",
        "",
        "Each row a fresh interpreter running one `python -c` (median [IQR] ms over half as "
        "many runs as the figures, same run); "
        "every row includes the interpreter's own start (the first row):",
        "",
        "| what | ms |",
        "|---|---|",
        *[f"| {label} | {_ms(s)} |" for label, s in imports.items()],
        "",
        "`python -X importtime -m gx10slots status`, self time per top-level package (ms; "
        "importtime's own overhead inflates these):",
        "",
        "| package | ms |",
        "|---|---|",
        *[f"| {pkg} | {ms:.0f} |" for pkg, ms in list(importtime.items())[:10]],
        f"| **all imports** | **{sum(importtime.values()):.0f}** |",
        "",
    ]
    if getattr(args, "compare", None) is not None:
        out += compare_section(
            json.loads(args.compare.read_text(encoding="utf-8")),
            {f.key: f.to_dict() for f in figures},
        )
    out += _findings(bench, missed)
    probe = extra.get("probe", {})
    out += [
        "## Method",
        "",
        "- **Time to restore**: the clock starts just before the command is spawned; a loop in "
        "the benchmark then sends `GET /v1/models` to the production endpoint (the sandbox's "
        "Service proxy, which picks the backend per request) every "
        f"{POLL_S * 1000:.0f} ms on a kept-alive connection and stops at the first answer "
        "naming the target slot's served model (resolution: the poll interval plus one "
        "request, which takes under 1 ms here). The baseline is `kubectl patch service "
        "gx10-model --type json` replacing the selector key, with the same loop. Runs go there "
        "and back, so every sample starts from a settled state; the variants are interleaved, "
        "in an order rotated each round. kubectl's discovery cache (`--cache-dir`) was warmed "
        "once before timing, so no timed call pays discovery.",
        "- **flip / flip-back**: before timing, green is deployed with a fresh smoke "
        "(`slots deploy sandbox/ok --served-name bench-v2`), blue is smoked, and one `slots flip` "
        "gives production a previous slot. `flip` runs every gate (ready, fresh smoke, pre-flip "
        "probe); `flip-back` runs its pre-flip probe; `--force` skips both.",
        "- **status**: `slots status` (table to a file) against `kubectl get deployment/gx10-blue "
        "deployment/gx10-green service/gx10-model node/gx10 -o json`, the objects status reads.",
        f"- **Probe overhead**: a fault model server (`gx10slots.sandbox.modelserver "
        f"--latency-ms {LATENCY_MS}`) reports its own time in `x-sandbox-server-ms`; the smoke "
        "library's known-answer probe runs on one `httpx.AsyncClient` as inside a suite, and "
        "its duration minus the server's time is the overhead (client, loopback, HTTP parsing, "
        "JSON, checks). The baseline sends the same request with stdlib `http.client`. Server "
        f"time median {probe.get('server_ms', {}).get('median', math.nan):.1f} ms, probe "
        f"{probe.get('probe_ms', {}).get('median', math.nan):.1f} ms. The burst figure is the "
        "burst probe with 8 concurrent streamed requests against the same probe with 1.",
        "- **Readiness detection**: for each run the benchmark opens its own watches on the "
        "standby Deployment and its Pods, then runs `slots deploy sandbox/ok --served-name "
        "<new>`, timestamping its stderr lines as they arrive. The figure runs from the first "
        "watch event after which the API shows the new revision ready (the events replayed "
        "through the rule `slots deploy` itself applies, `deploy.rules.rollout_verdict`: the new "
        "pod Ready, the Deployment counting it updated and available) to the arrival of the "
        "tool's `[…s] <slot>: ready` line: watch delivery, its processing and the print. The "
        "tool's watch and ours are separate connections, served by separate threads of the "
        "sandbox's API server, so a few ms either way is noise (negative: the line arrived "
        "before our copy of the event). "
        "Against the event in which the rollout is complete as `kubectl rollout status` "
        "defines it (no old replica left either), the line came "
        f"{_signed(extra.get('ready_vs_rollout_complete_ms', {}))} ms later (negative: earlier). "
        f"`slots deploy` itself (rollout + full smoke) took {_ms(extra.get('deploy_ms', {}))} ms.",
        "- **Peak RSS**: `ru_maxrss` from `wait4` for every measured run above. A child starts "
        "with the peak RSS of the process that spawned it (the kernel carries the high-water "
        "mark over exec), so the commands are spawned from a small stdlib-only helper process "
        "(~10 MiB, below every command measured), not from the benchmark itself. The target is "
        "checked against the worst run.",
        "",
    ]
    return "\n".join(out)


# The figures a before/after comparison shows (the ones a code change moves).
COMPARED = (
    "restore_force",
    "restore_probe",
    "command_flip_back_force",
    "status",
    "help",
    "cpu_status",
    "rss_slots_status",
    "rss_slots_flip_back_force",
)


def compare_section(before: dict[str, Any], after: dict[str, dict[str, Any]]) -> list[str]:
    """``--compare``: this run's medians next to an earlier run's (its ``--json``), with each
    run's ratio to its own baseline measured in the same run (load hits both alike)."""

    def cell(figure: dict[str, Any] | None) -> str:
        if not figure:
            return "—"
        median = figure["ours"]["median"]
        ratio = f" ({figure['ratio']:.2f}x)" if figure.get("ratio") is not None else ""
        return f"{median:.0f} {figure['unit']}{ratio}"

    earlier = before.get("figures", {})
    load = before.get("load_average", {})
    out = [
        "## Before and after",
        "",
        f"The same figures from an earlier run (`--compare`; {before.get('runs', '?')} runs per "
        f"figure, load average {load.get('before', '?')}), each with its ratio to the baseline "
        "measured in its own run: with other work on the machine, the ratios compare better "
        "than the times.",
        "",
        "| figure | before | after |",
        "|---|---|---|",
    ]
    for key in COMPARED:
        if key in earlier or key in after:
            title = (after.get(key) or earlier.get(key) or {}).get("title", key)
            out.append(f"| {title} | {cell(earlier.get(key))} | {cell(after.get(key))} |")
    return [*out, ""]


def _findings(bench: Bench, missed: Sequence[Figure]) -> list[str]:
    """What the measurements say about the misses, from this run's numbers."""
    extra = bench.extra
    rows = [r["median"] for r in extra.get("imports", {}).values()]
    keys = {f.key for f in missed}
    out = ["## Findings", ""]
    if missed:
        out += ["Targets missed: " + ", ".join(f"**{f.title}**" for f in missed) + ".", ""]
    else:
        out += ["Every target is met.", ""]
    restore = extra.get("restore", {}).get("slots flip-back --force", {})
    figures = {f.key: f for f in bench.figures}
    if len(rows) >= 8 and restore:
        start, cli, adapter, status_imports, kube, apis, smoke, floor = rows[:8]
        written = restore["written_ms"]["median"]
        imported = extra["restore"][DIAGNOSTIC]["imported_ms"]["median"]
        after, to_prod = extra["after_imports_ms"], extra["write_to_production_ms"]
        out += [
            f"- **Start-up.** Measured in separate interpreters (table above), the interpreter "
            f"starts in {start:.0f} ms; the CLI modules add {cli - start:.0f} ms and the "
            f"Kubernetes adapter (urllib3, PyYAML, our kubeconfig loader) {adapter - start:.0f} "
            f"ms; everything `slots status` imports is in {status_imports:.0f} ms after spawn. "
            "Requests are plain JSON (gx10slots.kube.rest): no command imports the official "
            f"client's generated API classes any more ({apis - start:.0f} ms of imports), and a "
            "plain kubeconfig (a token or a client certificate, and a CA: the sandbox's, and "
            f"most clusters') does not import `kubernetes` at all ({kube - start:.0f} ms): its "
            "loader is loaded only for exec plugins, auth providers, merged kubeconfigs and "
            "in-cluster credentials.",
            f"- **The work.** `flip-back --force` writes the flag {written:.0f} ms after it "
            f"starts. With its imports done first (the diagnostic row, interleaved with the real "
            f"runs), every module the command loads, including those it needs only after the "
            f"write (httpx and the smoke library, to verify), is in {imported:.0f} ms after "
            f"spawn; from there to the write (kubeconfig, lease, four reads, the plan, the CAS "
            f"write) takes {after['median']:.0f} ms [{after['q1']:.0f}..{after['q3']:.0f}]. "
            f"Production answers from the other slot {to_prod['median']:.0f} ms after the "
            "write: the sandbox's router runs with `--router-lag 0s` here, so these figures are "
            "the tool's own time; a real gateway's reconfiguration lag adds the same to every "
            f"variant, kubectl's included. A stdlib Python doing `status`'s four GETs over TLS, "
            f"kubeconfig parsing included, takes {floor:.0f} ms end to end; httpx and the smoke "
            f"library, which the commands that probe load, {smoke - start:.0f} ms.",
        ]
        status = figures.get("status")
        if status is not None and status.baseline is not None:
            k = status.baseline.median
            out.append(
                f"- **Against kubectl**: its whole `get` takes {k:.0f} ms, a Python interpreter "
                f"that does nothing {start:.0f} ms ({start / k:.1f}x), and `slots status`'s "
                f"imports alone {status_imports:.0f} ms ({status_imports / k:.1f}x); what is "
                "left is the work (four reads and the table). `flip-back --force` also takes "
                "the lease and writes its audit record after the flag, which the user does not "
                "wait for before production answers."
            )
        cpu = figures.get("cpu_status")
        if cpu is not None and cpu.baseline is not None and cpu.ratio is not None:
            out.append(
                f"- **CPU time**, which the machine's load inflates less than wall time (not "
                f"at all only on a quiet machine): "
                f"`slots status` {cpu.ours.median:.0f} ms against `kubectl get`'s "
                f"{cpu.baseline.median:.0f} ms ({cpu.ratio:.1f}x)."
            )
    probe = extra.get("probe", {})
    overhead = figures.get("probe_overhead")
    if overhead is not None and probe:
        # Always shown: the figure sits close to its target and lands on either side of it.
        httpx_ms = probe["httpx_overhead_ms"]["median"]
        raw = overhead.baseline.median if overhead.baseline else math.nan
        out.append(
            f"- **Probe overhead** ({overhead.ours.median:.2f} ms): `httpx.AsyncClient` alone, "
            f"same request on the same connection, costs {httpx_ms:.2f} ms over the server's "
            f"time (stdlib `http.client` {raw:.2f} ms); the smoke library adds "
            f"{overhead.ours.median - httpx_ms:.2f} ms on top. The floor is httpx's asyncio "
            "transport (anyio, httpcore, h11), not the probe code, and run to run it moves "
            "around the 2 ms target with the machine's load."
        )
    if "burst" in keys:
        out.append(
            "- **Burst**: each streamed request opens its own connection (the SSE reader stops at "
            "`data: [DONE]` and closes the response, so httpcore does not reuse it) and the fake "
            "server runs a thread per connection; the extra time over one request is CPU on the "
            "2 cores the sandbox, the server and the benchmark share."
        )
    out.append("")
    return out


def no_nan(value: Any) -> Any:
    """Strict JSON: what could not be measured (NaN) becomes null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): no_nan(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [no_nan(v) for v in value]
    return value
