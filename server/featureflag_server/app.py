"""The service as one ASGI app: the Host header picks the fork proxy or the service.

``<fork>.<fork domain>`` (any port) goes to :class:`featureflag_server.proxy.ForkProxy`; any other
host is the service itself: ``/api`` (:mod:`featureflag_server.api`), ``/healthz``,
``/openapi.json`` and the web page (:mod:`featureflag_server.web`) for everything else.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
from collections.abc import Callable
from types import ModuleType
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from featureflag import __version__

from .api import create_api
from .auth import FailedLogins
from .fork_cache import CachedForks
from .openapi import openapi_document
from .settings import Settings
from .sqlite_store import SQLiteStore
from .store import Store

logger = logging.getLogger("featureflag.server")


def _optional(module: str) -> ModuleType | None:
    # The proxy and the web page are separate modules; the service still runs (API
    # only) in a tree that lacks one, but an error *inside* one is not hidden.
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name != module:
            raise
        return None


def host_of(scope: Scope) -> str:
    """The request's ``Host`` (without assumptions about a port), or the server address."""
    for key, value in scope.get("headers", []):
        if key == b"host":
            return str(value.decode("latin-1"))
    server = scope.get("server")
    return str(server[0]) if server else ""


async def _health(request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def _openapi(request: Request) -> Response:
    return JSONResponse(openapi_document(__version__))


async def _no_web_page(request: Request) -> Response:
    if request.url.path == "/":
        return HTMLResponse(
            "<!doctype html><title>featureflag</title><h1>featureflag override service</h1>"
            '<p>The API is described at <a href="/openapi.json">/openapi.json</a>.</p>'
        )
    return PlainTextResponse("Not Found", status_code=404)


class ServiceApp:
    """The ASGI app :func:`create_app` returns; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        proxy_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self._owns_store = store is None
        self._proxy_transport = proxy_transport
        self.service: ASGIApp | None = None
        self.proxy: Any = None
        self._fork_from_host: Callable[[str, str], str | None] | None = None
        if store is not None:
            self._build(store)

    def _build(self, store: Store) -> None:
        # Every part shares one cache, so a write through the API or the page is seen by
        # the proxy's next lookup.
        store = CachedForks(store)
        signer = self.settings.signer()
        logins = FailedLogins()  # one record of unknown tokens for the API and the page
        web = _optional("featureflag_server.web")
        web_app: ASGIApp = (
            web.create_web_app(self.settings, store, logins)
            if web is not None
            else Starlette(routes=[Route("/{path:path}", _no_web_page)])
        )
        self.service = Starlette(
            routes=[
                Route("/healthz", _health, methods=["GET"]),
                Route("/openapi.json", _openapi, methods=["GET"]),
                Mount("/api", create_api(self.settings, store, signer, logins)),
                Mount("/", web_app),
            ]
        )
        proxy = _optional("featureflag_server.proxy")
        if proxy is not None:
            self._fork_from_host = proxy.fork_from_host
            self.proxy = proxy.ForkProxy(
                store=store,
                signer=signer,
                fork_domain=self.settings.fork_domain,
                transport=self._proxy_transport,
            )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.service is None:
            response = PlainTextResponse("The service is starting.", status_code=503)
            await response(scope, receive, send)
            return
        if self._fork_from_host is not None and scope["type"] in ("http", "websocket"):
            if self._fork_from_host(host_of(scope), self.settings.fork_domain) is not None:
                await self.proxy(scope, receive, send)
                return
        await self.service(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        """Open the store (unless one was given) and build the parts."""
        logger.info("event loop: %s", type(asyncio.get_running_loop()).__module__.split(".")[0])
        if self.store is None:
            self.store = SQLiteStore(self.settings.db)
            self._build(self.store)

    async def shutdown(self) -> None:
        """Close the proxy's client, and the store when this app opened it; write the
        access lines still waiting (every request has been answered by now)."""
        if self.proxy is not None:
            await self.proxy.aclose()
        if self._owns_store and self.store is not None:
            await self.store.close()


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    proxy_transport: httpx.AsyncBaseTransport | None = None,
) -> ServiceApp:
    """The whole service. Without *store*, the lifespan opens ``SQLiteStore(settings.db)``
    and closes it; a given *store* stays the caller's to close."""
    return ServiceApp(settings, store=store, proxy_transport=proxy_transport)
