"""The names featureflag puts on the wire: headers, the cookie, the OFREP path.

The one place they are spelled. The middleware, propagation, the report, the OFREP
endpoint and the override service import them from here, so a rename is one edit
and ``grep`` finds no second spelling (``tests/test_headers.py`` checks it). The
rules behind each name are in docs/middleware.md.

ASGI servers hand over header names as lower-case bytes and WSGI servers as
``HTTP_*`` environ keys: :func:`asgi_name` and :func:`wsgi_key` derive those forms.

Example::

    from featureflag.headers import TOKEN_HEADER

    httpx.get(url, headers={TOKEN_HEADER: token})
"""

from __future__ import annotations

__all__ = [
    "ERROR_HEADER",
    "OFREP_PATH",
    "REPORT_HEADER",
    "RESERVED_NAMES",
    "ROUTE",
    "TOKEN_COOKIE",
    "TOKEN_HEADER",
    "TRUNCATED",
    "VARY",
    "asgi_name",
    "wsgi_key",
]

TOKEN_HEADER = "Feature-Flag-Overrides"
"""Request header carrying the override token; wins over :data:`TOKEN_COOKIE`."""

TOKEN_COOKIE = "featureflag_overrides"
"""Request cookie carrying the override token (set by the browser extension)."""

REPORT_HEADER = "Feature-Flags"
"""Response header listing the flags the request evaluated (an RFC 9651 List)."""

ERROR_HEADER = "Feature-Flag-Override-Error"
"""Response header naming why a token was refused (``expired``, ``bad-signature``, ...)."""

OFREP_PATH = "/ofrep/v1/evaluate/flags"
"""Where the middleware serves OFREP bulk evaluation by default."""

TRUNCATED = "featureflag.truncated"
"""The name of the last :data:`REPORT_HEADER` item when the report was cut."""

ROUTE = "featureflag.route"
"""The name of an evaluation that records a route (a ``route`` item in the report):
``value`` is the route's base URL, ``service`` the routed service, ``rejected`` why it
was not followed; ``source`` is ``override`` for a followed route."""

RESERVED_NAMES = frozenset({TRUNCATED, ROUTE})
"""Names the report uses for its own items: no flag may take one."""

VARY = f"Cookie, {TOKEN_HEADER}"
"""The ``Vary`` value of every response: the token may come from either."""


def asgi_name(header: str) -> bytes:
    """*header* as ASGI servers give it: lower-case bytes (``b"feature-flags"``)."""
    return header.lower().encode("latin-1")


def wsgi_key(header: str) -> str:
    """*header* as a WSGI environ key (``HTTP_FEATURE_FLAGS``)."""
    return "HTTP_" + header.upper().replace("-", "_")
