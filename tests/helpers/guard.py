"""The guard's settings as its rule and loop tests use them."""

from __future__ import annotations

from gx10slots.guard.rules import GuardSettings

# One set for the rule and the loop tests: a 60 s window checked every 30 s.
SETTINGS = GuardSettings(
    window_s=60.0,
    interval_s=30.0,
    failures=3,
    probe_timeout_s=10.0,
    error_share=0.2,
    ttft_ratio=3.0,
    ttft_floor_ms=1000.0,
)
