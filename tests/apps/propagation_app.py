"""One Starlette app that is both a caller and a downstream service.

``GET /flag`` evaluates ``Downstream.color`` (default "blue") and returns it.
``GET /call-async`` and ``GET /call-sync`` evaluate ``Caller.checkout`` and then fetch
``$DOWNSTREAM_URL/flag`` through featureflag.propagation (an async client, or a sync
client inside a plain def endpoint run in Starlette's threadpool); they answer with
what came back and the evaluations merged into this request.

Made by :func:`create_app` (uvicorn ``--factory``); the secret comes from
``FEATUREFLAG_SECRET``. ``ALLOW_HOSTS`` (comma-separated) and ``SAME_HOST=0`` configure
the propagation; ``SERVICE_NAME`` names the downstream in reports.
"""

from __future__ import annotations

import os
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import featureflag
from featureflag.asgi import FeatureFlagMiddleware
from featureflag.propagation import propagating_async_client, propagating_client


def _evaluations() -> list[dict[str, Any]]:
    return [
        {"name": e.name, "value": e.value, "source": e.source, "service": e.service}
        for e in featureflag.evaluations()
    ]


def checkout() -> bool:
    return featureflag.intercept("Caller.checkout", lambda: False)


async def ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def flag(request: Request) -> JSONResponse:
    color = featureflag.intercept("Downstream.color", lambda: "blue")
    return JSONResponse({"color": color})


def create_app(
    downstream: str | None = None,
    *,
    allow_hosts: list[str] | None = None,
    same_host: bool | None = None,
    secret: str | None = None,
    async_transport: httpx.AsyncBaseTransport | None = None,
    sync_transport: httpx.BaseTransport | None = None,
) -> FeatureFlagMiddleware:
    """Build the app; arguments left out come from the environment."""
    downstream = downstream or os.environ.get("DOWNSTREAM_URL", "http://127.0.0.1:9")
    if allow_hosts is None:
        allow_hosts = [h for h in os.environ.get("ALLOW_HOSTS", "").split(",") if h]
    if same_host is None:
        same_host = os.environ.get("SAME_HOST", "1") != "0"
    name = os.environ.get("SERVICE_NAME")
    services = {httpx.URL(downstream).netloc.decode(): name} if name else None
    options: dict[str, Any] = {
        "allow_hosts": allow_hosts,
        "same_host": same_host,
        "services": services,
        "timeout": 10,
        "follow_redirects": True,
    }

    async def call_async(request: Request) -> JSONResponse:
        checkout_on = checkout()
        async with propagating_async_client(transport=async_transport, **options) as client:
            answer = (await client.get(downstream + "/flag")).json()
        return JSONResponse(
            {"checkout": checkout_on, "downstream": answer, "evals": _evaluations()}
        )

    def call_sync(request: Request) -> JSONResponse:
        checkout_on = checkout()
        with propagating_client(transport=sync_transport, **options) as client:
            answer = client.get(downstream + "/flag").json()
        return JSONResponse(
            {"checkout": checkout_on, "downstream": answer, "evals": _evaluations()}
        )

    app = Starlette(
        routes=[
            Route("/", ready),
            Route("/flag", flag),
            Route("/call-async", call_async),
            Route("/call-sync", call_sync),
        ]
    )
    return FeatureFlagMiddleware(app, secret=secret)
