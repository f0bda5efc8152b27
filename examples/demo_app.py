"""The demo shop for ``./scripts/demo``: every way to declare a flag, on one page.

- ``new-lp``: a trapped function returning ``Literal["a", "b"]``, the landing page variant
  (a string flag with choices; the ``new-lp`` fork bakes in ``"b"``);
- ``Checkout.is_one_click``: a trapped method (``@featureflag.trap`` on a class);
- ``promo-banner``: an ``intercept`` block around an expression;
- ``Recommendations.strategy``: evaluated by the downstream service (examples/downstream.py),
  reached through ``featureflag.propagation``, so its flag shows up in this page's report;
- ``/frontend``: a page whose flag is read in the browser by the JS SDK (sdk-js) over OFREP.

Environment: ``FEATUREFLAG_SECRET`` / ``FEATUREFLAG_ENVIRONMENT`` (the override service's),
``DEMO_DOWNSTREAM_URL`` (default ``http://127.0.0.1:8002``).
"""

from __future__ import annotations

import html
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Literal

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

import featureflag
from featureflag.asgi import FeatureFlagMiddleware
from featureflag.propagation import AsyncPropagatingTransport

HERE = Path(__file__).parent
SDK_BUNDLE = HERE.parent / "sdk-js" / "dist" / "featureflag.iife.js"
DOWNSTREAM_URL = os.environ.get("DEMO_DOWNSTREAM_URL", "http://127.0.0.1:8002").rstrip("/")


@featureflag.trap(name="new-lp")
def landing_page() -> Literal["a", "b"]:
    """The landing page variant: "a" (today's) or "b" (the redesign)."""
    return "a"


@featureflag.trap(only=r"^is_")
class Checkout:
    """Checkout features still being built."""

    def is_one_click(self) -> bool:
        """Show the one-click checkout button."""
        return False


LANDING = {
    "a": ("Landing page A", "Handmade goods, shipped from our workshop."),
    "b": ("Landing page B — the redesign", "New season, new look: browse the collection."),
}


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    downstream = httpx.URL(DOWNSTREAM_URL)
    transport = AsyncPropagatingTransport(
        allow_hosts=[downstream.host],
        services={f"{downstream.host}:{downstream.port}": "downstream"},
        # A fork may route "downstream" to another build (the fork pr-build does), but
        # only to a host this app allows: here, any port on this machine.
        routes_allowed={"downstream": ["127.0.0.1:*"]},
    )
    async with httpx.AsyncClient(transport=transport, timeout=10) as client:
        app.state.client = client
        yield


async def recommendations(request: Request) -> tuple[str, list[str], str]:
    client: httpx.AsyncClient = request.app.state.client
    try:
        response = await client.get(f"{DOWNSTREAM_URL}/recommendations")
        data = response.json()
        items = [str(item) for item in data["items"]]
        return str(data["strategy"]), items, str(data.get("build", "main"))
    except (httpx.HTTPError, ValueError, KeyError) as exc:
        return "unavailable", [f"the downstream service did not answer: {exc}"], "none"


async def home(request: Request) -> HTMLResponse:
    variant = landing_page()
    title, tagline = LANDING.get(variant, LANDING["a"])
    one_click = Checkout().is_one_click()
    banner = featureflag.intercept("promo-banner", lambda: "Free shipping over $50")
    strategy, items, build = await recommendations(request)
    rows = "".join(
        f"<tr><td><code>{html.escape(e.name)}</code></td>"
        f"<td><code>{html.escape(json.dumps(e.value))}</code></td><td>{e.source}</td>"
        f"<td>{html.escape(e.service or 'this app')}</td>"
        f"<td>{html.escape(e.rejected or '')}</td></tr>"
        for e in featureflag.evaluations()
    )
    button = (
        '<button class="one-click" data-testid="one-click">Buy now with one click</button>'
        if one_click
        else '<button data-testid="checkout">Go to checkout</button>'
    )
    body = f"""
<p class="banner" data-testid="banner">{html.escape(banner)}</p>
<h1 data-testid="landing" data-variant="{html.escape(variant)}">{html.escape(title)}</h1>
<p>{html.escape(tagline)}</p>
<p>{button}</p>
<h2>Recommended for you</h2>
<p>Strategy (from the downstream service):
  <strong data-testid="strategy">{html.escape(strategy)}</strong>,
  build <strong data-testid="build">{html.escape(build)}</strong></p>
<ul>{"".join(f"<li>{html.escape(item)}</li>" for item in items)}</ul>
<h2>Flags this request used</h2>
<table><tr><th>Flag</th><th>Value</th><th>Source</th><th>Evaluated by</th><th>Rejected</th></tr>
{rows}</table>
<p><a href="/frontend">A page with a front-end flag (JS SDK)</a></p>
"""
    return HTMLResponse(_page("Demo shop", body))


async def frontend(request: Request) -> HTMLResponse:
    if not SDK_BUNDLE.exists():
        body = (
            "<h1>Front-end flags</h1><p data-testid='frontend-flag'>The JS SDK is not built: "
            "run <code>./scripts/install-js</code> (or <code>npm run build</code> in "
            "<code>sdk-js/</code>) and reload.</p>"
        )
        return HTMLResponse(_page("Front end", body))
    body = """
<h1>Front-end flags</h1>
<p>This text is decided in the browser by the JS SDK, which reads the request's overrides
from this app's OFREP endpoint and reports them to the extension.</p>
<p>Chat widget (<code>frontend.chat-widget</code>):
  <strong data-testid="frontend-flag" data-status="loading">loading…</strong></p>
<script src="/static/featureflag-sdk.js"></script>
<script src="/static/frontend.js"></script>
<p><a href="/">Back to the shop</a></p>
"""
    return HTMLResponse(_page("Front end", body))


async def sdk_bundle(request: Request) -> Response:
    if not SDK_BUNDLE.exists():
        return JSONResponse({"detail": "sdk-js is not built"}, status_code=404)
    return FileResponse(SDK_BUNDLE, media_type="text/javascript")


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def _page(title: str, body: str) -> str:
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<link rel="stylesheet" href="/static/demo.css"></head>
<body><header>featureflag demo shop</header><main>{body}</main></body></html>"""


app = FeatureFlagMiddleware(
    Starlette(
        routes=[
            Route("/", home),
            Route("/frontend", frontend),
            Route("/healthz", health),
            Route("/static/featureflag-sdk.js", sdk_bundle),
            Mount("/static", StaticFiles(directory=HERE / "static")),
        ],
        lifespan=lifespan,
    ),
    report="always",  # a QA setting: the extension's popup lists flags before any override
)
