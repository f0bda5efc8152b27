"""What the fork proxy sends requests through: the :class:`Upstream` interface.

The proxy hands over the bytes it already has (method, origin, target, header pairs)
and gets back a status, header pairs and a body to iterate; a WebSocket handshake gets
back a socket to relay frames through. The real one is
:class:`featureflag_server.upstream_aiohttp.AiohttpUpstream` (aiohttp's client: a capped
connection pool, llhttp parsing, a WebSocket client); :class:`HttpxUpstream` puts any
``httpx.AsyncBaseTransport`` behind the same interface, so unit tests inject one that
plays the upstream. Errors are httpx's, whatever the client underneath.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Protocol

import httpx

__all__ = [
    "Headers",
    "HeadersTooLarge",
    "HttpxUpstream",
    "Key",
    "Timeouts",
    "Upstream",
    "UpstreamRefused",
    "UpstreamResponse",
    "UpstreamWebSocket",
    "WebSocketRefused",
]

Key = tuple[str, str, int]
"""An origin: scheme, host (ASCII, IDNA-encoded), port."""
Headers = list[tuple[bytes, bytes]]


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds (None: no limit) to connect (including the wait for a free connection
    when all are busy) and between two pieces of the response."""

    connect: float | None = 30.0
    read: float | None = 30.0


class HeadersTooLarge(httpx.RemoteProtocolError):
    """The upstream's response head is past the client's limits (too long a field or
    too many of them); nothing of it reaches the browser."""


class UpstreamRefused(httpx.ConnectError):
    """The upstream's address, once resolved, is one the service's upstream policy
    refuses (:mod:`featureflag_server.upstream_policy`): no connection is made."""


class WebSocketRefused(httpx.TransportError):
    """The upstream answered a WebSocket handshake with something else than 101."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class UpstreamResponse(Protocol):
    """A response's head, and its body to iterate once; ``aclose()`` it in every case."""

    status: int
    headers: Headers

    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class UpstreamWebSocket(Protocol):
    """An accepted WebSocket to the upstream: iterate it for its messages (``str`` for
    text, ``bytes`` for binary) until it closes, then read :attr:`close_code`."""

    subprotocol: str | None

    @property
    def close_code(self) -> int | None:
        """How the upstream closed the socket (None while it is open)."""
        ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...

    async def send(self, data: str | bytes) -> None: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Upstream(Protocol):
    """Where the proxy sends requests; errors are httpx's (``httpx.ConnectError``,
    ``httpx.ReadTimeout``, :class:`HeadersTooLarge`...)."""

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

    async def websocket(
        self,
        origin: Key,
        target: bytes,
        headers: Headers,
        subprotocols: Sequence[str],
        timeouts: Timeouts,
    ) -> UpstreamWebSocket:
        """Open a WebSocket to *origin* (``http``/``https``: the socket is ws/wss).

        *headers* hold no ``Sec-WebSocket-*`` field: the client writes its own. Raises
        :class:`WebSocketRefused` when the upstream does not switch protocols.
        """
        ...

    async def aclose(self) -> None:
        """Close every connection."""
        ...


class HttpxUpstream:
    """Any ``httpx.AsyncBaseTransport`` as the proxy's :class:`Upstream` (HTTP only:
    httpx has no WebSocket client, so :meth:`websocket` is refused)."""

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
        timeout |= {"write": timeouts.read, "pool": timeouts.connect}
        request = httpx.Request(
            method,
            url,
            headers=headers,
            content=_iterate(body) if body is not None else None,
            extensions={"timeout": timeout},
        )
        response = await self.transport.handle_async_request(request)
        return _HttpxResponse(response)

    async def websocket(
        self,
        origin: Key,
        target: bytes,
        headers: Headers,
        subprotocols: Sequence[str],
        timeouts: Timeouts,
    ) -> UpstreamWebSocket:
        """Refused: an httpx transport carries no WebSockets."""
        raise WebSocketRefused("an httpx transport cannot open WebSockets")

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
        if not isinstance(stream, httpx.AsyncByteStream):
            raise TypeError("the upstream transport returned a synchronous body stream")
        async for chunk in stream:
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()
