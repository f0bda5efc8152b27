"""The service as one ASGI app: the Host header picks the fork proxy or the service.

``<fork>.<fork domain>`` (any port) goes to :class:`featureflag_server.proxy.ForkProxy`; any other
host is the service itself: ``/api`` (:mod:`featureflag_server.api`), ``/healthz``,
``/openapi.json`` and the web page (:mod:`featureflag_server.web`) for everything else.
"""

from __future__ import annotations

import asyncio
import logging

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from featureflag import __version__

from .api import create_api
from .auth import FailedLogins
from .errors import StoreUnavailable
from .expiry import ExpirySweeper
from .fork_cache import CachedForks
from .forward_auth import ForwardAuth
from .openapi import openapi_document
from .outage import StoreOutage, api_outage, page_outage
from .proxy import ForkProxy, fork_from_host
from .settings import Settings
from .store import Store, open_store
from .web import create_web_app

logger = logging.getLogger("featureflag.server")


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


class ServiceApp:
    """The ASGI app :func:`create_app` returns; see the module docstring."""

    def __init__(
        self,
        settings: Settings,
        *,
        store: Store | None = None,
        proxy_transport: httpx.AsyncBaseTransport | None = None,
        close_store: bool = False,
    ) -> None:
        self.settings = settings
        self.store = store
        self._owns_store = store is None or close_store
        self._proxy_transport = proxy_transport
        self.service: ASGIApp | None = None
        self.proxy: ForkProxy | None = None
        self.sweeper: ExpirySweeper | None = None
        if store is not None:
            self._build(store)

    def _build(self, store: Store) -> None:
        # Forks may not point at this service's own socket (a loop), nor where the operator
        # did not allow (--fork-upstreams): one policy, checked when a fork is written, by
        # forward-auth, and on every upstream connection.
        policy = self.settings.upstream_policy()
        # Every part shares one cache, so a write through the API or the page is seen by
        # the proxy's next lookup.
        store = CachedForks(store)
        self.sweeper = ExpirySweeper(store, grace=self.settings.expired_fork_grace)
        signer = self.settings.signer()
        # One record of unknown tokens for the API and the page, shared through the store
        # with the other replicas.
        logins = FailedLogins(shared=store, key=self.settings.signing_secret)
        api_app = create_api(self.settings, store, signer, logins, policy)
        web_app = create_web_app(self.settings, store, logins, signer, policy)
        # A database outage is a 503 (JSON for the API, a page for people), not a 500.
        api_app.add_exception_handler(StoreUnavailable, api_outage)
        if isinstance(web_app, Starlette):
            web_app.add_exception_handler(StoreUnavailable, page_outage)
        self.service = Starlette(
            routes=[
                Route("/healthz", _health, methods=["GET"]),
                Route("/openapi.json", _openapi, methods=["GET"]),
                Route("/api/forward-auth", ForwardAuth(self.settings, store, logins, policy)),
                Mount("/api", api_app),
                Mount("/", web_app),
            ],
            # Forward-auth answers a gateway: a database outage is a 503 it passes on.
            exception_handlers={StoreUnavailable: api_outage},
        )
        self.proxy = ForkProxy(
            store=store,
            signer=signer,
            fork_domain=self.settings.fork_domain,
            transport=self._proxy_transport,
            connections=self.settings.upstream_connections,
            policy=policy,
            service_host=self.settings.service_host,
        )
        self._proxy_app = StoreOutage(self.proxy)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if self.service is None:
            response = PlainTextResponse("The service is starting.", status_code=503)
            await response(scope, receive, send)
            return
        if self.proxy is not None and scope["type"] in ("http", "websocket"):
            if fork_from_host(host_of(scope), self.settings.fork_domain) is not None:
                await self._proxy_app(scope, receive, send)
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
            self.store = open_store(str(self.settings.db), migrate=self.settings.migrate)
            self._build(self.store)
        if self.sweeper is not None:
            self.sweeper.start()

    async def shutdown(self) -> None:
        """Stop the expiry sweep, close the proxy's client, and the store when this app
        opened it."""
        if self.sweeper is not None:
            await self.sweeper.stop()
        if self.proxy is not None:
            await self.proxy.aclose()
        if self._owns_store and self.store is not None:
            await self.store.close()


def create_app(
    settings: Settings,
    *,
    store: Store | None = None,
    proxy_transport: httpx.AsyncBaseTransport | None = None,
    close_store: bool = False,
) -> ServiceApp:
    """The whole service. Without *store*, the lifespan opens the store for ``settings.db``
    and closes it; a given *store* stays the caller's to close, unless *close_store*
    hands it to the lifespan's shutdown."""
    return ServiceApp(
        settings, store=store, proxy_transport=proxy_transport, close_store=close_store
    )
