"""Fork URLs: a reverse proxy that serves ``<fork>.<fork domain>`` with baked-in flags.

A request whose ``Host`` names a fork goes to that fork's upstream with a fresh
``Feature-Flag-Overrides`` token minted here (origin ``fork:<name>``). The fork's flags
*replace* whatever the client sent: its own override header and ``featureflag_overrides``
cookie are removed, so a fork URL shows the same thing in every browser. Bodies stream
both ways; a client that goes away cancels the upstream request. WebSockets are relayed
too (:mod:`featureflag_server.proxy_websocket`), their handshake carrying the same token.
See ``docs/forks.md``.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from urllib.parse import quote

import httpx
from starlette.types import Message, Receive, Scope, Send

from featureflag.exceptions import TokenError

from . import proxy_errors
from .fork_tokens import DEFAULT_TOKEN_TTL, Signer, TokenCache
from .forwarding import ResponseRewriter, request_headers
from .proxy_websocket import relay_websocket
from .store import Fork, Store, fork_name_problem
from .upstream import (
    Headers,
    HeadersTooLarge,
    HttpxUpstream,
    Key,
    Timeouts,
    Upstream,
    WebSocketRefused,
)
from .upstream_aiohttp import DEFAULT_CONNECTIONS, AiohttpUpstream

__all__ = ["ForkProxy", "fork_from_host", "upstream_target"]

logger = logging.getLogger("featureflag.server.proxy")


@functools.lru_cache(maxsize=1024)
def fork_from_host(host: str, fork_domain: str) -> str | None:
    """The fork named by a ``Host`` header, or None when it names no fork.

    ``fork_from_host("new-lp.localhost:8000", "localhost") == "new-lp"``. Case and port
    are ignored. The bare fork domain, other domains, IP addresses, nested labels
    (``a.b.localhost``) and reserved names (``www``, ``api``...) are not forks.
    """
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 literal
        return None
    name, sep, port = host.rpartition(":")
    if sep:
        if port and not (port.isascii() and port.isdigit()):
            return None
        host = name
    host = host.removesuffix(".")
    domain = fork_domain.strip().strip(".").lower()
    suffix = "." + domain
    if not domain or not host.endswith(suffix):
        return None
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return None
    label = host[: -len(suffix)]
    return label if fork_name_problem(label) is None else None


class ForkProxy:
    """A pure ASGI app serving every fork host; mount it behind a Host dispatcher.

    *store* is looked up on every request, so a fork's edits apply at once. Requests go
    upstream through :class:`~featureflag_server.upstream_aiohttp.AiohttpUpstream`, one
    pool of at most *connections* upstream connections; *transport* replaces it with any
    ``httpx.AsyncBaseTransport`` (tests inject one that plays the upstream; it carries no
    WebSockets). *timeout* (seconds) bounds connecting to the upstream (and waiting for
    a free connection) and each read; past it the client gets a 504 page.
    *service_url* is linked from the error pages (default: the bare fork domain on the
    request's port, which is the service itself).
    """

    def __init__(
        self,
        *,
        store: Store,
        signer: Signer,
        fork_domain: str,
        transport: httpx.AsyncBaseTransport | None = None,
        connections: int = DEFAULT_CONNECTIONS,
        timeout: float = 30.0,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        clock: Callable[[], float] = time.time,
        service_url: str | None = None,
    ) -> None:
        self.store = store
        self.fork_domain = fork_domain.strip().strip(".").lower()
        self.timeout = timeout
        self.timeouts = Timeouts(connect=timeout, read=timeout)
        self.service_url = service_url
        self.tokens = TokenCache(signer, ttl=token_ttl, clock=clock)
        self.watchlist = _Watchlist()
        self.upstream: Upstream = (
            AiohttpUpstream(connections=connections)
            if transport is None
            else HttpxUpstream(transport)
        )

    async def aclose(self) -> None:
        """Close the upstream connections."""
        await self.upstream.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] == "websocket":
            await self._websocket(scope, receive, send)
            return
        head = scope["method"] == "HEAD"
        route = await self._route(scope)
        if isinstance(route, proxy_errors.ErrorPage):
            await route.send(send, head=head)
            return
        exchange = _Exchange(self, route.fork, receive, send, head)
        await exchange.run(scope, route)

    async def _route(self, scope: Scope) -> _Route | proxy_errors.ErrorPage:
        """Where the request goes and with which headers, or the page that says why not."""
        host = _header(scope, b"host")
        name = fork_from_host(host, self.fork_domain)
        if name is None:
            return proxy_errors.not_a_fork(host, service_url=self._service_url(scope, host))
        fork = await self.store.get_fork(name)
        if fork is None:
            self.tokens.forget(name)
            return proxy_errors.unknown_fork(name, service_url=self._service_url(scope, host))
        try:
            token = self.tokens.token_for(fork)
            base, target = upstream_target(fork.upstream, scope)
        except OutsideUpstream:
            return proxy_errors.outside_upstream(name, service_url=self._service_url(scope, host))
        except (TokenError, ValueError, httpx.InvalidURL) as exc:
            detail = f"its flags or upstream cannot be used ({proxy_errors.redact(str(exc))})"
            return proxy_errors.bad_fork(name, detail, service_url=self._service_url(scope, host))
        # A WebSocket's scheme is ws/wss; the fork's origin and X-Forwarded-Proto say http(s).
        scheme = _HTTP_SCHEME.get(scope.get("scheme", "http"), "http")
        headers = request_headers(
            scope["headers"],
            token=token,
            client_ip=(scope.get("client") or (None,))[0],
            scheme=scheme,
            host=host,
        )
        headers.insert(0, (b"host", base.host))
        if base.authorization is not None:
            # Credentials in the fork's upstream URL win over the client's own.
            headers = [(k, v) for k, v in headers if k != b"authorization"]
            headers.append((b"authorization", base.authorization))
        rewriter = ResponseRewriter(fork.upstream, f"{scheme}://{host}")
        return _Route(fork, base.origin, target, headers, rewriter, host)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Relay a WebSocket (a dev server's hot reload) to the fork's upstream, with the
        fork's token on the handshake; frames and close codes pass both ways."""
        if (await receive())["type"] != "websocket.connect":
            return
        route = await self._route(scope)
        if isinstance(route, proxy_errors.ErrorPage):
            await route.deny(send, scope)
            return
        headers = [(k, v) for k, v in route.headers if not k.startswith(b"sec-websocket-")]
        try:
            upstream = await self.upstream.websocket(
                route.origin, route.target, headers, scope.get("subprotocols", []), self.timeouts
            )
        except httpx.TimeoutException:
            page = proxy_errors.upstream_timeout(
                route.fork.name,
                route.fork.upstream,
                self.timeout,
                service_url=self._service_url(scope, route.host),
            )
            await page.deny(send, scope)
            return
        except httpx.TransportError as exc:
            page = proxy_errors.upstream_unreachable(
                route.fork.name,
                route.fork.upstream,
                _describe(exc),
                service_url=self._service_url(scope, route.host),
            )
            await page.deny(send, scope)
            return
        await relay_websocket(upstream, receive, send, logger=logger, fork=route.fork.name)

    def _service_url(self, scope: Scope, host: str) -> str:
        if self.service_url:
            return self.service_url
        _, sep, port = host.rpartition(":")
        port_part = f":{port}" if sep and port.isdigit() else ""
        scheme = _HTTP_SCHEME.get(scope.get("scheme", "http"), "http")
        return f"{scheme}://{self.fork_domain}{port_part}/"

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


_HTTP_SCHEME = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


@dataclass(frozen=True, slots=True)
class _Route:
    """A request's way to its fork's upstream."""

    fork: Fork
    origin: Key
    target: bytes
    headers: Headers
    rewriter: ResponseRewriter
    host: str  # the fork host the client asked for


# Characters a path (and a query) may carry as they are; anything else a lenient HTTP
# parser let through (a raw '#', a space, a byte >= 0x80) is percent-encoded, not refused.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"
_UNRESERVED = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_PATH_BYTES = (_UNRESERVED + _PATH_SAFE).encode("ascii")
_QUERY_BYTES = (_UNRESERVED + _QUERY_SAFE).encode("ascii")


@dataclass(frozen=True, slots=True)
class _Base:
    """A fork's upstream URL, parsed once."""

    origin: Key
    host: bytes  # the Host header
    prefix: str  # the path prefix, without a trailing slash (often empty)
    authorization: bytes | None  # Basic credentials from the URL's userinfo


@functools.lru_cache(maxsize=256)
def _upstream_base(upstream: str) -> _Base:
    url = httpx.URL(upstream)
    if url.scheme not in ("http", "https") or not url.host:
        raise ValueError(f"the upstream {upstream!r} is not an http(s) URL with a host")
    port = url.port or (443 if url.scheme == "https" else 80)
    prefix = url.raw_path.partition(b"?")[0].decode("ascii").rstrip("/")
    authorization = None
    if url.userinfo:
        credentials = f"{url.username}:{url.password}".encode()
        authorization = b"Basic " + base64.b64encode(credentials)
    return _Base(
        (url.scheme, url.raw_host.decode("ascii"), port), url.netloc, prefix, authorization
    )


def upstream_target(upstream: str, scope: Scope) -> tuple[_Base, bytes]:
    """The fork's parsed upstream, and the request target to send it: its path prefix +
    the request's path and query.

    Raises ValueError (or httpx.InvalidURL) only for an unusable *upstream*, and
    :class:`OutsideUpstream` when ``..`` segments would climb out of its path prefix; any
    other request target a client sends maps to some path on the upstream's host.
    """
    base = _upstream_base(upstream)
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    # Most paths need no escaping: skip quote() (and its per-call set-up) for them.
    path = (
        raw_path.decode("ascii")
        if not raw_path.rstrip(_PATH_BYTES)
        else quote(raw_path, safe=_PATH_SAFE)
    )
    if not path.startswith("/"):
        path = "/" + path
    path = base.prefix + path
    if "/." in path:
        # Resolve "." and ".." as the upstream would: a fork of http://app/shop must not
        # reach http://app/admin.
        path = httpx.URL("http://upstream" + path).raw_path.decode("ascii")
        prefix = base.prefix
        if prefix and not path.startswith(prefix + "/") and path != prefix:
            raise OutsideUpstream(f"the path {scope.get('path', '')!r} leads outside the upstream")
    query_string: bytes = scope.get("query_string", b"")
    query = (
        query_string.decode("ascii")
        if not query_string.rstrip(_QUERY_BYTES)
        else quote(query_string, safe=_QUERY_SAFE)
    )
    return base, (path + "?" + query if query else path).encode("ascii")


class OutsideUpstream(Exception):
    """The request's path, once ``..`` segments are resolved, leaves the upstream's path."""


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


WATCH_AFTER = 0.05
"""Seconds into a request before the proxy starts watching for the client going away."""


class _ClientGone(Exception):
    """The client disconnected while its request body was being read."""


class _Watchlist:
    """Exchanges not yet watched for a disconnect, oldest first, and one timer.

    The timer fires when the oldest is :data:`WATCH_AFTER` old and starts the watchers
    of all that are; an exchange that ends sooner only leaves the list. One timer for
    all requests instead of one each: a timer per request was ~4% of the proxy's CPU.
    """

    __slots__ = ("loop", "timer", "waiting")

    def __init__(self) -> None:
        self.waiting: dict[_Exchange, float] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def add(self, exchange: _Exchange) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            # A new event loop (tests run one each): what waited belongs to the old one.
            self.loop, self.timer = loop, None
            self.waiting.clear()
        self.waiting[exchange] = loop.time()
        if self.timer is None:
            self.timer = loop.call_later(WATCH_AFTER, self._tick)

    def discard(self, exchange: _Exchange) -> None:
        self.waiting.pop(exchange, None)

    def _tick(self) -> None:
        self.timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        waiting = self.waiting
        while waiting:
            exchange, since = next(iter(waiting.items()))
            if now - since < WATCH_AFTER:
                self.timer = loop.call_at(since + WATCH_AFTER, self._tick)
                return
            del waiting[exchange]
            exchange.start_watching()


class _Exchange:
    """One proxied request: the client's body up, the upstream's response down.

    While the upstream works, a watcher task waits on ``receive()`` for the client to
    go away, and cancels the request (and with it the upstream exchange) when it does.
    The watcher starts only once a request has taken :data:`WATCH_AFTER` seconds (see
    :class:`_Watchlist`): most are answered sooner, and a task per request was half the
    proxy's own CPU.
    """

    __slots__ = (
        "client_gone",
        "finished",
        "fork",
        "head",
        "proxy",
        "receive",
        "send",
        "task",
        "watcher",
        "watching",
    )

    def __init__(
        self, proxy: ForkProxy, fork: Fork, receive: Receive, send: Send, head: bool
    ) -> None:
        self.proxy = proxy
        self.fork = fork
        self.receive = receive
        self.send = send
        self.head = head
        self.finished = False
        self.client_gone = False
        self.watching = False  # on the watchlist, or watched
        self.watcher: asyncio.Task[None] | None = None
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - ASGI servers always call apps from a task
            raise RuntimeError("the fork proxy must run inside an asyncio task")
        self.task = task

    async def run(self, scope: Scope, route: _Route) -> None:
        task = self.task
        has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])
        body = self._client_body() if has_body else None
        if body is None:
            self._watch()
        try:
            await self._forward(scope, route, body)
        except _ClientGone:
            return
        except asyncio.CancelledError:
            if self.client_gone and task.uncancel() == 0:
                return  # nobody is left to answer; the upstream request is cancelled
            raise
        finally:
            self.proxy.watchlist.discard(self)
            if self.watcher is not None:
                self.watcher.cancel()

    async def _forward(
        self, scope: Scope, route: _Route, body: AsyncIterator[bytes] | None
    ) -> None:
        proxy, send = self.proxy, self.send
        name, upstream = self.fork.name, self.fork.upstream
        try:
            response = await proxy.upstream.send(
                scope["method"], route.origin, route.target, route.headers, body, proxy.timeouts
            )
        except httpx.TimeoutException:
            page = proxy_errors.upstream_timeout(
                name, upstream, proxy.timeout, service_url=self._service_url(scope)
            )
            await page.send(send, head=self.head)
            return
        except httpx.TransportError as exc:
            page = proxy_errors.upstream_unreachable(
                name, upstream, _describe(exc), service_url=self._service_url(scope)
            )
            await page.send(send, head=self.head)
            return
        if not self.watching:
            self._watch()  # the body was not read to its end: watch from here
        try:
            out = route.rewriter.headers(response.headers)
            out.append((b"x-robots-tag", b"noindex"))
            await send({"type": "http.response.start", "status": response.status, "headers": out})
            try:
                async for chunk in response:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.TransportError as exc:
                # Too late for an error page: leave the response incomplete, so the server
                # closes the connection and the client sees a truncated body, not a whole one.
                logger.warning("fork %s: upstream broke off the response: %r", name, exc)
                return
        finally:
            await response.aclose()
        # From here on a disconnect is the end of a complete response, not a reason to cancel.
        self.finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    def _service_url(self, scope: Scope) -> str:
        return self.proxy._service_url(scope, _header(scope, b"host"))

    async def _client_body(self) -> AsyncIterator[bytes]:
        """The client's request body, as the upstream takes it; then watch for a disconnect."""
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.client_gone = True
                raise _ClientGone
            chunk = message.get("body", b"")
            if chunk:
                yield chunk
            if not message.get("more_body", False):
                break
        self._watch()

    def _watch(self) -> None:
        self.watching = True
        self.proxy.watchlist.add(self)

    def start_watching(self) -> None:
        """Called by the watchlist once this request is :data:`WATCH_AFTER` old."""
        if not self.finished:
            self.watcher = asyncio.ensure_future(self._wait_for_disconnect())

    async def _wait_for_disconnect(self) -> None:
        message: Message
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                if not self.finished:
                    self.client_gone = True
                    self.task.cancel()
                return


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, HeadersTooLarge | WebSocketRefused):
        return str(exc)
    if isinstance(exc, httpx.ConnectError):
        return "the connection was refused or the host could not be reached"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "its URL scheme is not supported"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "it closed the connection or sent a malformed response"
    return f"the connection failed ({type(exc).__name__})"
