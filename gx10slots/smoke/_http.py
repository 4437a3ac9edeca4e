"""Defensive HTTP reading: every byte a server sends counts against a budget.

A hostile or broken engine can send a 10 MB body, an endless event stream, bytes that are not
UTF-8, JSON nested a million levels deep, or a gzip bomb. Each of these ends here in a
:class:`ProbeFailure` naming what was wrong, with memory bounded by the budget; the probe's own
deadline (``asyncio.timeout``) bounds the time.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from gx10slots.smoke._failure import ProbeFailure
from gx10slots.smoke.redact import Redactor

# One SSE line (one frame's data) may not exceed this; a healthy frame is well under 4 KB.
SSE_LINE_CAP = 256 * 1024
EVIDENCE = 2000


def human_bytes(n: int) -> str:
    if n >= 1024 * 1024 and n % (1024 * 1024) == 0:
        return f"{n // (1024 * 1024)} MB"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024} KB"
    return f"{n} bytes"


class Phase:
    """What a probe is waiting for, so a timeout can say so ("waiting for the first token"),
    and what it has measured so far, so a timeout still reports it."""

    def __init__(self, text: str = "waiting for the response") -> None:
        self.text = text
        self.metrics: dict[str, float] = {}

    def set(self, text: str) -> None:
        self.text = text


@asynccontextmanager
async def open_response(
    client: httpx.AsyncClient,
    method: str,
    path: str,
    *,
    timeout: float,
    json_body: Any = None,
) -> AsyncIterator[httpx.Response]:
    """Send a request and hand back the response with its body still unread.

    We ask for an uncompressed body and refuse a compressed one: decompression happens before any
    budget could count the bytes, so a small gzip bomb could exhaust memory.
    """
    request = client.build_request(
        method,
        path,
        json=json_body,
        headers={"Accept-Encoding": "identity"},
        # httpx's own timeouts only back up the probe's asyncio deadline (which is what ends a
        # probe); they matter when a synchronous transport runs in a worker thread.
        timeout=httpx.Timeout(timeout + 1.0),
    )
    response = await client.send(request, stream=True)
    try:
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise ProbeFailure(
                f"{path} answered with Content-Encoding {encoding!r} although we asked for an "
                "uncompressed body"
            )
        yield response
    finally:
        await response.aclose()


async def _chunks(response: httpx.Response) -> AsyncIterator[bytes]:
    """The body as it arrives. A response built in memory (``httpx.MockTransport`` with static
    content) was read at construction and cannot be streamed again: hand over what it holds."""
    if response.is_stream_consumed:
        yield response.content
        return
    async for chunk in response.aiter_raw():
        yield chunk


async def read_capped(response: httpx.Response, cap: int, redact: Redactor) -> bytes:
    """The whole body, or a failure once it exceeds ``cap`` bytes."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap:
        raise ProbeFailure(
            f"{response.request.url.path} declared a {declared}-byte body, over the "
            f"{human_bytes(cap)} limit"
        )
    body = bytearray()
    async for chunk in _chunks(response):
        body += chunk
        if len(body) > cap:
            raise ProbeFailure(
                f"{response.request.url.path} sent more than {human_bytes(cap)}; stopped reading",
                evidence=redact.clip(bytes(body[:EVIDENCE]), EVIDENCE),
            )
    return bytes(body)


@dataclass(frozen=True)
class BoundedAnswer:
    """A small answer read synchronously within its bounds (:func:`request_bounded`)."""

    status: int
    body: bytes  # at most the cap
    complete: bool  # False: the body was longer and was cut at the cap


def request_bounded(
    client: httpx.Client,
    method: str,
    path: str,
    *,
    timeout_s: float,
    cap: int,
    json_body: Any = None,
) -> BoundedAnswer:
    """One synchronous request outside the async suite (status, a flip, the guard), bounded
    whatever the server does: httpx's timeout is per read, so a server trickling a byte at a time
    or sending without end would hold the caller forever and fill memory. The body is read in
    chunks against ``timeout_s`` overall (a last read may still wait up to ``timeout_s``: at
    most twice that in all) and at most ``cap`` bytes of it; uncompressed, so the cap counts the
    bytes as they arrive. httpx.HTTPError when it cannot be made (httpx.ReadTimeout past the
    deadline)."""
    deadline = time.monotonic() + timeout_s
    with client.stream(
        method,
        path,
        json=json_body,
        headers={"Accept-Encoding": "identity"},
        timeout=httpx.Timeout(timeout_s),
    ) as response:
        body = bytearray()
        for chunk in response.iter_raw():
            body += chunk
            if len(body) > cap:
                return BoundedAnswer(response.status_code, bytes(body[:cap]), False)
            if time.monotonic() > deadline:
                raise httpx.ReadTimeout(f"{path}: no whole answer within {timeout_s:g} s")
        return BoundedAnswer(response.status_code, bytes(body), True)


def decode_text(body: bytes, what: str, redact: Redactor) -> str:
    """Strict UTF-8 (what JSON and SSE require), redacted."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProbeFailure(
            f"{what} is not valid UTF-8 (byte 0x{body[exc.start]:02x} at offset {exc.start})",
            evidence=redact.clip(body[:EVIDENCE], EVIDENCE),
        ) from None
    return redact(text)


def decode_json(body: bytes, what: str, redact: Redactor) -> Any:
    return parse_json_text(decode_text(body, what, redact), what, redact)


def parse_json_text(text: str, what: str, redact: Redactor) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProbeFailure(
            f"{what} is not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})",
            evidence=redact.clip(text, EVIDENCE),
        ) from None
    except RecursionError:
        raise ProbeFailure(
            f"{what} is JSON nested too deeply to read", evidence=redact.clip(text, 200)
        ) from None


async def read_json(response: httpx.Response, cap: int, what: str, redact: Redactor) -> Any:
    return decode_json(await read_capped(response, cap, redact), what, redact)


async def read_prefix(response: httpx.Response, limit: int) -> bytes:
    """At most ``limit`` bytes of the body, then stop: enough to quote an error, never more."""
    body = bytearray()
    async for chunk in _chunks(response):
        body += chunk[: limit - len(body)]
        if len(body) >= limit:
            break
    return bytes(body)


async def iter_sse_data(
    response: httpx.Response, cap: int, redact: Redactor, *, line_cap: int = SSE_LINE_CAP
) -> AsyncIterator[str]:
    """The ``data`` of each server-sent event, per the WHATWG event-stream format.

    Comment lines (``: ping``, which llama-cpp-python sends) and ``event:``/``id:``/``retry:``
    fields are skipped; an event ends at a blank line. A last event without its blank line is
    still delivered at the end of the stream (some servers close right after ``data: [DONE]``).
    """
    total = 0
    pending = bytearray()
    data_lines: list[str] = []
    line_no = 0

    def feed(raw: bytes) -> str | None:
        nonlocal line_no
        line_no += 1
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        line = decode_text(raw, f"stream line {line_no}", redact)
        if line == "":
            if not data_lines:
                return None
            event = "\n".join(data_lines)
            data_lines.clear()
            return event
        if line.startswith(":"):
            return None
        field, _, value = line.partition(":")
        if field == "data":
            data_lines.append(value[1:] if value.startswith(" ") else value)
        return None

    async for chunk in _chunks(response):
        total += len(chunk)
        if total > cap:
            raise ProbeFailure(
                f"the stream exceeded {human_bytes(cap)} without ending; stopped reading",
                evidence=redact.clip(bytes(pending[-EVIDENCE:]), EVIDENCE),
            )
        pending += chunk
        while (newline := pending.find(b"\n")) >= 0:
            raw = bytes(pending[:newline])
            del pending[: newline + 1]
            event = feed(raw)
            if event is not None:
                yield event
        if len(pending) > line_cap:
            raise ProbeFailure(
                f"a stream line exceeds {human_bytes(line_cap)} without a newline",
                evidence=redact.clip(bytes(pending[:200]), 200),
            )
    if pending:
        event = feed(bytes(pending))
        if event is not None:
            yield event
    if data_lines:
        yield "\n".join(data_lines)


def describe_transport_error(exc: httpx.TransportError) -> str:
    """One line for a connection-level failure (never includes request headers)."""
    url = exc.request.url if _has_request(exc) else "the server"
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout):
        return f"cannot connect to {url}: {reason}"
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer from {url} in time: {reason}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{url} broke the HTTP exchange: {reason}"
    return f"connection to {url} failed: {reason}"


def _has_request(exc: httpx.TransportError) -> bool:
    try:
        exc.request  # noqa: B018  (the property raises when no request is attached)
    except RuntimeError:
        return False
    return True
