"""The fork proxy's real upstream client: aiohttp's, behind :class:`~.upstream.Upstream`.

aiohttp was chosen by measurement (docs/benchmarks.md, "Fork proxy on aiohttp"): its
client parses responses with llhttp in C and costs a fraction of ``httpx.AsyncClient``'s
CPU per request here. One ``ClientSession`` holds one ``TCPConnector``: at most
*connections* upstream connections in all (a request past that waits for one, within
the connect timeout), idle ones closed after *keepalive_expiry* seconds. The response
head is bounded while it is parsed (each field at most :data:`MAX_FIELD_SIZE` bytes, at
most :data:`MAX_HEADERS` of them) and checked against *max_header_bytes* after, so a
hostile upstream cannot make the service buffer more than about 1 MiB for a head.
aiohttp's errors become httpx's, the interface's vocabulary.

Every address is checked against the service's upstream policy
(:mod:`featureflag_server.upstream_policy`) right before connecting: names after DNS, by
a resolver that wraps aiohttp's (:class:`PolicyResolver`), and addresses written in the
URL before the request. A name that resolves to a metadata, link-local or the service's
own address is :class:`~.upstream.UpstreamRefused`, and no connection is made.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Sequence
from typing import Any

import aiohttp
import httpx
from aiohttp import http_exceptions
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from .upstream import (
    Headers,
    HeadersTooLarge,
    Key,
    Timeouts,
    UpstreamRefused,
    UpstreamResponse,
    UpstreamWebSocket,
    WebSocketRefused,
)
from .upstream_policy import UpstreamPolicy

__all__ = [
    "DEFAULT_CONNECTIONS",
    "MAX_FIELD_SIZE",
    "MAX_HEADERS",
    "MAX_HEADER_BYTES",
    "AiohttpUpstream",
    "PolicyResolver",
]

DEFAULT_CONNECTIONS = 100
"""Upstream connections open at once, all upstreams together (``--upstream-connections``)."""
MAX_FIELD_SIZE = 8190
"""Bytes in the status line or in one header field (aiohttp's and nginx's default)."""
MAX_HEADERS = 128
"""Header fields in one response head."""
MAX_HEADER_BYTES = 64 * 1024
"""Bytes of header names and values in one response head; past it the client gets a 502."""
MAX_MESSAGE = 16 * 1024 * 1024
"""Bytes in one WebSocket message (uvicorn's own limit for the client's side)."""


class PolicyResolver(AbstractResolver):
    """aiohttp's resolver, refusing names that resolve to an address the upstream
    policy refuses (all of a name's addresses are checked: one bad one refuses it)."""

    def __init__(self, policy: UpstreamPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner if inner is not None else aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        """The addresses of *host*, or :class:`~.upstream.UpstreamRefused`."""
        results = await self.inner.resolve(host, port, family)
        for result in results:
            problem = self.policy.address_problem(result["host"], result["port"] or port)
            if problem is not None:
                raise UpstreamRefused(f"{host} resolves to {problem}")
        return results

    async def close(self) -> None:
        """Close the wrapped resolver."""
        await self.inner.close()


def _check_address(policy: UpstreamPolicy, origin: Key) -> None:
    # An address in the URL never reaches the resolver: check it here (cached).
    problem = policy.address_problem(origin[1], origin[2])
    if problem is not None:
        raise UpstreamRefused(f"the upstream is {problem}")


class AiohttpUpstream:
    """:class:`~.upstream.Upstream` on an ``aiohttp.ClientSession``; see the module doc.

    The session is made on first use in the running event loop (and made again on a new
    loop: tests run one each). *ssl_context* verifies https upstreams (default: the
    system's trust store).
    """

    def __init__(
        self,
        *,
        connections: int = DEFAULT_CONNECTIONS,
        keepalive_expiry: float = 4.0,
        max_header_bytes: int = MAX_HEADER_BYTES,
        ssl_context: ssl.SSLContext | None = None,
        policy: UpstreamPolicy | None = None,
    ) -> None:
        if connections < 1:
            raise ValueError("connections must be at least 1")
        self.connections = connections
        self.keepalive_expiry = keepalive_expiry
        self.max_header_bytes = max_header_bytes
        self.ssl_context = ssl_context
        # Checked on every new connection, after DNS (default: the rules that always apply).
        self.policy = policy if policy is not None else UpstreamPolicy()
        self._session: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        """The session of the running loop."""
        loop = asyncio.get_running_loop()
        if self._session is None or self._loop is not loop or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self.connections,
                limit_per_host=0,
                # Below uvicorn's 5 s keep-alive, so the upstream rarely closes one under us.
                keepalive_timeout=self.keepalive_expiry,
                ssl=self.ssl_context if self.ssl_context is not None else True,
                resolver=PolicyResolver(self.policy),
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                # The proxy passes bodies, cookies and redirects through untouched.
                auto_decompress=False,
                cookie_jar=aiohttp.DummyCookieJar(),
                skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding", "Content-Type"),
                timeout=aiohttp.ClientTimeout(total=None),
                max_line_size=MAX_FIELD_SIZE,
                max_field_size=MAX_FIELD_SIZE,
                max_headers=MAX_HEADERS,
                trust_env=False,
                requote_redirect_url=False,
            )
            self._loop = loop
        return self._session

    async def send(
        self,
        method: str,
        origin: Key,
        target: bytes,
        headers: Headers,
        body: AsyncIterable[bytes] | None,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """Send the request; the response's body is read as the proxy iterates it.

        A *body* goes with its ``Content-Length`` from *headers*, or chunked.
        """
        url = _url(origin, target)
        _check_address(self.policy, origin)
        try:
            response = await self.session.request(
                method,
                url,
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                data=body,
                allow_redirects=False,
                timeout=_client_timeout(timeouts),
            )
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc) from exc
        size = sum(len(k) + len(v) for k, v in response.raw_headers)
        if size > self.max_header_bytes:
            response.close()
            raise HeadersTooLarge(
                f"its response headers are {size} bytes, past the limit of {self.max_header_bytes}"
            )
        return _Response(response)

    async def websocket(
        self,
        origin: Key,
        target: bytes,
        headers: Headers,
        subprotocols: Sequence[str],
        timeouts: Timeouts,
    ) -> UpstreamWebSocket:
        """The WebSocket handshake; frames then flow through the returned socket."""
        scheme, host, port = origin
        url = _url(("wss" if scheme == "https" else "ws", host, port), target)
        _check_address(self.policy, origin)
        try:
            # The handshake is one request: bounded like a request's answer.
            async with asyncio.timeout(timeouts.read):
                socket = await self.session.ws_connect(
                    url,
                    headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
                    protocols=subprotocols,
                    timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=10.0),
                    max_msg_size=MAX_MESSAGE,
                    autoping=True,
                )
        except aiohttp.WSServerHandshakeError as exc:
            raise WebSocketRefused(
                f"the upstream answered the WebSocket handshake with {exc.status}",
                status=exc.status,
            ) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc) from exc
        return _WebSocket(socket)

    async def aclose(self) -> None:
        """Close the session and every connection (of the current loop's session)."""
        session, self._session = self._session, None
        if session is not None and not session.closed:
            await session.close()


@functools.lru_cache(maxsize=16)
def _client_timeout(timeouts: Timeouts) -> aiohttp.ClientTimeout:
    # One per Timeouts (the proxy has one): building it for each request is wasted work.
    return aiohttp.ClientTimeout(total=None, connect=timeouts.connect, sock_read=timeouts.read)


def _url(origin: Key, target: bytes) -> URL:
    scheme, host, port = origin
    if ":" in host:  # an IPv6 address
        host = f"[{host}]"
    # encoded=True: the proxy already escaped the target; aiohttp must not re-quote it.
    return URL(f"{scheme}://{host}:{port}{target.decode('ascii')}", encoded=True)


def _refusal(exc: BaseException) -> UpstreamRefused | None:
    seen: Any = exc
    for _ in range(4):
        if seen is None:
            return None
        if isinstance(seen, UpstreamRefused):
            return seen
        seen = getattr(seen, "os_error", None) or seen.__cause__ or seen.__context__
    return None


def _is_head_overflow(exc: BaseException) -> bool:
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, http_exceptions.LineTooLong):
            return True
        if isinstance(cause, http_exceptions.BadHttpMessage) and "Too many headers" in str(cause):
            return True
        cause = cause.__cause__
    return False


def _translate(exc: BaseException) -> httpx.TransportError:
    """The httpx error for an aiohttp one (the proxy picks its error page by them)."""
    refused = _refusal(exc)
    if refused is not None:
        return refused
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(f"connecting to the upstream timed out ({exc})")
    if isinstance(exc, asyncio.TimeoutError):  # aiohttp's SocketTimeoutError among them
        return httpx.ReadTimeout("the upstream did not answer in time")
    if isinstance(exc, aiohttp.ClientConnectorError):
        return httpx.ConnectError(f"cannot connect to {exc.host}:{exc.port}: {exc.os_error}")
    if isinstance(exc, aiohttp.ClientResponseError) and _is_head_overflow(exc):
        return HeadersTooLarge(
            f"a response header field is longer than {MAX_FIELD_SIZE} bytes or there are "
            f"more than {MAX_HEADERS} of them"
        )
    if isinstance(exc, aiohttp.ServerDisconnectedError | aiohttp.ClientResponseError):
        return httpx.RemoteProtocolError(f"the upstream broke the exchange: {exc}")
    if isinstance(exc, aiohttp.ClientPayloadError):
        return httpx.ReadError(f"the upstream broke off the response: {exc}")
    return httpx.ReadError(f"the connection to the upstream failed: {exc!r}")


class _Response:
    """An aiohttp response as an :class:`~.upstream.UpstreamResponse`."""

    __slots__ = ("_response", "headers", "status")

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.status = response.status
        self.headers: Headers = list(response.raw_headers)
        self._response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        content = self._response.content
        try:
            while True:
                chunk = await content.readany()
                if not chunk:
                    return
                yield chunk
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise _translate(exc) from exc

    async def aclose(self) -> None:
        # No await: a cancellation cannot cut it short. A body read to its end gives the
        # connection back to the pool; any other is closed.
        response = self._response
        if response.content.at_eof():
            response.release()
        else:
            response.close()


class _WebSocket:
    """An aiohttp WebSocket as an :class:`~.upstream.UpstreamWebSocket`."""

    __slots__ = ("_socket", "subprotocol")

    def __init__(self, socket: aiohttp.ClientWebSocketResponse) -> None:
        self._socket = socket
        self.subprotocol: str | None = socket.protocol

    @property
    def close_code(self) -> int | None:
        return self._socket.close_code

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        socket = self._socket
        while True:
            message = await socket.receive()
            if message.type is aiohttp.WSMsgType.TEXT:
                yield message.data
            elif message.type is aiohttp.WSMsgType.BINARY:
                yield message.data
            elif message.type is aiohttp.WSMsgType.ERROR:
                raise httpx.ReadError(f"the upstream's WebSocket failed: {message.data!r}")
            else:  # CLOSE, CLOSING, CLOSED (pings and pongs are answered by aiohttp)
                return

    async def send(self, data: str | bytes) -> None:
        if isinstance(data, str):
            await self._socket.send_str(data)
        else:
            await self._socket.send_bytes(data)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self._socket.close(code=code, message=reason.encode("utf-8"))
