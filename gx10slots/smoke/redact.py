"""Keep secrets (the engine API key) out of everything a probe records.

The suite's own secrets are matched literally here; on top, every text goes through the
process-wide :func:`gx10slots.scrub.redact` (every credential the process knows, and anything
shaped like one), so the reports follow the same rules as every other output.

A misbehaving server may echo the Authorization header back in a body or an error message. Text is
redacted where it enters the suite (before any excerpt is cut, so a truncation cannot leave half a
key behind) and once more over the finished report.
"""

from __future__ import annotations

from collections.abc import Iterable

from gx10slots import scrub
from gx10slots.errors import excerpt

REDACTED = "[REDACTED]"


class Redactor:
    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        # Longest first, so a secret that contains another is replaced whole.
        self._secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return scrub.redact(text)

    def clip(self, text: str | bytes | None, limit: int) -> str:
        """A redacted, single-line excerpt of foreign text, at most ``limit`` characters."""
        if text is None:
            return ""
        if isinstance(text, bytes):
            text = text.decode("utf-8", errors="replace")
        return excerpt(self(text), limit)

    def quote(self, text: str | None, limit: int = 80) -> str:
        """A short quotation for a detail line: ``'carecarecare'``."""
        if text is None:
            return "nothing"
        return repr(self.clip(text, limit))
