"""scripts/bench: its quick mode runs end to end and reports every figure (nothing is timed)."""

from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "bench"  # a package: `python scripts/bench`
DOC = ROOT / "docs" / "benchmarks.md"

# Every figure issue #8 asks for: restore (--force, with probe, flip) and the commands' wall
# times, status, --help, probe overhead, the burst, readiness detection, peak RSS per command.
FIGURES = {
    "restore_force",
    "restore_force_ratio",
    "restore_probe",
    "restore_flip",
    "command_flip_back_force",
    "command_flip_back",
    "command_flip",
    "status",
    "help",
    "probe_overhead",
    "burst",
    "readiness",
    "rss_slots_help",
    "rss_slots_status",
    "rss_slots_flip_back_force",
    "rss_slots_flip_back",
    "rss_slots_flip",
    "rss_slots_deploy",
    "rss_kubectl_get",
    "rss_kubectl_patch",
    "cpu_status",
    "cpu_flip_back_force",
}
WITH_BASELINE = {
    "restore_force",
    "restore_force_ratio",
    "restore_probe",
    "restore_flip",
    "command_flip_back_force",
    "command_flip_back",
    "command_flip",
    "status",
    "help",
    "probe_overhead",
    "burst",
    "cpu_status",
    "cpu_flip_back_force",
}
SECTIONS = (
    "## Machine",
    "## Summary",
    "## Time to restore, step by step",
    "## Where the time goes",
    "## Findings",
    "## Method",
)


def _bench(module: str) -> ModuleType:
    """A module of the scripts/bench package (scripts/ is not on the path), for its pure helpers."""
    package = "gx10slots_bench_script"
    if package not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            package, SCRIPT / "__init__.py", submodule_search_locations=[str(SCRIPT)]
        )
        assert spec is not None and spec.loader is not None
        sys.modules[package] = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sys.modules[package])
    return importlib.import_module(f"{package}.{module}")


def _finite(stats: dict[str, Any]) -> bool:
    values = [stats[k] for k in ("median", "q1", "q3", "min", "max")]
    return all(isinstance(v, int | float) and math.isfinite(v) for v in values)


def test_stats_summarise_median_quartiles_and_range() -> None:
    stats = _bench("common").Stats([5.0, 1.0, 3.0, 2.0, 100.0])
    assert stats.median == 3.0
    assert stats.quartiles() == (2.0, 5.0)
    assert (stats.lo, stats.hi, stats.n) == (1.0, 100.0, 5)
    assert stats.fmt() == "**3** [2..5] 1..100"
    assert stats.to_dict()["median"] == 3.0


def test_rollout_complete_is_what_kubectl_rollout_status_waits_for() -> None:
    bench = _bench("cluster")
    done = {
        "metadata": {"generation": 3},
        "spec": {"replicas": 1},
        "status": {
            "observedGeneration": 3,
            "replicas": 1,
            "updatedReplicas": 1,
            "availableReplicas": 1,
            "conditions": [{"type": "Available", "status": "True"}],
        },
    }
    assert bench.rollout_complete(done)
    old_pod_left = json.loads(json.dumps(done))
    old_pod_left["status"]["replicas"] = 2
    assert not bench.rollout_complete(old_pod_left)
    not_seen = json.loads(json.dumps(done))
    not_seen["status"]["observedGeneration"] = 2
    assert not bench.rollout_complete(not_seen)


@pytest.mark.e2e
def test_quick_run_reports_every_figure_and_leaves_the_docs_alone(tmp_path: Path) -> None:
    doc_before = DOC.read_bytes() if DOC.exists() else None
    out, data_file = tmp_path / "bench.md", tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--out", str(out), "--json", str(data_file)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    data = json.loads(data_file.read_text())
    assert data["runs"] == 2
    figures = data["figures"]
    assert not FIGURES - figures.keys(), f"missing figures: {sorted(FIGURES - figures.keys())}"
    for key in FIGURES:
        figure = figures[key]
        assert figure["ours"]["n"] >= 1 and _finite(figure["ours"]), key
        assert figure["met"] in (True, False, None), key
        if key in WITH_BASELINE:
            assert figure["baseline"] is not None and _finite(figure["baseline"]), key
    for key in ("restore_force", "restore_probe", "restore_flip", "status", "help", "readiness"):
        assert figures[key]["ours"]["n"] == 2, key  # --quick: 2 runs each

    document = out.read_text()
    for section in SECTIONS:
        assert section in document, section
    for fact in ("**CPU**", "**Python**", "**kubectl**", "scripts/bench"):
        assert fact in document, fact
    assert "| time to restore, --force |" in document
    # Quick mode never rewrites the committed results.
    assert (DOC.read_bytes() if DOC.exists() else None) == doc_before
    # The table went to stdout too.
    assert "| figure |" in proc.stdout


def test_compare_shows_each_run_next_to_its_own_baseline() -> None:
    report = _bench("report")

    def figure(median: float, ratio: float | None, unit: str = "ms") -> dict[str, Any]:
        return {"title": "`slots status`", "unit": unit, "ours": {"median": median}, "ratio": ratio}

    before = {"runs": 5, "load_average": {"before": 3.5}, "figures": {"status": figure(937, 21.85)}}
    after = {"status": figure(152, 2.61), "rss_slots_status": figure(32.2, None, "MiB")}
    lines = report.compare_section(before, after)
    assert "| `slots status` | 937 ms (21.85x) | 152 ms (2.61x) |" in lines
    assert any(line.endswith("| — | 32 MiB |") for line in lines)  # no earlier figure: a dash
    assert not any("restore" in line for line in lines)  # in neither run: no row
