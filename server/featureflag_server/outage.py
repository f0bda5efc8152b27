"""503 while the database cannot be reached, instead of a 500 per request.

When PostgreSQL restarts under a running service, each request that needs it fails
with :class:`featureflag_server.errors.StoreUnavailable`; the pool reconnects on its own,
so the service recovers without a restart. Meanwhile the API answers a JSON problem,
the web page and fork hosts an HTML page, all ``503`` with ``Retry-After``.

:func:`api_outage` and :func:`page_outage` are Starlette exception handlers (each
Starlette app answers its own errors); :class:`StoreOutage` wraps a plain ASGI app
(the fork proxy).
"""

from __future__ import annotations

from html import escape

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import StoreUnavailable
from .proxy_errors import ErrorPage

RETRY_AFTER = "1"
TITLE = "Service Unavailable"
HEADING = "The override service cannot reach its database"


def _page(exc: Exception) -> ErrorPage:
    return ErrorPage(
        status=503,
        title=TITLE,
        heading=HEADING,
        body=(
            f"<p>{escape(str(exc))}</p>"
            "<p>This is usually a database restart: reload the page in a moment.</p>"
        ),
    )


async def api_outage(request: Request, exc: Exception) -> Response:
    """The API's answer: a JSON problem like its other errors."""
    body = {"error": "store-unavailable", "message": str(exc), "errors": []}
    return JSONResponse(
        body, status_code=503, headers={"Retry-After": RETRY_AFTER, "Cache-Control": "no-store"}
    )


async def page_outage(request: Request, exc: Exception) -> Response:
    """The web page's answer: an HTML page."""
    return HTMLResponse(
        _page(exc).html(),
        status_code=503,
        headers={"Retry-After": RETRY_AFTER, "Cache-Control": "no-store"},
    )


class StoreOutage:
    """Pure ASGI: :class:`StoreUnavailable` from *app* becomes the HTML 503 page.

    For apps that use the store before they send anything, like the fork proxy (its fork
    lookup comes first): ``send`` is not wrapped, so the proxied path pays nothing.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except StoreUnavailable as exc:
            if scope["type"] != "http":
                raise
            page = _page(exc)
            body = page.html()
            await send(
                {
                    "type": "http.response.start",
                    "status": 503,
                    "headers": [
                        (b"content-type", b"text/html; charset=utf-8"),
                        (b"content-length", str(len(body)).encode()),
                        (b"cache-control", b"no-store"),
                        (b"retry-after", RETRY_AFTER.encode()),
                    ],
                }
            )
            head = scope.get("method") == "HEAD"
            await send({"type": "http.response.body", "body": b"" if head else body})
