"""Propagation: carry a request's override token to other services over httpx.

Inside a request the middleware verified a token for, an outgoing httpx request to an
*allowed* host carries the same ``Feature-Flag-Overrides`` header, and the downstream
``Feature-Flags`` report is merged into this request's evaluations with ``service`` set,
so the report (and the extension's popup) shows flags from the whole call tree::

    client = featureflag.propagation.propagating_async_client(allow_hosts=["*.internal"])
    # or: httpx.AsyncClient(transport=AsyncPropagatingTransport(allow_hosts=[...]))

Allowed hosts are the ``allow_hosts`` patterns plus, unless ``same_host=False``, the
host the incoming request was addressed to (its ``Host`` header). Any other host never
sees the token: the transport also strips a ``Feature-Flag-Overrides`` header that
something else put on a request to it (a redirect, a copied header set), and its
``Feature-Flags`` answer is ignored.

Routes: when the request's token carries ``routes`` (a fork of a microservice), a
request for a service the app names in ``services`` goes to the route's base URL
instead, but only when ``routes_allowed`` allows that service, host and port. A route
the app does not allow is never followed: it is logged, and reported as a ``route``
item with ``rejected``. See ``docs/propagation.md``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import httpx

from ._http import current_host, current_token
from ._routing import RoutePolicy, token_routes
from ._scope import Evaluation, current_scope
from .exceptions import ConfigurationError
from .headers import ERROR_HEADER, REPORT_HEADER, ROUTE, TOKEN_HEADER
from .report import parse_report

__all__ = [
    "AsyncPropagatingTransport",
    "HostPolicy",
    "PropagatingTransport",
    "RoutePolicy",
    "host_of",
    "propagating_async_client",
    "propagating_client",
]


logger = logging.getLogger("featureflag.propagation")

ServiceNames = Mapping[str, str] | Callable[[httpx.URL], str | None]
RoutesAllowed = Mapping[str, Iterable[str]]


def _normalize_host(host: str) -> str:
    host = host.strip().lower().rstrip(".")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host


def host_of(host_header: str) -> str:
    """The host name in a ``Host`` header value (port and IPv6 brackets removed)."""
    value = host_header.strip()
    if value.startswith("["):
        end = value.find("]")
        return _normalize_host(value[1:end] if end != -1 else value[1:])
    if value.count(":") == 1:
        value = value.partition(":")[0]
    return _normalize_host(value)


class HostPolicy:
    """Which hosts may receive the token: exact names and ``*.domain`` patterns.

    A pattern is a host name (``billing``, ``api.example.com``, ``127.0.0.1``, ``::1``)
    or ``*.`` followed by a domain, which matches any name under it (``a.example.com``,
    ``a.b.example.com``) but not the domain itself; ``*.com`` would trust the world,
    so name your own domain. Ports are not part of a pattern: a host is trusted on
    every port, like a cookie. A bare ``*``, a URL or a port is a
    :class:`ConfigurationError`, so a typo can never mean "everyone".
    """

    __slots__ = ("exact", "same_host", "suffixes")

    def __init__(self, allow_hosts: Iterable[str] = (), *, same_host: bool = True) -> None:
        if isinstance(allow_hosts, str):
            allow_hosts = [allow_hosts]
        exact: set[str] = set()
        suffixes: list[str] = []
        for raw in allow_hosts:
            pattern = _normalize_host(raw)
            if "://" in pattern or "/" in pattern:
                raise ConfigurationError(
                    f"allow_hosts takes host names, not URLs: {raw!r}; write "
                    f"{httpx.URL(raw).host!r} instead"
                    if "://" in pattern
                    else f"allow_hosts takes host names, not paths: {raw!r}"
                )
            if pattern.count(":") == 1 or (pattern.startswith("[") and "]:" in pattern):
                raise ConfigurationError(
                    f"allow_hosts takes host names without a port: {raw!r}; write "
                    f"{host_of(pattern)!r} (a host is trusted on every port)"
                )
            if pattern.startswith("*."):
                domain = pattern[2:]
                if not domain or "*" in domain:
                    raise ConfigurationError(f"bad allow_hosts pattern {raw!r}")
                suffixes.append("." + domain)
            elif not pattern or "*" in pattern:
                raise ConfigurationError(
                    f"allow_hosts pattern {raw!r} would allow every host; the token "
                    "must never reach third parties: list the hosts (or '*.your.domain')"
                )
            else:
                exact.add(pattern)
        self.exact = frozenset(exact)
        self.suffixes = tuple(suffixes)
        self.same_host = same_host

    def allows(self, host: str, incoming_host: str | None = None) -> bool:
        """True when *host* (a URL's host name) may receive the token.

        *incoming_host* is the host the current request was addressed to; it counts
        only when ``same_host`` is on.
        """
        host = _normalize_host(host)
        if not host:
            return False
        if host in self.exact or host.endswith(self.suffixes):
            return True
        return self.same_host and incoming_host is not None and host == incoming_host


def _incoming() -> tuple[str | None, str | None]:
    """(the verified raw token, the incoming request's host name) of this context.

    The middleware (ASGI or WSGI) sets both only while serving a request whose token
    it verified; outside one, or with a refused token, both are None.
    """
    host = current_host()
    return current_token(), (host_of(host) if host else None)


class _Propagation:
    """The logic both transports share: prepare the request, merge the answer."""

    def __init__(
        self,
        allow_hosts: Iterable[str],
        same_host: bool,
        services: ServiceNames | None,
        routes_allowed: RoutesAllowed | None = None,
    ) -> None:
        self.policy = HostPolicy(allow_hosts, same_host=same_host)
        self.services = services
        self.routes = RoutePolicy(routes_allowed)

    def prepare(self, request: httpx.Request) -> tuple[httpx.Request, bool, str | None]:
        """The request to send, whether its host is allowed (its report is trusted), and
        the service it was routed for (None when it was not routed)."""
        token, incoming_host = _incoming()
        routed: str | None = None
        if token is not None and self.services is not None:
            request, routed = self.route(request, token)
        url = request.url
        # Both spellings of an internationalized name: patterns may be written in
        # Unicode, while a Host header carries the ASCII (punycode) form. A route the
        # app allowed is trusted with the token: it stands in for the service.
        allowed = (
            routed is not None
            or self.policy.allows(url.host, incoming_host)
            or self.policy.allows(url.raw_host.decode("ascii"), incoming_host)
        )
        if not allowed:
            if TOKEN_HEADER in request.headers:
                headers = request.headers.copy()
                del headers[TOKEN_HEADER]
                return _with_headers(request, headers), False, None
            return request, False, None
        if token is None or TOKEN_HEADER in request.headers:
            # Explicit beats implicit: a header the caller set for an allowed host stays.
            return request, True, routed
        headers = request.headers.copy()
        headers[TOKEN_HEADER] = token
        return _with_headers(request, headers), True, routed

    def route(self, request: httpx.Request, token: str) -> tuple[httpx.Request, str | None]:
        """*request* sent to its service's route when the token routes it and the app
        allows it; the routed service's name, or None."""
        routes, problems = token_routes(token)
        if not routes and not problems:
            return request, None
        service = self.named_service(request.url)
        if service is None:
            return request, None
        target = routes.get(service)
        if target is None:
            problem = problems.get(service) or problems.get("*")
            if problem is not None:
                _record(service, None, f"malformed route: {problem}")
            return request, None
        refusal = self.routes.refusal(service, target)
        if refusal is None:
            routed = _routed_url(request.url, target)
            if routed is not None:
                _record(service, target, None)
                headers = request.headers.copy()
                headers["Host"] = routed.netloc.decode("ascii")  # the route's, not the service's
                return _with_headers(request, headers, routed), service
            refusal = f"the route for {service!r} does not make a valid URL"
        _record(service, target, refusal)
        return request, None

    def named_service(self, url: httpx.URL) -> str | None:
        """The service name ``services`` gives *url*, or None."""
        services = self.services
        if callable(services):
            return services(url)
        if services is not None:
            return services.get(url.netloc.decode("ascii")) or services.get(url.host)
        return None

    def service_name(self, url: httpx.URL) -> str:
        return self.named_service(url) or url.netloc.decode("ascii")

    def merge(
        self, request: httpx.Request, response: httpx.Response, service: str | None = None
    ) -> None:
        """Add the downstream report to the current scope (allowed hosts only)."""
        scope = current_scope()
        if scope is None:
            return
        refused = response.headers.get(ERROR_HEADER)
        if refused is not None and TOKEN_HEADER in request.headers:
            logger.warning(
                "%s refused the propagated override token (%s); check that it shares "
                "the secret and environment",
                request.url.netloc.decode("ascii"),
                refused,
            )
        values = response.headers.get_list(REPORT_HEADER)
        if not values:
            return
        service = service or self.service_name(request.url)
        for evaluation in parse_report(", ".join(values), service=service):
            scope.add_remote(evaluation)


def _record(service: str, url: str | None, rejected: str | None) -> None:
    """Report a route decision in the current scope; log a refusal (once per request)."""
    # A followed route counts as an override: the response used what the token said, so
    # the middleware marks it Cache-Control: private, no-store.
    entry = Evaluation(ROUTE, url, "default" if rejected else "override", rejected, service)
    scope = current_scope()
    if scope is not None:
        if scope.remote.get((service, ROUTE)) == entry:
            return
        scope.add_remote(entry)
    if rejected is not None:
        logger.warning("Route for service %r to %r not followed: %s", service, url, rejected)


def _routed_url(url: httpx.URL, base: str) -> httpx.URL | None:
    """*url*'s path and query under the route *base*; None when that is not a URL."""
    try:
        routed = httpx.URL(base.rstrip("/") + url.raw_path.decode("ascii"))
        target = httpx.URL(base)
    except (httpx.InvalidURL, UnicodeDecodeError):
        return None
    # What httpx connects to is what the policy checked: the host and port of the base.
    if (routed.scheme, routed.raw_host, routed.port) != (
        target.scheme,
        target.raw_host,
        target.port,
    ):
        return None
    return routed


def _with_headers(
    request: httpx.Request, headers: httpx.Headers, url: httpx.URL | None = None
) -> httpx.Request:
    # A copy, never the caller's Request: httpx builds redirects from its headers.
    return httpx.Request(
        request.method,
        request.url if url is None else url,
        headers=headers,
        stream=request.stream,
        extensions=request.extensions,
    )


class PropagatingTransport(httpx.BaseTransport):
    """A sync httpx transport that propagates the override token and merges reports.

    Wraps *inner* (default: a new ``httpx.HTTPTransport()``). ``allow_hosts``: host
    patterns trusted with the token (see :class:`HostPolicy`); ``same_host``: also
    trust the host the incoming request was addressed to; ``services``: a mapping from
    ``host:port`` or host to the service name shown in reports (or a callable taking
    the URL), default the URL's ``host[:port]``; ``routes_allowed``: service name ->
    host patterns a token's route for that service may point at (see
    :class:`RoutePolicy`); a request is "for" a service when ``services`` names it.
    """

    def __init__(
        self,
        inner: httpx.BaseTransport | None = None,
        *,
        allow_hosts: Iterable[str] = (),
        same_host: bool = True,
        services: ServiceNames | None = None,
        routes_allowed: RoutesAllowed | None = None,
    ) -> None:
        self.inner = inner if inner is not None else httpx.HTTPTransport()
        self._propagation = _Propagation(allow_hosts, same_host, services, routes_allowed)

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        sent, allowed, routed = self._propagation.prepare(request)
        response = self.inner.handle_request(sent)
        if allowed:
            self._propagation.merge(sent, response, routed)
        return response

    def close(self) -> None:
        self.inner.close()


class AsyncPropagatingTransport(httpx.AsyncBaseTransport):
    """The async twin of :class:`PropagatingTransport` (default inner:
    ``httpx.AsyncHTTPTransport()``)."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport | None = None,
        *,
        allow_hosts: Iterable[str] = (),
        same_host: bool = True,
        services: ServiceNames | None = None,
        routes_allowed: RoutesAllowed | None = None,
    ) -> None:
        self.inner = inner if inner is not None else httpx.AsyncHTTPTransport()
        self._propagation = _Propagation(allow_hosts, same_host, services, routes_allowed)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent, allowed, routed = self._propagation.prepare(request)
        response = await self.inner.handle_async_request(sent)
        if allowed:
            self._propagation.merge(sent, response, routed)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


_TRANSPORT_OPTIONS = ("verify", "cert", "trust_env", "http1", "http2", "limits")


def _split(kwargs: dict[str, Any]) -> dict[str, Any]:
    # httpx ignores these when given a transport: hand them to the inner one instead.
    return {k: kwargs[k] for k in _TRANSPORT_OPTIONS if k in kwargs}


def propagating_client(
    *,
    allow_hosts: Iterable[str] = (),
    same_host: bool = True,
    services: ServiceNames | None = None,
    routes_allowed: RoutesAllowed | None = None,
    transport: httpx.BaseTransport | None = None,
    **client_options: Any,
) -> httpx.Client:
    """An ``httpx.Client`` whose requests propagate overrides (see the module docs).

    *client_options* go to ``httpx.Client`` (``base_url``, ``timeout``, ``limits``...);
    *transport* is the inner transport to wrap.
    """
    if transport is None:
        transport = httpx.HTTPTransport(**_split(client_options))
    return httpx.Client(
        transport=PropagatingTransport(
            transport,
            allow_hosts=allow_hosts,
            same_host=same_host,
            services=services,
            routes_allowed=routes_allowed,
        ),
        **client_options,
    )


def propagating_async_client(
    *,
    allow_hosts: Iterable[str] = (),
    same_host: bool = True,
    services: ServiceNames | None = None,
    routes_allowed: RoutesAllowed | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
    **client_options: Any,
) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` whose requests propagate overrides (see the module docs)."""
    if transport is None:
        transport = httpx.AsyncHTTPTransport(**_split(client_options))
    return httpx.AsyncClient(
        transport=AsyncPropagatingTransport(
            transport,
            allow_hosts=allow_hosts,
            same_host=same_host,
            services=services,
            routes_allowed=routes_allowed,
        ),
        **client_options,
    )
