"""The JSON API through httpx.ASGITransport, on an in-memory store."""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

import featureflag
from featureflag.tokens import OverrideSigner
from featureflag_server.app import create_app
from featureflag_server.memory_store import MemoryStore
from featureflag_server.settings import Settings

from .conftest import ALICE, BOB, SECRET

AUTH = {"Authorization": f"Bearer {ALICE}"}
BOB_AUTH = {"Authorization": f"Bearer {BOB}"}
FORK = {"name": "new-lp", "upstream": "http://127.0.0.1:9000", "flags": {"x.y": True}}


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=make_app(settings), base_url="http://127.0.0.1:8000"
    ) as c:
        yield c


def make_app(settings: Settings) -> httpx.ASGITransport:
    # An injected proxy transport: these tests never reach the proxy, and it spares the
    # proxy's client from loading the system's CA certificates for every app.
    unused = httpx.MockTransport(lambda request: httpx.Response(599))
    app = create_app(settings, store=MemoryStore(), proxy_transport=unused)
    return httpx.ASGITransport(app=app)


def signer() -> OverrideSigner:
    return OverrideSigner(SECRET, environment="test")


# -- health, auth, routing ----------------------------------------------------------


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/tokens"),
        ("PUT", "/api/flags"),
        ("POST", "/api/forks"),
        ("PUT", "/api/forks/new-lp"),
        ("DELETE", "/api/forks/new-lp"),
    ],
)
async def test_every_write_needs_a_bearer_token(
    client: httpx.AsyncClient, method: str, path: str
) -> None:
    response = await client.request(method, path, json={})
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="featureflag"'
    assert "FEATUREFLAG_API_TOKENS" in response.json()["message"]


@pytest.mark.parametrize(
    "header", [f"Bearer {ALICE}x", f"Bearer {ALICE[:-1]}", f"Basic {ALICE}", "Bearer", ALICE]
)
async def test_a_wrong_token_is_refused(client: httpx.AsyncClient, header: str) -> None:
    response = await client.post("/api/forks", json=FORK, headers={"Authorization": header})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer realm="featureflag"')
    assert await_list_is_empty(await client.get("/api/forks", headers=AUTH))


async def test_too_many_unknown_tokens_lock_their_prefix_not_a_correct_token(
    settings: Settings,
) -> None:
    # Issue 17 item 10: ten bad tokens used to lock the whole address (a NAT) out, the
    # correct token too. Now they lock only tokens starting like them, from that address.
    app = create_app(settings, store=MemoryStore(), proxy_transport=httpx.MockTransport(
        lambda request: httpx.Response(599)
    ))  # fmt: skip
    guesser = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    other = httpx.ASGITransport(app=app, client=("198.51.100.1", 5000))
    base = "http://127.0.0.1:8000"
    async with httpx.AsyncClient(transport=guesser, base_url=base) as g:
        async with httpx.AsyncClient(transport=other, base_url=base) as o:
            for i in range(10):
                wrong = {"Authorization": f"Bearer guess-{i:04d}-0123456789"}
                assert (
                    await g.post("/api/tokens", json={"flags": {}}, headers=wrong)
                ).status_code == 401
            eleventh = {"Authorization": "Bearer guess-9999-0123456789"}
            refused = await g.post("/api/tokens", json={"flags": {}}, headers=eleventh)
            assert refused.status_code == 429
            assert refused.json()["error"] == "too-many-attempts"
            assert 1 <= int(refused.headers["retry-after"]) <= 60
            # The correct token from the same address (behind the same NAT) is served.
            assert (
                await g.post("/api/tokens", json={"flags": {}}, headers=AUTH)
            ).status_code == 201
            # Another address may still try that prefix; a missing header is not a guess.
            assert (
                await o.post("/api/tokens", json={"flags": {}}, headers=eleventh)
            ).status_code == 401
            assert (await o.post("/api/tokens", json={"flags": {}})).status_code == 401


def await_list_is_empty(response: httpx.Response) -> bool:
    return bool(response.json() == {"forks": []})


async def test_an_unknown_token_gets_invalid_token_in_the_challenge(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post(
        "/api/tokens",
        json={"flags": {}},
        headers=BOB_AUTH | {"Authorization": "Bearer nope-nope-nope-nope"},
    )
    assert 'error="invalid_token"' in response.headers["www-authenticate"]


async def test_unknown_api_path_is_a_json_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not-found"


async def test_wrong_method_is_a_json_405(client: httpx.AsyncClient) -> None:
    response = await client.patch("/api/forks", json={})
    assert response.status_code == 405
    assert response.json()["error"] == "method-not-allowed"
    assert set(response.headers["allow"].split(", ")) == {"GET", "HEAD", "POST"}


async def test_head_works_where_get_does(client: httpx.AsyncClient) -> None:
    assert (await client.head("/api/forks", headers=AUTH)).status_code == 200
    assert (await client.head("/api/forks/ghost", headers=AUTH)).status_code == 404


# -- bad bodies ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "body", [b"{", b"", b"   ", b"\xff\xfe", b'{"flags": NaN}', b"[" * 100_000]
)
async def test_malformed_json_is_a_400_with_a_message(
    client: httpx.AsyncClient, body: bytes
) -> None:
    response = await client.post("/api/tokens", content=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"] == "malformed-json"
    assert "JSON" in response.json()["message"]


@pytest.mark.parametrize("body", [[], "text", 3, None, {"flags": {}, "extra": 1}, {"flag": {}}])
async def test_a_body_of_the_wrong_shape_is_a_422(client: httpx.AsyncClient, body: Any) -> None:
    response = await client.post("/api/tokens", content=json.dumps(body), headers=AUTH)
    assert response.status_code == 422
    assert response.json()["errors"]


async def test_a_huge_body_is_a_413(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/tokens", content=b" " * (5 * 1024 * 1024), headers=AUTH)
    assert response.status_code == 413


# -- tokens -------------------------------------------------------------------------


async def test_mint_a_token_for_the_caller(client: httpx.AsyncClient) -> None:
    flags = {"SomeNewFeature.is_released": True, "new-lp": "b"}
    before = time.time()
    response = await client.post("/api/tokens", json={"flags": flags, "ttl": 600}, headers=AUTH)
    after = time.time()
    assert response.status_code == 201
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    verified = signer().loads(body["token"])
    assert verified.flags == flags
    assert verified.sub == "alice"
    assert verified.origin == "extension"
    assert before + 600 - 1 <= verified.expires_at <= after + 600 + 1
    assert body["expires_at"].endswith("Z")
    assert body["sub"] == "alice"


async def test_a_minted_token_may_carry_routes(client: httpx.AsyncClient) -> None:
    routes = {"recommendations": "http://recs-pr-7.preview.svc.cluster.local:8080"}
    body = {"flags": {"new-lp": "b"}, "routes": routes}
    response = await client.post("/api/tokens", json=body, headers=AUTH)
    assert response.status_code == 201, response.text
    assert signer().loads(response.json()["token"]).routes == routes


@pytest.mark.parametrize(
    "routes",
    [{"recommendations": "ftp://x"}, {"recommendations": "http://u:p@x"}, {"bad name": "http://x"}],
)
async def test_a_malformed_route_is_a_422_naming_the_rule(
    client: httpx.AsyncClient, routes: dict[str, str]
) -> None:
    body = {"flags": {"new-lp": "b"}, "routes": routes}
    response = await client.post("/api/tokens", json=body, headers=AUTH)
    assert response.status_code == 422
    problem = response.json()
    assert problem["errors"][0]["field"].startswith("routes")
    assert "route" in problem["message"] or "service name" in problem["message"]


async def test_the_token_is_for_the_configured_environment_only(
    client: httpx.AsyncClient,
) -> None:
    response = await client.post("/api/tokens", json={"flags": {"a": True}}, headers=AUTH)
    with pytest.raises(featureflag.TokenError) as info:
        OverrideSigner(SECRET, environment="production").loads(response.json()["token"])
    assert info.value.reason == "wrong-environment"


async def test_default_ttl_is_an_hour(client: httpx.AsyncClient) -> None:
    before = time.time()
    response = await client.post("/api/tokens", json={"flags": {}}, headers=AUTH)
    expires = signer().loads(response.json()["token"]).expires_at
    assert before + 3600 - 1 <= expires <= time.time() + 3600 + 1


async def test_ttl_is_capped(settings: Settings) -> None:
    capped = settings.model_copy(update={"max_token_ttl": 120.0})
    async with httpx.AsyncClient(transport=make_app(capped), base_url="http://t") as client:
        before = time.time()
        response = await client.post("/api/tokens", json={"flags": {}, "ttl": 10**9}, headers=AUTH)
        after = time.time()
    assert response.status_code == 201
    expires = signer().loads(response.json()["token"]).expires_at
    assert before + 120 - 1 <= expires <= after + 120 + 1


@pytest.mark.parametrize("ttl", [0, -5, "long", True, 1e400])
async def test_a_bad_ttl_is_a_422(client: httpx.AsyncClient, ttl: object) -> None:
    body = f'{{"flags": {{}}, "ttl": {json.dumps(ttl) if ttl != 1e400 else "1e400"}}}'
    response = await client.post("/api/tokens", content=body, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "ttl"


@pytest.mark.parametrize(
    ("flags", "field"),
    [
        ({"has space": True}, "flags"),
        ({"": True}, "flags"),
        ({"a": 1}, "flags.a"),
        ({"a": None}, "flags.a"),
        ({"a": ["b"]}, "flags.a"),
        ({"a": "x" * 2000}, "flags.a"),
        ({f"f{i}": True for i in range(201)}, "flags"),
    ],
)
async def test_bad_overrides_are_a_422_naming_the_field(
    client: httpx.AsyncClient, flags: dict[str, Any], field: str
) -> None:
    response = await client.post("/api/tokens", json={"flags": flags}, headers=AUTH)
    assert response.status_code == 422
    errors = response.json()["errors"]
    assert errors[0]["field"] == field
    assert errors[0]["rule"]


async def test_a_fork_origin_cannot_be_minted_through_the_api(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/tokens", json={"flags": {}, "origin": "fork:new-lp"}, headers=AUTH
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "origin"


CATALOG = [
    {"name": "Page.is_new", "type": "bool", "default": False},
    {"name": "layout", "type": "str", "choices": ["a", "b"], "default": "a"},
    {"name": "title", "type": "str"},
]


@pytest.mark.parametrize(
    ("flags", "status", "field"),
    [
        ({"Page.is_new": "yes"}, 422, "flags.Page.is_new"),
        ({"Page.is_new": True}, 201, None),
        ({"layout": "c"}, 422, "flags.layout"),
        ({"layout": True}, 422, "flags.layout"),
        ({"layout": "b"}, 201, None),
        ({"title": False}, 422, "flags.title"),
        ({"title": "anything"}, 201, None),
        ({"not.in.catalog": 7 == 7}, 201, None),
    ],
)
async def test_override_types_are_checked_against_the_catalog(
    client: httpx.AsyncClient, flags: dict[str, Any], status: int, field: str | None
) -> None:
    assert (await client.put("/api/flags", json={"flags": CATALOG}, headers=AUTH)).is_success
    response = await client.post("/api/tokens", json={"flags": flags}, headers=AUTH)
    assert response.status_code == status
    if field is not None:
        problem = response.json()["errors"][0]
        assert problem["field"] == field
        # The SDK's own wording (featureflag.tokens.override_problem).
        assert problem["rule"].startswith(f"Flag {next(iter(flags))!r} ")


# -- catalog ------------------------------------------------------------------------


@featureflag.trap(name="ApiTestFeature")
class _Feature:
    def is_released(self) -> bool:
        return False

    def variant(self) -> Literal["a", "b"]:
        return "a"


async def test_put_then_get_round_trips_real_catalog_output(client: httpx.AsyncClient) -> None:
    # Exactly what `python -m featureflag catalog --push URL` sends.
    document = {"flags": [info.to_json() for info in featureflag.catalog()]}
    assert any(f["name"] == "ApiTestFeature.variant" for f in document["flags"])
    assert (await client.get("/api/flags", headers=AUTH)).json() == {"flags": []}
    put = await client.put("/api/flags", content=json.dumps(document).encode(), headers=AUTH)
    assert put.status_code == 200
    assert put.json() == document
    assert (await client.get("/api/flags", headers=AUTH)).json() == document


async def test_each_service_pushes_its_own_part_of_the_catalog(
    client: httpx.AsyncClient,
) -> None:
    def push(service: str, *names: str) -> Any:
        body = {"flags": [{"name": name, "type": "bool"} for name in names]}
        return client.put(f"/api/flags?service={service}", json=body, headers=AUTH)

    assert (await push("shop", "shop.a", "shop.b")).status_code == 200
    assert (await push("recs", "recs.a")).status_code == 200
    assert (await push("shop", "shop.c")).status_code == 200
    stored = (await client.get("/api/flags", headers=AUTH)).json()["flags"]
    assert [(f["name"], f["service"]) for f in stored] == [("recs.a", "recs"), ("shop.c", "shop")]

    conflict = await push("recs", "recs.b", "shop.c")
    assert conflict.status_code == 409
    assert conflict.json()["error"] == "exists"
    assert "'shop.c' is already in service 'shop'" in conflict.json()["message"]
    listed = await client.get("/api/flags", headers=AUTH)
    assert len(listed.json()["flags"]) == 2  # nothing changed

    bad = await push("no spaces", "x")
    assert bad.status_code == 422
    assert bad.json()["errors"][0]["field"] == "service"


async def test_put_catalog_fills_in_left_out_fields(client: httpx.AsyncClient) -> None:
    response = await client.put("/api/flags", json={"flags": [{"name": "x"}]}, headers=AUTH)
    assert response.json()["flags"] == [
        {
            "name": "x",
            "type": None,
            "choices": None,
            "default": None,
            "kind": "",
            "module": "",
            "path": "",
            "line": 0,
            "description": None,
        }
    ]


@pytest.mark.parametrize(
    ("entry", "field"),
    [
        ({"name": "has space"}, "flags.0.name"),
        ({"name": "a", "type": "int"}, "flags.0.type"),
        ({"name": "a", "type": "bool", "choices": ["x"]}, "flags.0"),
        ({"name": "a", "type": "bool", "default": "yes"}, "flags.0"),
        ({"name": "a", "line": -1}, "flags.0.line"),
        ({"type": "bool"}, "flags.0.name"),
    ],
)
async def test_bad_catalog_entries_are_a_422(
    client: httpx.AsyncClient, entry: dict[str, Any], field: str
) -> None:
    response = await client.put("/api/flags", json={"flags": [entry]}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field
    assert (await client.get("/api/flags", headers=AUTH)).json() == {"flags": []}


async def test_a_catalog_with_a_name_twice_is_a_422(client: httpx.AsyncClient) -> None:
    response = await client.put(
        "/api/flags", json={"flags": [{"name": "a"}, {"name": "a"}]}, headers=AUTH
    )
    assert response.status_code == 422
    assert "twice" in response.json()["errors"][0]["rule"]


# -- forks --------------------------------------------------------------------------


async def test_create_a_fork(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/forks", json=FORK, headers=AUTH)
    assert response.status_code == 201
    assert response.headers["location"] == "/api/forks/new-lp"
    body = response.json()
    assert body["name"] == "new-lp"
    assert body["upstream"] == "http://127.0.0.1:9000"
    assert body["flags"] == {"x.y": True}
    assert body["url"] == "http://new-lp.localhost:8000/"
    assert body["created_by"] == "alice"
    assert body["created_at"] == body["updated_at"]
    assert body["created_at"].endswith("Z")
    assert (await client.get("/api/forks/new-lp", headers=AUTH)).json() == body
    assert (await client.get("/api/forks", headers=AUTH)).json() == {"forks": [body]}


async def test_fork_url_follows_the_scheme_and_port_the_client_used(settings: Settings) -> None:
    qa = settings.model_copy(update={"fork_domain": "qa.example.com"})
    async with httpx.AsyncClient(
        transport=make_app(qa), base_url="https://qa.example.com"
    ) as client:
        response = await client.post("/api/forks", json=FORK, headers=AUTH)
    assert response.json()["url"] == "https://new-lp.qa.example.com/"


async def test_a_duplicate_fork_is_a_409(client: httpx.AsyncClient) -> None:
    await client.post("/api/forks", json=FORK, headers=AUTH)
    response = await client.post(
        "/api/forks", json=FORK | {"upstream": "http://other:1"}, headers=BOB_AUTH
    )
    assert response.status_code == 409
    assert response.json()["errors"][0]["field"] == "name"
    assert "already exists" in response.json()["message"]
    fetched = await client.get("/api/forks/new-lp", headers=AUTH)
    assert fetched.json()["upstream"] == FORK["upstream"]


@pytest.mark.parametrize(
    "name",
    [
        "",
        "-lp",
        "lp-",
        "New-lp",
        "new_lp",
        "new.lp",
        "x" * 64,
        "www",
        "api",
        "admin",
        "localhost",
        "ünï",
        "a b",
        7,
    ],
)
async def test_fork_names_are_dns_labels_and_not_reserved(
    client: httpx.AsyncClient, name: object
) -> None:
    response = await client.post("/api/forks", json=FORK | {"name": name}, headers=AUTH)
    assert response.status_code == 422
    problem = response.json()["errors"][0]
    assert problem["field"] == "name"
    assert (
        "DNS label" in problem["rule"]
        or "reserved" in problem["rule"]
        or "string" in problem["rule"]
    )


@pytest.mark.parametrize("name", ["a", "0", "x" * 63, "new-lp-2", "9-lives"])
async def test_good_fork_names(client: httpx.AsyncClient, name: str) -> None:
    response = await client.post("/api/forks", json=FORK | {"name": name}, headers=AUTH)
    assert response.status_code == 201


@pytest.mark.parametrize(
    "upstream",
    [
        "ftp://x",
        "not a url",
        "http://",
        "//host:80",
        "http://u:p@host",
        "http://h/?q=1",
        "http://h/#frag",
        "javascript:alert(1)",
        "http://h:99999",
        "http://h /x",
        42,
    ],
)
async def test_upstream_must_be_an_http_url(client: httpx.AsyncClient, upstream: object) -> None:
    response = await client.post("/api/forks", json=FORK | {"upstream": upstream}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "upstream"


@pytest.mark.parametrize(
    "upstream",
    ["http://other.localhost:8000", "http://NEW-LP.localhost:3000/", "http://a.localhost."],
)
async def test_an_upstream_under_the_fork_domain_would_loop(
    client: httpx.AsyncClient, upstream: str
) -> None:
    response = await client.post("/api/forks", json=FORK | {"upstream": upstream}, headers=AUTH)
    assert response.status_code == 422
    assert "loop" in response.json()["errors"][0]["rule"]
    await client.post("/api/forks", json=FORK, headers=AUTH)
    response = await client.put("/api/forks/new-lp", json={"upstream": upstream}, headers=AUTH)
    assert response.status_code == 422


@pytest.mark.parametrize(
    "upstream",
    [
        "http://127.0.0.1:9000",
        "https://app.internal/base/",
        "http://[::1]:8080",
        "http://localhost:5000",
        "http://notlocalhost:5000",
    ],
)
async def test_good_upstreams(client: httpx.AsyncClient, upstream: str) -> None:
    response = await client.post("/api/forks", json=FORK | {"upstream": upstream}, headers=AUTH)
    assert response.status_code == 201


async def test_fork_flags_are_checked_against_the_catalog(client: httpx.AsyncClient) -> None:
    await client.put("/api/flags", json={"flags": CATALOG}, headers=AUTH)
    response = await client.post(
        "/api/forks", json=FORK | {"flags": {"layout": "zzz"}}, headers=AUTH
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "flags.layout"


async def test_get_an_unknown_fork_is_a_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/forks/ghost", headers=AUTH)
    assert response.status_code == 404
    assert "ghost" in response.json()["message"]


async def test_update_a_fork_keeps_who_created_it(client: httpx.AsyncClient) -> None:
    created = (await client.post("/api/forks", json=FORK, headers=AUTH)).json()
    response = await client.put(
        "/api/forks/new-lp",
        json={"upstream": "https://elsewhere", "flags": {"x.y": False, "z": "q"}},
        headers=BOB_AUTH,
    )
    assert response.status_code == 200
    body = response.json()
    assert body["upstream"] == "https://elsewhere"
    assert body["flags"] == {"x.y": False, "z": "q"}
    assert body["created_by"] == "alice"
    assert body["created_at"] == created["created_at"]
    assert body["updated_at"] >= created["updated_at"]
    assert (await client.get("/api/forks/new-lp", headers=AUTH)).json() == body


async def test_update_cannot_rename(client: httpx.AsyncClient) -> None:
    await client.post("/api/forks", json=FORK, headers=AUTH)
    response = await client.put("/api/forks/new-lp", json=FORK | {"name": "other"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "name"


async def test_update_with_the_same_name_in_the_body_is_fine(client: httpx.AsyncClient) -> None:
    await client.post("/api/forks", json=FORK, headers=AUTH)
    response = await client.put("/api/forks/new-lp", json=FORK, headers=AUTH)
    assert response.status_code == 200


async def test_put_creates_an_unknown_fork_then_replaces_it(client: httpx.AsyncClient) -> None:
    body = {"upstream": "http://h:1", "flags": {"a": True}}
    created = await client.put("/api/forks/ghost", json=body, headers=AUTH)
    assert created.status_code == 201
    assert created.headers["location"] == "/api/forks/ghost"
    assert created.json()["created_by"] == "alice"
    assert created.json()["updated_by"] == "alice"
    again = await client.put("/api/forks/ghost", json=body, headers=BOB_AUTH)
    assert again.status_code == 200  # idempotent: the same body again is a replace
    assert again.json()["created_by"] == "alice"
    assert again.json()["updated_by"] == "bob"
    assert again.json()["flags"] == {"a": True}
    assert len((await client.get("/api/forks", headers=AUTH)).json()["forks"]) == 1


@pytest.mark.parametrize("name", ["www", "New-lp", "-x", "x" * 64])
async def test_put_checks_the_name_of_a_fork_it_would_create(
    client: httpx.AsyncClient, name: str
) -> None:
    response = await client.put(f"/api/forks/{name}", json={"upstream": "http://h"}, headers=AUTH)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "name"
    assert (await client.get("/api/forks", headers=AUTH)).json() == {"forks": []}


async def test_update_validates_the_body(client: httpx.AsyncClient) -> None:
    await client.post("/api/forks", json=FORK, headers=AUTH)
    response = await client.put("/api/forks/new-lp", json={"upstream": "ftp://x"}, headers=AUTH)
    assert response.status_code == 422


async def test_delete_a_fork(client: httpx.AsyncClient) -> None:
    await client.post("/api/forks", json=FORK, headers=AUTH)
    assert (await client.delete("/api/forks/new-lp", headers=AUTH)).status_code == 204
    assert (await client.get("/api/forks/new-lp", headers=AUTH)).status_code == 404
    assert (await client.delete("/api/forks/new-lp", headers=AUTH)).status_code == 404


async def test_labels_routes_and_a_ttl_are_stored_and_returned(client: httpx.AsyncClient) -> None:
    before = datetime.now(UTC)
    body = FORK | {
        "labels": {"team": "checkout", "github.com/pr": "42"},
        "routes": {"recs": "http://127.0.0.1:7001"},
        "ttl": 3600,
    }
    created = (await client.post("/api/forks", json=body, headers=AUTH)).json()
    assert created["labels"] == {"team": "checkout", "github.com/pr": "42"}
    assert created["routes"] == {"recs": "http://127.0.0.1:7001"}
    assert created["updated_by"] == "alice"
    expires = datetime.fromisoformat(created["expires_at"])
    assert before + timedelta(seconds=3599) <= expires <= datetime.now(UTC) + timedelta(hours=1)
    assert (await client.get("/api/forks/new-lp", headers=AUTH)).json() == created


async def test_put_replaces_every_field_and_takes_an_expiry_time(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/api/forks", json=FORK | {"labels": {"a": "b"}, "ttl": 60}, headers=AUTH)
    body = {"upstream": "http://h:2", "expires_at": "2099-01-01T00:00:00+02:00"}
    response = await client.put("/api/forks/new-lp", json=body, headers=AUTH)
    assert response.status_code == 200
    fork = response.json()
    assert (fork["labels"], fork["routes"], fork["flags"]) == ({}, {}, {})
    assert fork["expires_at"] == "2098-12-31T22:00:00Z"
    again = await client.put("/api/forks/new-lp", json={"upstream": "http://h:2"}, headers=AUTH)
    assert again.json()["expires_at"] is None  # left out: never expires


@pytest.mark.parametrize(
    ("extra", "field", "words"),
    [
        ({"ttl": 0}, "ttl", "ttl must be a positive number of seconds"),
        ({"ttl": "1h"}, "ttl", "ttl must be a positive number of seconds"),
        ({"ttl": 1e400}, "ttl", "ttl must be a positive number of seconds"),
        ({"ttl": 10**400}, "ttl", "leave it out for a fork that never expires"),
        ({"ttl": 60, "expires_at": "2099-01-01T00:00:00Z"}, "ttl", "not both"),
        ({"expires_at": "9999-12-31T23:00:00-05:00"}, "expires_at", "ISO 8601"),
        ({"expires_at": "2000-01-01T00:00:00Z"}, "expires_at", "in the future"),
        ({"expires_at": "2099-01-01"}, "expires_at", "with a timezone"),
        ({"expires_at": 5}, "expires_at", "ISO 8601"),
        ({"labels": {"bad key": "x"}}, "labels", "a label key"),
        ({"labels": {"k": 1}}, "labels.k", "a label value"),
        ({"labels": ["a"]}, "labels", "dictionary"),
        ({"routes": {"recs": "not a url"}}, "routes.recs", "a route is"),
        ({"routes": {"a b": "http://h"}}, "routes", "a service name"),
    ],
)
async def test_bad_new_fields_are_a_422_naming_the_field_and_rule(
    client: httpx.AsyncClient, extra: dict[str, Any], field: str, words: str
) -> None:
    if extra.get("ttl") == math.inf:  # JSON has no Infinity: a number too large for a float
        content = json.dumps(FORK | {"ttl": "__inf__"}).replace('"__inf__"', "1e400")
    else:
        content = json.dumps(FORK | extra)
    for method, path in (("POST", "/api/forks"), ("PUT", "/api/forks/new-lp")):
        response = await client.request(method, path, content=content, headers=AUTH)
        assert response.status_code == 422, response.text
        rules = {e["field"]: e["rule"] for e in response.json()["errors"]}
        assert words in rules[field], rules
    assert (await client.get("/api/forks", headers=AUTH)).json() == {"forks": []}


async def test_a_forks_flags_must_fit_in_its_token(client: httpx.AsyncClient) -> None:
    flags = {f"Flag.number_{i:03}": os.urandom(24).hex() for i in range(150)}
    response = await client.post("/api/forks", json=FORK | {"flags": flags}, headers=AUTH)
    assert response.status_code == 422
    [problem] = response.json()["errors"]
    assert problem["field"] == "flags"
    assert "the limit is 4096" in problem["rule"]


# -- never a 500 ----------------------------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
BODIES = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {},
        optional={
            "name": JSON | st.from_regex(r"[a-z0-9-]{1,70}", fullmatch=True),
            "upstream": JSON | st.just("http://h:1"),
            "flags": st.dictionaries(st.text(max_size=8), JSON, max_size=4),
            "ttl": JSON,
            "origin": JSON,
            "labels": JSON | st.dictionaries(st.text(max_size=8), JSON, max_size=4),
            "routes": JSON | st.dictionaries(st.text(max_size=8), JSON, max_size=4),
            "expires_at": JSON | st.datetimes().map(lambda d: d.isoformat()),
        },
    ),
)


@hsettings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=BODIES,
    target=st.sampled_from(
        [
            ("POST", "/api/tokens"),
            ("POST", "/api/forks"),
            ("PUT", "/api/forks/a"),
            ("PUT", "/api/flags"),
        ]
    ),
)
async def test_no_body_makes_a_500(body: object, target: tuple[str, str]) -> None:
    settings = Settings(secret=SECRET, environment="test", api_tokens={"alice": ALICE})
    async with httpx.AsyncClient(
        transport=make_app(settings), base_url="http://127.0.0.1:8000"
    ) as client:
        await client.post("/api/forks", json=FORK | {"name": "a"}, headers=AUTH)
        method, path = target
        response = await client.request(method, path, content=json.dumps(body), headers=AUTH)
    assert response.status_code in {200, 201, 400, 409, 413, 422}, response.text
    if response.status_code >= 400:
        assert response.json()["message"]


# -- issue 17: lone surrogates, scopes, authenticated reads, the login limit -------------

LONE = "\\ud800"  # as JSON text: json.loads makes it a lone surrogate


@pytest.mark.parametrize(
    ("method", "path", "body", "field"),
    [
        ("POST", "/api/tokens", '{"flags": {"x": "%s"}}', "flags.x"),
        ("POST", "/api/tokens", '{"flags": {"x%s": true}}', "flags"),
        ("POST", "/api/tokens", '{"flags": {}, "routes": {"svc": "http://h/%s"}}', "routes.svc"),
        (
            "POST",
            "/api/forks",
            '{"name": "a", "upstream": "http://h:1", "flags": {"x": "%s"}}',
            "flags.x",
        ),
        ("PUT", "/api/forks/a", '{"upstream": "http://h:1", "labels": {"k": "%s"}}', "labels.k"),
        ("PUT", "/api/forks/a", '{"upstream": "http://h:1/%s"}', "upstream"),
        ("PUT", "/api/forks/a", '{"upstream": "http://h:1", "routes": {"s": "%s"}}', "routes.s"),
        (
            "PUT",
            "/api/flags",
            '{"flags": [{"name": "a.b", "description": "%s"}]}',
            "flags.0.description",
        ),
    ],
)
async def test_a_lone_surrogate_anywhere_in_a_body_is_a_422_naming_the_field(
    client: httpx.AsyncClient, method: str, path: str, body: str, field: str
) -> None:
    # Issue 17 item 2: these were 500s (and the catalog one was committed).
    response = await client.request(method, path, content=body % LONE, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == field
    assert "surrogate" in response.json()["errors"][0]["rule"]
    assert (await client.get("/api/flags", headers=AUTH)).json() == {"flags": []}
    assert (await client.get("/api/forks", headers=AUTH)).json() == {"forks": []}


async def test_the_same_text_as_a_proper_pair_is_fine(client: httpx.AsyncClient) -> None:
    body = '{"flags": [{"name": "a.b", "description": "\\ud83d\\ude00"}]}'
    response = await client.put("/api/flags", content=body, headers=AUTH)
    assert response.status_code == 200
    assert response.json()["flags"][0]["description"] == "\U0001f600"


async def test_a_catalog_stored_with_a_lone_surrogate_still_reads(settings: Settings) -> None:
    # Data from before the check: shown with U+FFFD instead of a 500 for everyone.
    store = MemoryStore()
    await store.put_catalog([{"name": "a.b", "type": "str", "description": "bad \udc00"}])
    unused = httpx.MockTransport(lambda request: httpx.Response(599))
    app = create_app(settings, store=store, proxy_transport=unused)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
    ) as client:
        response = await client.get("/api/flags", headers=AUTH)
    assert response.status_code == 200
    assert response.json()["flags"][0]["description"] == "bad \ufffd"


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/api/forks"), ("GET", "/api/forks/new-lp"), ("GET", "/api/flags"),
     ("HEAD", "/api/forks"), ("HEAD", "/api/flags")],
)  # fmt: skip
async def test_reads_need_a_token(client: httpx.AsyncClient, method: str, path: str) -> None:
    # Issue 17 item 5: forks (their upstreams, their flags) and the catalog were public.
    await client.post("/api/forks", json=FORK, headers=AUTH)
    response = await client.request(method, path)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == 'Bearer realm="featureflag"'
    assert (await client.request(method, path, headers=AUTH)).status_code == 200


SCOPED = {
    "reader": "reader-token-0123456789",
    "forker": "forker-token-0123456789",
    "minter": "minter-token-0123456789",
    "gateway": "gateway-token-012345678",
}
ENDPOINTS: list[tuple[str, str, dict[str, Any] | None, str]] = [
    ("GET", "/api/forks", None, "read"),
    ("GET", "/api/forks/new-lp", None, "read"),
    ("GET", "/api/flags", None, "read"),
    ("POST", "/api/forks", FORK | {"name": "other"}, "forks"),
    ("PUT", "/api/forks/new-lp", {"upstream": "http://127.0.0.1:9001"}, "forks"),
    ("DELETE", "/api/forks/new-lp", None, "forks"),
    ("PUT", "/api/flags", {"flags": []}, "forks"),
    ("POST", "/api/tokens", {"flags": {}}, "tokens"),
    ("GET", "/api/forward-auth", None, "gateway"),
]


@pytest.fixture
def scoped_settings() -> Settings:
    entries = [f"alice:{ALICE}"] + [
        f"{name}:{token}:{scope}"
        for (name, token), scope in zip(
            SCOPED.items(), ["read", "read+forks", "tokens", "gateway"], strict=True
        )
    ]
    return Settings(secret=SECRET, environment="test", api_tokens=",".join(entries))


@pytest.mark.parametrize(("method", "path", "body", "scope"), ENDPOINTS)
async def test_each_endpoint_needs_its_scope(
    scoped_settings: Settings, method: str, path: str, body: dict[str, Any] | None, scope: str
) -> None:
    # Issue 17 item 4: any API token could do anything (point forks anywhere, mint tokens).
    has = {"alice": True, "reader": scope == "read", "forker": scope in ("read", "forks"),
           "minter": scope == "tokens", "gateway": scope == "gateway"}  # fmt: skip
    async with httpx.AsyncClient(
        transport=make_app(scoped_settings), base_url="http://127.0.0.1:8000"
    ) as client:
        for name, allowed in has.items():
            assert (await client.put("/api/forks/new-lp", json=FORK, headers=AUTH)).is_success
            await client.delete("/api/forks/other", headers=AUTH)
            token = ALICE if name == "alice" else SCOPED[name]
            headers = {"Authorization": f"Bearer {token}", "X-Forwarded-Host": "new-lp.localhost"}
            response = await client.request(method, path, json=body, headers=headers)
            if allowed:
                assert response.status_code < 400, (name, response.text)
            else:
                assert response.status_code == 403, (name, response.text)
                assert f"lacks the {scope!r} scope" in response.text.replace("&#x27;", "'"), name


async def test_a_rotating_forwarded_for_from_a_trusted_proxy_cannot_guess_without_limit(
    settings: Settings,
) -> None:
    # Issue 17 item 10: uvicorn's proxy_headers makes each X-Forwarded-For a new client
    # address; the prefix's own bucket (any address) still fills up.
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    service = make_app(settings).app
    app = ProxyHeadersMiddleware(service, trusted_hosts="127.0.0.1")  # type: ignore[arg-type]
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 5000))
    statuses = []
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as c:
        for i in range(120):
            headers = {
                "Authorization": f"Bearer bogus-guess-{i:010d}",
                "X-Forwarded-For": f"10.9.{i // 250}.{i % 250}",
            }
            statuses.append((await c.get("/api/forks", headers=headers)).status_code)
        good = await c.get("/api/forks", headers={**AUTH, "X-Forwarded-For": "10.9.9.9"})
    assert statuses[:100] == [401] * 100
    assert set(statuses[100:]) == {429}
    assert good.status_code == 200  # another prefix than the guesses'


SURROGATE_TEXT = st.builds(
    lambda head, bad, tail: head + bad + tail,
    st.text(max_size=4),
    st.characters(categories=["Cs"]),
    st.text(max_size=4),
)


@hsettings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    bad=SURROGATE_TEXT,
    where=st.sampled_from(
        [
            ("POST", "/api/tokens", lambda b: {"flags": {"x": b}}),
            ("POST", "/api/tokens", lambda b: {"flags": {b: True}}),
            ("POST", "/api/tokens", lambda b: {"flags": {}, "origin": b}),
            ("POST", "/api/forks", lambda b: FORK | {"name": b}),
            ("PUT", "/api/forks/a", lambda b: {"upstream": "http://h:1", "labels": {b: "v"}}),
            ("PUT", "/api/forks/a", lambda b: {"upstream": "http://h:1", "expires_at": b}),
            ("PUT", "/api/flags", lambda b: {"flags": [{"name": "a.b", "choices": [b]}]}),
            ("PUT", "/api/flags", lambda b: {"flags": [{"name": "a.b", "module": b}]}),
        ]
    ),
)
async def test_no_lone_surrogate_makes_a_500_or_is_stored(
    bad: str, where: tuple[str, str, Any]
) -> None:
    settings = Settings(secret=SECRET, environment="test", api_tokens={"alice": ALICE})
    async with httpx.AsyncClient(
        transport=make_app(settings), base_url="http://127.0.0.1:8000"
    ) as client:
        method, path, body = where
        content = json.dumps(body(bad))  # ensure_ascii: the surrogate travels as \\udXXX
        response = await client.request(method, path, content=content, headers=AUTH)
        assert response.status_code == 422, response.text
        assert "surrogate" in response.text
        assert (await client.get("/api/flags", headers=AUTH)).json() == {"flags": []}


@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32-le"])
@pytest.mark.parametrize("escaped", [True, False])
async def test_a_lone_surrogate_is_found_in_any_encoding_json_takes(
    client: httpx.AsyncClient, encoding: str, escaped: bool
) -> None:
    text = '{"flags": {"x": "\\ud800"}}' if escaped else '{"flags": {"x": "\ud800"}}'
    body = text.encode(encoding, "surrogatepass")
    response = await client.post("/api/tokens", content=body, headers=AUTH)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "flags.x"
