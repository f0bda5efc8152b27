"""The smallest app a fork is useful for: bench/proxy.py's realistic upstream.

A Starlette page behind ``FeatureFlagMiddleware`` that evaluates two flags (a trapped
function and an ``intercept`` block) and renders a small HTML page. Forks only make sense
in front of an app that reads override tokens, so this, not a do-nothing ASGI callable,
is the fair "direct" side. Run by bench/proxy.py as ``uvicorn proxy_app:app --app-dir bench``
with the service's ``FEATUREFLAG_SECRET`` and ``FEATUREFLAG_ENVIRONMENT``.
"""

from __future__ import annotations

import html

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

import featureflag
from featureflag.asgi import FeatureFlagMiddleware


@featureflag.trap(name="bench.new_layout")
def new_layout() -> bool:
    return False


async def page(request: Request) -> HTMLResponse:
    layout = "new" if new_layout() else "classic"
    banner = featureflag.intercept("bench.banner", lambda: "none")
    items = "".join(f"<li>Item {i}</li>" for i in range(10))
    return HTMLResponse(
        f"<!doctype html><title>Shop</title><main class={layout}>"
        f"<p>{html.escape(banner)}</p><ul>{items}</ul></main>"
    )


app = FeatureFlagMiddleware(Starlette(routes=[Route("/", page)]))
