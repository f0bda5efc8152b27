"""featureflag.django: the middleware in Django's MIDDLEWARE, with Django's test Client,
sync and async views, Django's per-site cache and cache_page."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any

import django
import pytest
from django.conf import settings

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF=__name__,
        INSTALLED_APPS=[],
        SECRET_KEY="django-test-" + "d" * 40,
        CACHES={"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}},
        MIDDLEWARE=["featureflag.django.FeatureFlagMiddleware"],
        FEATUREFLAG_SECRET="django-test-secret-" + "s" * 32,
        FEATUREFLAG_ENVIRONMENT="test",
        USE_TZ=True,
    )
    django.setup()

from django.core.cache import cache
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.test import AsyncClient, Client, override_settings
from django.urls import path
from django.views.decorators.cache import cache_page

import featureflag
from featureflag import Evaluation
from featureflag.asgi import current_host, current_token
from featureflag.django import vary_on_overrides
from featureflag.exceptions import ConfigurationError
from featureflag.report import parse_report
from featureflag.tokens import OverrideSigner

SECRET = "django-test-secret-" + "s" * 32
signer = OverrideSigner(SECRET, environment="test")
TOKEN = signer.dumps({"dj-lp": "b"}, sub="ana")
OFREP = "/ofrep/v1/evaluate/flags"
UPDATE = "django.middleware.cache.UpdateCacheMiddleware"
FETCH = "django.middleware.cache.FetchFromCacheMiddleware"
OURS = "featureflag.django.FeatureFlagMiddleware"
calls: list[str] = []


def landing() -> str:
    return featureflag.intercept("dj-lp", lambda: "a")


def home(request: HttpRequest) -> HttpResponse:
    calls.append("home")
    return HttpResponse(f"lp={landing()} token={current_token() is not None} host={current_host()}")


async def home_async(request: HttpRequest) -> HttpResponse:
    calls.append("home_async")
    return HttpResponse(f"lp={landing()} token={current_token() is not None}")


def public(request: HttpRequest) -> HttpResponse:
    calls.append("public")
    return HttpResponse(f"lp={landing()}", headers={"Cache-Control": "max-age=60"})


@cache_page(60)
@vary_on_overrides
def decorated(request: HttpRequest) -> HttpResponse:
    calls.append("decorated")
    return HttpResponse(f"lp={landing()}")


@cache_page(60)
@vary_on_overrides
async def decorated_async(request: HttpRequest) -> HttpResponse:
    calls.append("decorated_async")
    return HttpResponse(f"lp={landing()}")


def stream(request: HttpRequest) -> StreamingHttpResponse:
    def body() -> Iterator[str]:
        yield "first "
        yield f"lp={landing()}"  # evaluated while Django iterates the body

    return StreamingHttpResponse(body())


urlpatterns = [
    path("", home),
    path("async", home_async),
    path("public", public),
    path("decorated", decorated),
    path("decorated-async", decorated_async),
    path("stream", stream),
]


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    cache.clear()
    calls.clear()
    yield
    cache.clear()


def report(response: Any) -> list[Evaluation]:
    return parse_report(response.headers.get("Feature-Flags", ""))


def test_a_token_from_the_test_clients_headers_reaches_a_sync_view() -> None:
    r = Client(headers={"Feature-Flag-Overrides": TOKEN}).get("/")
    assert r.content == b"lp=b token=True host=testserver"
    assert report(r) == [Evaluation("dj-lp", "b", "override")]
    assert r.headers["Cache-Control"] == "private, no-store"
    assert r.headers["Vary"] == "Cookie, Feature-Flag-Overrides"
    plain = Client().get("/")
    assert plain.content == b"lp=a token=False host=None"
    assert "Feature-Flags" not in plain.headers
    assert plain.headers["Vary"] == "Cookie, Feature-Flag-Overrides"


def test_the_cookie_works_and_a_bad_token_says_why() -> None:
    client = Client()
    client.cookies["featureflag_overrides"] = TOKEN
    assert client.get("/").content.startswith(b"lp=b ")
    r = Client(headers={"Feature-Flag-Overrides": "nonsense"}).get("/")
    assert r.content.startswith(b"lp=a ")
    assert r.headers["Feature-Flag-Override-Error"] == "malformed"


async def test_async_views_and_the_async_chain() -> None:
    # AsyncClient(headers=...) puts its default headers in no ASGI scope (Django 5.2):
    # send them with each request.
    client = AsyncClient()
    headers = {"Feature-Flag-Overrides": TOKEN}
    r = await client.get("/async", headers=headers)
    assert r.content == b"lp=b token=True"
    assert report(r) == [Evaluation("dj-lp", "b", "override")]
    r = await client.get("/", headers=headers)  # a sync view under the async chain
    assert r.content.startswith(b"lp=b token=True")
    assert (await AsyncClient().get("/async")).content == b"lp=a token=False"


def test_a_streaming_body_keeps_the_overrides(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="featureflag"):
        r = Client(headers={"Feature-Flag-Overrides": TOKEN}).get("/stream")
        assert b"".join(r.streaming_content) == b"first lp=b"  # type: ignore[attr-defined]
    assert "dj-lp" in caplog.text  # evaluated after the headers: named in the warning


def test_settings_come_from_django_settings_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FEATUREFLAG_SECRET", "env-secret-" + "e" * 32)
    monkeypatch.setenv("FEATUREFLAG_ENVIRONMENT", "qa")
    env_token = OverrideSigner("env-secret-" + "e" * 32, environment="qa").dumps(
        {"dj-lp": "c"}, sub="ana"
    )
    with override_settings(FEATUREFLAG_SECRET=None, FEATUREFLAG_ENVIRONMENT=None):
        r = Client(headers={"Feature-Flag-Overrides": env_token}).get("/")
    assert r.content.startswith(b"lp=c ")
    with override_settings(FEATUREFLAG_REPORT="always"):
        assert report(Client().get("/")) == [Evaluation("dj-lp", "a")]


@pytest.mark.parametrize("handler", [WSGIHandler, ASGIHandler])
def test_a_missing_or_weak_secret_fails_when_django_loads(
    handler: type[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEATUREFLAG_SECRET", raising=False)
    with (
        override_settings(FEATUREFLAG_SECRET=None),
        pytest.raises(ConfigurationError, match="FEATUREFLAG_SECRET"),
    ):
        handler()
    with (
        override_settings(FEATUREFLAG_SECRET="short"),
        pytest.raises(ConfigurationError, match="token_urlsafe"),
    ):
        handler()


def test_ofrep_bulk_and_single_flag() -> None:
    client = Client(headers={"Feature-Flag-Overrides": TOKEN})
    r = client.post(OFREP, {"context": {}}, content_type="application/json")
    assert r.json() == {
        "flags": [
            {
                "key": "dj-lp",
                "value": "b",
                "reason": "STATIC",
                "variant": "b",
                "metadata": {"source": "override"},
            }
        ]
    }
    one = client.post(OFREP + "/dj-lp", {}, content_type="application/json")
    assert one.json()["value"] == "b"
    again = client.post(OFREP + "/dj-lp", {}, content_type="application/json",
                        headers={"If-None-Match": one.headers["ETag"]})  # fmt: skip
    assert again.status_code == 304
    missing = client.post(OFREP + "/other", {}, content_type="application/json")
    assert missing.status_code == 404
    assert missing.json()["errorCode"] == "FLAG_NOT_FOUND"
    assert calls == []  # the middleware answered; no view ran


# Django's caches: neither an overridden page for anyone else, nor a cached default
# page for a token holder. Each test also proves the cache does cache (else vacuous).

PER_SITE = [UPDATE, OURS, FETCH]


@override_settings(MIDDLEWARE=PER_SITE)
def test_per_site_cache_never_serves_an_overridden_page_to_others() -> None:
    assert Client(headers={"Feature-Flag-Overrides": TOKEN}).get("/public").content == b"lp=b"
    r = Client().get("/public")
    assert r.content == b"lp=a"
    assert Client().get("/public").content == b"lp=a"
    assert calls == ["public", "public"]  # the second anonymous request came from the cache


@override_settings(MIDDLEWARE=PER_SITE)
def test_per_site_cache_never_serves_a_cached_default_page_to_a_token_holder() -> None:
    Client().get("/public")
    Client().get("/public")
    assert calls == ["public"]  # cached
    r = Client(headers={"Feature-Flag-Overrides": TOKEN}).get("/public")
    assert r.content == b"lp=b"
    assert report(r) == [Evaluation("dj-lp", "b", "override")]
    cookie = Client()
    cookie.cookies["featureflag_overrides"] = TOKEN
    assert cookie.get("/public").content == b"lp=b"


@override_settings(MIDDLEWARE=[OURS, UPDATE, FETCH])
def test_placed_before_update_cache_middleware_the_site_cache_leaks() -> None:
    # Why docs/django.md says "after UpdateCacheMiddleware": outside it, our Vary and
    # no-store come too late for Django's cache, which keys on the URL alone.
    Client(headers={"Feature-Flag-Overrides": TOKEN}).get("/public")
    assert Client().get("/public").content == b"lp=b"


@pytest.mark.parametrize("url", ["/decorated", "/decorated-async"])
def test_cache_page_never_serves_an_overridden_page_to_others(url: str) -> None:
    token_holder = Client(headers={"Feature-Flag-Overrides": TOKEN})
    assert token_holder.get(url).content == b"lp=b"
    assert token_holder.get(url).content == b"lp=b"
    assert Client().get(url).content == b"lp=a"
    assert Client().get(url).content == b"lp=a"
    assert len(calls) == 3  # the second anonymous request came from the cache


@pytest.mark.parametrize("url", ["/decorated", "/decorated-async"])
def test_cache_page_never_serves_a_cached_default_page_to_a_token_holder(url: str) -> None:
    Client().get(url)
    Client().get(url)
    assert len(calls) == 1
    r = Client(headers={"Feature-Flag-Overrides": TOKEN}).get(url)
    assert r.content == b"lp=b"
    assert report(r) == [Evaluation("dj-lp", "b", "override")]
    assert r.headers["Cache-Control"] == "private, no-store"


def _signed_ago(seconds: float, ttl: float) -> str:
    """A token signed *seconds* ago that its own ``exp`` keeps valid for *ttl* from then."""
    then = time.time() - seconds
    return OverrideSigner(SECRET, environment="test", clock=lambda: then).dumps(
        {"dj-lp": "b"}, sub="ana", ttl=ttl
    )


def test_a_token_signed_13_hours_ago_is_expired_whatever_its_own_expiry() -> None:
    # Issue 17, item 15: a leaked month-long token used to work until the secret rotated.
    old = _signed_ago(13 * 3600, ttl=30 * 86400)
    r = Client(headers={"Feature-Flag-Overrides": old}).get("/")
    assert r.content.startswith(b"lp=a ")
    assert r.headers["Feature-Flag-Override-Error"] == "expired"
    recent = _signed_ago(11 * 3600, ttl=30 * 86400)
    assert Client(headers={"Feature-Flag-Overrides": recent}).get("/").content.startswith(b"lp=b ")


def test_max_token_age_from_the_setting_or_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    token = _signed_ago(120, ttl=3600)
    with override_settings(FEATUREFLAG_MAX_TOKEN_AGE=60):
        r = Client(headers={"Feature-Flag-Overrides": token}).get("/")
    assert r.headers["Feature-Flag-Override-Error"] == "expired"
    monkeypatch.setenv("FEATUREFLAG_MAX_TOKEN_AGE", "60")
    r = Client(headers={"Feature-Flag-Overrides": token}).get("/")
    assert r.headers["Feature-Flag-Override-Error"] == "expired"
    with override_settings(FEATUREFLAG_MAX_TOKEN_AGE=600):  # the setting wins
        r = Client(headers={"Feature-Flag-Overrides": token}).get("/")
        assert "Feature-Flag-Override-Error" not in r.headers
    with (
        override_settings(FEATUREFLAG_MAX_TOKEN_AGE=-5),
        pytest.raises(ConfigurationError, match="max_token_age=-5"),
    ):
        WSGIHandler()


def lone_surrogate(request: HttpRequest) -> HttpResponse:
    value = featureflag.intercept("dj-lone", lambda: "bad \ud800")
    return HttpResponse(f"lp={landing()} {len(value)}")


urlpatterns.append(path("lone", lone_surrogate))


def test_a_lone_surrogate_from_app_code_is_left_out_of_the_report() -> None:
    # Issue 17, item 2: the view still answers, the report leaves the value out.
    r = Client(headers={"Feature-Flag-Overrides": TOKEN}).get("/lone")
    assert r.status_code == 200 and r.content == b"lp=b 5"
    reported = parse_report(r.headers["Feature-Flags"])
    assert reported == [Evaluation("dj-lp", "b", "override")]
    assert reported.dropped == 1  # type: ignore[attr-defined]
