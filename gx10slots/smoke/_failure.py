"""The one way a probe says "the engine misbehaved": raised inside a probe, never outside it."""

from __future__ import annotations


class ProbeFailure(Exception):
    """An engine answered wrongly. The probe runner turns it into a failed :class:`ProbeResult`.

    This is control flow inside the smoke package, not an error for users: it never leaves a
    probe (``errors.py`` holds the tree of errors that do).
    """

    def __init__(
        self, detail: str, *, evidence: str = "", metrics: dict[str, float] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.evidence = evidence
        self.metrics = dict(metrics or {})
