"""The fork proxy's upstream connections: HTTP/1.1 keep-alive on asyncio, parsed by httptools.

One asyncio ``Protocol`` per connection (:mod:`featureflag_server.upstream_connection`):
the request head is written as bytes, the response is parsed by ``httptools`` (llhttp,
the parser uvicorn's fast path uses) as it arrives, and idle connections wait in a stack
per origin. The proxy calls :meth:`KeepAlivePool.send` (the
:class:`~featureflag_server.upstream.Upstream` interface) with bytes it already has; the
pool is also an ``httpx.AsyncBaseTransport``, so an ``httpx.AsyncClient`` can use it.
httpx's own transport (httpcore, h11) plus its ``Request``/``Response`` models cost
about 1.2 ms of CPU per proxied request on our benchmark machine
(``docs/benchmarks.md``).
"""

from __future__ import annotations

import asyncio
import re
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator

import httpx

from .upstream import Headers, Key, Timeouts, UpstreamResponse
from .upstream_connection import Connection, StaleConnection

__all__ = ["KeepAlivePool"]

_TICK = 0.05  # seconds between two checks of the read deadlines


class KeepAlivePool(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive connections per origin, most recently used first.

    At most *max_idle* idle connections are kept per origin; one idle for longer than
    *keepalive_expiry* seconds is closed when next looked at (keep it below the
    upstream's own keep-alive timeout: uvicorn's is 5 s).
    """

    def __init__(
        self,
        *,
        max_idle: int = 64,
        keepalive_expiry: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.max_idle = max_idle
        self.keepalive_expiry = keepalive_expiry
        self._ssl_context = ssl_context
        self._idle: dict[Key, list[Connection]] = {}
        self._busy: set[Connection] = set()
        self._closed = False
        # Read timeouts: connections waiting with a deadline, checked every _TICK seconds
        # by one timer (a timer per wait cost ~3% of a proxied request's CPU).
        self._deadlines: set[Connection] = set()
        self._ticker: asyncio.TimerHandle | None = None

    def idle_count(self) -> int:
        """How many idle connections the pool holds (for tests and curiosity)."""
        return sum(len(stack) for stack in self._idle.values())

    @property
    def ssl_context(self) -> ssl.SSLContext:
        """The TLS settings for https upstreams (httpx's defaults: certifi, verified)."""
        if self._ssl_context is None:
            self._ssl_context = httpx.create_ssl_context()
        return self._ssl_context

    async def send(
        self,
        method: str,
        origin: Key,
        target: bytes,
        headers: Headers,
        body: AsyncIterable[bytes] | None,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """Send a request on an idle connection to *origin*, or a new one.

        A *body* goes with its ``Content-Length`` from *headers*, or chunked when there
        is none. Raises httpx's errors; the response must be ``aclose()``d.
        """
        if self._closed:
            raise RuntimeError("the pool is closed")
        if origin[0] not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {origin[0]!r}")
        chunked = body is not None and not any(k.lower() == b"content-length" for k, _ in headers)
        if chunked:
            headers = [*headers, (b"transfer-encoding", b"chunked")]
        head = _request_head(method, target, headers)
        connection = self._checkout(origin)
        if connection is not None and body is None:
            # A reused connection the upstream closed just now fails before any response
            # byte; a request without a body is safe to send again, on a new connection.
            try:
                return await self._exchange(connection, method, head, None, False, timeouts)
            except StaleConnection:
                connection = None
        if connection is None:
            connection = await self._connect(origin, timeouts.connect)
        try:
            return await self._exchange(connection, method, head, body, chunked, timeouts)
        except StaleConnection as exc:
            raise httpx.RemoteProtocolError(str(exc)) from None

    async def _exchange(
        self,
        connection: Connection,
        method: str,
        head: bytes,
        body: AsyncIterable[bytes] | None,
        chunked: bool,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        self._busy.add(connection)
        try:
            return await connection.exchange(method, head, body, chunked, timeouts)
        except BaseException:
            self._busy.discard(connection)
            connection.close()
            raise

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """The httpx transport interface, for an ``httpx.AsyncClient`` on this pool."""
        url = request.url
        scheme = url.scheme
        origin: Key = (scheme, url.host, url.port or (443 if scheme == "https" else 80))
        timeout = request.extensions.get("timeout", {})
        timeouts = Timeouts(timeout.get("connect"), timeout.get("read"), timeout.get("write"))
        response = await self.send(
            request.method,
            origin,
            url.raw_path,
            # send() decides the framing: Content-Length if given, else chunked.
            [(k, v) for k, v in request.headers.raw if k.lower() != b"transfer-encoding"],
            _body_of(request),
            timeouts,
        )
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_HttpxBody(response),
            extensions={"http_version": b"HTTP/1.1"},
        )

    def _checkout(self, key: Key) -> Connection | None:
        stack = self._idle.get(key)
        now = time.monotonic()
        while stack:
            connection = stack.pop()
            if connection.reusable and now - connection.idle_since < self.keepalive_expiry:
                return connection
            connection.close()
        return None

    async def _connect(self, key: Key, timeout: float | None) -> Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = self.ssl_context if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: Connection(self, key),
                    host,
                    port,
                    ssl=tls,
                    server_hostname=host if tls else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out") from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from None
        return connection

    def _release(self, connection: Connection) -> None:
        self._busy.discard(connection)
        if self._closed or not connection.reusable:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        stack = self._idle.setdefault(connection.key, [])
        stack.append(connection)
        if len(stack) > self.max_idle:
            stack.pop(0).close()  # the longest idle

    def _watch_deadline(self, connection: Connection) -> None:
        self._deadlines.add(connection)
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().call_later(_TICK, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        now = time.monotonic()
        for connection in list(self._deadlines):
            if not connection.check_deadline(now):
                self._deadlines.discard(connection)
        if self._deadlines:
            self._ticker = asyncio.get_running_loop().call_later(_TICK, self._tick)

    async def aclose(self) -> None:
        """Close every connection, idle or busy."""
        self._closed = True
        if self._ticker is not None:
            self._ticker.cancel()
            self._ticker = None
        self._deadlines.clear()
        connections = [c for stack in self._idle.values() for c in stack] + list(self._busy)
        self._idle.clear()
        self._busy.clear()
        for connection in connections:
            connection.close()


# RFC 9110 §5.6.2: a field name (and a method) is a token.
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def _request_head(method: str, target: bytes, headers: Headers) -> bytes:
    """``GET /path HTTP/1.1``, then *headers*, as bytes.

    Raises ``httpx.LocalProtocolError`` for a CR or LF anywhere in it (a header value
    that would smuggle a header of its own) or a name that is not a token.
    """
    lines = [b"%s: %s\r\n" % pair for pair in headers]
    head = b"".join([method.encode("ascii"), b" ", target, b" HTTP/1.1\r\n", *lines, b"\r\n"])
    expected = len(headers) + 2
    if head.count(b"\n") != expected or head.count(b"\r") != expected:
        raise httpx.LocalProtocolError("a header or the request line holds a CR or LF")
    if not _TOKEN.fullmatch(method.encode("ascii")):
        raise httpx.LocalProtocolError(f"the method {method!r} is not a token")
    for name, _ in headers:
        if not _TOKEN.fullmatch(name):
            raise httpx.LocalProtocolError(f"the header name {name!r} is not a token")
    return head


def _body_of(request: httpx.Request) -> AsyncIterable[bytes] | None:
    """The request body to stream, or None when the request has none."""
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        # Already in memory: httpx set Content-Length when it is not empty.
        content = b"".join(stream)
        return _one(content) if content else None
    assert isinstance(stream, httpx.AsyncByteStream)
    return stream


async def _one(content: bytes) -> AsyncIterator[bytes]:
    yield content


class _HttpxBody(httpx.AsyncByteStream):
    def __init__(self, response: UpstreamResponse) -> None:
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._response:
            yield chunk

    async def aclose(self) -> None:
        await self._response.aclose()
