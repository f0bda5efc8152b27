"""The fork proxy's own HTML error pages: unknown fork (404), upstream down (502), slow (504),
expired fork (410), a request that loops back through the service (508).

Also 400 for a path that ``..`` segments lead out of the upstream's path.

Each page names the fork and says what to do, but never the upstream or other internal
detail (fork URLs are public; the proxy logs those). Everything interpolated is escaped.
"""

from __future__ import annotations

from dataclasses import dataclass
from html import escape

from starlette.types import Scope, Send

_PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="robots" content="noindex">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{status} {title}</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; max-width: 40rem; margin: 3rem auto;
       padding: 0 1rem; color: #222; }}
h1 {{ font-size: 1.4rem; }}
code {{ background: #f3f3f3; padding: 0 .25rem; border-radius: 3px; }}
.status {{ color: #888; }}
</style>
</head>
<body>
<p class="status">{status} &middot; featureflag fork proxy</p>
<h1>{heading}</h1>
{body}
</body>
</html>
"""


@dataclass(frozen=True, slots=True)
class ErrorPage:
    """A status code and an HTML page to send instead of the upstream's response."""

    status: int
    title: str
    heading: str
    body: str  # already-escaped HTML

    def html(self) -> bytes:
        """The whole document, UTF-8."""
        page = _PAGE.format(
            status=self.status,
            title=escape(self.title),
            heading=self.heading,
            body=self.body,
        )
        return page.encode("utf-8")

    async def send(self, send: Send, *, head: bool = False) -> None:
        """Send the page as the complete response (no body for HEAD)."""
        body = self.html()
        await send(
            {
                "type": "http.response.start",
                "status": self.status,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                    (b"x-robots-tag", b"noindex"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": b"" if head else body})

    async def deny(self, send: Send, scope: Scope) -> None:
        """Refuse a WebSocket handshake with this page, where the server lets an app
        answer one with a response (the ASGI ``websocket.http.response`` extension);
        elsewhere by closing before accepting (the server answers 403)."""
        if "websocket.http.response" not in (scope.get("extensions") or {}):
            await send({"type": "websocket.close", "code": 1008})
            return
        body = self.html()
        await send(
            {
                "type": "websocket.http.response.start",
                "status": self.status,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"cache-control", b"no-store"),
                    (b"x-robots-tag", b"noindex"),
                ],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})


def redact(url: str) -> str:
    """*url* without its ``user:password@`` part: an error page is no place for it."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    authority, slash, path = rest.partition("/")
    if "@" in authority:
        authority = authority.rpartition("@")[2]
    return f"{scheme}://{authority}{slash}{path}"


def _code(text: str) -> str:
    return f"<code>{escape(text)}</code>"


def _manage(service_url: str | None) -> str:
    if service_url:
        link = escape(service_url, quote=True)
        return f'on the <a href="{link}">featureflag service page</a> ({escape(service_url)})'
    return "on the featureflag service page"


def unknown_fork(name: str, *, service_url: str | None) -> ErrorPage:
    """404: no fork has this name (deleted, renamed or mistyped)."""
    return ErrorPage(
        404,
        "Unknown fork",
        f"There is no fork named {_code(name)}",
        f"<p>It may have been deleted or renamed, or the address is mistyped. "
        f"See the forks that exist, or create {_code(name)}, {_manage(service_url)}.</p>",
    )


def not_a_fork(host: str, *, service_url: str | None) -> ErrorPage:
    """404: the Host header does not name a fork at all."""
    return ErrorPage(
        404,
        "Not a fork address",
        f"{_code(host or '(no Host header)')} is not a fork address",
        "<p>Fork addresses look like <code>http://NAME.&lt;fork domain&gt;/</code>. "
        f"Copy a fork's address {_manage(service_url)}.</p>",
    )


def upstream_unreachable(name: str, detail: str, *, service_url: str | None) -> ErrorPage:
    """502: the upstream refused the connection, broke it, or cannot be reached.

    The page never names the upstream (fork URLs are public; the upstream is internal):
    the proxy logs it instead.
    """
    return ErrorPage(
        502,
        "Fork upstream unreachable",
        f"The fork {_code(name)} could not reach its app",
        f"<p>The fork's app did not answer: {escape(detail)}.</p>"
        "<p>Check that the app is running and reachable from the featureflag service, "
        f"or edit the fork's upstream {_manage(service_url)}. Then reload this page.</p>",
    )


def upstream_timeout(name: str, seconds: float, *, service_url: str | None) -> ErrorPage:
    """504: the upstream took longer than the proxy's timeout (not named: see above)."""
    return ErrorPage(
        504,
        "Fork upstream timed out",
        f"The fork {_code(name)} timed out waiting for its app",
        f"<p>The fork's app did not answer within {seconds:g} seconds. "
        "It may be overloaded or stuck; reload to try again, or check its logs. "
        f"The fork itself is managed {_manage(service_url)}.</p>",
    )


def bad_fork(name: str, *, service_url: str | None) -> ErrorPage:
    """502: the fork's own settings cannot be used (its flags cannot be signed, or its
    upstream is unusable or refused); the reason goes to the log, not to the visitor."""
    return ErrorPage(
        502,
        "Fork misconfigured",
        f"The fork {_code(name)} cannot be served",
        "<p>Its flags or its upstream cannot be used; the service's log says why.</p>"
        f"<p>Edit the fork {_manage(service_url)}.</p>",
    )


def loop_detected(name: str) -> ErrorPage:
    """508: the request already passed through this service's proxy (a fork whose
    upstream leads back here); forwarding it again would loop until sockets run out."""
    return ErrorPage(
        508,
        "Loop detected",
        f"The fork {_code(name)} leads back to itself",
        "<p>This request already went through this featureflag service, so its fork's "
        "upstream points back at the service. Point the fork at the app itself.</p>",
    )


def outside_upstream(name: str, *, service_url: str | None) -> ErrorPage:
    """400: ``..`` segments in the path lead outside the fork's upstream path."""
    return ErrorPage(
        400,
        "Path outside the fork",
        f"This path leaves the fork {_code(name)}",
        "<p>Its <code>..</code> segments lead outside the part of the app the fork "
        f"serves. Follow links from the fork's own pages instead; forks are listed "
        f"{_manage(service_url)}.</p>",
    )


def fork_expired(name: str, *, service_url: str | None) -> ErrorPage:
    """410: the fork's ``expires_at`` has passed; renewing it brings the URL back."""
    return ErrorPage(
        410,
        "Fork expired",
        f"The fork {_code(name)} has expired",
        f"<p>Forks can be given an expiry, and this one's has passed. Renew it to bring "
        f"this address back, from the command line with "
        f"{_code(f'featureflag fork apply {name} --upstream URL --ttl 7d')} "
        f"or {_manage(service_url)}; delete it there if it is no longer needed.</p>",
    )
