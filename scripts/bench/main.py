"""The command line: run every figure, write the report."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    pass

from .common import DOC, ROOT, BenchError, now
from .machine import machine, raise_priority, resolve_kubectl
from .report import no_nan, render, summary_table
from .runs import Bench
from .spawn import Spawner


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="runs per figure (default 10)")
    parser.add_argument("--quick", action="store_true", help="2 runs each; no docs write")
    parser.add_argument(
        "--out", type=Path, help=f"where the Markdown goes (default {DOC.relative_to(ROOT)})"
    )
    parser.add_argument("--json", type=Path, help="also write every figure as JSON here")
    parser.add_argument(
        "--compare",
        type=Path,
        help="an earlier run's --json: the report shows its figures next to this run's",
    )
    parser.add_argument("--kubectl", help="the kubectl binary for the baselines")
    args = parser.parse_args(argv)
    runs = 2 if args.quick else args.runs
    if runs < 1:
        parser.error("--runs must be at least 1")
    out_path: Path | None = args.out if args.out else (None if args.quick else DOC)
    started = now()
    load_before = os.getloadavg()
    kubectl, kubectl_note = resolve_kubectl(args.kubectl)
    facts = machine(kubectl_note)
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    facts["priorities"] = raise_priority(nice)
    with tempfile.TemporaryDirectory(prefix="gx10-bench-") as tmp:
        spawner = Spawner(sys.executable, Path(tmp) / "runs", nice)
        bench = Bench(runs, kubectl, Path(tmp), spawner)
        try:
            bench.up()
            bench.restore()
            bench.status()
            bench.breakdown()
            bench.probe()
            bench.readiness()
            bench.cpu_time()
            bench.peak_rss()
        except BenchError as exc:
            print(f"bench: {exc}", file=sys.stderr)
            return 1
        finally:
            bench.down()
            spawner.close()
    elapsed = now() - started
    document = render(bench, facts, args, elapsed, (load_before, os.getloadavg()))
    # Files first: a closed stdout (`| head`) must not lose a 2-minute run.
    if out_path is not None:
        out_path.parent.mkdir(parents=True, exist_ok=True)
        out_path.write_text(document + "\n", encoding="utf-8")
        print(f"wrote {out_path}", file=sys.stderr)
    if args.json is not None:
        doc = {
            "runs": runs,
            "elapsed_s": elapsed,
            "machine": facts,
            "load_average": {"before": load_before[0], "after": os.getloadavg()[0]},
            "figures": {f.key: f.to_dict() for f in bench.figures},
            "details": bench.extra,
        }
        args.json.write_text(json.dumps(no_nan(doc), indent=2) + "\n", encoding="utf-8")
    with contextlib.suppress(BrokenPipeError):
        print(summary_table(bench.figures), flush=True)
    return 0
