"""The fork proxy with an injected upstream transport and the memory store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from starlette.types import Message

from featureflag.tokens import OverrideSigner
from featureflag_server.memory_store import MemoryStore
from featureflag_server.proxy import (
    WATCH_AFTER,
    ForkProxy,
    OutsideUpstream,
    fork_from_host,
    upstream_target,
)
from featureflag_server.proxy_exchange import Watchlist
from featureflag_server.store import Fork
from tests.support.clock import Clock

SECRET = "s" * 40
UPSTREAM = "http://app.internal:9000"
FORK_HOST = "new-lp.localhost:8000"

Handler = Callable[[httpx.Request], Awaitable[httpx.Response]]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> OverrideSigner:
    return OverrideSigner(SECRET, environment="test", clock=clock)


@pytest.fixture
async def store() -> MemoryStore:
    store = MemoryStore()
    await store.create_fork(
        Fork(name="new-lp", upstream=UPSTREAM, flags={"Landing.is_new": True, "hero": "b"})
    )
    return store


class Upstream(httpx.AsyncBaseTransport):
    """The injected upstream: a handler a test swaps; it remembers the requests it saw.

    Unlike httpx.MockTransport it does not read the request body before the handler runs,
    so a test can watch the body arrive chunk by chunk.
    """

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.bodies: list[bytes] = []
        self.handler: Handler = self.echo
        self.closed = False

    async def aclose(self) -> None:
        self.closed = True

    async def echo(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, text="hello from upstream")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return await self.handler(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


@pytest.fixture
def upstream() -> Upstream:
    return Upstream()


@pytest.fixture
async def proxy(
    store: MemoryStore, signer: OverrideSigner, upstream: Upstream, clock: Clock
) -> AsyncIterator[ForkProxy]:
    proxy = ForkProxy(
        store=store,
        signer=signer,
        fork_domain="localhost",
        transport=upstream,
        timeout=2.0,
        clock=clock,
    )
    yield proxy
    await proxy.aclose()


@pytest.fixture
async def client(proxy: ForkProxy) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=proxy, client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{FORK_HOST}") as client:
        yield client


# --- fork_from_host --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "domain", "expected"),
    [
        ("new-lp.localhost:8000", "localhost", "new-lp"),
        ("new-lp.localhost", "localhost", "new-lp"),
        ("NEW-LP.LocalHost:8000", "localhost", "new-lp"),
        ("new-lp.localhost.", "localhost", "new-lp"),
        ("new-lp.qa.example.com", "qa.example.com", "new-lp"),
        ("new-lp.qa.example.com:443", "QA.Example.com", "new-lp"),
        ("a1.localhost", "localhost", "a1"),
        ("localhost:8000", "localhost", None),
        ("localhost", "localhost", None),
        ("qa.example.com", "qa.example.com", None),
        ("a.b.localhost", "localhost", None),
        ("new-lp.example.com", "localhost", None),
        ("new-lplocalhost", "localhost", None),
        ("127.0.0.1:8000", "localhost", None),
        ("127.0.0.1", "0.0.1", None),
        ("[::1]:8000", "localhost", None),
        ("www.localhost", "localhost", None),
        ("api.localhost:8000", "localhost", None),
        ("-bad.localhost", "localhost", None),
        ("under_score.localhost", "localhost", None),
        ("new-lp.localhost:80x", "localhost", None),
        ("new-lp.localhost:8000@evil.example", "localhost", None),
        ("", "localhost", None),
    ],
)
def test_fork_from_host(host: str, domain: str, expected: str | None) -> None:
    assert fork_from_host(host, domain) == expected


# --- forwarding the request --------------------------------------------------------------


async def test_proxies_to_the_upstream_with_the_forks_token(
    client: httpx.AsyncClient, upstream: Upstream, signer: OverrideSigner
) -> None:
    response = await client.get("/pricing/plans?x=1&y=%20z")
    assert response.status_code == 200
    assert response.text == "hello from upstream"
    sent = upstream.last
    assert str(sent.url) == "http://app.internal:9000/pricing/plans?x=1&y=%20z"
    assert sent.headers["host"] == "app.internal:9000"
    verified = signer.loads(sent.headers["feature-flag-overrides"])
    assert verified.flags == {"Landing.is_new": True, "hero": "b"}
    assert verified.origin == "fork:new-lp"
    assert verified.sub == "fork:new-lp"


async def test_the_forks_flags_replace_the_clients_header_and_cookie(
    client: httpx.AsyncClient, upstream: Upstream, signer: OverrideSigner
) -> None:
    mine = signer.dumps({"hero": "c"}, sub="ana")
    await client.get(
        "/",
        headers={
            "Feature-Flag-Overrides": mine,
            "Cookie": f"session=abc; featureflag_overrides={mine}; theme=dark",
        },
    )
    sent = upstream.last
    assert sent.headers.get_list("feature-flag-overrides") != [mine]
    assert signer.loads(sent.headers["feature-flag-overrides"]).flags["hero"] == "b"
    assert sent.headers["cookie"] == "session=abc; theme=dark"


async def test_a_cookie_header_with_only_the_override_cookie_is_dropped(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    await client.get("/", headers={"Cookie": "featureflag_overrides=abc"})
    assert "cookie" not in upstream.last.headers


async def test_forwarded_headers(client: httpx.AsyncClient, upstream: Upstream) -> None:
    await client.get(
        "/",
        headers={
            "X-Forwarded-For": "198.51.100.1",
            "X-Forwarded-Host": "evil.example",
            "X-Forwarded-Proto": "gopher",
        },
    )
    sent = upstream.last.headers
    assert sent["x-forwarded-for"] == "198.51.100.1, 203.0.113.7"
    assert sent["x-forwarded-host"] == FORK_HOST
    assert sent["x-forwarded-proto"] == "http"


async def test_forwarded_for_without_an_earlier_hop(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    await client.get("/")
    assert upstream.last.headers["x-forwarded-for"] == "203.0.113.7"


async def test_hop_by_hop_request_headers_are_removed(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    await client.get(
        "/",
        headers={
            "Connection": "keep-alive, X-Secret-Hop",
            "X-Secret-Hop": "1",
            "Keep-Alive": "timeout=5",
            "Proxy-Connection": "keep-alive",
            "TE": "trailers",
            "Upgrade": "h2c",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==",
            "Trailer": "Expires",
            "X-Kept": "yes",
        },
    )
    sent = upstream.last.headers
    for name in (
        "x-secret-hop",
        "keep-alive",
        "proxy-connection",
        "te",
        "upgrade",
        "proxy-authorization",
        "trailer",
    ):
        assert name not in sent, name
    assert sent["x-kept"] == "yes"


async def test_upstream_path_prefix_is_kept(
    client: httpx.AsyncClient, store: MemoryStore, upstream: Upstream
) -> None:
    fork = await store.get_fork("new-lp")
    assert fork is not None
    await store.update_fork(replace(fork, upstream="http://app.internal:9000/shop/"))
    await client.get("/cart?id=3")
    assert str(upstream.last.url) == "http://app.internal:9000/shop/cart?id=3"


async def test_request_body_is_forwarded(client: httpx.AsyncClient, upstream: Upstream) -> None:
    async def echo_body(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=await request.aread())

    upstream.handler = echo_body
    response = await client.post("/form", content=b"a=1&b=2")
    assert response.content == b"a=1&b=2"
    assert upstream.last.headers["content-length"] == "7"


async def test_chunked_request_body_is_forwarded(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    async def echo_body(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=await request.aread())

    async def chunks() -> AsyncIterator[bytes]:
        yield b"part one, "
        yield b"part two"

    upstream.handler = echo_body
    response = await client.post("/upload", content=chunks())
    assert response.content == b"part one, part two"


async def test_upstream_cookies_are_not_shared_between_clients(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    async def set_cookie(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"Set-Cookie": "session=ana-only; Path=/"})

    upstream.handler = set_cookie
    await client.get("/login")
    client.cookies.clear()
    await client.get("/")
    assert "cookie" not in upstream.last.headers


# --- the response ------------------------------------------------------------------------


async def test_response_headers_are_rewritten(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    async def redirect(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            302,
            headers=[
                ("Location", "http://app.internal:9000/next?a=1"),
                ("Set-Cookie", "session=1; Domain=app.internal; Path=/; HttpOnly"),
                ("Set-Cookie", "other=2; Domain=elsewhere.example"),
                ("Connection", "X-Hop"),
                ("X-Hop", "1"),
                ("Keep-Alive", "timeout=5"),
                ("X-App", "kept"),
            ],
        )

    upstream.handler = redirect
    response = await client.get("/old")
    assert response.status_code == 302
    assert response.headers["location"] == f"http://{FORK_HOST}/next?a=1"
    assert response.headers.get_list("set-cookie") == [
        "session=1; Path=/; HttpOnly",
        "other=2; Domain=elsewhere.example",
    ]
    assert "x-hop" not in response.headers
    assert "keep-alive" not in response.headers
    assert response.headers["x-app"] == "kept"
    assert response.headers["x-robots-tag"] == "noindex"


async def test_every_proxied_response_is_noindex(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    async def not_found(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, text="nope")

    upstream.handler = not_found
    response = await client.get("/missing")
    assert response.status_code == 404
    assert response.text == "nope"
    assert response.headers["x-robots-tag"] == "noindex"


async def test_compressed_bodies_pass_through_untouched(
    client: httpx.AsyncClient, upstream: Upstream
) -> None:
    import gzip

    packed = gzip.compress(b"x" * 1000)

    async def gzipped(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=packed, headers={"Content-Encoding": "gzip"})

    upstream.handler = gzipped
    response = await client.get("/", headers={"Accept-Encoding": "gzip"})
    assert upstream.last.headers["accept-encoding"] == "gzip"
    assert response.content == b"x" * 1000  # the client decoded what the upstream packed


async def test_no_accept_encoding_is_added(client: httpx.AsyncClient, upstream: Upstream) -> None:
    request = client.build_request("GET", "/")
    del request.headers["accept-encoding"]
    await client.send(request)
    assert "accept-encoding" not in upstream.last.headers


# --- tokens ------------------------------------------------------------------------------


async def test_token_is_reused_then_reminted_near_expiry(
    client: httpx.AsyncClient, upstream: Upstream, clock: Clock
) -> None:
    await client.get("/")
    first = upstream.last.headers["feature-flag-overrides"]
    clock.now += 3000  # 5/6 of the hour: still > 10% left
    await client.get("/")
    assert upstream.last.headers["feature-flag-overrides"] == first
    clock.now += 300  # 3300 s of 3600: less than 10% left
    await client.get("/")
    assert upstream.last.headers["feature-flag-overrides"] != first


async def test_an_edited_fork_applies_on_the_next_request(
    client: httpx.AsyncClient, store: MemoryStore, upstream: Upstream, signer: OverrideSigner
) -> None:
    await client.get("/")
    fork = await store.get_fork("new-lp")
    assert fork is not None
    edited = replace(fork, flags={"hero": "c"}, updated_at=fork.updated_at + timedelta(1))
    await store.update_fork(edited)
    await client.get("/")
    assert signer.loads(upstream.last.headers["feature-flag-overrides"]).flags == {"hero": "c"}


async def test_flags_edited_without_a_new_timestamp_still_apply(
    client: httpx.AsyncClient, store: MemoryStore, upstream: Upstream, signer: OverrideSigner
) -> None:
    await client.get("/")
    fork = await store.get_fork("new-lp")
    assert fork is not None
    await store.update_fork(replace(fork, flags={"hero": "d"}))
    await client.get("/")
    assert signer.loads(upstream.last.headers["feature-flag-overrides"]).flags == {"hero": "d"}


async def test_token_lifetime_capped_by_the_signer_is_respected(
    store: MemoryStore, upstream: Upstream, clock: Clock
) -> None:
    capped = OverrideSigner(SECRET, environment="test", clock=clock, max_age_cap=100)
    proxy = ForkProxy(
        store=store,
        signer=capped,
        fork_domain="localhost",
        transport=upstream,
        clock=clock,
    )
    transport = httpx.ASGITransport(app=proxy)
    async with httpx.AsyncClient(transport=transport, base_url=f"http://{FORK_HOST}") as c:
        await c.get("/")
        first = upstream.last.headers["feature-flag-overrides"]
        clock.now += 95  # the proxy asked for an hour, but the token dies at 100 s
        await c.get("/")
        second = upstream.last.headers["feature-flag-overrides"]
    await proxy.aclose()
    assert second != first
    assert capped.loads(second).expires_at > clock.now


# --- error pages -------------------------------------------------------------------------


async def test_unknown_fork_is_a_404_page(client: httpx.AsyncClient, upstream: Upstream) -> None:
    response = await client.get("/", headers={"Host": "old-lp.localhost:8000"})
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert response.headers["x-robots-tag"] == "noindex"
    assert "<code>old-lp</code>" in response.text
    assert 'href="http://localhost:8000/"' in response.text
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("host", "link"),
    [
        ("old-lp.localhost:8000", "http://127.0.0.1:8000/"),
        ("old-lp.localhost", "http://127.0.0.1/"),
        ("old-lp.localhost:80", "http://127.0.0.1/"),
        # A forged Host: only a port of digits is ever taken from it.
        ('old-lp.localhost:80"><script>x</script>', "http://127.0.0.1/"),
        ("evil.example:8000", "http://127.0.0.1:8000/"),
        ('"><b>.localhost:99999', "http://127.0.0.1/"),
        ("old-lp.localhost:\u0968\u0966", "http://127.0.0.1/"),  # non-ASCII digits
    ],
)
async def test_error_pages_link_to_the_service_host_on_the_request_port_only(
    store: MemoryStore, signer: OverrideSigner, upstream: Upstream, host: str, link: str
) -> None:
    proxy = ForkProxy(
        store=store,
        signer=signer,
        fork_domain="localhost",
        transport=upstream,
        service_host="127.0.0.1",
    )
    scope_host = host.encode("utf-8")
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "method": "GET", "scheme": "http", "path": "/", "raw_path": b"/",
        "query_string": b"", "headers": [(b"host", scope_host)], "client": ("203.0.113.7", 1),
        "server": ("127.0.0.1", 8000), "http_version": "1.1", "root_path": "",
    }  # fmt: skip
    await proxy(scope, receive, send)
    await proxy.aclose()
    html = b"".join(m.get("body", b"") for m in sent).decode()
    assert sent[0]["status"] == 404
    assert html.split('href="')[1].split('"')[0] == link
    assert "<script>" not in html and "<b>" not in html


async def test_an_expired_fork_is_a_410_page_saying_how_to_renew_it(
    client: httpx.AsyncClient, store: MemoryStore, upstream: Upstream
) -> None:
    fork = await store.get_fork("new-lp")
    assert fork is not None
    yesterday = datetime.now(UTC) - timedelta(days=1)
    await store.update_fork(replace(fork, expires_at=yesterday))
    response = await client.get("/")
    assert response.status_code == 410
    assert "has expired" in response.text
    assert "featureflag fork apply new-lp --upstream URL --ttl 7d" in response.text
    assert upstream.requests == []
    await store.update_fork(replace(fork, expires_at=datetime.now(UTC) + timedelta(days=1)))
    assert (await client.get("/")).status_code == 200  # renewed: the URL is back


async def test_a_deleted_fork_is_gone_at_once(
    client: httpx.AsyncClient, store: MemoryStore
) -> None:
    assert (await client.get("/")).status_code == 200
    await store.delete_fork("new-lp")
    assert (await client.get("/")).status_code == 404


async def test_a_host_that_is_no_fork_is_a_404_page_with_the_host_escaped(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/", headers={"Host": "<script>.example"})
    assert response.status_code == 404
    assert "<script>" not in response.text
    assert "&lt;script&gt;.example" in response.text


async def test_head_error_page_has_no_body(client: httpx.AsyncClient) -> None:
    response = await client.head("/", headers={"Host": "old-lp.localhost"})
    assert response.status_code == 404
    assert response.content == b""


@pytest.mark.parametrize(
    ("error", "status", "words"),
    [
        (httpx.ConnectError("refused"), 502, "refused"),
        (httpx.RemoteProtocolError("eof"), 502, "closed the connection"),
        (httpx.ReadError("reset"), 502, "ReadError"),
        (httpx.ConnectTimeout("slow"), 504, "within 2 seconds"),
        (httpx.ReadTimeout("slow"), 504, "within 2 seconds"),
        (httpx.PoolTimeout("busy"), 504, "within 2 seconds"),
    ],
)
async def test_upstream_failures_are_pages_naming_the_fork_not_the_upstream(
    client: httpx.AsyncClient,
    upstream: Upstream,
    error: httpx.TransportError,
    status: int,
    words: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def fail(request: httpx.Request) -> httpx.Response:
        raise error

    upstream.handler = fail
    response = await client.get("/")
    assert response.status_code == status
    assert "<code>new-lp</code>" in response.text
    # Fork URLs are public: the upstream (an internal address) is logged, never shown.
    assert "app.internal" not in response.text
    assert f"upstream {UPSTREAM}" in caplog.text
    assert words in response.text
    assert response.headers["x-robots-tag"] == "noindex"
    assert response.headers["cache-control"] == "no-store"


async def test_error_pages_escape_the_upstream(
    client: httpx.AsyncClient, store: MemoryStore, upstream: Upstream
) -> None:
    fork = await store.get_fork("new-lp")
    assert fork is not None
    await store.update_fork(replace(fork, upstream='http://app.internal:9000/"><script>x'))

    async def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    upstream.handler = fail
    response = await client.get("/")
    assert response.status_code == 502
    assert "<script>" not in response.text


@pytest.mark.parametrize("upstream_value", ["ftp://files.internal/", "not a url", "http://"])
async def test_an_unusable_upstream_is_a_502_page(
    client: httpx.AsyncClient, store: MemoryStore, upstream_value: str
) -> None:
    fork = await store.get_fork("new-lp")
    assert fork is not None
    await store.update_fork(replace(fork, upstream=upstream_value))
    response = await client.get("/")
    assert response.status_code == 502
    assert "<code>new-lp</code>" in response.text


async def test_flags_that_cannot_be_signed_are_a_502_page(
    client: httpx.AsyncClient,
    store: MemoryStore,
    upstream: Upstream,
    caplog: pytest.LogCaptureFixture,
) -> None:
    fork = await store.get_fork("new-lp")
    assert fork is not None
    await store.update_fork(replace(fork, flags={"bad name!": True}))
    with caplog.at_level("WARNING"):
        response = await client.get("/")
    assert response.status_code == 502
    assert "bad name!" not in response.text  # the detail goes to the log
    assert "bad name!" in caplog.text
    assert upstream.requests == []


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    host=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    path=st.text(st.characters(min_codepoint=33, max_codepoint=126), max_size=40),
    cookie=st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
    raw_tail=st.binary(max_size=20),
    query=st.binary(max_size=30),
)
async def test_nothing_a_client_sends_is_a_500(
    proxy: ForkProxy, host: str, path: str, cookie: str, raw_tail: bytes, query: bytes
) -> None:
    messages: list[Message] = []
    received = 0

    async def receive() -> Message:
        nonlocal received
        received += 1
        if received == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await anyio.sleep_forever()  # as a server does until the client goes away
        raise AssertionError

    async def send(message: Message) -> None:
        messages.append(message)

    for h in (host, f"{host}.localhost", "new-lp.localhost"):
        messages.clear()
        received = 0
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode() + raw_tail,  # a lenient parser lets any byte through
            "query_string": query,
            "root_path": "",
            "headers": [(b"host", h.encode()), (b"cookie", cookie.encode())],
            "client": ("127.0.0.1", 1234),
            "server": ("127.0.0.1", 8000),
        }
        await proxy(scope, receive, send)
        assert messages[0]["status"] < 500


async def test_upstream_credentials_become_basic_auth(
    client: httpx.AsyncClient, store: MemoryStore, upstream: Upstream
) -> None:
    fork = await store.get_fork("new-lp")
    assert fork is not None
    await store.update_fork(replace(fork, upstream="http://qa:s3cret@app.internal:9000"))
    await client.get("/")
    assert upstream.last.headers["authorization"] == "Basic cWE6czNjcmV0"
    assert upstream.last.url.host == "app.internal"


async def test_error_pages_do_not_show_upstream_credentials(
    client: httpx.AsyncClient, store: MemoryStore, upstream: Upstream
) -> None:
    fork = await store.get_fork("new-lp")
    assert fork is not None
    await store.update_fork(replace(fork, upstream="http://qa:s3cret@app.internal:9000/x"))

    async def fail(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused")

    upstream.handler = fail
    response = await client.get("/")
    assert response.status_code == 502
    assert "s3cret" not in response.text
    assert "app.internal" not in response.text


@pytest.mark.parametrize(
    ("raw_path", "status"),
    [
        (b"/../admin", 400),
        (b"/a/../../admin", 400),
        (b"/a/../cart", 200),
        # Issue 17, item 3: encoded dots are dots to the upstream.
        (b"/%2e%2e/admin", 400),
        (b"/.%2e/admin", 400),
        (b"/%2E%2E/admin", 400),
        (b"/..%2fadmin", 400),
        (b"/..%2Fadmin", 400),
        (b"/%252e%252e/admin", 400),
        (b"/..%5cadmin", 400),
        (b"/..;/admin", 400),
        (b"/a/%2e%2e/cart", 200),
        (b"/%2e%2e.txt", 200),
    ],
)
async def test_dot_segments_cannot_leave_the_upstream_path(
    proxy: ForkProxy, store: MemoryStore, upstream: Upstream, raw_path: bytes, status: int
) -> None:
    fork = await store.get_fork("new-lp")
    assert fork is not None
    await store.update_fork(replace(fork, upstream="http://app.internal:9000/shop"))
    scope = http_scope()
    scope["raw_path"] = raw_path
    sent: list[Message] = []

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: Message) -> None:
        sent.append(message)

    await proxy(scope, receive, send)
    assert sent[0]["status"] == status
    if status == 200:
        assert upstream.last.url.path.startswith("/shop/")
    else:
        assert upstream.requests == []


def test_upstream_target_joins_prefix_path_and_query() -> None:
    scope = {"path": "/a b", "raw_path": b"/a%20b", "query_string": b"q=1"}
    base, target = upstream_target("http://h:1/base/", scope)
    assert (base.origin, base.host, target) == (("http", "h", 1), b"h:1", b"/base/a%20b?q=1")
    assert upstream_target("http://h:1", {"path": "/x"})[1] == b"/x"
    absolute = {"path": "http://evil/x", "raw_path": b"http://evil/x", "query_string": b""}
    assert upstream_target("http://h:1", absolute)[1] == b"/http://evil/x"
    base, _ = upstream_target("https://u:p%40ss@h", {"path": "/"})
    assert (base.origin, base.host) == (("https", "h", 443), b"h")
    assert base.authorization == b"Basic dTpwQHNz"


# --- streaming and cancellation (the proxy called as an ASGI app) ------------------------


def http_scope(method: str = "GET", headers: list[tuple[bytes, bytes]] | None = None) -> dict:  # type: ignore[type-arg]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", FORK_HOST.encode()), *(headers or [])],
        "client": ("127.0.0.1", 1234),
        "server": ("127.0.0.1", 8000),
    }


class Stream(httpx.AsyncByteStream):
    """An upstream body produced chunk by chunk, remembering whether it was closed."""

    def __init__(self, chunks: Callable[[], AsyncIterator[bytes]]) -> None:
        self.chunks = chunks
        self.closed = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.chunks():
            yield chunk

    async def aclose(self) -> None:
        self.closed = True


async def test_response_body_is_streamed_not_buffered(proxy: ForkProxy, upstream: Upstream) -> None:
    first_chunk_reached_client = anyio.Event()

    async def chunks() -> AsyncIterator[bytes]:
        yield b"first"
        # Only a proxy that forwards before the body ends lets the test get past here.
        await first_chunk_reached_client.wait()
        yield b"second"

    async def streaming(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=Stream(chunks))

    upstream.handler = streaming
    bodies: list[bytes] = []

    async def receive() -> Message:
        await anyio.sleep_forever()
        raise AssertionError

    async def send(message: Message) -> None:
        if message["type"] == "http.response.body":
            bodies.append(message["body"])
            if message["body"] == b"first":
                first_chunk_reached_client.set()

    with anyio.fail_after(10):  # a deadlock guard, not a timing assertion
        await proxy(http_scope(), receive, send)
    assert b"".join(bodies) == b"firstsecond"


async def test_request_body_is_streamed_not_buffered(proxy: ForkProxy, upstream: Upstream) -> None:
    upstream_got_first_chunk = anyio.Event()
    received: list[bytes] = []

    async def read_stream(request: httpx.Request) -> httpx.Response:
        async for chunk in request.stream:  # type: ignore[union-attr]
            received.append(chunk)
            upstream_got_first_chunk.set()
        return httpx.Response(204)

    upstream.handler = read_stream
    sent_first = False

    async def receive() -> Message:
        nonlocal sent_first
        if not sent_first:
            sent_first = True
            return {"type": "http.request", "body": b"one", "more_body": True}
        # The second chunk exists only once the upstream has the first one.
        await upstream_got_first_chunk.wait()
        return {"type": "http.request", "body": b"two", "more_body": False}

    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    scope = http_scope("POST", [(b"transfer-encoding", b"chunked")])
    with anyio.fail_after(10):
        await proxy(scope, receive, send)
    assert statuses == [204]
    assert b"".join(received) == b"onetwo"


async def test_client_going_away_cancels_the_upstream_request(
    proxy: ForkProxy, upstream: Upstream
) -> None:
    upstream_started = anyio.Event()
    upstream_cancelled = False

    async def hang(request: httpx.Request) -> httpx.Response:
        nonlocal upstream_cancelled
        upstream_started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            upstream_cancelled = True
            raise
        raise AssertionError

    upstream.handler = hang
    calls = 0

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await upstream_started.wait()
        return {"type": "http.disconnect"}

    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    with anyio.fail_after(10):
        await proxy(http_scope(), receive, send)
    assert upstream_cancelled
    assert sent == []


async def test_a_quick_request_is_never_watched(proxy: ForkProxy) -> None:
    receives = 0

    async def receive() -> Message:
        nonlocal receives
        receives += 1
        await anyio.sleep_forever()
        raise AssertionError

    statuses: list[int] = []

    async def send(message: Message) -> None:
        if message["type"] == "http.response.start":
            statuses.append(message["status"])

    for _ in range(20):
        await proxy(http_scope(), receive, send)
    assert proxy.watchlist.waiting == {}  # each left the list as it ended
    await anyio.sleep(WATCH_AFTER * 2)  # the watchlist's timer has fired by now
    assert statuses == [200] * 20
    assert receives == 0  # no watcher was started for a finished request


async def test_requests_started_apart_are_each_watched(
    proxy: ForkProxy, upstream: Upstream
) -> None:
    # The second request is younger than WATCH_AFTER when the watchlist's timer first
    # fires for the first one: the timer must come back for it.
    started: list[str] = []
    cancelled: list[str] = []

    async def hang(request: httpx.Request) -> httpx.Response:
        started.append(request.url.path)
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(request.url.path)
            raise
        raise AssertionError

    upstream.handler = hang
    both_hang = anyio.Event()

    def receiver() -> Callable[[], Awaitable[Message]]:
        async def receive() -> Message:
            await both_hang.wait()
            return {"type": "http.disconnect"}

        return receive

    async def send(message: Message) -> None:
        raise AssertionError(message)

    def scope(path: str) -> dict:  # type: ignore[type-arg]
        return http_scope() | {"path": path, "raw_path": path.encode()}

    with anyio.fail_after(10):  # a deadlock guard, not a timing assertion
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(proxy, scope("/first"), receiver(), send)
            await anyio.sleep(WATCH_AFTER * 0.6)
            tasks.start_soon(proxy, scope("/second"), receiver(), send)
            while len(started) < 2:
                await anyio.sleep(0.001)
            both_hang.set()
    assert sorted(cancelled) == ["/first", "/second"]
    assert proxy.watchlist.waiting == {}


def test_the_watchlist_on_a_new_event_loop_drops_what_waited_on_the_old_one() -> None:
    watchlist = Watchlist()
    started: list[str] = []

    class Exchange:
        def __init__(self, name: str) -> None:
            self.name = name

        def start_watching(self) -> None:
            started.append(self.name)

    async def add(name: str, wait: float) -> None:
        watchlist.add(Exchange(name))  # type: ignore[arg-type]
        await asyncio.sleep(wait)

    asyncio.run(add("old", 0))  # its loop ends before the timer fires
    asyncio.run(add("new", WATCH_AFTER * 3))
    assert started == ["new"]


async def test_client_going_away_mid_download_closes_the_upstream_body(
    proxy: ForkProxy, upstream: Upstream
) -> None:
    client_gone = anyio.Event()

    async def endless() -> AsyncIterator[bytes]:
        while True:
            yield b"x" * 1024
            await anyio.sleep(0)

    stream = Stream(endless)

    async def streaming(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, stream=stream)

    upstream.handler = streaming
    calls = 0

    async def receive() -> Message:
        nonlocal calls
        calls += 1
        if calls == 1:
            return {"type": "http.request", "body": b"", "more_body": False}
        await client_gone.wait()
        return {"type": "http.disconnect"}

    chunks = 0

    async def send(message: Message) -> None:
        nonlocal chunks
        if message["type"] == "http.response.body":
            chunks += 1
            if chunks == 3:
                client_gone.set()

    with anyio.fail_after(10):
        await proxy(http_scope(), receive, send)
    assert stream.closed


@pytest.mark.parametrize(
    ("host", "status"), [(FORK_HOST, 502), ("gone.localhost:8000", 404), ("localhost", 404)]
)
async def test_a_websocket_that_cannot_be_relayed_is_refused_with_a_page(
    proxy: ForkProxy, upstream: Upstream, host: str, status: int
) -> None:
    # An injected httpx transport carries no WebSockets (502); no such fork (404).
    sent: list[Message] = []

    async def receive() -> Message:
        return {"type": "websocket.connect"}

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": [(b"host", host.encode())],
        "extensions": {"websocket.http.response": {}},
    }
    await proxy(scope, receive, send)
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == status
    assert upstream.requests == []


async def test_lifespan_closes_the_upstream_pool(proxy: ForkProxy, upstream: Upstream) -> None:
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[Message] = []

    async def receive() -> Message:
        return inbox.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    await proxy({"type": "lifespan"}, receive, send)
    assert [m["type"] for m in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert upstream.closed


# --- issue 17: loops, IDNA hosts, encoded dots ------------------------------------------


@pytest.mark.parametrize("dot", ["\u3002", "\uff0e", "\uff61"])
def test_a_host_with_a_unicode_dot_names_the_fork_it_maps_to(dot: str) -> None:
    # The Host header arrives as latin-1: a UTF-8 name is decoded, then IDNA-mapped.
    host = f"new-lp{dot}localhost:8000".encode().decode("latin-1")
    assert fork_from_host(host, "localhost") == "new-lp"
    assert fork_from_host("NEW-LP.LOCALHOST.", "localhost") == "new-lp"


async def test_every_proxied_request_carries_this_services_via_marker(
    client: httpx.AsyncClient, proxy: ForkProxy, upstream: Upstream
) -> None:
    assert (await client.get("/", headers={"Via": "1.0 corp-proxy"})).status_code == 200
    vias = upstream.last.headers.get_list("via")
    assert vias == ["1.0 corp-proxy", "1.1 " + proxy.marker.decode()]


async def test_a_request_that_comes_back_through_the_service_is_a_508_not_forwarded(
    client: httpx.AsyncClient, proxy: ForkProxy, upstream: Upstream
) -> None:
    via = "1.0 corp-proxy, 1.1 " + proxy.marker.decode()
    response = await client.get("/", headers={"Via": via})
    assert response.status_code == 508
    assert "leads back to itself" in response.text
    assert upstream.requests == []
    # Another service's marker (a chain on purpose) is no loop.
    other = await client.get("/", headers={"Via": "1.1 featureflag-0123456789abcdef"})
    assert other.status_code == 200


def _climbs_out(target: bytes, prefix: str) -> bool:
    """Whether *target* leaves *prefix* under any decoding and separator reading."""
    from urllib.parse import unquote

    path = target.partition(b"?")[0].decode("ascii")
    for _ in range(5):
        path = unquote(path, encoding="latin-1")
    resolved: list[str] = []
    for segment in path.replace("\\", "/").split("/"):
        segment = segment.partition(";")[0]
        if segment == "..":
            if resolved:
                resolved.pop()
        elif segment not in ("", "."):
            resolved.append(segment)
    wanted = [s for s in prefix.split("/") if s]
    return resolved[: len(wanted)] != wanted


_PATH_PIECES = st.sampled_from(
    ["/", "..", ".", "%2e", "%2E", "%2f", "%2F", "%5c", "\\", ";", "%25", "a", "shop", "%"]
)


@settings(max_examples=400, deadline=None)
@given(st.lists(_PATH_PIECES, max_size=12).map("".join))
@example("%25%2f%25/../..%2f")  # found by a CI run: resolved to /shop/..%2f
def test_no_request_path_maps_outside_the_upstream_prefix(path: str) -> None:
    raw = ("/" + path).encode("latin-1")
    scope = {"path": "/" + path, "raw_path": raw, "query_string": b""}
    try:
        _, target = upstream_target("http://app.internal/shop", scope)
    except OutsideUpstream:
        return
    assert not _climbs_out(target, "/shop"), target
