"""The one exception tree of gx10slots; each class carries the contract's exit code.

    Explained (BaseException)          what every error of ours carries: exit code, message, hint
    ├── SlotsError (Exception)      1  base: something we know about went wrong
    │   ├── CheckFailed             1  rollout, smoke or post-flip verification failed
    │   ├── UsageError              2  bad command line
    │   │   └── ConfigError         2  bad slots.yaml or kubeconfig (which key, what was expected)
    │   ├── Refused                 3  a safety gate said no; nothing was changed
    │   │   └── LockHeld            3  the Lease gx10slots-lock is held by someone else
    │   ├── ClusterError            4  cluster or network error before anything changed
    │   │   ├── ApiUnreachable      4  no answer from the API server (connection, timeout)
    │   │   ├── ApiError            4  the API server answered with an error status
    │   │   │   ├── NotFound        4  404
    │   │   │   ├── Conflict        4  409 (resourceVersion moved: re-read, re-check, decide)
    │   │   │   ├── Invalid         4  422 (invalid object, or a JSON Patch `test` that failed)
    │   │   │   └── Unauthorized    4  401 / 403
    │   │   └── StateUnknown        4  a write whose outcome no read-back could confirm
    └── Interrupted (BaseException)  130  Ctrl-C, SIGTERM, a loop asked to stop

Third-party exceptions (`kubernetes.client.ApiException`, urllib3 and httpx errors) are translated
into this tree only in the adapters, chained with ``from``; the CLI has one boundary that turns any
``Explained`` error into a message (or a JSON document) and its exit code.

``Interrupted`` is not a ``SlotsError`` on purpose, as ``KeyboardInterrupt`` is not an
``Exception``: SIGTERM raises it wherever the main thread happens to be, often inside a
``try: … except SlotsError`` that treats a failed read or probe as a verdict. A stop caught there
would be taken for a failed check and the process would go on (a controller that ignores
SIGTERM until the kubelet kills it, without giving back its Lease).
"""

from __future__ import annotations

from typing import Any

# Longest excerpt of a foreign body (API server, engine) we ever put into a message: enough to
# diagnose, short enough that a misbehaving peer cannot flood a terminal or a report.
BODY_EXCERPT_CHARS = 300


def excerpt(text: str | bytes | None, limit: int = BODY_EXCERPT_CHARS) -> str:
    """A single-line, bounded excerpt of a foreign body, safe to show."""
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class Explained(BaseException):
    """What every error of ours carries: the contract's exit code, a message, maybe a hint."""

    exit_code = 1
    kind = "error"

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def to_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "type": self.kind,
            "message": self.message,
            "exit_code": self.exit_code,
        }
        if self.hint:
            doc["hint"] = self.hint
        return doc


class SlotsError(Explained, Exception):
    """Base of every error the tool expects and explains."""


class CheckFailed(SlotsError):
    exit_code = 1
    kind = "check-failed"


class UsageError(SlotsError):
    exit_code = 2
    kind = "usage"


class ConfigError(UsageError):
    kind = "config"


class Refused(SlotsError):
    exit_code = 3
    kind = "refused"


class LockHeld(Refused):
    kind = "lock-held"

    def __init__(
        self,
        holder: str,
        since: str | None,
        *,
        lease: str = "gx10slots-lock",
        command: str | None = None,
    ) -> None:
        super().__init__(
            f"lease {lease} is held by {holder}"
            f"{f' running `{command}`' if command else ''}{f' since {since}' if since else ''}",
            hint="wait for that operation to finish. A holder whose process is gone on this host "
            "is taken over at once; `--break-lock` takes over a lease nobody renewed within its "
            "renew interval (about 10 s); an abandoned lease is taken over once it has not been "
            "renewed for its full duration",
        )
        self.holder = holder
        self.since = since
        self.command = command


class ClusterError(SlotsError):
    exit_code = 4
    kind = "cluster"


class ApiUnreachable(ClusterError):
    kind = "api-unreachable"


class ApiError(ClusterError):
    kind = "api-error"
    # Seconds the server asked us to wait (429 Retry-After), for the read retry policy.
    retry_after: float | None = None

    def __init__(
        self, message: str, *, status: int, reason: str = "", hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.reason = reason

    def to_dict(self) -> dict[str, Any]:
        doc = super().to_dict()
        doc["status"] = self.status
        if self.reason:
            doc["reason"] = self.reason
        return doc


class NotFound(ApiError):
    kind = "not-found"


class Conflict(ApiError):
    kind = "conflict"


class Invalid(ApiError):
    kind = "invalid"


class Unauthorized(ApiError):
    kind = "unauthorized"


class StateUnknown(ClusterError):
    kind = "state-unknown"


class Interrupted(Explained):
    exit_code = 130
    kind = "interrupted"

    def __init__(self, message: str, *, hint: str | None = None, reported: bool = False) -> None:
        super().__init__(message, hint=hint)
        # The message already says where production is (read back): callers that wrap it must
        # not add a claim of their own.
        self.reported = reported
