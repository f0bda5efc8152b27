"""featureflag.propagation: the token goes to allowed hosts only, reports come back.

In-process tests run tests/apps/propagation_app.py through httpx.ASGITransport with a
recording downstream transport; integration tests run real uvicorn downstreams.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import featureflag
from featureflag import Evaluation
from featureflag.exceptions import ConfigurationError
from featureflag.propagation import (
    AsyncPropagatingTransport,
    HostPolicy,
    PropagatingTransport,
    host_of,
    propagating_async_client,
    propagating_client,
)
from featureflag.report import format_report, parse_report
from featureflag.tokens import OverrideSigner
from tests.apps.propagation_app import create_app
from tests.support.servers import Server, run_uvicorn

SECRET = "propagation-test-secret-" + "s" * 32
TOKEN_HEADER = "feature-flag-overrides"
DOWNSTREAM_REPORT = format_report([Evaluation("Downstream.color", "red", "override")])


@pytest.fixture
def signer() -> OverrideSigner:
    return OverrideSigner(SECRET, environment="development")


@pytest.fixture
def token(signer: OverrideSigner) -> str:
    return signer.dumps({"Caller.checkout": True, "Downstream.color": "red"}, sub="ana")


# --- which hosts are trusted ---------------------------------------------------------


def test_exact_and_wildcard_patterns() -> None:
    policy = HostPolicy(["billing", "API.Example.com.", "*.internal.example.com", "::1"])
    assert policy.allows("billing")
    assert policy.allows("api.example.com")
    assert policy.allows("API.EXAMPLE.COM")
    assert policy.allows("a.internal.example.com")
    assert policy.allows("a.b.internal.example.com")
    assert policy.allows("::1")
    assert not policy.allows("internal.example.com")  # a wildcard means "under", only
    assert not policy.allows("evilinternal.example.com")
    assert not policy.allows("api.example.com.evil.net")
    assert not policy.allows("example.com")
    assert not policy.allows("billing.evil.net")
    assert not policy.allows("")


def test_nothing_is_allowed_by_default_but_the_incoming_host() -> None:
    policy = HostPolicy()
    assert not policy.allows("api.example.com")
    assert not policy.allows("api.example.com", None)
    assert policy.allows("app.example.com", "app.example.com")
    assert not policy.allows("api.example.com", "app.example.com")
    assert not HostPolicy(same_host=False).allows("app.example.com", "app.example.com")


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("*", "every host"),
        ("", "every host"),
        ("*example.com", "every host"),
        ("https://api.example.com", "'api.example.com'"),
        ("api.example.com/v1", "not paths"),
        ("api.example.com:8443", "without a port"),
        ("[::1]:8443", "write '::1'"),
        ("*.", "every host"),
        ("*.*.example.com", "bad allow_hosts"),
    ],
)
def test_a_pattern_that_could_mean_everyone_is_refused(pattern: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        HostPolicy([pattern])


def test_a_single_string_is_one_host_not_its_letters() -> None:
    policy = HostPolicy("billing")
    assert policy.allows("billing")
    assert not policy.allows("b")


@pytest.mark.parametrize(
    ("header", "host"),
    [
        ("App.Example.com:8000", "app.example.com"),
        ("app.example.com", "app.example.com"),
        ("app.example.com.", "app.example.com"),
        ("[::1]:8000", "::1"),
        ("[::1]", "::1"),
        ("127.0.0.1:5", "127.0.0.1"),
    ],
)
def test_host_of_a_host_header(header: str, host: str) -> None:
    assert host_of(header) == host


# --- in-process: a caller app and a recording downstream ------------------------------


class Recorder:
    """A downstream that records what it received and answers with a report.

    With *redirect_to*, any other host answers a redirect there.
    """

    def __init__(
        self, report: str = DOWNSTREAM_REPORT, *, redirect_to: str | None = None, **extra: str
    ) -> None:
        self.requests: list[httpx.Request] = []
        self.redirect_to = redirect_to
        self.headers = {"Feature-Flags": report, **extra} if report else dict(extra)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        target = self.redirect_to
        if target is not None and request.url.host != httpx.URL(target).host:
            return httpx.Response(302, headers={"Location": target})
        return httpx.Response(200, json={"color": "red"}, headers=self.headers)

    def tokens(self) -> list[str | None]:
        return [r.headers.get(TOKEN_HEADER) for r in self.requests]


def caller(recorder: Recorder, downstream: str, **options: Any) -> httpx.AsyncClient:
    app = create_app(
        downstream,
        secret=SECRET,
        async_transport=httpx.MockTransport(recorder),
        sync_transport=httpx.MockTransport(recorder),
        **options,
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app.example.com")


def remote(body: dict[str, Any]) -> list[dict[str, Any]]:
    return [e for e in body["evals"] if e["service"] is not None]


@pytest.mark.parametrize("path", ["/call-async", "/call-sync"])
async def test_token_goes_to_an_allowed_host_and_the_report_comes_back(
    path: str, token: str
) -> None:
    recorder = Recorder()
    async with caller(recorder, "http://billing.internal:8001", allow_hosts=["*.internal"]) as c:
        response = await c.get(path, headers={"Feature-Flag-Overrides": token})
    assert recorder.tokens() == [token]
    body = response.json()
    assert body["checkout"] is True
    assert remote(body) == [
        {
            "name": "Downstream.color",
            "value": "red",
            "source": "override",
            "service": "billing.internal:8001",
        }
    ]
    # The caller's own report carries the downstream flag, marked with its service.
    report = parse_report(response.headers["feature-flags"])
    assert Evaluation("Caller.checkout", True, "override") in report
    assert Evaluation("Downstream.color", "red", "override", None, "billing.internal:8001") in (
        report
    )


async def test_the_cookie_token_is_propagated_as_the_header(token: str) -> None:
    recorder = Recorder()
    async with caller(recorder, "http://billing.internal", allow_hosts=["billing.internal"]) as c:
        c.cookies.set("featureflag_overrides", token)
        await c.get("/call-async")
    assert recorder.tokens() == [token]


@pytest.mark.parametrize("path", ["/call-async", "/call-sync"])
async def test_a_third_party_never_sees_the_token_nor_reports_into_ours(
    path: str, token: str
) -> None:
    recorder = Recorder()
    async with caller(recorder, "https://api.thirdparty.com", allow_hosts=["*.internal"]) as c:
        response = await c.get(path, headers={"Feature-Flag-Overrides": token})
    assert recorder.tokens() == [None]
    assert recorder.requests[0].url.host == "api.thirdparty.com"
    body = response.json()
    assert remote(body) == []
    assert "Downstream.color" not in response.headers["feature-flags"]


async def test_the_same_host_as_the_incoming_request_is_allowed_by_default(token: str) -> None:
    recorder = Recorder()
    async with caller(recorder, "http://app.example.com:9000") as c:
        await c.get("/call-async", headers={"Feature-Flag-Overrides": token})
    assert recorder.tokens() == [token]


@pytest.mark.parametrize("pattern", ["bücher.example", "xn--bcher-kva.example"])
def test_an_internationalized_host_matches_in_either_spelling(pattern: str) -> None:
    recorder = Recorder()
    transport = PropagatingTransport(httpx.MockTransport(recorder), allow_hosts=[pattern])
    with httpx.Client(transport=transport) as client:
        for url in (
            "http://xn--bcher-kva.example/",
            "http://bücher.example/",
            "http://bucher.example/",
        ):
            client.get(url, headers={"Feature-Flag-Overrides": "t"})
    assert recorder.tokens() == ["t", "t", None]


async def test_same_host_false_needs_an_explicit_allow(token: str) -> None:
    recorder = Recorder()
    async with caller(recorder, "http://app.example.com:9000", same_host=False) as c:
        await c.get("/call-async", headers={"Feature-Flag-Overrides": token})
    assert recorder.tokens() == [None]


async def test_a_sibling_subdomain_is_not_the_same_host(token: str) -> None:
    recorder = Recorder()
    async with caller(recorder, "http://api.example.com") as c:
        await c.get("/call-async", headers={"Feature-Flag-Overrides": token})
    assert recorder.tokens() == [None]


@pytest.mark.parametrize("path", ["/call-async", "/call-sync"])
async def test_a_redirect_to_a_third_party_drops_the_token(path: str, token: str) -> None:
    recorder = Recorder(redirect_to="http://evil.example.net/steal")
    async with caller(recorder, "http://billing.internal", allow_hosts=["billing.internal"]) as c:
        response = await c.get(path, headers={"Feature-Flag-Overrides": token})
    assert response.status_code == 200
    assert [(r.url.host, r.headers.get(TOKEN_HEADER)) for r in recorder.requests] == [
        ("billing.internal", token),
        ("evil.example.net", None),
    ]
    # The report the third party sent back is not merged.
    assert remote(response.json()) == []


def test_a_header_set_by_hand_is_stripped_for_a_third_party_and_kept_for_an_allowed_host() -> None:
    recorder = Recorder()
    transport = PropagatingTransport(httpx.MockTransport(recorder), allow_hosts=["billing"])
    with httpx.Client(transport=transport, headers={"Feature-Flag-Overrides": "tok"}) as client:
        request = client.build_request("GET", "http://evil.example.net/")
        client.send(request)
        client.get("http://billing/")
    assert recorder.tokens() == [None, "tok"]
    assert request.headers[TOKEN_HEADER] == "tok"  # the caller's Request is left as it was


async def test_async_transport_strips_for_a_third_party_outside_a_request() -> None:
    recorder = Recorder()
    transport = AsyncPropagatingTransport(httpx.MockTransport(recorder), allow_hosts=["billing"])
    async with httpx.AsyncClient(transport=transport) as client:
        await client.get("http://evil.example.net/", headers={"Feature-Flag-Overrides": "tok"})
        await client.get("http://billing/", headers={"Feature-Flag-Overrides": "tok"})
    assert recorder.tokens() == [None, "tok"]


async def test_no_token_in_the_request_means_none_downstream() -> None:
    recorder = Recorder()
    async with caller(recorder, "http://billing.internal", allow_hosts=["billing.internal"]) as c:
        response = await c.get("/call-async")
    assert recorder.tokens() == [None]
    assert response.json()["checkout"] is False


async def test_a_refused_token_is_not_propagated(signer: OverrideSigner) -> None:
    other = OverrideSigner("another-secret-" + "o" * 32, environment="development")
    forged = other.dumps({"Caller.checkout": True}, sub="mallory")
    recorder = Recorder()
    async with caller(recorder, "http://billing.internal", allow_hosts=["billing.internal"]) as c:
        response = await c.get("/call-async", headers={"Feature-Flag-Overrides": forged})
    assert response.headers["feature-flag-override-error"] == "bad-signature"
    assert recorder.tokens() == [None]
    assert response.json()["checkout"] is False


async def test_a_service_name_can_be_mapped(token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVICE_NAME", "billing")
    recorder = Recorder()
    async with caller(recorder, "http://10.0.0.7:8001", allow_hosts=["10.0.0.7"]) as c:
        response = await c.get("/call-async", headers={"Feature-Flag-Overrides": token})
    assert [e["service"] for e in remote(response.json())] == ["billing"]


def test_services_by_host_or_by_callable() -> None:
    def through(transport: PropagatingTransport, url: str) -> list[str | None]:
        from featureflag import request_scope

        with request_scope() as scope, httpx.Client(transport=transport) as client:
            client.get(url)
            return [e.service for e in scope.evaluations()]

    recorder = Recorder()
    mapped = PropagatingTransport(
        httpx.MockTransport(recorder), allow_hosts=["billing"], services={"billing": "Billing"}
    )
    assert through(mapped, "http://billing:8001/") == ["Billing"]
    by_port = PropagatingTransport(
        httpx.MockTransport(recorder),
        allow_hosts=["billing"],
        services={"billing:8001": "B1", "billing": "B"},
    )
    assert through(by_port, "http://billing:8001/") == ["B1"]
    assert through(by_port, "http://billing:8002/") == ["B"]
    computed = PropagatingTransport(
        httpx.MockTransport(recorder),
        allow_hosts=["billing"],
        services=lambda url: url.host.upper(),
    )
    assert through(computed, "http://billing/") == ["BILLING"]


def test_a_nested_service_keeps_its_own_name() -> None:
    from featureflag import request_scope

    nested = format_report(
        [
            Evaluation("Billing.vat", True, "override"),
            Evaluation("Tax.rate", "reduced", "override", None, "tax:9000"),
        ]
    )
    transport = PropagatingTransport(httpx.MockTransport(Recorder(nested)), allow_hosts=["billing"])
    with request_scope() as scope, httpx.Client(transport=transport) as client:
        client.get("http://billing/")
    assert [(e.name, e.service) for e in scope.evaluations()] == [
        ("Billing.vat", "billing"),
        ("Tax.rate", "tax:9000"),
    ]


def test_a_garbled_downstream_report_is_ignored() -> None:
    from featureflag import request_scope

    transport = PropagatingTransport(
        httpx.MockTransport(Recorder('"unclosed;value=?1, ;;;')), allow_hosts=["billing"]
    )
    with request_scope() as scope, httpx.Client(transport=transport) as client:
        response = client.get("http://billing/")
    assert response.status_code == 200
    assert scope.evaluations() == []


@settings(max_examples=200, deadline=None)
@given(raw=st.binary(max_size=2000))
def test_any_downstream_report_bytes_merge_without_error(raw: bytes) -> None:
    from featureflag import request_scope
    from featureflag._names import is_valid_name

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=[(b"Feature-Flags", raw)])

    transport = PropagatingTransport(httpx.MockTransport(answer), allow_hosts=["billing"])
    with request_scope() as scope, httpx.Client(transport=transport) as client:
        assert client.get("http://billing/").status_code == 200
    for evaluation in scope.evaluations():
        assert is_valid_name(evaluation.name)
        assert evaluation.service is not None


def test_outside_a_request_the_report_goes_nowhere_and_nothing_breaks() -> None:
    recorder = Recorder()
    with propagating_client(allow_hosts=["billing"], transport=httpx.MockTransport(recorder)) as c:
        assert c.get("http://billing/").json() == {"color": "red"}
    assert recorder.tokens() == [None]


def test_a_downstream_refusal_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    from featureflag import request_scope

    recorder = Recorder(**{"Feature-Flag-Override-Error": "wrong-environment"})
    transport = PropagatingTransport(httpx.MockTransport(recorder), allow_hosts=["billing"])
    with request_scope(), httpx.Client(transport=transport) as client:
        client.get("http://billing/", headers={"Feature-Flag-Overrides": "tok"})
    assert "billing refused the propagated override token (wrong-environment)" in caplog.text


def test_the_convenience_clients_pass_client_options_through() -> None:
    with propagating_client(
        base_url="http://billing", timeout=3, limits=httpx.Limits(max_connections=3)
    ) as c:
        assert isinstance(c._transport, PropagatingTransport)
        assert c.base_url == httpx.URL("http://billing")
        assert c.timeout == httpx.Timeout(3)
        inner = c._transport.inner
        assert isinstance(inner, httpx.HTTPTransport)
        assert inner._pool._max_connections == 3


async def test_the_async_convenience_client_wraps_an_async_transport() -> None:
    async with propagating_async_client(allow_hosts=["billing"]) as c:
        assert isinstance(c._transport, AsyncPropagatingTransport)
        assert isinstance(c._transport.inner, httpx.AsyncHTTPTransport)


def test_a_flask_app_propagates_through_the_wsgi_middleware(token: str) -> None:
    from tests.apps.flask_caller import create_app as create_flask_app

    recorder = Recorder()
    app = create_flask_app(
        "http://billing.internal",
        secret=SECRET,
        allow_hosts=["billing.internal"],
        transport=httpx.MockTransport(recorder),
    )
    with httpx.Client(transport=httpx.WSGITransport(app), base_url="http://app.example.com") as c:
        response = c.get("/call", headers={"Feature-Flag-Overrides": token})
        plain = c.get("/call")
    assert recorder.tokens() == [token, None]
    assert response.json()["checkout"] is False  # the token does not name FlaskCaller.checkout
    assert remote(response.json()) == [
        {
            "name": "Downstream.color",
            "value": "red",
            "source": "override",
            "service": "billing.internal",
        }
    ]
    report = parse_report(response.headers["feature-flags"])
    assert Evaluation("Downstream.color", "red", "override", None, "billing.internal") in report
    assert "feature-flags" not in plain.headers


async def test_one_shared_client_serves_concurrent_requests_with_their_own_tokens(
    signer: OverrideSigner,
) -> None:
    # Clients are made once and shared: the token must come from each request's context.
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    from featureflag.asgi import FeatureFlagMiddleware

    recorder = Recorder()
    shared = httpx.AsyncClient(
        transport=AsyncPropagatingTransport(
            httpx.MockTransport(recorder), allow_hosts=["billing.internal"]
        )
    )

    async def endpoint(request: Request) -> JSONResponse:
        await asyncio.sleep(0)  # let the other requests interleave
        await shared.get("http://billing.internal/flag")
        return JSONResponse([e.value for e in featureflag.evaluations()])

    app = FeatureFlagMiddleware(Starlette(routes=[Route("/", endpoint)]), secret=SECRET)
    tokens = [signer.dumps({"Downstream.color": f"c{i}"}, sub=f"u{i}") for i in range(20)]
    async with shared, httpx.AsyncClient(transport=httpx.ASGITransport(app)) as c:
        responses = await asyncio.gather(
            *(c.get("http://app/", headers={"Feature-Flag-Overrides": t}) for t in tokens)
        )
    assert sorted(t for t in recorder.tokens() if t) == sorted(tokens)
    # Every request merged exactly one downstream report: its own (the recorder always
    # answers "red", so the values say nothing; the count does).
    assert all(r.json() == ["red"] for r in responses)


# --- real uvicorn downstreams ---------------------------------------------------------


@pytest.fixture(scope="module")
def downstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_uvicorn(
        "tests.apps.propagation_app:create_app",
        factory=True,
        log_dir=tmp_path_factory.mktemp("downstream"),
        env={"FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_ENVIRONMENT": "development"},
        name="downstream",
    ) as server:
        yield server


def real_caller(downstream_url: str, **options: Any) -> httpx.AsyncClient:
    app = create_app(downstream_url, secret=SECRET, **options)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://127.0.0.1")


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/call-async", "/call-sync"])
async def test_a_real_downstream_applies_the_override_and_reports_it(
    path: str, token: str, downstream: Server
) -> None:
    async with real_caller(downstream.url) as c:  # same host 127.0.0.1: allowed by default
        response = await c.get(path, headers={"Feature-Flag-Overrides": token})
    body = response.json()
    assert body["downstream"] == {"color": "red"}
    assert remote(body) == [
        {
            "name": "Downstream.color",
            "value": "red",
            "source": "override",
            "service": f"127.0.0.1:{downstream.port}",
        }
    ]


@pytest.mark.integration
@pytest.mark.parametrize("path", ["/call-async", "/call-sync"])
async def test_the_same_server_under_another_name_gets_no_token(
    path: str, token: str, downstream: Server
) -> None:
    # localhost reaches the same uvicorn, but it is not the host the request came to.
    async with real_caller(f"http://localhost:{downstream.port}") as c:
        response = await c.get(path, headers={"Feature-Flag-Overrides": token})
    body = response.json()
    assert body["downstream"] == {"color": "blue"}
    assert remote(body) == []


@pytest.fixture(scope="module")
def caller_server(downstream: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    env = {
        "FEATUREFLAG_SECRET": SECRET,
        "DOWNSTREAM_URL": downstream.url,
        "SERVICE_NAME": "colors",
    }
    with run_uvicorn(
        "tests.apps.propagation_app:create_app",
        factory=True,
        log_dir=tmp_path_factory.mktemp("caller"),
        env=env,
        name="caller",
    ) as server:
        yield server


@pytest.mark.integration
def test_uvicorn_calling_uvicorn(token: str, caller_server: Server) -> None:
    for path in ("/call-async", "/call-sync"):
        response = httpx.get(caller_server.url + path, headers={"Feature-Flag-Overrides": token})
        assert response.status_code == 200, caller_server.output()
        report = parse_report(response.headers["feature-flags"])
        assert Evaluation("Downstream.color", "red", "override", None, "colors") in report
        assert response.headers["cache-control"] == "private, no-store"
        assert json.loads(response.text)["downstream"] == {"color": "red"}


@pytest.mark.integration
async def test_concurrent_calls_through_two_servers_keep_their_own_tokens(
    signer: OverrideSigner, caller_server: Server
) -> None:
    colors = [f"color-{i}" for i in range(100)]
    tokens = [signer.dumps({"Downstream.color": c}, sub=f"user-{i}") for i, c in enumerate(colors)]
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(base_url=caller_server.url, limits=limits, timeout=60) as c:
        responses = await asyncio.gather(
            *(
                c.get(
                    "/call-async" if i % 2 else "/call-sync",
                    headers={"Feature-Flag-Overrides": token},
                )
                for i, token in enumerate(tokens)
            )
        )
    for color, response in zip(colors, responses, strict=True):
        assert response.json()["downstream"] == {"color": color}
        assert parse_report(response.headers["feature-flags"]) == [
            Evaluation("Caller.checkout", False),
            Evaluation("Downstream.color", color, "override", None, "colors"),
        ]
