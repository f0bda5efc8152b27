"""The tiny app the JS interop test talks to: a real Starlette app behind the middleware.

``GET /`` answers ``ok`` (readiness). ``GET /server-flags`` evaluates the same flags on
the server with :func:`featureflag.intercept` and answers with what app code received,
so the test can compare the front end's view with the server's. The middleware serves
``POST /ofrep/v1/evaluate/flags``. Secret and environment come from
``FEATUREFLAG_SECRET`` / ``FEATUREFLAG_ENVIRONMENT``.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

import featureflag
from featureflag.asgi import FeatureFlagMiddleware


async def ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def server_flags(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "new-checkout": featureflag.intercept("new-checkout", lambda: False),
            "lp-variant": featureflag.intercept("lp-variant", lambda: "a"),
            "typed": featureflag.intercept("typed", lambda: False),
            "untouched": featureflag.intercept("untouched", lambda: True),
        }
    )


def create_app() -> FeatureFlagMiddleware:
    """The app for ``uvicorn --factory``."""
    inner = Starlette(routes=[Route("/", ready), Route("/server-flags", server_flags)])
    return FeatureFlagMiddleware(inner)
