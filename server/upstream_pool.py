"""A keep-alive connection pool for the fork proxy's ``httpx.AsyncClient``.

httpx's default transport pools through ``httpcore.AsyncConnectionPool``, which on every
request and every response close walks all its connections (and all idle ones once per
idle one), polling each idle socket. With the sixteen-odd upstream connections a busy
proxy keeps, that walk was half of the service's CPU per proxied request (see
``docs/benchmarks.md``). This transport keeps httpcore's connections (the HTTP/1.1
state machine, TLS, timeouts) and replaces only the bookkeeping: a stack of idle
connections per origin, so a request checks one connection, not all of them.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import anyio
import httpcore
import httpx

Key = tuple[bytes, bytes, int]

# Most specific first: a ConnectTimeout is also a TimeoutException.
_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProxyError, httpx.ProxyError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.TimeoutException, httpx.TimeoutException),
)


@contextmanager
def _httpx_errors() -> Iterator[None]:
    """Raise httpx's exception for httpcore's, as httpx's own transport does."""
    try:
        yield
    except Exception as exc:
        for source, target in _ERRORS:
            if isinstance(exc, source):
                raise target(str(exc)) from exc
        raise


class KeepAlivePool(httpx.AsyncBaseTransport):
    """HTTP/1.1 keep-alive connections per origin, most recently used first.

    At most *max_idle* idle connections are kept per origin; an idle connection older
    than *keepalive_expiry* seconds is closed when it is next looked at.
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
        self.ssl_context = ssl_context or httpx.create_ssl_context()
        self._idle: dict[Key, list[httpcore.AsyncHTTPConnection]] = {}
        self._busy: set[httpcore.AsyncHTTPConnection] = set()
        self._closed = False

    def idle_count(self) -> int:
        """How many idle connections the pool holds (for tests and curiosity)."""
        return sum(len(stack) for stack in self._idle.values())

    async def _checkout(self, key: Key) -> httpcore.AsyncHTTPConnection:
        stack = self._idle.get(key)
        while stack:
            connection = stack.pop()
            if connection.is_idle() and not connection.has_expired():
                return connection
            await connection.aclose()
        scheme, host, port = key
        origin = httpcore.Origin(scheme, host, port)
        return httpcore.AsyncHTTPConnection(
            origin,
            ssl_context=self.ssl_context if scheme == b"https" else None,
            keepalive_expiry=self.keepalive_expiry,
        )

    async def _release(self, key: Key, connection: httpcore.AsyncHTTPConnection) -> None:
        self._busy.discard(connection)
        if self._closed or not connection.is_idle():
            await connection.aclose()
            return
        stack = self._idle.setdefault(key, [])
        stack.append(connection)
        # The bottom of the stack is the longest idle: trim it when over the limit or stale.
        while stack and (len(stack) > self.max_idle or stack[0].has_expired()):
            await stack.pop(0).aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Send *request* on an idle connection to its origin, or a new one."""
        if self._closed:
            raise RuntimeError("the pool is closed")
        url = request.url
        if url.scheme not in ("http", "https"):
            raise httpx.UnsupportedProtocol(f"unsupported URL scheme {url.scheme!r}")
        port = url.port or (443 if url.scheme == "https" else 80)
        key: Key = (url.raw_scheme, url.raw_host, port)
        connection = await self._checkout(key)
        self._busy.add(connection)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(scheme=key[0], host=key[1], port=port, target=url.raw_path),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        try:
            with _httpx_errors():
                response = await connection.handle_async_request(core_request)
        except BaseException:
            self._busy.discard(connection)
            with anyio.CancelScope(shield=True):
                await connection.aclose()
            raise
        return httpx.Response(
            status_code=response.status,
            headers=response.headers,
            stream=_Body(self, key, connection, response),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        """Close every connection, idle or busy."""
        self._closed = True
        connections = [c for stack in self._idle.values() for c in stack] + list(self._busy)
        self._idle.clear()
        self._busy.clear()
        for connection in connections:
            await connection.aclose()


class _Body(httpx.AsyncByteStream):
    """The response body; closing it gives the connection back to the pool."""

    def __init__(
        self,
        pool: KeepAlivePool,
        key: Key,
        connection: httpcore.AsyncHTTPConnection,
        response: httpcore.Response,
    ) -> None:
        self._pool = pool
        self._key = key
        self._connection = connection
        self._response = response
        self._closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        with _httpx_errors():
            async for part in self._response.aiter_stream():
                yield part

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Shielded: a cancelled close would leak the connection, and closing is quick.
        with anyio.CancelScope(shield=True):
            await self._response.aclose()
            await self._pool._release(self._key, self._connection)
