"""Upper bounds of every count and time a user or a file can set (documented in docs/config.md).

A smoke test is not a load test: `smoke.burst: 2000` once ran 85 s past its 30 s timeout, the event
loop busy with requests queued behind the connection pool (100 connections), and `burst: 20000`
needed kill -9. Every limit is far above a sane setting and far below a harmful one.
"""

from __future__ import annotations

MAX_BURST = 64  # concurrent requests of the burst probe
MAX_TOKENS = 8192  # completion cap of a probe
MAX_MODEL_LEN = 1 << 24  # the identity probe's minimum context length (16M tokens)
MAX_DURATION_S = 24 * 3600.0  # any one timeout, deadline, window or age in slots.yaml
MAX_GUARD_FAILURES = 100  # failed guard checks in a row before it flips back
