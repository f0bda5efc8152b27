"""``GET /api/forward-auth``: which token and which upstream a fork host gets.

The team's own gateway (nginx ``auth_request``, Caddy ``forward_auth``, Traefik
``ForwardAuth``, ingress-nginx ``auth-url``) asks this for every fork request, caches the
answer for ``Cache-Control: max-age`` seconds (``--forward-auth-cache``), and proxies
straight to the fork's upstream with the fork's token: the service is no longer on the
request path. ``featureflag-server gateway-config`` renders those configurations; see
``docs/gateways.md``.

The gateway sends its own API token (``Authorization: Bearer``), so this is no open token
mint, and the visitor's host in ``X-Forwarded-Host`` (else the host of ingress-nginx's
``X-Original-URL``, else ``Host``). A fork answers 200
with the headers named below. A refusal answers the page the visitor should see, with its
status: 404 for a host that names no fork (or an unknown fork), 410 for an expired fork,
401 for a missing or wrong bearer (429 after too many), 403 for a bearer without the
``gateway`` scope or a fork that cannot be served. Gateways that pass only 401 and 403
on (nginx, ingress-nginx) add ``?deny=403``: every refusal but 401 is then a 403 with
the real status in ``X-Featureflag-Status``.
"""

from __future__ import annotations

import base64
import logging
import math
import time
from html import escape
from urllib.parse import urlsplit

import httpx
from starlette.datastructures import Headers, QueryParams
from starlette.responses import HTMLResponse, Response
from starlette.types import Receive, Scope, Send

from featureflag.exceptions import TokenError

from . import proxy_errors
from .auth import FailedLogins, bearer_token, challenge
from .errors import TooManyAttempts
from .fork_tokens import DEFAULT_TOKEN_TTL, REMINT_FRACTION, TokenCache
from .forks import is_expired
from .forwarding import OVERRIDE_HEADER
from .proxy import fork_from_host
from .settings import DEFAULT_MAX_TOKEN_TTL, Settings
from .store import Store
from .upstream_policy import UpstreamPolicy

logger = logging.getLogger("featureflag.server.forward_auth")

__all__ = [
    "ERROR_HEADER",
    "FORK_HEADER",
    "STATUS_HEADER",
    "UPSTREAM_AUTHORIZATION_HEADER",
    "UPSTREAM_DIAL_HEADER",
    "UPSTREAM_HEADER",
    "UPSTREAM_HOST_HEADER",
    "UPSTREAM_PATH_HEADER",
    "UPSTREAM_SCHEME_HEADER",
    "ForwardAuth",
    "max_age",
    "token_ttl",
]

# What a 200 carries besides Feature-Flag-Overrides (one spelling, used by gateway_config).
UPSTREAM_HEADER = "X-Featureflag-Upstream"  # scheme://host[:port], for nginx's proxy_pass
UPSTREAM_DIAL_HEADER = "X-Featureflag-Upstream-Dial"  # host:port, for Caddy's reverse_proxy
UPSTREAM_SCHEME_HEADER = "X-Featureflag-Upstream-Scheme"  # http or https
UPSTREAM_HOST_HEADER = "X-Featureflag-Upstream-Host"  # the Host header the upstream expects
UPSTREAM_PATH_HEADER = "X-Featureflag-Upstream-Path"  # the upstream's path prefix, or ""
UPSTREAM_AUTHORIZATION_HEADER = "X-Featureflag-Upstream-Authorization"  # from user:pass@
FORK_HEADER = "X-Featureflag-Fork"
# What a refusal carries: a short code, and with ?deny=403 the status the page has.
ERROR_HEADER = "X-Featureflag-Error"
STATUS_HEADER = "X-Featureflag-Status"


def token_ttl(cache_seconds: int, cap: float = DEFAULT_MAX_TOKEN_TTL) -> float:
    """The lifetime to mint fork tokens with: an hour, or 25 cache times when longer
    (the token cache re-mints with 10% left, so a cached answer's token then outlives
    twice the cache time), but never past *cap* (``FEATUREFLAG_MAX_TOKEN_TTL``)."""
    return min(max(DEFAULT_TOKEN_TTL, 25.0 * cache_seconds), cap)


def max_age(cache_seconds: int, ttl: float) -> int:
    """The ``max-age`` to answer with: *cache_seconds*, shortened when tokens of *ttl*
    seconds could not outlive twice it (a very low ``FEATUREFLAG_MAX_TOKEN_TTL``)."""
    return min(cache_seconds, math.floor(REMINT_FRACTION * ttl / 2))


class ForwardAuth:
    """The pure ASGI app behind ``/api/forward-auth`` (any method; no body is read)."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        logins: FailedLogins,
        policy: UpstreamPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.policy = policy or settings.upstream_policy()
        self.store = store
        self.logins = logins
        ttl = token_ttl(settings.forward_auth_cache, settings.max_token_ttl)
        self.cache = max_age(settings.forward_auth_cache, ttl)
        self.tokens = TokenCache(settings.signer(), ttl=ttl, clock=time.time)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        response = await self.answer(scope)
        await response(scope, receive, send)

    async def answer(self, scope: Scope) -> Response:
        """The response for one forward-auth request."""
        # Any method: a gateway may ask with the visitor's own (nginx's sub-request does).
        headers = Headers(scope=scope)
        deny_403 = QueryParams(scope.get("query_string", b"")).get("deny") == "403"
        refused = self._check_bearer(scope, headers)
        if refused is not None:
            if deny_403 and refused.status_code == 429:
                refused.headers[STATUS_HEADER] = "429"
                refused.status_code = 403
            return refused
        host = (
            headers.get("x-forwarded-host")
            or _original_host(headers.get("x-original-url"))  # ingress-nginx's auth-url
            or headers.get("host")
            or ""
        )
        # A proxy chain may list several hosts: the first is the one the visitor used.
        host = host.split(",")[0].strip()
        service_url = self._service_url(headers)
        name = fork_from_host(host, self.settings.fork_domain)
        if name is None:
            page = proxy_errors.not_a_fork(host, service_url=service_url)
            return self._refuse(page, "not-a-fork", deny_403)
        fork = await self.store.get_fork(name)
        if fork is None:
            self.tokens.forget(name)
            page = proxy_errors.unknown_fork(name, service_url=service_url)
            return self._refuse(page, "unknown-fork", deny_403)
        if is_expired(fork):
            return self._refuse(
                proxy_errors.fork_expired(name, service_url=service_url), "expired-fork", deny_403
            )
        try:
            token = self.tokens.token_for(fork)
            upstream = httpx.URL(fork.upstream)
            if upstream.scheme not in ("http", "https") or not upstream.host:
                raise ValueError(f"the upstream {fork.upstream!r} is not an http(s) URL")
            # The gateway connects where this answer says: the upstream policy (SSRF,
            # loops) is checked here, on the name and on what it resolves to now.
            problem = await self.policy.resolved_problem(fork.upstream, self.settings.fork_domain)
            if problem is not None:
                raise ValueError(problem)
        except (TokenError, ValueError, httpx.InvalidURL) as exc:
            logger.warning(
                "fork %s: refused to the gateway, its flags or upstream cannot be used: %s",
                name,
                proxy_errors.redact(str(exc)),
            )
            page = proxy_errors.bad_fork(name, service_url=service_url)
            return self._refuse(page, "bad-fork", deny_403, status=403)
        return Response(
            status_code=200,
            headers=_upstream_headers(upstream)
            | {
                OVERRIDE_HEADER.decode(): token,
                FORK_HEADER: name,
                "Cache-Control": f"max-age={self.cache}",
            },
        )

    def _check_bearer(self, scope: Scope, headers: Headers) -> Response | None:
        given = bearer_token(headers.get("authorization"))
        if given is None:
            return _unauthorized(
                challenge(), "The gateway sent no Authorization: Bearer <API token>."
            )
        client = scope.get("client")
        try:
            user = self.logins.attempt(
                client[0] if client else "", given, self.settings.authenticate
            )
        except TooManyAttempts as exc:
            return _page(
                429,
                "Too many attempts",
                "The gateway sent too many unknown API tokens",
                f"<p>{escape(str(exc))}</p>",
                {"Retry-After": str(exc.retry_after), ERROR_HEADER: "too-many-attempts"},
            )
        if user is None:
            return _unauthorized(
                challenge("invalid_token", "unknown API token"),
                "The gateway's API token is not one of FEATUREFLAG_API_TOKENS; set "
                "FEATUREFLAG_API_TOKEN to one of them and render the config again.",
            )
        if "gateway" not in self.settings.scopes(user):
            return _page(
                403,
                "Gateway not authorized",
                "The gateway's API token lacks the gateway scope",
                f"<p>The API token {escape(user)!r} lacks the 'gateway' scope; give the gateway "
                "a token that has it (FEATUREFLAG_API_TOKENS, name:token:gateway).</p>",
                {ERROR_HEADER: "insufficient-scope"},
            )
        return None

    def _refuse(
        self, page: proxy_errors.ErrorPage, code: str, deny_403: bool, *, status: int | None = None
    ) -> Response:
        real = status or page.status
        headers = {
            ERROR_HEADER: code,
            # A missing fork may be created any moment: cache the refusal no longer than an answer.
            "Cache-Control": f"max-age={self.cache}" if real != 403 else "no-store",
        }
        if deny_403:
            headers[STATUS_HEADER] = str(real)
            real = 403
        return HTMLResponse(page.html(), status_code=real, headers=headers)

    def _service_url(self, headers: Headers) -> str:
        # The visitor reached the gateway with this scheme; the service is the bare domain.
        scheme = (headers.get("x-forwarded-proto") or "http").split(",")[0].strip()
        port = (headers.get("x-forwarded-port") or "").strip()
        default = {"http": "80", "https": "443"}.get(scheme)
        suffix = f":{port}" if port.isdigit() and port != default else ""
        return f"{scheme if scheme in ('http', 'https') else 'http'}://{self.settings.fork_domain}{suffix}/"


def _original_host(url: str | None) -> str:
    if not url:
        return ""
    try:
        return urlsplit(url).netloc.rpartition("@")[2]
    except ValueError:
        return ""


def _upstream_headers(url: httpx.URL) -> dict[str, str]:
    port = url.port or (443 if url.scheme == "https" else 80)
    host = url.host if ":" not in url.host else f"[{url.host}]"
    netloc = url.netloc.decode("ascii")
    headers = {
        UPSTREAM_HEADER: f"{url.scheme}://{netloc}",
        UPSTREAM_DIAL_HEADER: f"{host}:{port}",
        UPSTREAM_SCHEME_HEADER: url.scheme,
        UPSTREAM_HOST_HEADER: netloc,
        UPSTREAM_PATH_HEADER: url.raw_path.partition(b"?")[0].decode("ascii").rstrip("/"),
    }
    if url.userinfo:
        credentials = f"{url.username}:{url.password}".encode()
        headers[UPSTREAM_AUTHORIZATION_HEADER] = "Basic " + base64.b64encode(credentials).decode()
    return headers


def _page(status: int, title: str, heading: str, body: str, headers: dict[str, str]) -> Response:
    page = proxy_errors.ErrorPage(status, title, heading, body)
    return HTMLResponse(
        page.html(), status_code=status, headers=headers | {"Cache-Control": "no-store"}
    )


def _unauthorized(www_authenticate: str, message: str) -> Response:
    return _page(
        401,
        "Gateway not authorized",
        "The gateway is not authorized to ask the featureflag service",
        f"<p>{message}</p>",
        {"WWW-Authenticate": www_authenticate, ERROR_HEADER: "unauthorized"},
    )
