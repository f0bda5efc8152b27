"""featureflag.openfeature: the provider alone (in-process evaluation) and layered over
the OpenFeature SDK's InMemoryProvider, through the middleware as an app would run."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from openfeature import api
from openfeature.event import ProviderEvent, ProviderEventDetails
from openfeature.exception import ErrorCode
from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

import featureflag
from featureflag import Evaluation
from featureflag.asgi import FeatureFlagMiddleware
from featureflag.openfeature import FeatureFlagProvider
from featureflag.report import parse_report
from featureflag.tokens import OverrideSigner

SECRET = "openfeature-test-secret-" + "f" * 32
signer = OverrideSigner(SECRET, environment="test")
IN_MEMORY = {
    "of-lp": InMemoryFlag("c", {"a": "a", "c": "c"}),
    "of-new-checkout": InMemoryFlag("off", {"on": True, "off": False}),
    "of-limit": InMemoryFlag("ten", {"ten": 10}),
}


@pytest.fixture
def layered() -> Iterator[FeatureFlagProvider]:
    provider = FeatureFlagProvider(InMemoryProvider(IN_MEMORY))
    api.set_provider(provider)
    yield provider
    api.clear_providers()


@pytest.fixture
def alone() -> Iterator[FeatureFlagProvider]:
    provider = FeatureFlagProvider()
    api.set_provider(provider)
    yield provider
    api.clear_providers()


async def page(request: Request) -> Response:
    client = api.get_client()
    lp = client.get_string_details("of-lp", "default-lp")
    checkout = await client.get_boolean_value_async("of-new-checkout", False)
    limit = client.get_integer_value("of-limit", 1)
    return JSONResponse(
        {"lp": lp.value, "reason": str(lp.reason), "checkout": checkout, "limit": limit}
    )


async def get(headers: dict[str, str] | None = None, **options: Any) -> httpx.Response:
    app = FeatureFlagMiddleware(Starlette(routes=[Route("/", page)]), signer=signer, **options)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/", headers=headers or {})


def token(**flags: bool | str) -> dict[str, str]:
    return {"Feature-Flag-Overrides": signer.dumps(flags, sub="ana")}


async def test_layered_a_tokens_override_wins_over_the_inner_provider(
    layered: FeatureFlagProvider,
) -> None:
    r = await get(token(**{"of-lp": "b", "of-new-checkout": True}))
    assert r.json() == {"lp": "b", "reason": "STATIC", "checkout": True, "limit": 10}
    assert parse_report(r.headers["feature-flags"]) == [
        Evaluation("of-lp", "b", "override"),
        Evaluation("of-new-checkout", True, "override"),
        Evaluation("of-limit", None, "default"),  # an integer: listed, value not sent
    ]
    assert r.headers["cache-control"] == "private, no-store"


async def test_layered_without_a_token_the_inner_provider_answers(
    layered: FeatureFlagProvider,
) -> None:
    r = await get()
    assert r.json() == {"lp": "c", "reason": "STATIC", "checkout": False, "limit": 10}
    assert "feature-flags" not in r.headers
    r = await get(report="always")
    assert parse_report(r.headers["feature-flags"])[:2] == [
        Evaluation("of-lp", "c", "default"),
        Evaluation("of-new-checkout", False, "default"),
    ]


async def test_alone_the_callers_default_unless_overridden(alone: FeatureFlagProvider) -> None:
    r = await get()
    assert r.json() == {"lp": "default-lp", "reason": "DEFAULT", "checkout": False, "limit": 1}
    r = await get(token(**{"of-lp": "b"}))
    assert r.json()["lp"] == "b"
    assert parse_report(r.headers["feature-flags"])[:2] == [
        Evaluation("of-lp", "b", "override"),
        Evaluation("of-new-checkout", False, "default"),
    ]


async def test_an_override_of_the_wrong_type_is_refused_and_reported(
    layered: FeatureFlagProvider,
) -> None:
    r = await get(token(**{"of-new-checkout": "yes"}))
    assert r.json()["checkout"] is False  # the inner provider's value
    checkout = parse_report(r.headers["feature-flags"])[1]
    assert (checkout.name, checkout.value, checkout.source) == ("of-new-checkout", False, "default")
    assert checkout.rejected is not None and "send true or false" in checkout.rejected


def test_outside_a_request_and_inside_overrides(alone: FeatureFlagProvider) -> None:
    client = api.get_client()
    assert client.get_boolean_value("of-new-checkout", True) is True
    with featureflag.overrides({"of-new-checkout": False}):
        details = client.get_boolean_details("of-new-checkout", True)
        assert (details.value, details.variant) == (False, "false")
        assert details.flag_metadata == {"source": "override"}
        assert featureflag.evaluations() == [Evaluation("of-new-checkout", False, "override")]


def test_inner_errors_still_reach_the_caller_as_openfeature_errors(
    layered: FeatureFlagProvider,
) -> None:
    details = api.get_client().get_string_details("of-unknown", "fallback")
    assert (details.value, details.error_code) == ("fallback", ErrorCode.FLAG_NOT_FOUND)


def test_metadata_hooks_and_events_are_the_inner_providers() -> None:
    inner = InMemoryProvider(IN_MEMORY)
    provider = FeatureFlagProvider(inner)
    assert provider.get_metadata().name == "featureflag over In-Memory Provider"
    assert FeatureFlagProvider().get_metadata().name == "featureflag"
    seen: list[tuple[Any, ProviderEvent]] = []
    provider.attach(lambda source, event, details: seen.append((source, event)))
    inner.emit_provider_configuration_changed(ProviderEventDetails())
    assert seen == [(provider, ProviderEvent.PROVIDER_CONFIGURATION_CHANGED)]
