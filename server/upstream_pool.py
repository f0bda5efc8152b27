"""The fork proxy's upstream connections: HTTP/1.1 keep-alive on asyncio, parsed by httptools.

One asyncio ``Protocol`` per connection: the request head is written as bytes, the
response is parsed by ``httptools`` (llhttp, the parser uvicorn's fast path uses) as it
arrives, and idle connections wait in a stack per origin. The proxy calls
:meth:`KeepAlivePool.send` (the :class:`server.upstream.Upstream` interface) with bytes
it already has; the pool is also an ``httpx.AsyncBaseTransport``, so an
``httpx.AsyncClient`` can use it. httpx's own transport (httpcore, h11) plus its
``Request``/``Response`` models cost about 1.2 ms of CPU per proxied request on our
benchmark machine (``docs/benchmarks.md``).

Bodies stream both ways with back-pressure: reading from the upstream pauses while more
than 256 KiB wait unread, and a request body waits for the socket to drain.
"""

from __future__ import annotations

import asyncio
import collections
import re
import ssl
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any, cast

import httptools
import httpx

from .upstream import Headers, Key, Timeouts, UpstreamResponse

__all__ = ["KeepAlivePool"]

_TICK = 0.05  # seconds between two checks of the read deadlines
_HIGH_WATER = 256 * 1024  # unread response bytes before reading from the socket pauses
_NO_BODY_STATUS = frozenset({204, 304})


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
        self._idle: dict[Key, list[_Connection]] = {}
        self._busy: set[_Connection] = set()
        self._closed = False
        # Read timeouts: connections waiting with a deadline, checked every _TICK seconds
        # by one timer (a timer per wait cost ~3% of a proxied request's CPU).
        self._deadlines: set[_Connection] = set()
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
            except _StaleConnection:
                connection = None
        if connection is None:
            connection = await self._connect(origin, timeouts.connect)
        try:
            return await self._exchange(connection, method, head, body, chunked, timeouts)
        except _StaleConnection as exc:
            raise httpx.RemoteProtocolError(str(exc)) from None

    async def _exchange(
        self,
        connection: _Connection,
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

    def _checkout(self, key: Key) -> _Connection | None:
        stack = self._idle.get(key)
        now = time.monotonic()
        while stack:
            connection = stack.pop()
            if connection.reusable and now - connection.idle_since < self.keepalive_expiry:
                return connection
            connection.close()
        return None

    async def _connect(self, key: Key, timeout: float | None) -> _Connection:
        scheme, host, port = key
        loop = asyncio.get_running_loop()
        tls = self.ssl_context if scheme == "https" else None
        try:
            async with asyncio.timeout(timeout):
                _, connection = await loop.create_connection(
                    lambda: _Connection(self, key),
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

    def _release(self, connection: _Connection) -> None:
        self._busy.discard(connection)
        if self._closed or not connection.reusable:
            connection.close()
            return
        connection.idle_since = time.monotonic()
        stack = self._idle.setdefault(connection.key, [])
        stack.append(connection)
        if len(stack) > self.max_idle:
            stack.pop(0).close()  # the longest idle

    def _watch_deadline(self, connection: _Connection) -> None:
        self._deadlines.add(connection)
        if self._ticker is None:
            self._ticker = asyncio.get_running_loop().call_later(_TICK, self._tick)

    def _tick(self) -> None:
        self._ticker = None
        now = time.monotonic()
        for connection in list(self._deadlines):
            if connection._waiter is None or connection._waiter.done():
                self._deadlines.discard(connection)
            elif connection._deadline <= now:
                self._deadlines.discard(connection)
                _expire(connection._waiter)
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


class _StaleConnection(Exception):
    """The connection closed before any byte of the response came back."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection; the pool lends it to one request at a time."""

    def __init__(self, pool: KeepAlivePool, key: Key) -> None:
        self.pool = pool
        self.key = key
        self.idle_since = 0.0
        self.reusable = True
        self.used = False
        self._transport: asyncio.Transport | None = None
        self._parser: Any = None
        self._waiter: asyncio.Future[None] | None = None
        self._deadline = 0.0
        self._write_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._eof = False
        self._unasked = False
        self._error: Exception | None = None
        # The response being read.
        self._head = False
        self._status = 0
        self._headers: list[tuple[bytes, bytes]] = []
        self._headers_done = False
        self._complete = False
        self._until_close = False
        self._got_bytes = False
        self._chunks: collections.deque[bytes] = collections.deque()
        self._buffered = 0
        self._reading_paused = False

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio.Transport, but behave as one.
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._parser is None or self._complete:
            # Bytes nobody asked for: the connection can no longer be trusted.
            self.reusable = False
            self.close()
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._unasked:
                self.close()
                self._wake()
                return
            self._fail(httpx.RemoteProtocolError(f"the upstream sent a malformed response: {exc}"))
            self.close()
            return
        if self._buffered > _HIGH_WATER and not self._reading_paused and self._transport:
            self._reading_paused = True
            self._transport.pause_reading()
        self._wake()

    def eof_received(self) -> bool | None:
        self._on_close()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._on_close(exc)
        self.reusable = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def pause_writing(self) -> None:
        self._write_paused = True

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    # -- httptools callbacks --------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._headers_done:
            # A second response, unasked for, in the same read as ours: keep ours, stop
            # parsing, and retire the connection.
            self._unasked = True
            self.reusable = False
            raise _Unasked
        self._headers = []

    def on_header(self, name: bytes, value: bytes) -> None:
        if not self._headers_done:  # after the head, these are trailer fields: dropped
            self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        status = self._parser.get_status_code()
        if 100 <= status < 200:
            return  # an interim response (103 Early Hints...): wait for the real one
        self._status = status
        self._headers_done = True
        if self._head:
            # The parser does not know this answers a HEAD; its body is empty whatever the
            # headers say. Anything after it would be misread, so the connection retires.
            self._complete = True
            self.reusable = False
            return
        if status not in _NO_BODY_STATUS:
            names = {name.lower() for name, _ in self._headers}
            self._until_close = not (b"content-length" in names or b"transfer-encoding" in names)

    def on_body(self, body: bytes) -> None:
        if self._complete:
            return
        self._chunks.append(body)
        self._buffered += len(body)

    def on_message_complete(self) -> None:
        if self._headers_done:
            self._complete = True
            if not self._parser.should_keep_alive():
                self.reusable = False

    # -- one exchange ---------------------------------------------------------------------

    async def exchange(
        self,
        method: str,
        head: bytes,
        body: AsyncIterable[bytes] | None,
        chunked: bool,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        transport = self._transport
        if transport is None or transport.is_closing() or self._eof:
            raise _StaleConnection("the upstream closed the connection")
        reused = self.used
        self.used = True
        self._head = method == "HEAD"
        self._parser = httptools.HttpResponseParser(self)
        transport.write(head)
        if body is not None:
            await self._send_body(body, chunked, timeouts.write)
        while not self._headers_done:
            await self._wait(timeouts.read)
            if self._error is not None and not self._headers_done:
                if reused and not self._got_bytes and isinstance(self._error, _Closed):
                    raise _StaleConnection(str(self._error))
                raise self._error
        return _Response(self, timeouts.read)

    async def _send_body(
        self, body: AsyncIterable[bytes], chunked: bool, timeout: float | None
    ) -> None:
        transport = self._transport
        assert transport is not None
        async for chunk in body:
            if not chunk:
                continue
            if chunked:
                transport.write(b"%x\r\n" % len(chunk))
                transport.write(chunk)
                transport.write(b"\r\n")
            else:
                transport.write(chunk)
            if self._write_paused:
                await self._drain(timeout)
            if transport.is_closing():
                # The upstream answered early (a 413, say) or went away: read what it said.
                return
        if chunked:
            transport.write(b"0\r\n\r\n")

    async def _drain(self, timeout: float | None) -> None:
        self._drained = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(timeout):
                await self._drained
        except TimeoutError:
            self.reusable = False
            raise httpx.WriteTimeout("the upstream did not take the request body in time") from None
        finally:
            self._drained = None

    async def _wait(self, timeout: float | None) -> None:
        """Until more of the response arrived (or the connection ended).

        Past *timeout* seconds (give or take the pool's :data:`_TICK`): ReadTimeout.
        """
        if self._error is not None:
            return
        waiter = self._waiter = asyncio.get_running_loop().create_future()
        if timeout is not None:
            self._deadline = time.monotonic() + timeout
            self.pool._watch_deadline(self)
        try:
            await waiter
        except TimeoutError:
            self.reusable = False
            raise httpx.ReadTimeout("the upstream did not answer in time") from None
        finally:
            self._waiter = None

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_close(self, exc: Exception | None = None) -> None:
        self._eof = True
        self.reusable = False
        if self._parser is not None and not self._complete:
            if self._headers_done and self._until_close:
                self._complete = True  # the body ran until the connection closed: complete
            elif not self._headers_done:
                self._fail(_Closed("the upstream closed the connection without answering"))
            else:
                self._fail(httpx.ReadError("the upstream closed the connection mid-response"))
        self._wake()

    def _fail(self, error: Exception) -> None:
        if self._error is None:
            self._error = error
        self.reusable = False
        self._wake()

    def take(self) -> bytes | None:
        """The next piece of body, b"" when the body is complete, None to wait for more."""
        if self._chunks:
            chunk = self._chunks.popleft()
            self._buffered -= len(chunk)
            if self._reading_paused and self._buffered < _HIGH_WATER // 4 and self._transport:
                self._reading_paused = False
                self._transport.resume_reading()
            return chunk
        if self._complete:
            return b""
        if self._error is not None:
            raise self._error
        return None

    def finish(self) -> None:
        """The response is done with: back to the pool, or closed if it was not read through."""
        if not self._complete or self._chunks:
            self.reusable = False
        self._parser = None
        self._headers = []
        self._headers_done = self._complete = self._until_close = self._got_bytes = False
        self._status = 0
        self._chunks.clear()
        self._buffered = 0
        self.pool._release(self)

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


class _Unasked(Exception):
    """Stops the parser at a response nobody asked for."""


class _Closed(httpx.RemoteProtocolError):
    """The connection closed before the response's head arrived."""


def _expire(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Response:
    """The response head; iterating gives the body; closing gives the connection back."""

    __slots__ = ("_closed", "_connection", "_read_timeout", "headers", "status")

    def __init__(self, connection: _Connection, read_timeout: float | None) -> None:
        self.status = connection._status
        self.headers: Headers = connection._headers
        self._connection = connection
        self._read_timeout = read_timeout
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        connection = self._connection
        while not self._closed:
            chunk = connection.take()
            if chunk is None:
                await connection._wait(self._read_timeout)
            elif chunk:
                yield chunk
            else:
                return

    async def aclose(self) -> None:
        # No await: a cancellation cannot cut it short.
        if not self._closed:
            self._closed = True
            self._connection.finish()
