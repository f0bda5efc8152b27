"""Where forks may point (server/featureflag_server/upstream_policy.py), issue 17 items 1 and 4."""

from __future__ import annotations

import re
import socket
from collections.abc import AsyncIterator

import httpx
import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from featureflag_server.app import create_app
from featureflag_server.memory_store import MemoryStore
from featureflag_server.settings import Settings
from featureflag_server.upstream import Timeouts, UpstreamRefused
from featureflag_server.upstream_aiohttp import AiohttpUpstream, PolicyResolver
from featureflag_server.upstream_policy import HostPattern, UpstreamPolicy, normalise_host

from .conftest import ALICE

AUTH = {"Authorization": f"Bearer {ALICE}"}


@pytest.fixture
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    unused = httpx.MockTransport(lambda request: httpx.Response(599))
    app = create_app(settings, store=MemoryStore(), proxy_transport=unused)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
    ) as c:
        yield c


# --- normalise_host ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        ("loop\u3002localhost", "loop.localhost"),
        ("loop\uff0elocalhost", "loop.localhost"),
        ("loop\uff61localhost", "loop.localhost"),
        ("LOOP.LocalHost.", "loop.localhost"),
        ("\uff4c\uff4f\uff4f\uff50.localhost", "loop.localhost"),  # fullwidth letters
        ("b\u00fccher.example", "xn--bcher-kva.example"),
        ("[::1]", "::1"),
        ("127.0.0.1", "127.0.0.1"),
        ("a_b.internal", "a_b.internal"),
    ],
)
def test_normalise_host_maps_as_a_client_would(host: str, expected: str) -> None:
    assert normalise_host(host) == expected


# --- patterns ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "host", "port", "matches"),
    [
        ("*.internal", "app.internal", 80, True),
        ("*.internal", "a.b.internal", 8080, True),
        ("*.internal", "internal", 80, False),
        ("*.internal", "evilinternal", 80, False),
        ("127.0.0.1:*", "127.0.0.1", 5000, True),
        ("127.0.0.1:5000", "127.0.0.1", 5001, False),
        ("app.internal:8080", "app.internal", 8080, True),
        ("10.0.0.0/8", "10.1.2.3", 80, True),
        ("10.0.0.0/8", "11.1.2.3", 80, False),
        ("[::1]:*", "::1", 3000, True),
        ("*", "anything.example", 1, True),
        ("APP\u3002Internal", "app.internal", 80, True),
    ],
)
def test_host_patterns(pattern: str, host: str, port: int, matches: bool) -> None:
    assert HostPattern.parse(pattern).matches(host, port) is matches


@pytest.mark.parametrize("bad", ["app:port", "10.0.0.0/99", ":80", "[::1]x"])
def test_a_bad_pattern_says_how_to_spell_it(bad: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad))):
        HostPattern.parse(bad)


# --- the rules at creation ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://loop\u3002localhost:9110", "under the fork domain"),
        ("http://loop\uff0elocalhost:9110", "under the fork domain"),
        ("http://loop\uff61localhost:9110", "under the fork domain"),
        ("http://169.254.169.254/latest/meta-data/", "metadata"),
        ("http://[fd00:ec2::254]/", "metadata"),
        ("http://metadata.google.internal/computeMetadata/v1/", "metadata"),
        ("http://169.254.1.1/", "link-local"),
        ("http://[fe80::1]/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "metadata"),
        ("http://2852039166/", "full dotted form"),
        ("http://0xa9.254.169.254/", "full dotted form"),
    ],
)
def test_the_default_policy_refuses(url: str, words: str) -> None:
    problem = UpstreamPolicy.create().url_problem(url, "localhost")
    assert problem is not None and words in problem


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000",
        "http://localhost:5000",
        "https://app.internal/shop",
        "http://[::1]:8080",
    ],
)
def test_the_default_policy_lets_dev_servers_through(url: str) -> None:
    assert UpstreamPolicy.create("", [("127.0.0.1", 8000)]).url_problem(url, "localhost") is None


@pytest.mark.parametrize(
    ("listening", "url"),
    [
        (("127.0.0.1", 8000), "http://127.0.0.1:8000/"),
        (("127.0.0.1", 8000), "http://localhost:8000/"),
        (("127.0.0.1", 8000), "http://[::1]:8000/"),
        (("0.0.0.0", 8000), "http://127.0.0.1:8000/"),
    ],
)
def test_the_services_own_address_is_refused(listening: tuple[str, int], url: str) -> None:
    problem = UpstreamPolicy.create("", [listening]).url_problem(url, "qa.example.com")
    assert problem is not None and "this service itself" in problem


def test_the_allow_list_refuses_what_it_does_not_name() -> None:
    policy = UpstreamPolicy.create("*.internal,127.0.0.1:*")
    assert policy.url_problem("http://app.internal:9000", "localhost") is None
    assert policy.url_problem("http://127.0.0.1:3000", "localhost") is None
    problem = policy.url_problem("http://evil.example/", "localhost")
    assert problem is not None and "--fork-upstreams" in problem
    # Metadata stays refused even when a pattern would let it through.
    assert UpstreamPolicy.create("*").url_problem("http://169.254.169.254/", "x") is not None


async def test_post_api_forks_refuses_unicode_dot_loops_and_metadata(
    client: httpx.AsyncClient,
) -> None:
    for upstream in (
        "http://loop\u3002localhost:9110",
        "http://loop\uff0elocalhost:9110",
        "http://loop\uff61localhost:9110",
        "http://169.254.169.254/latest/meta-data/",
    ):
        fork = {"name": "loop", "upstream": upstream, "flags": {}}
        response = await client.post("/api/forks", json=fork, headers=AUTH)
        assert response.status_code == 422, (upstream, response.text)
    fine = {"name": "ok", "upstream": "http://127.0.0.1:5000", "flags": {}}
    assert (await client.post("/api/forks", json=fine, headers=AUTH)).status_code == 201


async def test_post_api_forks_follows_the_allow_list(settings: Settings) -> None:
    allowing = settings.model_copy(update={"fork_upstreams": "*.internal"})
    app = create_app(allowing, store=MemoryStore())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000") as client:
        await _post_outside_and_inside(client)


async def _post_outside_and_inside(client: httpx.AsyncClient) -> None:
    fork = {"name": "ext", "upstream": "http://evil.example/", "flags": {}}
    response = await client.post("/api/forks", json=fork, headers=AUTH)
    assert response.status_code == 422
    assert "--fork-upstreams" in response.text
    fork = {"name": "int", "upstream": "http://app.internal/", "flags": {}}
    assert (await client.post("/api/forks", json=fork, headers=AUTH)).status_code == 201


# --- the rules at connect time -----------------------------------------------------------


class _Rebinding(AbstractResolver):
    """A DNS name that resolves to the metadata address (after the fork was accepted)."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        return [
            {
                "hostname": host,
                "host": "169.254.169.254",
                "port": port,
                "family": socket.AF_INET,
                "proto": 0,
                "flags": 0,
            }
        ]

    async def close(self) -> None:
        pass


async def test_a_name_resolving_to_metadata_is_refused_before_connecting() -> None:
    # The name passes the check at creation (it is no address)...
    assert UpstreamPolicy.create().url_problem("http://rebind.example/", "localhost") is None
    inner = _Rebinding()
    resolver = PolicyResolver(UpstreamPolicy(), inner)
    with pytest.raises(UpstreamRefused, match=r"169\.254\.169\.254 is a cloud metadata address"):
        await resolver.resolve("rebind.example", 80)
    assert inner.asked == ["rebind.example"]


async def test_the_aiohttp_upstream_refuses_a_metadata_address_without_connecting() -> None:
    upstream = AiohttpUpstream()
    try:
        with pytest.raises(UpstreamRefused):
            await upstream.send(
                "GET", ("http", "169.254.169.254", 80), b"/", [], None, Timeouts(1, 1)
            )
    finally:
        await upstream.aclose()


async def test_the_aiohttp_upstream_refuses_a_name_for_the_services_own_socket() -> None:
    with socket.socket() as listener:  # stands for the service: it must never be reached
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.setblocking(False)
        port = listener.getsockname()[1]
        upstream = AiohttpUpstream(policy=UpstreamPolicy.create("", [("127.0.0.1", port)]))
        try:
            with pytest.raises(UpstreamRefused, match="this service itself"):
                await upstream.send(
                    "GET", ("http", "localhost", port), b"/", [], None, Timeouts(1, 1)
                )
        finally:
            await upstream.aclose()
        with pytest.raises(BlockingIOError):
            listener.accept()  # nobody connected


def test_a_service_bound_by_name_refuses_what_the_name_resolves_to_only() -> None:
    policy = UpstreamPolicy.create("", [("localhost", 8000)])
    problem = policy.url_problem("http://127.0.0.1:8000/", "qa.example.com")
    assert problem is not None and "this service itself" in problem
    assert policy.url_problem("http://10.0.0.5:8000/", "qa.example.com") is None
    assert policy.url_problem("http://127.0.0.1:8001/", "qa.example.com") is None
