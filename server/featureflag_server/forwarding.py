"""Header rewriting for the fork proxy: what goes upstream, what comes back.

Requests lose their hop-by-hop headers (RFC 9110 §7.6.1), the client's own override
header, every cookie named like the service's (``featureflag_overrides``: the fork's flags
replace it; the service's session cookie: the upstream has no business with it), and any
proxy header a client could forge (``Forwarded``, ``X-Real-IP``, ``X-Forwarded-Port``,
``-Prefix``, ``-Server``, ``X-Original-URL``, ``X-Rewrite-URL``), and gain
``X-Forwarded-For`` / ``-Proto`` / ``-Host`` set by the proxy.

Responses lose their hop-by-hop headers; a ``Location`` naming the upstream points at
the fork instead, and is never scheme-relative or backslashed (``/shop//evil.example``
with the prefix ``/shop`` cut would be ``//evil.example``, another site). A ``Set-Cookie``
loses a ``Domain`` naming the upstream, the fork host or anything at or above the fork
domain (so an upstream cannot plant cookies on the service or on other forks), and one
named like the service's own cookies is dropped whole.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urlsplit

from featureflag.headers import TOKEN_COOKIE, TOKEN_HEADER, asgi_name

from .web import SESSION_COOKIE

OVERRIDE_HEADER = asgi_name(TOKEN_HEADER)
OVERRIDE_COOKIE = TOKEN_COOKIE
OVERRIDE_COOKIE_BYTES = OVERRIDE_COOKIE.encode()
# Cookie names that belong to featureflag, compared without a __Host-/__Secure- prefix.
OUR_COOKIES = frozenset({TOKEN_COOKIE, SESSION_COOKIE})
_OUR_COOKIES_BYTES = frozenset(name.encode() for name in OUR_COOKIES)
_COOKIE_PREFIXES = ("__Host-", "__Secure-")

# RFC 9110 §7.6.1, plus the non-standard Proxy-Connection and the headers only a proxy
# hop may use. Header names in ASGI are lowercase bytes.
HOP_BY_HOP = frozenset(
    {
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authorization",
        b"proxy-authenticate",
        b"trailer",
    }
)
CLIENT_PROXY_HEADERS = (
    "Forwarded",
    "X-Real-IP",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "X-Forwarded-Server",
    "X-Forwarded-Scheme",
    "X-Forwarded-Ssl",
    "X-Original-URL",
    "X-Original-Host",
    "X-Rewrite-URL",
)
"""What other proxies use to say where a request came from or what it asked for. A
client's value would be believed by an upstream behind the proxy, so the proxy (and the
gateway configurations) drop them."""
# Set by the proxy itself (Host by httpx from the upstream URL); a client's value is dropped.
# Expect: the service already answered any 100-continue, the upstream must not wait for one.
_REPLACED = frozenset(
    {
        b"host",
        b"expect",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        OVERRIDE_HEADER,
        *(asgi_name(h) for h in CLIENT_PROXY_HEADERS),
    }
)

Headers = list[tuple[bytes, bytes]]


def _connection_tokens(value: bytes) -> set[bytes]:
    """Header names listed in a ``Connection`` value (hop-by-hop for this message)."""
    return {t.strip().lower() for t in value.split(b",") if t.strip()}


def strip_hop_by_hop(headers: Iterable[tuple[bytes, bytes]]) -> Headers:
    """*headers* without hop-by-hop ones; names lowercased."""
    out: Headers = []
    listed: set[bytes] = set()
    for name, value in headers:
        name = name.lower()
        if name in HOP_BY_HOP:
            if name == b"connection":
                listed |= _connection_tokens(value)
            continue
        out.append((name, value))
    return [pair for pair in out if pair[0] not in listed] if listed else out


def is_our_cookie(name: str) -> bool:
    """Whether the cookie *name* is one of featureflag's (any ``__Host-`` prefix aside)."""
    for prefix in _COOKIE_PREFIXES:
        name = name.removeprefix(prefix)
    return name in OUR_COOKIES


def _our_cookie_bytes(name: bytes) -> bool:
    name = name.strip()
    for prefix in (b"__Host-", b"__Secure-"):
        name = name.removeprefix(prefix)
    return name in _OUR_COOKIES_BYTES


def strip_override_cookie(value: bytes) -> bytes:
    """A ``Cookie`` header value without featureflag's cookies (every copy of them)."""
    kept = [
        part
        for part in value.split(b";")
        if part.strip() and not _our_cookie_bytes(part.split(b"=", 1)[0])
    ]
    return b";".join(kept).strip()


def request_headers(
    headers: Iterable[tuple[bytes, bytes]],
    *,
    token: str,
    client_ip: str | None,
    scheme: str,
    host: str,
) -> Headers:
    """The headers to send upstream for a request that reached the fork host *host*."""
    out: Headers = []
    forwarded_for: list[bytes] = []
    for name, value in strip_hop_by_hop(headers):
        if name in _REPLACED:
            if name == b"x-forwarded-for":
                forwarded_for.append(value.strip())
            continue
        if name == b"cookie" and b"featureflag_" in value:
            value = strip_override_cookie(value)
            if not value:
                continue
        out.append((name, value))
    chain = [hop.strip() for value in forwarded_for for hop in value.split(b",") if hop.strip()]
    # Behind a trusted proxy the server already took the client from this chain (uvicorn
    # --proxy-headers); appending it again would only repeat the last hop.
    if client_ip and (not chain or chain[-1] != client_ip.encode("latin-1")):
        chain.append(client_ip.encode("latin-1"))
    if chain:
        out.append((b"x-forwarded-for", b", ".join(chain)))
    out.append((b"x-forwarded-proto", scheme.encode("latin-1")))
    out.append((b"x-forwarded-host", host.encode("latin-1")))
    out.append((OVERRIDE_HEADER, token.encode("ascii")))
    return out


@dataclass(frozen=True, slots=True)
class Origin:
    """Where a URL points: scheme, lowercase host and explicit port."""

    scheme: str
    host: str
    port: int

    @classmethod
    def parse(cls, url: str, *, default_scheme: str = "http") -> Origin | None:
        """The origin of *url*, or None when it has no usable host."""
        try:
            parts = urlsplit(url)
            scheme = (parts.scheme or default_scheme).lower()
            port = parts.port or {"http": 80, "https": 443}.get(scheme)
        except ValueError:
            return None
        if not parts.hostname or port is None:
            return None
        return cls(scheme, parts.hostname.lower(), port)


class ResponseRewriter:
    """Rewrites upstream response headers so a browser stays on the fork host.

    *upstream* is the fork's upstream URL (it may carry a path prefix such as
    ``http://10.0.0.5:8080/app``); *fork_origin* is ``scheme://host[:port]`` as the
    client reached the fork; *fork_domain* is the service's fork domain (cookies with a
    ``Domain`` at or above it lose that attribute).
    """

    def __init__(self, upstream: str, fork_origin: str, fork_domain: str = "") -> None:
        self.upstream_url = upstream
        self.fork_origin = fork_origin
        self.fork_domain = fork_domain.strip(".").lower()

    # Parsed only when a response has a Location or Set-Cookie to rewrite.
    @cached_property
    def upstream(self) -> Origin | None:
        """The upstream's origin."""
        return Origin.parse(self.upstream_url)

    @cached_property
    def prefix(self) -> str:
        """The upstream's path prefix, without a trailing slash (often empty)."""
        return urlsplit(self.upstream_url).path.rstrip("/")

    def headers(self, headers: Iterable[tuple[bytes, bytes]]) -> Headers:
        """Response headers to send to the client (without ``X-Robots-Tag``).

        The upstream's ``Date`` is dropped: the server the service runs on (uvicorn)
        writes its own, and a response must not carry two.
        """
        out: Headers = []
        for name, value in strip_hop_by_hop(headers):
            if name == b"date":
                continue
            if name == b"location":
                value = self.location(value.decode("latin-1")).encode("latin-1")
            elif name == b"set-cookie":
                cookie = self.set_cookie(value.decode("latin-1"))
                if cookie is None:
                    continue
                value = cookie.encode("latin-1")
            out.append((name, value))
        return out

    def _strip_prefix(self, path: str) -> str:
        if self.prefix and (path == self.prefix or path.startswith(self.prefix + "/")):
            return path[len(self.prefix) :] or "/"
        return path

    def location(self, value: str) -> str:
        """*value* pointing at the fork when it names the upstream (absolute or not);
        never scheme-relative (``//host``) nor starting with a backslash."""
        return _no_other_host(self._location(value))

    def _location(self, value: str) -> str:
        try:
            parts = urlsplit(value.strip())
        except ValueError:
            return value
        if not parts.netloc:
            # A path: relative to the fork host already; drop the upstream's path prefix.
            if parts.path.startswith("/") and not parts.scheme:
                return parts._replace(path=self._strip_prefix(parts.path)).geturl()
            return value
        if parts.scheme not in ("", "http", "https"):
            return value
        origin = Origin.parse(value.strip(), default_scheme=self.upstream_scheme)
        if origin is None or origin != self.upstream:
            return value
        rest = parts._replace(scheme="", netloc="", path=self._strip_prefix(parts.path))
        return self.fork_origin + (rest.geturl() or "/")

    @property
    def upstream_scheme(self) -> str:
        return self.upstream.scheme if self.upstream else "http"

    @cached_property
    def fork_host(self) -> str:
        """The fork host the client reached, lowercase, without a port."""
        return (urlsplit(self.fork_origin).hostname or "").lower()

    def _domain_removed(self, domain: str) -> bool:
        """Whether a cookie's ``Domain`` is dropped: the upstream host or above it, the
        fork host, or the fork domain or above it (the service and every fork)."""
        hosts = [self.fork_host, self.fork_domain]
        if self.upstream is not None:
            hosts.append(self.upstream.host)
        return any(h and (h == domain or h.endswith("." + domain)) for h in hosts)

    def set_cookie(self, value: str) -> str | None:
        """*value* without a ``Domain`` that names the upstream host, the fork host or
        anything at or above the fork domain, with its path prefix cut; None (drop the
        header) for a cookie named like featureflag's own (:data:`OUR_COOKIES`).

        With no ``Domain`` the browser keeps the cookie for the fork host only, which is
        exactly where the user is; a ``Domain`` naming any other host is left alone (the
        browser ignores it as it would without the proxy).
        """
        attrs = value.split(";")
        if is_our_cookie(attrs[0].partition("=")[0].strip()):
            return None
        kept = [attrs[0]]
        for attr in attrs[1:]:
            key, _, val = attr.partition("=")
            key = key.strip().lower()
            val = val.strip()
            if key == "domain":
                domain = val.strip().lstrip(".").rstrip(".").lower()
                if domain and self._domain_removed(domain):
                    continue
            elif key == "path" and self.prefix:
                attr = f" Path={self._strip_prefix(val)}"
            kept.append(attr)
        return ";".join(kept)


def _no_other_host(location: str) -> str:
    """*location* with a leading run of slashes and backslashes made one ``/``.

    Browsers read ``//evil.example`` and ``/\\evil.example`` (tabs and newlines removed
    first) as another host; a path must stay a path on the fork host.
    """
    cleaned = location.strip().replace("\t", "").replace("\n", "").replace("\r", "")
    if cleaned[:1] in ("/", "\\") and cleaned[1:2] in ("/", "\\"):
        return "/" + cleaned.lstrip("/\\")
    return location
