"""One proxied request's exchange: the client's body up, the upstream's response down.

:class:`~featureflag_server.proxy.ForkProxy` works out the :class:`Route` (fork, origin,
target, headers) and hands it to an :class:`Exchange`, which sends the request through
the proxy's :class:`~featureflag_server.upstream.Upstream`, streams the answer back with
its headers rewritten, turns the upstream's failures into error pages, and cancels the
upstream request when the client goes away (watched from :data:`WATCH_AFTER` on, by one
:class:`Watchlist` timer for all requests).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
from starlette.types import Message, Receive, Scope, Send

from . import proxy_errors
from .forwarding import ResponseRewriter
from .store import Fork
from .upstream import Headers, HeadersTooLarge, Key, UpstreamRefused, WebSocketRefused

if TYPE_CHECKING:
    from .proxy import ForkProxy

__all__ = ["WATCH_AFTER", "Exchange", "Route", "Watchlist", "describe", "log_failure"]

logger = logging.getLogger("featureflag.server.proxy")


@dataclass(frozen=True, slots=True)
class Route:
    """A request's way to its fork's upstream, worked out by :class:`ForkProxy`."""

    fork: Fork
    origin: Key
    target: bytes
    headers: Headers
    rewriter: ResponseRewriter
    host: str  # the fork host the client asked for


WATCH_AFTER = 0.05
"""Seconds into a request before the proxy starts watching for the client going away."""


class _ClientGone(Exception):
    """The client disconnected while its request body was being read."""


class Watchlist:
    """Exchanges not yet watched for a disconnect, oldest first, and one timer.

    The timer fires when the oldest is :data:`WATCH_AFTER` old and starts the watchers
    of all that are; an exchange that ends sooner only leaves the list. One timer for
    all requests instead of one each: a timer per request was ~4% of the proxy's CPU.
    """

    __slots__ = ("loop", "timer", "waiting")

    def __init__(self) -> None:
        self.waiting: dict[Exchange, float] = {}
        self.timer: asyncio.TimerHandle | None = None
        self.loop: asyncio.AbstractEventLoop | None = None

    def add(self, exchange: Exchange) -> None:
        loop = asyncio.get_running_loop()
        if loop is not self.loop:
            # A new event loop (tests run one each): what waited belongs to the old one.
            self.loop, self.timer = loop, None
            self.waiting.clear()
        self.waiting[exchange] = loop.time()
        if self.timer is None:
            self.timer = loop.call_later(WATCH_AFTER, self._tick)

    def discard(self, exchange: Exchange) -> None:
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


class Exchange:
    """One proxied request: the client's body up, the upstream's response down.

    While the upstream works, a watcher task waits on ``receive()`` for the client to
    go away, and cancels the request (and with it the upstream exchange) when it does.
    The watcher starts only once a request has taken :data:`WATCH_AFTER` seconds (see
    :class:`Watchlist`): most are answered sooner, and a task per request was half the
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

    async def run(self, scope: Scope, route: Route) -> None:
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

    async def _forward(self, scope: Scope, route: Route, body: AsyncIterator[bytes] | None) -> None:
        proxy, send = self.proxy, self.send
        name = self.fork.name
        link = proxy.page_service_url(scope, route.host)
        try:
            response = await proxy.upstream.send(
                scope["method"], route.origin, route.target, route.headers, body, proxy.timeouts
            )
        except httpx.TimeoutException:
            log_failure(route, "timed out")
            page = proxy_errors.upstream_timeout(name, proxy.timeout, service_url=link)
            await page.send(send, head=self.head)
            return
        except httpx.TransportError as exc:
            log_failure(route, repr(exc))
            page = proxy_errors.upstream_unreachable(name, describe(exc), service_url=link)
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


def log_failure(route: Route, what: str) -> None:
    """Log where a fork's upstream failed."""
    # The visitor's page does not name the upstream (fork URLs are public): the log does.
    logger.warning(
        "fork %s: upstream %s: %s", route.fork.name, proxy_errors.redact(route.fork.upstream), what
    )


def describe(exc: httpx.TransportError) -> str:
    """What went wrong, in words for an error page."""
    if isinstance(exc, UpstreamRefused):
        return "the service's upstream policy refuses its address"
    if isinstance(exc, HeadersTooLarge | WebSocketRefused):
        return str(exc)
    if isinstance(exc, httpx.ConnectError):
        return "the connection was refused or the host could not be reached"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "its URL scheme is not supported"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "it closed the connection or sent a malformed response"
    return f"the connection failed ({type(exc).__name__})"
