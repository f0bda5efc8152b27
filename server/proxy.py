"""Fork URLs: a reverse proxy that serves ``<fork>.<fork domain>`` with baked-in flags.

A request whose ``Host`` names a fork goes to that fork's upstream with a fresh
``Feature-Flag-Overrides`` token minted here (origin ``fork:<name>``). The fork's flags
*replace* whatever the client sent: its own override header and ``featureflag_overrides``
cookie are removed, so a fork URL shows the same thing in every browser. Bodies stream
both ways; a client that goes away cancels the upstream request. See ``docs/forks.md``.
"""

from __future__ import annotations

import functools
import ipaddress
import logging
import time
from collections.abc import AsyncIterator, Callable
from http.cookiejar import CookieJar, DefaultCookiePolicy
from urllib.parse import quote

import anyio
import httpx
from anyio import CancelScope
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from starlette.types import Message, Receive, Scope, Send

from featureflag.exceptions import TokenError

from . import proxy_errors
from .fork_tokens import DEFAULT_TOKEN_TTL, Signer, TokenCache
from .forwarding import ResponseRewriter, request_headers
from .store import Fork, Store, fork_name_problem
from .upstream_pool import KeepAlivePool

__all__ = ["ForkProxy", "fork_from_host"]

logger = logging.getLogger("featureflag.server.proxy")


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

    *store* is looked up on every request, so a fork's edits apply at once. *transport*
    replaces the default :class:`~server.upstream_pool.KeepAlivePool` under the one
    ``httpx.AsyncClient`` (tests inject a transport that plays the upstream). *timeout*
    (seconds) bounds connecting to the upstream and each read and write; past it the
    client gets a 504 page. *service_url* is linked from the error pages (default: the
    bare fork domain on the request's port, which is the service itself).
    """

    def __init__(
        self,
        *,
        store: Store,
        signer: Signer,
        fork_domain: str,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 30.0,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        clock: Callable[[], float] = time.time,
        service_url: str | None = None,
    ) -> None:
        self.store = store
        self.fork_domain = fork_domain.strip().strip(".").lower()
        self.timeout = timeout
        self.service_url = service_url
        self.tokens = TokenCache(signer, ttl=token_ttl, clock=clock)
        if transport is None:
            # Below uvicorn's 5 s keep-alive, so the upstream rarely closes one under us.
            transport = KeepAlivePool(max_idle=64, keepalive_expiry=4.0)
        # A cookie jar that keeps nothing: one user's Set-Cookie must never be sent on
        # another user's request. No env proxies, no redirects: the browser follows them.
        self.client = httpx.AsyncClient(
            transport=transport,
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            follow_redirects=False,
            trust_env=False,
        )
        self._timeout = httpx.Timeout(timeout).as_dict()

    async def aclose(self) -> None:
        """Close the pooled upstream connections."""
        await self.client.aclose()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            # WebSockets are not proxied; closing before accept makes the server answer 403.
            await send({"type": "websocket.close", "code": 1008})
            return
        head = scope["method"] == "HEAD"
        host = _header(scope, b"host")
        service_url = self.service_url or self._guess_service_url(scope, host)
        name = fork_from_host(host, self.fork_domain)
        if name is None:
            page = proxy_errors.not_a_fork(host, service_url=service_url)
            await page.send(send, head=head)
            return
        fork = await self.store.get_fork(name)
        if fork is None:
            self.tokens.forget(name)
            await proxy_errors.unknown_fork(name, service_url=service_url).send(send, head=head)
            return
        try:
            token = self.tokens.token_for(fork)
            url = upstream_url(fork.upstream, scope)
        except OutsideUpstream:
            await proxy_errors.outside_upstream(name, service_url=service_url).send(send, head=head)
            return
        except (TokenError, ValueError, httpx.InvalidURL) as exc:
            detail = f"its flags or upstream cannot be used ({proxy_errors.redact(str(exc))})"
            await proxy_errors.bad_fork(name, detail, service_url=service_url).send(send, head=head)
            return
        headers = request_headers(
            scope["headers"],
            token=token,
            client_ip=(scope.get("client") or (None,))[0],
            scheme=scope.get("scheme", "http"),
            host=host,
        )
        rewriter = ResponseRewriter(fork.upstream, f"{scope.get('scheme', 'http')}://{host}")
        exchange = _Exchange(self, fork, service_url, head)
        await exchange.run(scope, receive, send, url, headers, rewriter)

    def _guess_service_url(self, scope: Scope, host: str) -> str:
        _, sep, port = host.rpartition(":")
        port_part = f":{port}" if sep and port.isdigit() else ""
        return f"{scope.get('scheme', 'http')}://{self.fork_domain}{port_part}/"

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.aclose()
                await send({"type": "lifespan.shutdown.complete"})
                return


# Characters a path (and a query) may carry as they are; anything else a lenient HTTP
# parser let through (a raw '#', a space, a byte >= 0x80) is percent-encoded, not refused.
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"
_QUERY_SAFE = _PATH_SAFE + "?"


@functools.lru_cache(maxsize=256)
def _upstream_base(upstream: str) -> str:
    """``scheme://host:port/prefix`` (no trailing slash) for a fork's upstream; parsed once."""
    base = httpx.URL(upstream)
    if base.scheme not in ("http", "https") or not base.host:
        raise ValueError(f"the upstream {upstream!r} is not an http(s) URL with a host")
    prefix = base.raw_path.partition(b"?")[0].decode("ascii").rstrip("/")
    userinfo = base.userinfo.decode("ascii") + "@" if base.userinfo else ""
    return f"{base.scheme}://{userinfo}{base.netloc.decode('ascii')}{prefix}"


def upstream_url(upstream: str, scope: Scope) -> httpx.URL:
    """The upstream URL for this request: the fork's upstream (and its path) + the path.

    Raises ValueError (or httpx.InvalidURL) only for an unusable *upstream*; any request
    target a client sends maps to some URL on the upstream's host.
    """
    base = _upstream_base(upstream)
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode("utf-8")
    path = quote(raw_path, safe=_PATH_SAFE)
    if not path.startswith("/"):
        path = "/" + path
    query = quote(scope.get("query_string", b""), safe=_QUERY_SAFE)
    url = httpx.URL(base + path + ("?" + query if query else ""))
    # httpx resolves "/../": a fork of http://app/shop must not reach http://app/admin.
    prefix = base.partition("://")[2].partition("/")[2]
    got = url.raw_path.partition(b"?")[0].decode("ascii")
    if prefix and not got.startswith(f"/{prefix}/") and got != f"/{prefix}":
        raise OutsideUpstream(f"the path {scope.get('path', '')!r} leads outside the upstream")
    return url


class OutsideUpstream(Exception):
    """The request's path, once ``..`` segments are resolved, leaves the upstream's path."""


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""


class _Exchange:
    """One proxied request: pumps the client's body up, the upstream's response down."""

    def __init__(self, proxy: ForkProxy, fork: Fork, service_url: str, head: bool) -> None:
        self.proxy = proxy
        self.fork = fork
        self.service_url = service_url
        self.head = head
        self.finished = False

    async def run(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        url: httpx.URL,
        headers: list[tuple[bytes, bytes]],
        rewriter: ResponseRewriter,
    ) -> None:
        has_body = any(k in (b"content-length", b"transfer-encoding") for k, _ in scope["headers"])
        body_in, body_out = anyio.create_memory_object_stream[bytes](1)
        with body_in, body_out:
            async with anyio.create_task_group() as tasks:
                # The watcher owns `receive`: it feeds the request body and, once that is
                # done, waits for http.disconnect to cancel the upstream request.
                tasks.start_soon(
                    self._watch_client, receive, body_in if has_body else None, tasks.cancel_scope
                )
                content = _iterate(body_out) if has_body else None
                request = httpx.Request(
                    scope["method"],
                    url,
                    headers=headers,
                    content=content,
                    extensions={"timeout": self.proxy._timeout},
                )
                await self._forward(request, send, rewriter)
                tasks.cancel_scope.cancel()

    async def _forward(
        self, request: httpx.Request, send: Send, rewriter: ResponseRewriter
    ) -> None:
        name, upstream = self.fork.name, self.fork.upstream
        try:
            response = await self.proxy.client.send(request, stream=True)
        except httpx.TimeoutException:
            page = proxy_errors.upstream_timeout(
                name, upstream, self.proxy.timeout, service_url=self.service_url
            )
            await page.send(send, head=self.head)
            return
        except httpx.TransportError as exc:
            detail = _describe(exc)
            page = proxy_errors.upstream_unreachable(
                name, upstream, detail, service_url=self.service_url
            )
            await page.send(send, head=self.head)
            return
        try:
            headers = rewriter.headers(response.headers.raw)
            headers.append((b"x-robots-tag", b"noindex"))
            await send(
                {"type": "http.response.start", "status": response.status_code, "headers": headers}
            )
            # The raw stream, not aiter_raw(): bytes pass through as the upstream encoded
            # them, and a transport that hands back an already-read body still works.
            stream = response.stream
            assert isinstance(stream, httpx.AsyncByteStream)
            try:
                async for chunk in stream:
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except httpx.TransportError as exc:
                # Too late for an error page: leave the response incomplete, so the server
                # closes the connection and the client sees a truncated body, not a whole one.
                logger.warning("fork %s: upstream broke off the response: %r", name, exc)
                return
        finally:
            # Shielded: a close cut short by cancellation would drop a pooled connection
            # that is fine to reuse (a half-read one is closed either way).
            with anyio.CancelScope(shield=True):
                await response.aclose()
        # From here on a disconnect is the end of a complete response, not a reason to cancel.
        self.finished = True
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _watch_client(
        self,
        receive: Receive,
        body: MemoryObjectSendStream[bytes] | None,
        cancel_scope: CancelScope,
    ) -> None:
        message: Message
        if body is not None:
            async with body:
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        cancel_scope.cancel()
                        return
                    chunk = message.get("body", b"")
                    if chunk:
                        await body.send(chunk)
                    if not message.get("more_body", False):
                        break
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                if not self.finished:
                    cancel_scope.cancel()
                return


async def _iterate(stream: MemoryObjectReceiveStream[bytes]) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk


def _describe(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "the connection was refused or the host could not be reached"
    if isinstance(exc, httpx.UnsupportedProtocol):
        return "its URL scheme is not supported"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "it closed the connection or sent a malformed response"
    return f"the connection failed ({type(exc).__name__})"
