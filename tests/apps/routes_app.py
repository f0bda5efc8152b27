"""A front app and its ``recommendations`` service in one Starlette app, for route tests.

``GET /flag`` is the service: it answers its build (``$BUILD``) and ``Downstream.color``.
``GET /`` is the front: it calls ``$RECS_URL/flag`` through featureflag.propagation,
which names that URL's host ``recommendations`` and allows routes for it to
``127.0.0.1`` on any port. Made by :func:`create_app` (uvicorn ``--factory``); the secret
comes from ``FEATUREFLAG_SECRET``.
"""

from __future__ import annotations

import os

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import featureflag
from featureflag.asgi import FeatureFlagMiddleware
from featureflag.propagation import propagating_async_client


def create_app() -> FeatureFlagMiddleware:
    """Build the app from ``BUILD`` and ``RECS_URL``."""
    build = os.environ.get("BUILD", "main")
    recs = os.environ.get("RECS_URL", "http://127.0.0.1:9")
    client = propagating_async_client(
        services={httpx.URL(recs).netloc.decode(): "recommendations"},
        routes_allowed={"recommendations": ["127.0.0.1:*"]},
        timeout=10,
    )

    async def ready(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    async def flag(request: Request) -> JSONResponse:
        color = featureflag.intercept("Downstream.color", lambda: "blue")
        return JSONResponse({"build": build, "color": color})

    async def front(request: Request) -> JSONResponse:
        return JSONResponse((await client.get(recs + "/flag")).json())

    app = Starlette(routes=[Route("/ready", ready), Route("/flag", flag), Route("/", front)])
    return FeatureFlagMiddleware(app, report="always")
