"""Which routes an app follows: ``routes_allowed`` and the ``routes`` of the request's token.

A fork of a microservice carries ``routes`` (service name -> base URL) in its signed
token. :mod:`featureflag.propagation` sends a request for a routed service to the route
only when :class:`RoutePolicy` allows that service and that host and port. See
docs/propagation.md ("Routes").
"""

from __future__ import annotations

import json
import re
import threading
import zlib
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import httpx
from itsdangerous.encoding import base64_decode

from .exceptions import ConfigurationError
from .tokens import _SERVICE, SERVICE_RULE, read_routes, route_problem

ANY_PORT = -1
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_HOST = re.compile(rf"{_LABEL}(?:\.{_LABEL})*")
_IPV6 = re.compile(r"[0-9a-f:.]+")
PATTERN_RULE = (
    "a routes_allowed pattern is a host (recs.internal, 127.0.0.1, [::1]) or '*.' and a "
    "domain, then ':PORT' or ':*' (any port); without a port only the scheme's default "
    "port (80, 443) matches"
)


class RoutePolicy:
    """The hosts each service may be routed to, from ``routes_allowed``.

    ``{"recommendations": ["*.preview.svc.cluster.local", "127.0.0.1:*"]}``: a route
    for ``recommendations`` is followed when its host is under
    ``preview.svc.cluster.local`` (on port 80 or 443, the scheme's default) or is
    ``127.0.0.1`` on any port. Patterns are ASCII (punycode for international names); a
    bare ``*``, a URL or a bad port is a :class:`ConfigurationError` at start-up.
    """

    __slots__ = ("_rules",)

    def __init__(self, routes_allowed: Mapping[str, Iterable[str]] | None = None) -> None:
        rules: dict[str, tuple[tuple[str, bool, int | None], ...]] = {}
        for service, patterns in (routes_allowed or {}).items():
            if not isinstance(service, str) or _SERVICE.fullmatch(service) is None:
                raise ConfigurationError(f"routes_allowed key {service!r}: {SERVICE_RULE}")
            if isinstance(patterns, str):
                patterns = [patterns]
            rules[service] = tuple(_parse_pattern(service, p) for p in patterns)
        self._rules = rules

    def __bool__(self) -> bool:
        return bool(self._rules)

    def refusal(self, service: str, url: str) -> str | None:
        """None when the app follows ``service -> url``, else why it does not."""
        problem = route_problem(service, url)
        if problem is not None:
            return f"malformed route: {problem}"
        rules = self._rules.get(service)
        if not rules:
            return f"the app allows no route for service {service!r} (routes_allowed)"
        target = httpx.URL(url)
        host = target.raw_host.decode("ascii").lower()
        port = target.port or _DEFAULT_PORTS[target.scheme]
        for pattern, suffix, allowed_port in rules:
            if not (host.endswith(pattern) if suffix else host == pattern):
                continue
            if allowed_port == ANY_PORT or port == (allowed_port or _DEFAULT_PORTS[target.scheme]):
                return None
        shown = f"[{host}]" if ":" in host else host
        return (
            f"the app does not allow {shown}:{port} for service {service!r}; "
            f"add it to routes_allowed[{service!r}]"
        )


def _parse_pattern(service: str, raw: object) -> tuple[str, bool, int | None]:
    """(host or '.suffix', is a suffix, port: None default, ANY_PORT, or a number)."""
    if not isinstance(raw, str) or not raw.isascii() or "/" in raw or "@" in raw:
        raise ConfigurationError(f"routes_allowed[{service!r}] {raw!r}: {PATTERN_RULE}")
    pattern = raw.strip().lower()
    port_text: str | None = None
    if pattern.startswith("["):
        host, _, rest = pattern[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise ConfigurationError(f"routes_allowed[{service!r}] {raw!r}: {PATTERN_RULE}")
            port_text = rest[1:]
        valid = _IPV6.fullmatch(host) is not None and ":" in host
    else:
        if pattern.count(":") > 1:
            raise ConfigurationError(
                f"routes_allowed[{service!r}] {raw!r}: write an IPv6 address in brackets, "
                "e.g. [::1]:*"
            )
        host, colon, port_part = pattern.partition(":")
        port_text = port_part if colon else None
        bare = host[2:] if host.startswith("*.") else host
        valid = _HOST.fullmatch(bare) is not None
    if not valid:
        raise ConfigurationError(f"routes_allowed[{service!r}] {raw!r}: {PATTERN_RULE}")
    port: int | None = None
    if port_text == "*":
        port = ANY_PORT
    elif port_text is not None:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ConfigurationError(f"routes_allowed[{service!r}] {raw!r}: {PATTERN_RULE}")
        port = int(port_text)
    if host.startswith("*."):
        return host[1:], True, port
    return host, False, port


_CACHE_SIZE = 256
_cache: OrderedDict[str, tuple[dict[str, str], dict[str, str]]] = OrderedDict()
_lock = threading.Lock()


def token_routes(token: str) -> tuple[dict[str, str], dict[str, str]]:
    """The ``routes`` claim of *token*: (valid routes, service -> problem).

    Only ever called with the token the middleware verified for the current request
    (``_http.current_token()`` is None for any other), so the payload read here is the
    one whose signature was checked; reading it again saves threading the signer
    through every transport. Cached: the same token comes back on every request.
    """
    cached = _cache.get(token)
    if cached is not None:
        return cached
    try:
        data = token.rsplit(".", 2)[0]
        raw = base64_decode(data.lstrip("."))
        if data.startswith("."):
            # A verified token is at most 4 KiB: its payload inflates to little.
            raw = zlib.decompressobj().decompress(raw, 256 * 1024)
        payload = json.loads(raw)
        claim = payload.get("routes") if isinstance(payload, dict) else None
    except Exception:
        claim = None
    result = read_routes(claim)
    with _lock:
        _cache[token] = result
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return result
