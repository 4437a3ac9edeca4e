"""Let the async suite use a synchronous httpx transport (e.g. an API-server proxy adapter).

The suite is async so that one deadline can cancel a hung request; a synchronous transport is run
in worker threads instead. Cancellation then abandons the thread, which ends when the transport's
own timeout fires (the probes set it just past their deadline).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx


class ThreadedTransport(httpx.AsyncBaseTransport):
    def __init__(self, inner: httpx.BaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        # The suite only sends in-memory bodies (json=...), which are readable synchronously.
        response = await asyncio.to_thread(self._inner.handle_request, request)
        stream = response.stream
        if not isinstance(stream, httpx.SyncByteStream):
            raise TypeError("the synchronous transport returned a non-synchronous stream")
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_ThreadedStream(stream),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await asyncio.to_thread(self._inner.close)


class _ThreadedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.SyncByteStream) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        chunks = iter(self._inner)
        while True:
            chunk = await asyncio.to_thread(next, chunks, None)
            if chunk is None:
                return
            yield chunk

    async def aclose(self) -> None:
        await asyncio.to_thread(self._inner.close)


def as_async_transport(
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None,
) -> httpx.AsyncBaseTransport | None:
    """``transport`` usable by an ``AsyncClient`` (``MockTransport`` already is)."""
    if transport is None or isinstance(transport, httpx.AsyncBaseTransport):
        return transport
    return ThreadedTransport(transport)
