"""A Starlette app behind FeatureFlagMiddleware with an async and a sync endpoint.

Run by tests/test_reliability.py under a real uvicorn (secret from FEATUREFLAG_SECRET).
Both endpoints evaluate a flag, yield to other requests, evaluate it again and answer
with the value they got, so requests that overlap in time would show any mix-up.
"""

from __future__ import annotations

import asyncio
import time

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import featureflag
from featureflag.asgi import FeatureFlagMiddleware


def async_value() -> str:
    return featureflag.intercept("Reliability.async_value", lambda: "none")


def sync_value() -> str:
    return featureflag.intercept("Reliability.sync_value", lambda: "none")


async def ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def async_endpoint(request: Request) -> JSONResponse:
    first = async_value()
    await asyncio.sleep(0.001)
    second = async_value()
    return JSONResponse({"first": first, "second": second})


def sync_endpoint(request: Request) -> JSONResponse:
    # A plain def: Starlette runs it in its threadpool, with the request's context copied.
    first = sync_value()
    time.sleep(0.001)
    second = sync_value()
    return JSONResponse({"first": first, "second": second})


def create_app() -> FeatureFlagMiddleware:
    app = Starlette(
        routes=[
            Route("/", ready),
            Route("/async", async_endpoint),
            Route("/sync", sync_endpoint),
        ]
    )
    return FeatureFlagMiddleware(app)
