"""Soak: flip / flip-back cycles with traffic through the production endpoint all along.

Zero failed production requests; no leaked processes, file descriptors or threads, in the tool
(it runs in this process, so anything it leaks per command accumulates here, as it would in a
long-running `slots guard`) or in the sandbox (its API server, proxies and model servers); flat
memory; every flip and flip-back recorded once. CI runs 25 cycles; the full run (marker
``reliability_full``) 200, with ``GX10_SOAK_RESULTS=FILE`` writing the figures as JSON for
docs/reliability.md.
"""

from __future__ import annotations

import gc
import json
import os
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.helpers.sandbox import Sandbox
from tests.helpers.traffic import ProductionTraffic

QUICK_CYCLES = 25
FULL_CYCLES = 200


def _fds(pid: int | str = "self") -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def _rss_mib(pid: int | str = "self") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(entry))
    return found


@dataclass
class Sample:
    cycle: int
    tool_fds: int
    tool_threads: int
    tool_rss_mib: float
    tool_children: int
    sandbox_fds: int
    sandbox_rss_mib: float
    sandbox_children: int


@dataclass
class SoakReport:
    cycles: int
    seconds: float = 0.0
    requests: dict[str, int] = field(default_factory=dict)
    served_by: dict[str, int] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)
    history_entries: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _sample(cycle: int, sandbox_pid: int) -> Sample:
    gc.collect()
    return Sample(
        cycle=cycle,
        tool_fds=_fds(),
        tool_threads=threading.active_count(),
        tool_rss_mib=round(_rss_mib(), 1),
        tool_children=len([c for c in _children(os.getpid()) if c != sandbox_pid]),
        sandbox_fds=_fds(sandbox_pid),
        sandbox_rss_mib=round(_rss_mib(sandbox_pid), 1),
        sandbox_children=len(_children(sandbox_pid)),
    )


def soak(box: Sandbox, cycles: int) -> SoakReport:
    report = SoakReport(cycles)
    sandbox_pid = int(box.info["pid"])
    box.set_smoke(max_age="6h")
    seen: set[str] = {e["id"] for e in box.history()}
    recorded = 0
    # Measure from the first checkpoint: imports, connection pools and caches fill up first.
    warm = max(1, min(10, cycles // 10))
    checkpoints = sorted({warm, *range(warm, cycles + 1, max(1, cycles // 10)), cycles})
    started = time.monotonic()
    with ProductionTraffic(box.info["prod_endpoint"]) as traffic:
        for cycle in range(1, cycles + 1):
            for command in ("flip", "flip-back"):
                result = box.cli("-q", command, "--reason", f"soak {cycle}")
                assert result.code == 0, (cycle, command, result.err)
            # The history keeps its last 200 entries: count new ones before they roll off.
            if cycle % 40 == 0 or cycle == cycles:
                entries = box.history()
                ids = [e["id"] for e in entries]
                assert len(ids) == len(set(ids)), "an entry id appears twice"
                new = [e for e in entries if e["id"] not in seen]
                assert all(e["result"] == "ok" for e in new), new
                recorded += len(new)
                seen.update(ids)
            if cycle in checkpoints:
                report.samples.append(_sample(cycle, sandbox_pid))
    report.seconds = round(time.monotonic() - started, 1)
    report.requests = dict(traffic.outcomes)
    report.served_by = dict(traffic.served_by)
    report.history_entries = recorded
    return report


def check(report: SoakReport) -> None:
    cycles = report.cycles
    assert report.history_entries == 2 * cycles, "flip/flip-back entries lost or doubled"
    failures = {k: v for k, v in report.requests.items() if k != "ok"}
    assert failures == {}, failures
    assert report.requests.get("ok", 0) > cycles
    assert {"sandbox-ok", "sandbox-v2"} <= set(report.served_by)
    first, last = report.samples[0], report.samples[-1]
    # Nothing per command may accumulate: allow a little jitter (a pooled connection, a thread
    # finishing), never growth with the number of cycles.
    assert last.tool_fds <= first.tool_fds + 4, report.samples
    assert last.tool_threads <= first.tool_threads + 2, report.samples
    assert last.tool_children <= first.tool_children, report.samples  # none left behind
    assert last.sandbox_children == 2, report.samples  # one model server per running slot
    assert last.sandbox_fds <= first.sandbox_fds + 8, report.samples
    # Flat memory: what growth there is must not scale with the cycles.
    budget = 16.0 + 0.05 * cycles
    assert last.tool_rss_mib - first.tool_rss_mib <= budget, report.samples
    assert last.sandbox_rss_mib - first.sandbox_rss_mib <= budget, report.samples


def _publish(report: SoakReport) -> None:
    print(json.dumps(report.to_dict()))
    path = os.environ.get("GX10_SOAK_RESULTS")
    if path:
        Path(path).write_text(json.dumps(report.to_dict(), indent=1) + "\n")


@pytest.mark.e2e
def test_soak_quick(two_warm_slots: Sandbox) -> None:
    report = soak(two_warm_slots, QUICK_CYCLES)
    _publish(report)
    check(report)


@pytest.mark.e2e
@pytest.mark.reliability_full
def test_soak_full(two_warm_slots: Sandbox) -> None:
    report = soak(two_warm_slots, FULL_CYCLES)
    _publish(report)
    check(report)
