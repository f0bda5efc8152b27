"""Routes: a token's ``routes`` send a named service's requests elsewhere, only where allowed.

A caller app (Starlette under FeatureFlagMiddleware) calls ``recommendations`` at
``http://recs.internal`` through featureflag.propagation; a recording MockTransport
stands for every host, so a test sees exactly where each request went.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import http_sf
import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import featureflag
from featureflag import Evaluation
from featureflag._routing import RoutePolicy
from featureflag.asgi import FeatureFlagMiddleware
from featureflag.exceptions import ConfigurationError
from featureflag.headers import ROUTE
from featureflag.propagation import propagating_async_client, propagating_client
from featureflag.report import format_report, parse_report
from featureflag.tokens import OverrideSigner
from tests.support.servers import run_uvicorn

SECRET = "routes-test-secret-" + "r" * 32
SERVICE_URL = "http://recs.internal"
ALLOWED = {"recommendations": ["*.preview.svc.cluster.local", "127.0.0.1:*"]}
DOWNSTREAM = format_report([Evaluation("Recs.algorithm", "v2", "override")])


@pytest.fixture
def signer() -> OverrideSigner:
    return OverrideSigner(SECRET, environment="qa")


def raw_token(signer: OverrideSigner, routes: object) -> str:
    """A validly signed token whose routes claim skipped the signing-side check, as a
    buggy or hostile service holding the secret could make."""
    payload = {
        "v": 1,
        "env": "qa",
        "flags": {"Recs.algorithm": "v2"},
        "sub": "ci",
        "origin": "fork:pr-12",
        "exp": 4102444800,  # 2100
        "routes": routes,
    }
    token: str = signer._serializer.dumps(payload)
    return token


class Hosts:
    """Every host on the network: records requests, answers with a Feature-Flags report."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, json={"items": [1]}, headers={"Feature-Flags": DOWNSTREAM})

    def urls(self) -> list[str]:
        return [str(r.url) for r in self.requests]


def caller(hosts: Hosts, signer: OverrideSigner, **options: Any) -> httpx.AsyncClient:
    options = {"services": {"recs.internal": "recommendations"}, "routes_allowed": ALLOWED} | (
        options
    )

    async def call_async(request: Request) -> JSONResponse:
        async with propagating_async_client(
            transport=httpx.MockTransport(hosts), follow_redirects=True, **options
        ) as client:
            await client.get(SERVICE_URL + "/items?user=7")
        return JSONResponse([e.name for e in featureflag.evaluations()])

    def call_sync(request: Request) -> JSONResponse:
        with propagating_client(transport=httpx.MockTransport(hosts), **options) as client:
            client.get(SERVICE_URL + "/items?user=7")
        return JSONResponse([e.name for e in featureflag.evaluations()])

    app = Starlette(routes=[Route("/async", call_async), Route("/sync", call_sync)])
    wrapped = FeatureFlagMiddleware(app, signer=signer)
    return httpx.AsyncClient(transport=httpx.ASGITransport(wrapped), base_url="http://app.test")


def routes_in(response: httpx.Response) -> list[Evaluation]:
    return [e for e in parse_report(response.headers.get("feature-flags", "")) if e.name == ROUTE]


# --- the policy ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("http://recs-pr-12.preview.svc.cluster.local", True),
        ("https://a.b.preview.svc.cluster.local/v2", True),
        ("http://recs-pr-12.preview.svc.cluster.local:80", True),
        ("http://recs-pr-12.preview.svc.cluster.local:8080", False),  # no port: default only
        ("https://recs-pr-12.preview.svc.cluster.local:80", False),
        ("http://preview.svc.cluster.local", False),  # '*.' means under, only
        ("http://evilpreview.svc.cluster.local", False),
        ("http://127.0.0.1:8080", True),
        ("http://127.0.0.1", True),
        ("http://127.0.0.2:8080", False),
        ("http://127.1:8080", False),  # resolves to 127.0.0.1, but is not written so
        ("http://[::ffff:127.0.0.1]:8080", False),
    ],
)
def test_the_policy_allows_a_service_host_and_port(url: str, allowed: bool) -> None:
    refusal = RoutePolicy(ALLOWED).refusal("recommendations", url)
    assert (refusal is None) is allowed, refusal


def test_the_policy_knows_only_the_services_it_names() -> None:
    policy = RoutePolicy({"recommendations": ["[::1]:*", "recs.local:8443"]})
    assert policy.refusal("recommendations", "http://[::1]:9000") is None
    assert policy.refusal("recommendations", "https://recs.local:8443") is None
    assert policy.refusal("recommendations", "https://recs.local") is not None
    refusal = policy.refusal("payments", "http://[::1]:9000")
    assert refusal is not None and "allows no route for service 'payments'" in refusal


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("*", "routes_allowed pattern"),
        ("*:*", "routes_allowed pattern"),
        ("", "routes_allowed pattern"),
        ("http://recs.internal", "routes_allowed pattern"),
        ("recs.internal/v2", "routes_allowed pattern"),
        ("user@recs.internal", "routes_allowed pattern"),
        ("recs.internal:0", "routes_allowed pattern"),
        ("recs.internal:99999", "routes_allowed pattern"),
        ("recs.internal:http", "routes_allowed pattern"),
        ("::1", "in brackets"),
        ("bücher.example", "routes_allowed pattern"),  # punycode only
        ("*.*.example.com", "routes_allowed pattern"),
    ],
)
def test_a_bad_pattern_is_refused_at_start_up(pattern: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RoutePolicy({"recommendations": [pattern]})


def test_a_bad_service_name_is_refused_at_start_up() -> None:
    with pytest.raises(ConfigurationError, match="service name"):
        RoutePolicy({"recs/v2": ["127.0.0.1:*"]})


def test_a_single_string_is_one_pattern() -> None:
    assert (
        RoutePolicy({"recommendations": "127.0.0.1:*"}).refusal(
            "recommendations", "http://127.0.0.1:5"
        )
        is None
    )


# --- followed ------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/async", "/sync"])
async def test_an_allowed_route_is_followed_and_reported(path: str, signer: OverrideSigner) -> None:
    route = "http://recs-pr-12.preview.svc.cluster.local/v2"
    token = signer.dumps({"Recs.algorithm": "v2"}, sub="ci", routes={"recommendations": route})
    hosts = Hosts()
    async with caller(hosts, signer) as client:
        response = await client.get(path, headers={"Feature-Flag-Overrides": token})
    assert hosts.urls() == [route + "/items?user=7"]
    sent = hosts.requests[0]
    assert sent.headers["host"] == "recs-pr-12.preview.svc.cluster.local"
    assert sent.headers["feature-flag-overrides"] == token  # the routed build gets the flags
    report = parse_report(response.headers["feature-flags"])
    assert Evaluation(ROUTE, route, "override", None, "recommendations") in report
    # The routed build's flags are listed under the service's name, not its host.
    assert Evaluation("Recs.algorithm", "v2", "override", None, "recommendations") in report
    assert (
        'route;service="recommendations";url="' + route + '"' in response.headers["feature-flags"]
    )


async def test_without_routes_nothing_changes(signer: OverrideSigner) -> None:
    hosts = Hosts()
    token = signer.dumps({"Recs.algorithm": "v2"}, sub="ci")
    async with caller(hosts, signer, allow_hosts=["recs.internal"]) as client:
        response = await client.get("/async", headers={"Feature-Flag-Overrides": token})
    assert hosts.urls() == [SERVICE_URL + "/items?user=7"]
    assert routes_in(response) == []


async def test_a_service_the_app_does_not_name_is_never_routed(signer: OverrideSigner) -> None:
    token = signer.dumps({}, sub="ci", routes={"recommendations": "http://127.0.0.1:9"})
    hosts = Hosts()
    async with caller(hosts, signer, services={"other.internal": "recommendations"}) as client:
        response = await client.get("/async", headers={"Feature-Flag-Overrides": token})
    assert hosts.urls() == [SERVICE_URL + "/items?user=7"]
    assert routes_in(response) == []


async def test_a_refused_token_routes_nothing(signer: OverrideSigner) -> None:
    other = OverrideSigner("another-secret-" + "o" * 32, environment="qa")
    token = other.dumps({}, sub="x", routes={"recommendations": "http://127.0.0.1:9"})
    hosts = Hosts()
    async with caller(hosts, signer) as client:
        await client.get("/async", headers={"Feature-Flag-Overrides": token})
    assert hosts.urls() == [SERVICE_URL + "/items?user=7"]
    assert "feature-flag-overrides" not in hosts.requests[0].headers


# --- refused -------------------------------------------------------------------------

HOSTILE = [
    "http://x.preview.svc.cluster.local@evil.example",
    "http://evil.example\\@x.preview.svc.cluster.local",
    "http://evil.example#@x.preview.svc.cluster.local",
    "http://evil.example?.preview.svc.cluster.local",
    "http://x.preview.svc.cluster.local。evil.example",  # an IDNA dot
    "http://evil.example。preview.svc.cluster.local",
    "http://x.preview.svc.cluster.local\uff0eevil.example",  # a fullwidth dot
    "http://x.preview.svc.cluster.local.evil.example",
    "http://x.preview.svc.cluster.local./",
    "http://%78.preview.svc.cluster.local",
    "http://x.preview.svc.cluster.local:22",
    "http://x.preview.svc.cluster.local:0",
    "http://127.0.0.1:99999",
    "http://127.0.0.1.nip.io:8080",
    "http://localhost:8080",
    "ftp://x.preview.svc.cluster.local",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "//x.preview.svc.cluster.local",
    " http://x.preview.svc.cluster.local",
    "http://x.preview.svc.cluster.local\r\nHost: evil.example",
    "http://preview.svc.cluster.local",
    "http://[::1]:8080",
    "",
    42,
    None,
    {"url": "http://127.0.0.1:8080"},
]


@pytest.mark.parametrize("route", HOSTILE, ids=repr)
@pytest.mark.parametrize("path", ["/async", "/sync"])
async def test_a_hostile_route_is_never_followed(
    path: str, route: object, signer: OverrideSigner, caplog: pytest.LogCaptureFixture
) -> None:
    token = raw_token(signer, {"recommendations": route})
    hosts = Hosts()
    with caplog.at_level(logging.WARNING, logger="featureflag.propagation"):
        async with caller(hosts, signer) as client:
            response = await client.get(path, headers={"Feature-Flag-Overrides": token})
    assert response.status_code == 200
    # The request went where the app sent it, and nowhere else.
    assert [r.url.host for r in hosts.requests] == ["recs.internal"]
    [reported] = routes_in(response)
    assert reported.service == "recommendations"
    assert reported.rejected is not None
    assert any("not followed" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("claim", [["http://127.0.0.1:8080"], "http://127.0.0.1:8080", 7])
async def test_a_malformed_claim_is_dropped_whole(claim: object, signer: OverrideSigner) -> None:
    hosts = Hosts()
    async with caller(hosts, signer) as client:
        response = await client.get(
            "/async", headers={"Feature-Flag-Overrides": raw_token(signer, claim)}
        )
    assert [r.url.host for r in hosts.requests] == ["recs.internal"]
    [reported] = routes_in(response)
    assert reported.rejected is not None and "malformed route" in reported.rejected


async def test_a_route_to_a_host_the_app_does_not_allow_is_refused_and_reported(
    signer: OverrideSigner, caplog: pytest.LogCaptureFixture
) -> None:
    token = signer.dumps({}, sub="ci", routes={"recommendations": "https://recs.evil.example"})
    hosts = Hosts()
    with caplog.at_level(logging.WARNING, logger="featureflag.propagation"):
        async with caller(hosts, signer) as client:
            response = await client.get("/async", headers={"Feature-Flag-Overrides": token})
    assert hosts.urls() == [SERVICE_URL + "/items?user=7"]
    assert routes_in(response) == [
        Evaluation(
            ROUTE,
            "https://recs.evil.example",
            "default",
            "the app does not allow recs.evil.example:443 for service 'recommendations'; "
            "add it to routes_allowed['recommendations']",
            "recommendations",
        )
    ]
    assert (
        'route;service="recommendations";url="https://recs.evil.example";rejected='
        in response.headers["feature-flags"]
    )
    [record] = [r for r in caplog.records if r.name == "featureflag.propagation"]
    assert "recs.evil.example" in record.getMessage()


async def test_without_routes_allowed_no_route_is_followed(signer: OverrideSigner) -> None:
    token = signer.dumps({}, sub="ci", routes={"recommendations": "http://127.0.0.1:8080"})
    hosts = Hosts()
    async with caller(hosts, signer, routes_allowed=None) as client:
        response = await client.get("/async", headers={"Feature-Flag-Overrides": token})
    assert hosts.urls() == [SERVICE_URL + "/items?user=7"]
    [reported] = routes_in(response)
    assert reported.rejected is not None and "allows no route" in reported.rejected


async def test_a_redirect_from_a_routed_build_to_another_host_loses_the_token(
    signer: OverrideSigner,
) -> None:
    route = "http://127.0.0.1:8080"
    token = signer.dumps({}, sub="ci", routes={"recommendations": route})
    seen: list[httpx.Request] = []

    def network(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "127.0.0.1":
            return httpx.Response(302, headers={"Location": "http://evil.example/steal"})
        return httpx.Response(200)

    hosts: Callable[[httpx.Request], httpx.Response] = network
    async with caller(hosts, signer) as client:  # type: ignore[arg-type]
        await client.get("/async", headers={"Feature-Flag-Overrides": token})
    assert [str(r.url) for r in seen] == [route + "/items?user=7", "http://evil.example/steal"]
    assert seen[0].headers["feature-flag-overrides"] == token
    assert "feature-flag-overrides" not in seen[1].headers


# --- the report across the call tree -------------------------------------------------


def test_route_items_round_trip_and_keep_their_service_when_merged() -> None:
    entries = [
        Evaluation("Recs.algorithm", "v2", "override"),
        Evaluation(ROUTE, "http://127.0.0.1:8080", "override", None, "search"),
        Evaluation(ROUTE, "https://evil.example", "default", "not allowed", "ads"),
        Evaluation(ROUTE, None, "default", "malformed route: x", "billing"),
    ]
    header = format_report(entries)
    assert header == (
        '"Recs.algorithm";value="v2";source=override, '
        'route;service="search";url="http://127.0.0.1:8080", '
        'route;service="ads";url="https://evil.example";rejected="not allowed", '
        'route;service="billing";rejected="malformed route: x"'
    )
    # Merged from downstream "recommendations": its flags get that service, while the
    # route items keep the service they route.
    merged = parse_report(header, service="recommendations")
    assert [(e.name, e.service) for e in merged] == [
        ("Recs.algorithm", "recommendations"),
        (ROUTE, "search"),
        (ROUTE, "ads"),
        (ROUTE, "billing"),
    ]
    assert merged[1:] == entries[1:]


def test_a_reader_that_knows_only_flags_skips_route_items() -> None:
    header = format_report(
        [Evaluation("a", True), Evaluation(ROUTE, "http://h", "default", None, "s")]
    )
    # What every reader written before routes keeps: the members that are strings.
    members = http_sf.parse(header.encode(), tltype="list")
    assert [m[0] for m in members if isinstance(m[0], str)] == ["a"]


@pytest.mark.parametrize(
    "item",
    ['route;url="http://h"', 'route;service=7;url="http://h"', "route", 'routes;service="s"'],
)
def test_a_route_item_without_a_service_is_skipped(item: str) -> None:
    assert parse_report(item + ', "a";value') == [Evaluation("a", True)]


# --- real processes ------------------------------------------------------------------


@pytest.mark.integration
def test_a_fork_token_routes_recommendations_to_the_pr_build(tmp_path: Path) -> None:
    """Three uvicorn processes: the front, recommendations' main build and a PR build."""
    env = {"FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_ENVIRONMENT": "qa"}
    app = "tests.apps.routes_app:create_app"
    with (
        run_uvicorn(app, factory=True, log_dir=tmp_path, env=env | {"BUILD": "main"},
                    ready_path="/ready", name="main") as main,
        run_uvicorn(app, factory=True, log_dir=tmp_path, env=env | {"BUILD": "pr-12"},
                    ready_path="/ready", name="pr") as pr,
        run_uvicorn(app, factory=True, log_dir=tmp_path, env=env | {"RECS_URL": main.url},
                    ready_path="/ready", name="front") as front,
    ):  # fmt: skip
        signer = OverrideSigner(SECRET, environment="qa")
        routed = signer.dumps(
            {"Downstream.color": "red"}, sub="fork:pr-12", routes={"recommendations": pr.url}
        )
        refused = signer.dumps(
            {}, sub="fork:x", routes={"recommendations": f"http://localhost:{pr.port}"}
        )
        plain = httpx.get(front.url + "/")
        to_pr = httpx.get(front.url + "/", headers={"Feature-Flag-Overrides": routed})
        not_allowed = httpx.get(front.url + "/", headers={"Feature-Flag-Overrides": refused})
    assert plain.json() == {"build": "main", "color": "blue"}
    assert to_pr.json() == {"build": "pr-12", "color": "red"}
    report = parse_report(to_pr.headers["feature-flags"])
    assert Evaluation(ROUTE, pr.url, "override", None, "recommendations") in report
    assert Evaluation("Downstream.color", "red", "override", None, "recommendations") in report
    assert not_allowed.json() == {"build": "main", "color": "blue"}
    [route] = routes_in(not_allowed)
    assert route.rejected is not None and f"localhost:{pr.port}" in route.rejected
    assert "not followed" in front.output()


async def test_a_routed_response_is_never_cached(signer: OverrideSigner) -> None:
    # Nothing evaluated an override: only the route makes this response the token's.
    token = signer.dumps(
        {"Unused.flag": True}, sub="ci", routes={"recommendations": "http://127.0.0.1:8080"}
    )

    def silent(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={})

    async with caller(silent, signer) as client:  # type: ignore[arg-type]
        routed = await client.get("/async", headers={"Feature-Flag-Overrides": token})
        plain = await client.get(
            "/async",
            headers={"Feature-Flag-Overrides": signer.dumps({"Unused.flag": True}, sub="c")},
        )
    assert routed.headers["cache-control"] == "private, no-store"
    assert "cache-control" not in plain.headers


async def test_a_token_with_routes_only_still_makes_the_response_private(
    signer: OverrideSigner,
) -> None:
    # A fork of a microservice may bake in no flag at all: the route alone is the override.
    token = signer.dumps({}, sub="ci", routes={"recommendations": "http://127.0.0.1:8080"})

    def silent(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={})

    async with caller(silent, signer) as client:  # type: ignore[arg-type]
        routed = await client.get("/async", headers={"Feature-Flag-Overrides": token})
    assert routed.headers["cache-control"] == "private, no-store"
