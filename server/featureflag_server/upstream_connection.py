"""One upstream HTTP/1.1 connection of :class:`featureflag_server.upstream_pool.KeepAlivePool`.

An asyncio ``Protocol``: the pool writes a request head (and body) to it, ``httptools``
parses the response as it arrives, and :class:`Response` hands the body out piece by
piece. Reading pauses while more than 256 KiB wait unread; a request body waits for the
socket to drain. When the response is done with, the connection goes back to its pool,
or is closed when it cannot be trusted with another request.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Any, cast

import httptools
import httpx

from .upstream import Headers, Key, Timeouts, UpstreamResponse

if TYPE_CHECKING:
    from .upstream_pool import KeepAlivePool

__all__ = ["Connection", "Response", "StaleConnection"]

_HIGH_WATER = 256 * 1024  # unread response bytes before reading from the socket pauses
_NO_BODY_STATUS = frozenset({204, 304})


class StaleConnection(Exception):
    """The connection closed before any byte of the response came back."""


class Connection(asyncio.Protocol):
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
            self.close()  # bytes nobody asked for: the connection can no longer be trusted
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
        self._on_close()
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
            raise _Unasked  # data_received closes the connection
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
        if self._refused() and self._drained is not None and not self._drained.done():
            self._drained.set_result(None)  # an error before the whole body: stop sending
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
            raise StaleConnection("the upstream closed the connection")
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
                    raise StaleConnection(str(self._error))
                raise self._error
        return Response(self, timeouts.read)

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
            if transport.is_closing() or self._refused():
                # The upstream refused the body with an early error (a 413, say) or went
                # away: stop sending (RFC 9112 9.5), read what it said, and retire the
                # connection, which is left in the middle of a request.
                self.reusable = False
                return
        if chunked:
            transport.write(b"0\r\n\r\n")

    def _refused(self) -> bool:
        """The upstream answered with an error (before the body was all sent, when
        asked while sending): it does not want the rest (RFC 9112 9.5)."""
        return self._headers_done and self._status >= 400

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

    def check_deadline(self, now: float) -> bool:
        """Fail the wait for the response once past its deadline (a ReadTimeout for the
        waiting request). False when nothing is left to watch on this connection."""
        waiter = self._waiter
        if waiter is None or waiter.done():
            return False
        if self._deadline <= now:
            waiter.set_exception(TimeoutError())
            return False
        return True

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _on_close(self) -> None:
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


class Response:
    """The response head; iterating gives the body; closing gives the connection back."""

    __slots__ = ("_closed", "_connection", "_read_timeout", "headers", "status")

    def __init__(self, connection: Connection, read_timeout: float | None) -> None:
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
