"""A second small service the demo shop calls: recommendations, behind its own flag.

Run with ``uvicorn examples.downstream:app --port 8002`` (``./scripts/demo`` does), with
the same ``FEATUREFLAG_SECRET`` and ``FEATUREFLAG_ENVIRONMENT`` as the override service,
so a token minted there (or baked into a fork) applies here too when the shop passes it
on (``featureflag.propagation``).

``DEMO_BUILD`` names the build (default ``main``). The demo starts a second instance
with ``DEMO_BUILD=pr-build``, standing for a pull request's build of this service: it
recommends new arrivals, and the fork ``pr-build`` routes the shop's calls to it.
"""

from __future__ import annotations

import os
from typing import Literal

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import featureflag
from featureflag.asgi import FeatureFlagMiddleware

BUILD = os.environ.get("DEMO_BUILD", "main")
ITEMS = {
    "popular": ["Classic mug", "Canvas tote", "Enamel pin"],
    "personal": ["Mug you looked at", "Tote in your colour", "Pin for your team"],
}
# What the pull request changes: new arrivals first.
PR_ITEMS = ["New: speckled mug", "New: waxed tote"]


@featureflag.trap(only=r"^strategy$")
class Recommendations:
    """What the shop recommends."""

    def strategy(self) -> Literal["popular", "personal"]:
        """Which recommendation strategy the downstream service uses."""
        return "popular"


async def recommendations(request: Request) -> JSONResponse:
    strategy = Recommendations().strategy()
    items = ITEMS[strategy] if BUILD == "main" else PR_ITEMS + ITEMS[strategy]
    return JSONResponse({"strategy": strategy, "items": items, "build": BUILD})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


app = FeatureFlagMiddleware(
    Starlette(routes=[Route("/recommendations", recommendations), Route("/healthz", health)]),
    report="always",  # a QA setting: the extension sees flags before any override
)
