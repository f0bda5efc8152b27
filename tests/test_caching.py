"""featureflag.caching: the cache-key part and is_overridden(), and the documented
Flask-Caching and functools recipes keeping overridden and default results apart."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask, request
from flask_caching import Cache

import featureflag
from featureflag import cache_key, is_overridden, wsgi
from featureflag.tokens import OverrideSigner

SECRET = "caching-test-secret-" + "c" * 32
signer = OverrideSigner(SECRET, environment="test")
TOKEN = {"Feature-Flag-Overrides": signer.dumps({"fc-lp": "b"}, sub="ana")}
OTHER = {"Feature-Flag-Overrides": signer.dumps({"fc-lp": "c"}, sub="bo")}


def test_empty_without_overrides() -> None:
    assert cache_key() == ""
    assert is_overridden() is False
    with featureflag.request_scope():  # report="always": a scope, but no overrides
        assert cache_key() == ""
        assert is_overridden() is False


def test_a_stable_digest_of_the_overrides() -> None:
    with featureflag.overrides({"a": True, "b": "x"}):
        first = cache_key()
        assert is_overridden() is True
    with featureflag.overrides({"b": "x", "a": True}):
        assert cache_key() == first  # order does not matter
    with featureflag.overrides({"a": True, "b": "y"}):
        assert cache_key() not in ("", first)
    # The same in every process and release (a shared cache): a fixed value.
    assert first == "featureflag-387c1ae8249ba98e12f7dee9"


def flask_app(decorate: Callable[[Cache], Callable[[Any], Any]]) -> tuple[Any, list[str]]:
    app = Flask(__name__)
    cache = Cache(app, config={"CACHE_TYPE": "SimpleCache"})
    calls: list[str] = []

    @app.route("/")
    @decorate(cache)
    def home() -> str:
        calls.append("home")
        return "lp=" + featureflag.intercept("fc-lp", lambda: "a")

    app.wsgi_app = wsgi.FeatureFlagMiddleware(app.wsgi_app, signer=signer)  # type: ignore[method-assign]
    return app.test_client(), calls


RECIPES: dict[str, Callable[[Cache], Callable[[Any], Any]]] = {
    # docs/middleware.md, "Caches inside the app"
    "key_prefix": lambda cache: cache.cached(
        timeout=60, key_prefix=lambda: f"view/{request.full_path}/{featureflag.cache_key()}"
    ),
    "unless": lambda cache: cache.cached(timeout=60, unless=featureflag.is_overridden),
}


@pytest.mark.parametrize("recipe", RECIPES)
def test_flask_caching_never_serves_an_overridden_page_to_others(recipe: str) -> None:
    client, calls = flask_app(RECIPES[recipe])
    assert client.get("/", headers=TOKEN).text == "lp=b"
    assert client.get("/", headers=OTHER).text == "lp=c"
    assert client.get("/").text == "lp=a"
    assert client.get("/").text == "lp=a"
    assert len(calls) == 3  # the second anonymous request came from the cache


@pytest.mark.parametrize("recipe", RECIPES)
def test_flask_caching_never_serves_a_cached_default_page_to_a_token_holder(
    recipe: str,
) -> None:
    client, calls = flask_app(RECIPES[recipe])
    client.get("/")
    client.get("/")
    assert len(calls) == 1
    r = client.get("/", headers=TOKEN)
    assert r.text == "lp=b"
    assert r.headers["feature-flags"] == '"fc-lp";value="b";source=override'


def test_without_the_recipe_flask_caching_leaks() -> None:
    # Why the recipe exists: the middleware's headers come after the view's cache.
    client, _ = flask_app(lambda cache: cache.cached(timeout=60))
    client.get("/", headers=TOKEN)
    assert client.get("/").text == "lp=b"


def test_functools_cache_recipe() -> None:
    calls: list[str] = []

    @functools.lru_cache(maxsize=128)
    def sidebar(flags: str) -> str:  # flags: featureflag.cache_key(), part of the key
        calls.append(flags)
        return "new" if featureflag.intercept("fc-sidebar", lambda: False) else "old"

    assert sidebar(cache_key()) == "old"
    with featureflag.overrides({"fc-sidebar": True}):
        assert sidebar(cache_key()) == "new"
    assert sidebar(cache_key()) == "old"
    assert len(calls) == 2
