"""`slots guard`: watch the active slot after a flip, and flip back on its own if it fails.

Each check, every interval: is the flag still on the guarded slot (if not, someone else flipped:
stand down, exit 0)? Then one streamed known-answer generation through the production endpoint,
with its own timeout, while the engine's ``/metrics`` are sampled for the progress rule
(``gx10slots.smoke.live``). The decisions are pure (``rules``); ``loop`` checks and counts;
``ports`` reach the cluster and production; ``run`` is the command and its report.

The guard holds no lock while it watches, so an operator's `slots flip-back` is never blocked. It
holds only the Lease ``gx10slots-guard``, an announcement that it watches: while that is held,
production's fallback stays protected from `deploy` and `park` (gx10slots.fallback).
When ``--failures`` checks in a row failed it takes the lease and reuses the flip's own steps:
``switch`` (compare-and-swap pinned to the guarded slot, with the readiness gate of the previous
slot), ``verify`` through production, ``record_flip`` (history entry ``auto-revert``, annotations
and a Warning Event with the evidence). Ctrl-C while watching changes nothing.

The loop talks to the world only through :class:`Ports` (clock, wait, flag, observe, revert), so
its tests run on fakes with an injected clock and no sleeping.
"""
