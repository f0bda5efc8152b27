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

import base64
import functools
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote

import httpx
from starlette.types import Receive, Scope, Send

from featureflag.exceptions import TokenError

from . import proxy_errors
from .fork_tokens import DEFAULT_TOKEN_TTL, Signer, TokenCache
from .forks import fork_name_problem, is_expired
from .forwarding import ResponseRewriter, request_headers
from .proxy_exchange import WATCH_AFTER, Exchange, Route, Watchlist, describe, log_failure
from .proxy_websocket import relay_websocket
from .store import Store
from .upstream import (
    HttpxUpstream,
    Key,
    Timeouts,
    Upstream,
)
from .upstream_aiohttp import DEFAULT_CONNECTIONS, AiohttpUpstream
from .upstream_policy import UpstreamPolicy, normalise_host

__all__ = ["WATCH_AFTER", "ForkProxy", "fork_from_host", "upstream_target"]

logger = logging.getLogger("featureflag.server.proxy")


@functools.lru_cache(maxsize=1024)
def fork_from_host(host: str, fork_domain: str) -> str | None:
    """The fork named by a ``Host`` header, or None when it names no fork.

    ``fork_from_host("new-lp.localhost:8000", "localhost") == "new-lp"``. Case and port
    are ignored. The bare fork domain, other domains, IP addresses, nested labels
    (``a.b.localhost``) and reserved names (``www``, ``api``...) are not forks. The host
    is compared after IDNA/UTS-46 mapping, as a client would connect to it:
    ``new-lp\u3002localhost`` is ``new-lp.localhost``.
    """
    host = host.strip().lower()
    if host.startswith("["):  # an IPv6 literal
        return None
    name, sep, port = host.rpartition(":")
    if sep:
        if port and not (port.isascii() and port.isdigit()):
            return None
        host = name
    if not host.isascii() or "xn--" in host:
        try:  # Host arrives as latin-1: a UTF-8 name is mojibake until decoded.
            host = normalise_host(host.encode("latin-1").decode("utf-8"))
        except (UnicodeError, ValueError):
            return None
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
    a free connection) and each read; past it the client gets a 504 page. *policy* is
    checked on every new upstream connection, after DNS (default: the rules that always
    apply).
    *service_url* is linked from the error pages; without it they link to the service on
    the request's own scheme and port (the one socket serves forks and the service) at
    *service_host* (default: the bare fork domain; the app passes
    :attr:`Settings.service_host <featureflag_server.settings.Settings.service_host>`).

    Every proxied request carries ``Via: 1.1 featureflag-<instance id>`` (:attr:`via`);
    one that arrives already carrying it has looped back through this service and gets
    a 508 page instead of being forwarded again.
    """

    def __init__(
        self,
        *,
        store: Store,
        signer: Signer,
        fork_domain: str,
        transport: httpx.AsyncBaseTransport | None = None,
        connections: int = DEFAULT_CONNECTIONS,
        policy: UpstreamPolicy | None = None,
        timeout: float = 30.0,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        clock: Callable[[], float] = time.time,
        service_url: str | None = None,
        service_host: str | None = None,
    ) -> None:
        self.store = store
        self.fork_domain = fork_domain.strip().strip(".").lower()
        self.service_host = service_host or self.fork_domain
        self.timeout = timeout
        self.timeouts = Timeouts(connect=timeout, read=timeout)
        self.service_url = service_url
        self.tokens = TokenCache(signer, ttl=token_ttl, clock=clock)
        self.watchlist = Watchlist()
        # Random per instance: a client cannot guess it to forge a loop, and two services
        # chained on purpose do not take each other's requests for loops.
        self.marker = f"featureflag-{secrets.token_hex(8)}".encode("ascii")
        self.via = b"1.1 " + self.marker
        self.upstream: Upstream = (
            AiohttpUpstream(connections=connections, policy=policy)
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
        await Exchange(self, route.fork, receive, send, head).run(scope, route)

    async def _route(self, scope: Scope) -> Route | proxy_errors.ErrorPage:
        """Where the request goes and with which headers, or the page that says why not."""
        host = _header(scope, b"host")
        name = fork_from_host(host, self.fork_domain)
        if name is None:
            return proxy_errors.not_a_fork(host, service_url=self.page_service_url(scope, host))
        if self._looped(scope):
            logger.warning("fork %s: a request came back through this service: refused (508)", name)
            return proxy_errors.loop_detected(name)
        fork = await self.store.get_fork(name)
        if fork is None:
            self.tokens.forget(name)
            return proxy_errors.unknown_fork(name, service_url=self.page_service_url(scope, host))
        if is_expired(fork):
            return proxy_errors.fork_expired(name, service_url=self.page_service_url(scope, host))
        try:
            token = self.tokens.token_for(fork)
            base, target = upstream_target(fork.upstream, scope)
        except OutsideUpstream:
            link = self.page_service_url(scope, host)
            return proxy_errors.outside_upstream(name, service_url=link)
        except (TokenError, ValueError, httpx.InvalidURL) as exc:
            logger.warning(
                "fork %s: its flags or upstream cannot be used: %s",
                name,
                proxy_errors.redact(str(exc)),
            )
            return proxy_errors.bad_fork(name, service_url=self.page_service_url(scope, host))
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
        headers.append((b"via", self.via))
        if base.authorization is not None:
            # Credentials in the fork's upstream URL win over the client's own.
            headers = [(k, v) for k, v in headers if k != b"authorization"]
            headers.append((b"authorization", base.authorization))
        rewriter = ResponseRewriter(fork.upstream, f"{scheme}://{host}", self.fork_domain)
        return Route(fork, base.origin, target, headers, rewriter, host)

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
            log_failure(route, "timed out")
            page = proxy_errors.upstream_timeout(
                route.fork.name, self.timeout, service_url=self.page_service_url(scope, route.host)
            )
            await page.deny(send, scope)
            return
        except httpx.TransportError as exc:
            log_failure(route, repr(exc))
            page = proxy_errors.upstream_unreachable(
                route.fork.name,
                describe(exc),
                service_url=self.page_service_url(scope, route.host),
            )
            await page.deny(send, scope)
            return
        await relay_websocket(upstream, receive, send, logger=logger, fork=route.fork.name)

    def _looped(self, scope: Scope) -> bool:
        """Whether the request already passed through this proxy (its ``Via`` says so)."""
        marker = self.marker
        return any(k == b"via" and marker in v for k, v in scope["headers"])

    def page_service_url(self, scope: Scope, host: str) -> str:
        """Where the error pages link to: *service_url*, else :attr:`service_host` with
        the request's scheme and port.

        Only the port comes from the ``Host`` header, and only as 1 to 5 ASCII digits:
        a forged ``Host`` cannot point the link anywhere but this service.
        """
        if self.service_url:
            return self.service_url
        scheme = _HTTP_SCHEME.get(scope.get("scheme", "http"), "http")
        _, sep, port = host.rpartition(":")
        default = "443" if scheme == "https" else "80"
        port_part = ""
        if sep and _PORT.fullmatch(port) and 0 < int(port) < 65536 and port != default:
            port_part = f":{int(port)}"
        return f"{scheme}://{self.service_host}{port_part}/"

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
_PORT = re.compile(r"[0-9]{1,5}")


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
    prefix = base.prefix
    path = prefix + path
    if "/." in path:
        # Resolve "." and ".." as the upstream would: a fork of http://app/shop must not
        # reach http://app/admin.
        path = httpx.URL("http://upstream" + path).raw_path.decode("ascii")
        if prefix and not path.startswith(prefix + "/") and path != prefix:
            raise OutsideUpstream(f"the path {scope.get('path', '')!r} leads outside the upstream")
    # Then the target as sent, under every reading an upstream may use (decoded, "\\" as
    # "/"): checking the request's path before the resolution above is not enough, as
    # decoding can regroup segments ("/%25%2f%25/../..%2f" resolves to "/shop/..%2f").
    rest = path[len(prefix) :]
    if prefix and ("." in rest or "%" in rest) and _climbs(rest):
        raise OutsideUpstream(f"the path {scope.get('path', '')!r} leads outside the upstream")
    query_string: bytes = scope.get("query_string", b"")
    query = (
        query_string.decode("ascii")
        if not query_string.rstrip(_QUERY_BYTES)
        else quote(query_string, safe=_QUERY_SAFE)
    )
    return base, (path + "?" + query if query else path).encode("ascii")


_SEPARATORS = re.compile(r"[/\\]")


def _climbs(path: str) -> bool:
    """Whether *path* climbs above its start under any reading an upstream may use:
    percent-decoded (once or more: ``%2e%2e``, ``%252e``), with ``\\`` as a separator and
    ``;params`` cut from segments (``/..;/``), then ``.`` and ``..`` resolved."""
    for _ in range(4):
        decoded = unquote(path, encoding="latin-1")
        if decoded == path:
            break
        path = decoded
    depth = 0
    for segment in _SEPARATORS.split(path):
        segment = segment.partition(";")[0]
        if segment in ("", "."):
            continue
        if segment == "..":
            depth -= 1
            if depth < 0:
                return True
        else:
            depth += 1
    return False


class OutsideUpstream(Exception):
    """The request's path, once ``..`` segments are resolved, leaves the upstream's path."""


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode("latin-1")
    return ""
