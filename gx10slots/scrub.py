"""Everything foreign leaves the process scrubbed: credentials redacted, terminal controls escaped.

Two functions, one job each, used wherever text is shown or stored:

- :func:`redact` replaces every credential this process knows (each is registered with
  :func:`remember` where it is read: the engine API key, a kubeconfig's bearer token, token file or
  exec plugin token, a basic-auth password) and everything shaped like one (an ``Authorization``
  value, ``Bearer …``, the userinfo of a URL, ``token=…``) with ``[REDACTED]``, whatever the
  message came from: an engine's error, an API server's Status (a proxy may echo our headers), a
  library's exception text.
- :func:`printable` shows control and format characters escaped (``\\x1b``, ``\\u202e``): an
  escape sequence from a pod log, an engine or an API server must never reach a terminal, where
  it could set the title, clear the screen or reorder what the operator reads.

:func:`safe` is both, for a terminal; the error boundary (``cli.main``), the progress and log
lines (``console``), the history ConfigMap and Events (``ops.audit``) and the smoke reports
(``smoke.redact``) all go through these.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterable
from typing import Any

REDACTED = "[REDACTED]"

# Shorter values are not worth matching literally (a 3-character "secret" would blank that
# substring everywhere); they are still caught by the shapes below.
_MIN_LITERAL = 6
_known: set[str] = set()

# Credential shapes, whoever produced the text.
_SHAPES: tuple[tuple[re.Pattern[str], str], ...] = (
    # An Authorization value: `Bearer abc`, `Basic dXNlcjpw`, also inside a repr (b'Bearer x\n').
    # Not a word of prose ("bearer token"): at least 8 characters, not all lowercase letters.
    (
        re.compile(
            r"\b([Bb]earer|[Bb]asic|BEARER|BASIC)(\s+)"
            r"(?![a-z]+(?![A-Za-z0-9._~+/=:-]))[A-Za-z0-9._~+/=:-]{8,}"
        ),
        rf"\1\2{REDACTED}",
    ),
    # `Authorization: xyz` / `"authorization": "xyz"` without a scheme word.
    (
        re.compile(
            r"""(?i)(authorization["']?\s*[:=]\s*["']?)(?!bearer\b|basic\b|\[REDACTED)"""
            r"""[^\s"',;}]+"""
        ),
        rf"\1{REDACTED}",
    ),
    # URL userinfo: https://user:secret@host -> https://[REDACTED]@host
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^/\s@\"'<>]+@"), rf"\1{REDACTED}@"),
    # Query strings and key=value pairs: ?api_key=…, token=…
    (
        re.compile(
            r"(?i)\b(api[_-]?key|access[_-]?token|id[_-]?token|refresh[_-]?token|token|"
            r"password|passwd|secret)=[^\s&\"',;]+"
        ),
        rf"\1={REDACTED}",
    ),
    # JSON/YAML-ish `"token": "…"` (a kubeconfig or an ExecCredential quoted back).
    (
        re.compile(
            r"""(?i)(["']?(?:api[_-]?key|access[_-]?token|id-token|refresh-token|token|password|"""
            r"""client-key-data)["']?\s*:\s*["'])[^"']+"""
        ),
        rf"\1{REDACTED}",
    ),
)


def remember(secret: str | bytes | None) -> None:
    """Register a credential so that :func:`redact` removes it from any text, in every form it
    may be quoted in: as read, with surrounding whitespace stripped, and base64-encoded."""
    if secret is None:
        return
    if isinstance(secret, bytes):
        secret = secret.decode("utf-8", errors="replace")
    for value in (secret, secret.strip()):
        if len(value) >= _MIN_LITERAL:
            _known.add(value)
            _known.add(repr(value)[1:-1])  # as a repr shows it (\n, \x1b, \u…)
            _known.add(base64.b64encode(value.encode("utf-8", "replace")).decode())


def remember_all(secrets: Iterable[str | bytes | None]) -> None:
    for secret in secrets:
        remember(secret)


def forget_all() -> None:
    """For tests: a fresh process state."""
    _known.clear()


def redact(text: str) -> str:
    """``text`` with every known credential and every credential-shaped value replaced."""
    if not text:
        return text
    # Longest first, so a secret that contains another is replaced whole.
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    for pattern, replacement in _SHAPES:
        text = pattern.sub(replacement, text)
    return text


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with control and format characters (C0, C1, DEL, bidi overrides, zero-width
    joiners, line separators) shown escaped, never sent raw. ``keep_newlines`` keeps ``\\n`` for
    text we laid out in lines ourselves."""
    if text.isprintable():
        return text
    return "".join(
        c if c.isprintable() or (keep_newlines and c == "\n") else repr(c)[1:-1] for c in text
    )


def safe(text: Any, *, keep_newlines: bool = False) -> str:
    """Redacted and printable: what may be written to a terminal."""
    return printable(redact(str(text)), keep_newlines=keep_newlines)


def redact_doc(doc: Any) -> Any:
    """Every string of a JSON-like document redacted (keys too), structure unchanged."""
    if isinstance(doc, str):
        return redact(doc)
    if isinstance(doc, dict):
        return {redact(k) if isinstance(k, str) else k: redact_doc(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [redact_doc(v) for v in doc]
    return doc


def finite_numbers(doc: Any) -> Any:
    """A JSON-like document with every number that is not finite (NaN, ±Infinity: an engine's
    gauge, a Prometheus ratio of 0/0) as None: Python's json writes them as ``NaN`` and
    ``Infinity``, which no JSON reader (jq, a webhook's) accepts."""
    if isinstance(doc, float):
        return doc if math.isfinite(doc) else None
    if isinstance(doc, dict):
        return {k: finite_numbers(v) for k, v in doc.items()}
    if isinstance(doc, list | tuple):
        return [finite_numbers(v) for v in doc]
    return doc


def checked_key(value: str | bytes, where: str) -> str:
    """A credential as it may go into an HTTP header, or a :class:`ConfigError` that names where
    it came from and never quotes it.

    Surrounding whitespace is stripped: a key read from a file or a Secret usually ends in a
    newline, and client-go does the same for bearer token files (``strings.TrimSpace`` in
    ``fileTokenSource.Token``, staging/src/k8s.io/client-go/transport/token_source.go). Anything
    else that is not visible ASCII (a control character inside, a non-ASCII letter) cannot be
    sent in a header (RFC 9110 field values; h11 and urllib3 raise with the value in the
    message), so it is refused up front.
    """
    from gx10slots.errors import ConfigError

    remember(value)
    if isinstance(value, bytes):
        try:
            value = value.decode("ascii")
        except UnicodeDecodeError:
            raise ConfigError(
                f"{where}: the credential is not ASCII text (its value is not shown)",
                hint="set it to the key itself, printable ASCII without spaces",
            ) from None
    key = value.strip()
    bad = [c for c in key if not ("!" <= c <= "~")]
    if bad or not key:
        what = "is empty" if not key else "holds a space, a control or a non-ASCII character"
        raise ConfigError(
            f"{where}: the credential {what} (its value is not shown)",
            hint="set it to the key itself, printable ASCII without spaces",
        )
    remember(key)
    return key
