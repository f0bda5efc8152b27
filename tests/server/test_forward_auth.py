"""``GET /api/forward-auth``: the token and upstream a gateway gets for a fork host."""

from __future__ import annotations

import base64
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from featureflag.exceptions import ConfigurationError
from featureflag.tokens import OverrideSigner
from featureflag_server.app import create_app
from featureflag_server.auth import FailedLogins
from featureflag_server.forward_auth import ForwardAuth, max_age, token_ttl
from featureflag_server.memory_store import MemoryStore
from featureflag_server.settings import Settings, load_settings
from featureflag_server.store import Fork
from tests.server.conftest import ALICE, SECRET

FLAGS = {"Landing.is_new": True, "Hero.variant": "b"}
AUTH = {"Authorization": f"Bearer {ALICE}"}


@pytest.fixture
async def store() -> AsyncIterator[MemoryStore]:
    store = MemoryStore()
    await store.create_fork(Fork("new-lp", "http://10.0.0.5:8080", dict(FLAGS)))
    await store.create_fork(Fork("shop", "https://user:pa55@app.internal/shop/", {}))
    yesterday = datetime.now(UTC) - timedelta(days=1)
    await store.create_fork(Fork("old", "http://10.0.0.5:8080", {}, expires_at=yesterday))
    await store.create_fork(Fork("broken", "ftp://files.example", {}))
    yield store


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://featureflag.internal:8000"
    )


@pytest.fixture
async def client(settings: Settings, store: MemoryStore) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(ForwardAuth(settings, store, FailedLogins())) as client:
        yield client


def signer() -> OverrideSigner:
    return OverrideSigner(SECRET, environment="test")


async def ask(client: httpx.AsyncClient, host: str, **headers: str) -> httpx.Response:
    return await client.get("/", headers={**AUTH, "X-Forwarded-Host": host, **headers})


async def test_a_fork_gets_a_fresh_token_with_its_flags_and_its_upstream(
    client: httpx.AsyncClient,
) -> None:
    response = await ask(client, "new-lp.localhost:8443")
    assert response.status_code == 200
    verified = signer().loads(response.headers["feature-flag-overrides"])
    assert dict(verified.flags) == FLAGS
    assert verified.origin == "fork:new-lp" and verified.sub == "fork:new-lp"
    assert response.headers["x-featureflag-upstream"] == "http://10.0.0.5:8080"
    assert response.headers["x-featureflag-upstream-dial"] == "10.0.0.5:8080"
    assert response.headers["x-featureflag-upstream-host"] == "10.0.0.5:8080"
    assert response.headers["x-featureflag-upstream-scheme"] == "http"
    assert response.headers["x-featureflag-upstream-path"] == ""
    assert "x-featureflag-upstream-authorization" not in response.headers
    assert response.headers["x-featureflag-fork"] == "new-lp"
    assert response.headers["cache-control"] == "max-age=5"


async def test_the_token_outlives_twice_the_cache_time(
    settings: Settings, store: MemoryStore
) -> None:
    slow = settings.model_copy(update={"forward_auth_cache": 600})
    async with client_for(ForwardAuth(slow, store, FailedLogins())) as client:
        response = await ask(client, "new-lp.localhost")
    assert response.headers["cache-control"] == "max-age=600"
    expires_at = signer().loads(response.headers["feature-flag-overrides"]).expires_at
    assert expires_at - time.time() > 2 * 600


@pytest.mark.parametrize("cache", [0, 1, 5, 60, 600, 1728, 3600])
@pytest.mark.parametrize("cap", [30.0, 600.0, 3600.0, 43200.0])
def test_a_token_is_reminted_with_at_least_twice_the_max_age_left(cache: int, cap: float) -> None:
    # TokenCache re-mints a token once less than 10% of its lifetime is left.
    ttl = token_ttl(cache, cap)
    assert ttl <= cap
    assert 0.1 * ttl >= 2 * max_age(cache, ttl)
    assert max_age(cache, ttl) == cache or 25 * cache > cap


async def test_a_low_token_cap_shortens_the_max_age(settings: Settings, store: MemoryStore) -> None:
    capped = settings.model_copy(update={"max_token_ttl": 40.0})
    async with client_for(ForwardAuth(capped, store, FailedLogins())) as client:
        response = await ask(client, "new-lp.localhost")
    assert response.headers["cache-control"] == "max-age=2"


async def test_an_upstream_with_a_path_and_credentials(client: httpx.AsyncClient) -> None:
    response = await ask(client, "shop.localhost")
    assert response.status_code == 200
    assert response.headers["x-featureflag-upstream"] == "https://app.internal"
    assert response.headers["x-featureflag-upstream-dial"] == "app.internal:443"
    assert response.headers["x-featureflag-upstream-scheme"] == "https"
    assert response.headers["x-featureflag-upstream-path"] == "/shop"
    expected = "Basic " + base64.b64encode(b"user:pa55").decode()
    assert response.headers["x-featureflag-upstream-authorization"] == expected


async def test_the_host_falls_back_to_the_host_header(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers={**AUTH, "Host": "new-lp.localhost"})
    assert response.headers["x-featureflag-fork"] == "new-lp"
    # X-Forwarded-Host wins over Host, and its first entry is the visitor's.
    response = await ask(client, "shop.localhost, proxy.internal", Host="new-lp.localhost")
    assert response.headers["x-featureflag-fork"] == "shop"
    # ingress-nginx's auth sub-request names the visitor's URL in X-Original-URL.
    response = await client.get(
        "/", headers={**AUTH, "X-Original-URL": "https://shop.localhost/cart?x=1"}
    )
    assert response.headers["x-featureflag-fork"] == "shop"


async def test_an_unknown_fork_is_the_404_page(client: httpx.AsyncClient) -> None:
    response = await ask(client, "nope.localhost")
    assert response.status_code == 404
    assert "There is no fork named <code>nope</code>" in response.text
    assert response.headers["x-featureflag-error"] == "unknown-fork"
    assert response.headers["cache-control"] == "max-age=5"
    assert "feature-flag-overrides" not in response.headers


async def test_deny_403_turns_refusals_into_403_with_the_real_status(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get(
        "/?deny=403", headers={**AUTH, "X-Forwarded-Host": "nope.localhost"}
    )
    assert response.status_code == 403
    assert response.headers["x-featureflag-status"] == "404"
    assert response.headers["x-featureflag-error"] == "unknown-fork"


async def test_an_expired_fork_is_410(client: httpx.AsyncClient) -> None:
    response = await ask(client, "old.localhost")
    assert response.status_code == 410
    assert response.headers["x-featureflag-error"] == "expired-fork"
    assert "has expired" in response.text


async def test_a_fork_that_cannot_be_served_is_403_not_5xx(client: httpx.AsyncClient) -> None:
    response = await ask(client, "broken.localhost")
    assert response.status_code == 403
    assert response.headers["x-featureflag-error"] == "bad-fork"
    assert response.headers["cache-control"] == "no-store"


@pytest.mark.parametrize(
    "host", ["localhost", "a.b.localhost", "www.localhost", "example.com", "[::1]:80", ""]
)
async def test_a_host_that_names_no_fork_is_404(client: httpx.AsyncClient, host: str) -> None:
    response = await client.get("/", headers={**AUTH, "X-Forwarded-Host": host, "Host": host})
    assert response.status_code == 404
    assert response.headers["x-featureflag-error"] == "not-a-fork"


async def test_no_bearer_is_401_with_a_challenge(client: httpx.AsyncClient) -> None:
    response = await client.get("/", headers={"X-Forwarded-Host": "new-lp.localhost"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer ")
    assert response.headers["cache-control"] == "no-store"
    assert "feature-flag-overrides" not in response.headers


async def test_a_wrong_bearer_is_401_and_counts_as_a_failed_login(
    settings: Settings, store: MemoryStore
) -> None:
    logins = FailedLogins(limit=3)
    async with client_for(ForwardAuth(settings, store, logins)) as client:
        wrong = {"Authorization": "Bearer wrong-token-0123456789"}
        for _ in range(3):
            response = await client.get(
                "/", headers={**wrong, "X-Forwarded-Host": "new-lp.localhost"}
            )
            assert response.status_code == 401
            assert 'error="invalid_token"' in response.headers["www-authenticate"]
        locked = await client.get("/", headers={**wrong, "X-Forwarded-Host": "new-lp.localhost"})
        good = await ask(client, "new-lp.localhost")
    assert locked.status_code == 429
    assert int(locked.headers["retry-after"]) > 0
    assert good.status_code == 200  # the gateway's correct token is never locked out


async def test_any_method_is_answered_like_get(client: httpx.AsyncClient) -> None:
    # nginx's auth sub-request carries the visitor's method.
    for method in ("POST", "DELETE", "HEAD", "OPTIONS"):
        response = await client.request(
            method, "/", headers={**AUTH, "X-Forwarded-Host": "new-lp.localhost"}
        )
        assert response.status_code == 200, method
        assert response.headers["x-featureflag-fork"] == "new-lp"


async def test_deny_403_covers_too_many_attempts(settings: Settings, store: MemoryStore) -> None:
    logins = FailedLogins(limit=1)
    async with client_for(ForwardAuth(settings, store, logins)) as client:
        wrong = {"Authorization": "Bearer wrong-token-0123456789"}
        await client.get("/", headers=wrong)
        response = await client.get(
            "/?deny=403", headers={**wrong, "X-Forwarded-Host": "new-lp.localhost"}
        )
    assert response.status_code == 403
    assert response.headers["x-featureflag-status"] == "429"


@given(host=st.binary(max_size=80))
@hypothesis_settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
async def test_no_host_value_is_a_5xx(settings: Settings, host: bytes) -> None:
    app = ForwardAuth(settings, MemoryStore(), FailedLogins())
    scope = {
        "type": "http",
        "method": "GET",
        "path": "/",
        "query_string": b"",
        "headers": [
            (b"authorization", f"Bearer {ALICE}".encode()),
            (b"x-forwarded-host", host),
            (b"host", host),
        ],
    }
    response = await app.answer(scope)
    assert response.status_code < 500


async def test_the_service_serves_it_at_api_forward_auth(
    settings: Settings, store: MemoryStore
) -> None:
    app = create_app(settings, store=store)
    async with client_for(app) as client:
        response = await client.get(
            "/api/forward-auth", headers={**AUTH, "X-Forwarded-Host": "new-lp.localhost"}
        )
        assert response.status_code == 200
        assert response.headers["x-featureflag-fork"] == "new-lp"
        other = await client.get("/api/forks/new-lp", headers=AUTH)
        assert other.status_code == 200  # the rest of /api is untouched


def test_forward_auth_cache_option() -> None:
    env = {"FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_API_TOKENS": f"alice:{ALICE}"}
    assert load_settings([], env).forward_auth_cache == 5
    assert load_settings(["--forward-auth-cache", "30"], env).forward_auth_cache == 30
    with pytest.raises(ConfigurationError, match="--forward-auth-cache"):
        load_settings(["--forward-auth-cache", "-1"], env)


async def test_a_token_without_the_gateway_scope_is_403(store: MemoryStore) -> None:
    # Issue 17 item 4: any API token could fetch any fork's override token here.
    tokens = f"alice:{ALICE},ci:ci-token-0123456789ab:read+forks,gw:gw-token-0123456789ab:gateway"
    settings = Settings(secret=SECRET, environment="test", api_tokens=tokens)
    async with client_for(ForwardAuth(settings, store, FailedLogins())) as client:
        host = {"X-Forwarded-Host": "new-lp.localhost"}
        ci = await client.get(
            "/", headers={"Authorization": "Bearer ci-token-0123456789ab", **host}
        )
        gw = await client.get(
            "/", headers={"Authorization": "Bearer gw-token-0123456789ab", **host}
        )
    assert ci.status_code == 403
    assert ci.headers["x-featureflag-error"] == "insufficient-scope"
    assert "gateway" in ci.text and "feature-flag-overrides" not in ci.headers
    assert gw.status_code == 200 and gw.headers["feature-flag-overrides"]


# --- issue 17, item 4: the gateway gets no refused upstream ------------------------------


@pytest.mark.parametrize(
    "upstream",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://metadata.google.internal/",
        "http://169.254.1.1:8080",
        "http://loop\u3002localhost:9110",
    ],
)
async def test_a_stored_fork_pointing_where_forks_may_not_is_refused_to_the_gateway(
    client: httpx.AsyncClient,
    store: MemoryStore,
    upstream: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Stored directly: written before the rule existed, or through another replica.
    await store.create_fork(Fork("meta", upstream, {}))
    response = await ask(client, "meta.localhost")
    assert response.status_code == 403
    assert response.headers["x-featureflag-error"] == "bad-fork"
    assert "x-featureflag-upstream" not in response.headers
    assert "169.254" not in response.text and "metadata" not in response.text
    assert "meta" in caplog.text


async def test_a_name_that_resolves_to_the_services_own_socket_is_refused(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    # The client's app has the default settings: it listens on 127.0.0.1:8000.
    await store.create_fork(Fork("self", "http://localhost:8000/", {}))
    response = await ask(client, "self.localhost")
    assert response.status_code == 403
    assert response.headers["x-featureflag-error"] == "bad-fork"
