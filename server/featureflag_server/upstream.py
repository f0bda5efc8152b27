"""What the fork proxy sends requests through: the :class:`Upstream` interface.

The proxy hands over the bytes it already has (method, origin, target, header pairs)
and gets back a status, header pairs and a body to iterate: no URL to parse, no request
or response model to build. :class:`featureflag_server.upstream_pool.KeepAlivePool` is the real
one; :class:`HttpxUpstream` puts any ``httpx.AsyncBaseTransport`` behind the same
interface (the tests inject one that plays the upstream).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import httpx

__all__ = ["Headers", "HttpxUpstream", "Key", "Timeouts", "Upstream", "UpstreamResponse"]

Key = tuple[str, str, int]
"""An origin: scheme, host (ASCII, IDNA-encoded), port."""
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds (None: no limit) to connect, between two pieces of the response, and for
    the upstream to take a piece of the request body."""

    connect: float | None = 30.0
    read: float | None = 30.0
    write: float | None = 30.0


class UpstreamResponse(Protocol):
    """A response's head, and its body to iterate once; ``aclose()`` it in every case."""

    status: int
    headers: Headers

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Upstream(Protocol):
    """Where the proxy sends requests: :class:`KeepAlivePool` or :class:`HttpxUpstream`.

    Errors are httpx's (``httpx.ConnectError``, ``httpx.ReadTimeout``...).
    """

    async def send(
        self,
        method: str,
        origin: Key,
        target: bytes,
        headers: Headers,
        body: AsyncIterable[bytes] | None,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """Send a request to *origin* (scheme, host, port); *headers* include ``Host``."""
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


class HttpxUpstream:
    """Any ``httpx.AsyncBaseTransport`` as the proxy's :class:`Upstream`."""

    def __init__(self, transport: httpx.AsyncBaseTransport) -> None:
        self.transport = transport

    async def send(
        self,
        method: str,
        origin: Key,
        target: bytes,
        headers: Headers,
        body: AsyncIterable[bytes] | None,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """Build an ``httpx.Request``, hand it to the transport, wrap what comes back."""
        scheme, host, port = origin
        url = httpx.URL(scheme=scheme, host=host, port=port, raw_path=target)
        timeout = {"connect": timeouts.connect, "read": timeouts.read}
        timeout |= {"write": timeouts.write, "pool": timeouts.connect}
        request = httpx.Request(
            method,
            url,
            headers=headers,
            content=_iterate(body) if body is not None else None,
            extensions={"timeout": timeout},
        )
        response = await self.transport.handle_async_request(request)
        return _HttpxResponse(response)

    async def aclose(self) -> None:
        """Close the transport."""
        await self.transport.aclose()


async def _iterate(body: AsyncIterable[bytes]) -> AsyncIterator[bytes]:
    async for chunk in body:
        yield chunk


class _HttpxResponse:
    def __init__(self, response: httpx.Response) -> None:
        self.status = response.status_code
        self.headers: Headers = list(response.headers.raw)
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        # The raw stream, not aiter_raw(): a transport may hand back an already-read body.
        stream = self._response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        async for chunk in stream:
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()
