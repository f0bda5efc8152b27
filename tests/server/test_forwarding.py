"""Header rewriting for the fork proxy (server/featureflag_server/forwarding.py)."""

from __future__ import annotations

import pytest

from featureflag_server.forwarding import (
    CLIENT_PROXY_HEADERS,
    OUR_COOKIES,
    ResponseRewriter,
    request_headers,
    strip_hop_by_hop,
    strip_override_cookie,
)

FORK = "http://new-lp.localhost:8000"


def test_strip_hop_by_hop_drops_the_listed_and_the_connection_named_headers() -> None:
    headers = [
        (b"Connection", b"close, X-Private"),
        (b"X-Private", b"1"),
        (b"Transfer-Encoding", b"chunked"),
        (b"TE", b"trailers"),
        (b"Content-Type", b"text/html"),
    ]
    assert strip_hop_by_hop(headers) == [(b"content-type", b"text/html")]


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        (b"a=1; featureflag_overrides=tok; b=2", b"a=1; b=2"),
        (b"featureflag_overrides=tok", b""),
        (b"featureflag_overrides_old=1; a=1", b"featureflag_overrides_old=1; a=1"),
        (b"a=1;featureflag_overrides=x", b"a=1"),
        (b"a=1", b"a=1"),
    ],
)
def test_strip_override_cookie(cookie: bytes, expected: bytes) -> None:
    assert strip_override_cookie(cookie) == expected


def test_request_headers_put_the_token_last_and_only_once() -> None:
    out = request_headers(
        [(b"feature-flag-overrides", b"theirs"), (b"accept", b"*/*")],
        token="ours",
        client_ip=None,
        scheme="https",
        host="new-lp.qa.example.com",
    )
    assert out == [
        (b"accept", b"*/*"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"new-lp.qa.example.com"),
        (b"feature-flag-overrides", b"ours"),
    ]


def test_request_headers_join_several_forwarded_for_headers() -> None:
    out = dict(
        request_headers(
            [(b"x-forwarded-for", b"10.0.0.1"), (b"x-forwarded-for", b"10.0.0.2, 10.0.0.3")],
            token="t",
            client_ip="127.0.0.1",
            scheme="http",
            host="h",
        )
    )
    assert out[b"x-forwarded-for"] == b"10.0.0.1, 10.0.0.2, 10.0.0.3, 127.0.0.1"


@pytest.mark.parametrize(
    ("upstream", "location", "expected"),
    [
        ("http://app:9000", "http://app:9000/next", f"{FORK}/next"),
        ("http://app:9000", "http://APP:9000/next?x=1#top", f"{FORK}/next?x=1#top"),
        ("http://app:9000", "http://app:9000", f"{FORK}/"),
        ("http://app:9000", "//app:9000/p", f"{FORK}/p"),
        ("http://app", "http://app:80/p", f"{FORK}/p"),
        ("https://app", "https://app/p", f"{FORK}/p"),
        ("http://app:9000", "/relative", "/relative"),
        ("http://app:9000", "next", "next"),
        ("http://app:9000", "http://app:9001/p", "http://app:9001/p"),
        ("http://app:9000", "https://app:9000/p", "https://app:9000/p"),
        ("http://app:9000", "https://accounts.example/login", "https://accounts.example/login"),
        ("http://app:9000", "mailto:someone@app", "mailto:someone@app"),
        ("http://app:9000", "http://[::1", "http://[::1"),
        ("http://app:9000/shop", "http://app:9000/shop/cart", f"{FORK}/cart"),
        ("http://app:9000/shop", "http://app:9000/shop", f"{FORK}/"),
        ("http://app:9000/shop/", "/shop/cart?x", "/cart?x"),
        ("http://app:9000/shop", "/shopping", "/shopping"),
    ],
)
def test_location(upstream: str, location: str, expected: str) -> None:
    assert ResponseRewriter(upstream, FORK).location(location) == expected


@pytest.mark.parametrize(
    ("upstream", "cookie", "expected"),
    [
        ("http://app.internal:9000", "s=1; Domain=app.internal; Path=/", "s=1; Path=/"),
        ("http://app.internal:9000", "s=1; domain=.APP.internal", "s=1"),
        ("http://qa.app.internal", "s=1; Domain=app.internal; Secure", "s=1; Secure"),
        ("http://app.internal", "s=1; Domain=other.example", "s=1; Domain=other.example"),
        ("http://app.internal", "s=1; Domain=pp.internal", "s=1; Domain=pp.internal"),
        ("http://app.internal", "s=1; HttpOnly", "s=1; HttpOnly"),
        ("http://app.internal/shop", "s=1; Path=/shop/cart", "s=1; Path=/cart"),
        ("http://app.internal/shop", "s=1; Path=/other", "s=1; Path=/other"),
    ],
)
def test_set_cookie(upstream: str, cookie: str, expected: str) -> None:
    assert ResponseRewriter(upstream, FORK).set_cookie(cookie) == expected


def test_response_headers_rewrite_location_and_cookies_and_drop_hop_by_hop() -> None:
    rewriter = ResponseRewriter("http://app:9000", FORK)
    out = rewriter.headers(
        [
            (b"Location", b"http://app:9000/x"),
            (b"Set-Cookie", b"a=1; Domain=app"),
            (b"Keep-Alive", b"timeout=5"),
            (b"Date", b"Thu, 26 Nov 2026 04:06:40 GMT"),
            (b"Content-Length", b"0"),
        ]
    )
    assert out == [
        (b"location", f"{FORK}/x".encode()),
        (b"set-cookie", b"a=1"),
        (b"content-length", b"0"),
    ]


def test_request_headers_do_not_repeat_a_client_the_server_took_from_the_chain() -> None:
    # uvicorn --proxy-headers behind a trusted proxy: scope["client"] is the chain's last hop.
    out = dict(
        request_headers(
            [(b"x-forwarded-for", b"198.51.100.9")],
            token="t",
            client_ip="198.51.100.9",
            scheme="https",
            host="h",
        )
    )
    assert out[b"x-forwarded-for"] == b"198.51.100.9"


# --- issue 17 ---------------------------------------------------------------------------


def test_proxy_headers_a_client_sent_never_reach_the_upstream() -> None:
    forged = [
        (b"Forwarded", b"for=10.0.0.1;host=admin.internal;proto=https"),
        (b"X-Real-IP", b"10.0.0.1"),
        (b"X-Forwarded-Port", b"443"),
        (b"X-Forwarded-Prefix", b"/admin"),
        (b"X-Original-URL", b"/admin/delete"),
        (b"X-Rewrite-URL", b"/admin/delete"),
        (b"X-Forwarded-Server", b"internal"),
        (b"Accept", b"*/*"),
    ]
    out = request_headers(forged, token="t", client_ip="203.0.113.7", scheme="http", host="h")
    names = {name for name, _ in out}
    assert names == {
        b"accept",
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"feature-flag-overrides",
    }
    assert dict(out)[b"x-forwarded-for"] == b"203.0.113.7"


@pytest.mark.parametrize("name", CLIENT_PROXY_HEADERS)
def test_each_client_proxy_header_is_dropped(name: str) -> None:
    headers = [(name.upper().encode(), b"forged")]
    out = request_headers(headers, token="t", client_ip=None, scheme="http", host="h")
    assert b"forged" not in dict(out).values()


def test_the_services_cookies_never_reach_the_upstream() -> None:
    cookie = (
        b"a=1; featureflag_session=s; __Host-featureflag_session=h; featureflag_overrides=o; "
        b"featureflag_overrides=o2; b=2"
    )
    out = request_headers([(b"cookie", cookie)], token="t", client_ip=None, scheme="http", host="h")
    assert dict(out)[b"cookie"] == b"a=1; b=2"


@pytest.mark.parametrize(
    ("location", "expected"),
    [
        ("/shop//evil.example/", "/evil.example/"),
        ("/shop/\\evil.example", "/evil.example"),
        ("/shop/\\\\evil.example", "/evil.example"),
        ("/shop/\t/evil.example", "/evil.example"),
        ("//evil.example/x", "/evil.example/x"),
        ("/shop/ok//double", "/ok//double"),
        ("http://10.0.0.5:8080/shop//evil.example", FORK + "//evil.example"),
    ],
)
def test_a_location_never_becomes_scheme_relative_or_backslashed(
    location: str, expected: str
) -> None:
    rewriter = ResponseRewriter("http://10.0.0.5:8080/shop", FORK, "localhost")
    assert rewriter.location(location) == expected


@pytest.mark.parametrize(
    ("cookie", "expected"),
    [
        # At or above the fork domain: would reach the service and every other fork.
        ("sid=1; Domain=localhost; Path=/", "sid=1; Path=/"),
        ("sid=1; Domain=.LOCALHOST.", "sid=1"),
        ("sid=1; domain=new-lp.localhost", "sid=1"),
        ("sid=1; Domain=qa.example.com", "sid=1"),
        ("sid=1; Domain=example.com", "sid=1"),
        # Elsewhere: left alone (the browser refuses it as it would without the proxy).
        ("sid=1; Domain=other.example", "sid=1; Domain=other.example"),
        # Named like the service's own: dropped whole.
        ("featureflag_session=attacker; Domain=localhost", None),
        ("__Host-featureflag_session=attacker; Path=/; Secure", None),
        ("featureflag_overrides=forced; Domain=localhost", None),
        ("__Secure-featureflag_overrides=forced", None),
        ("featureflag_sessions=x", "featureflag_sessions=x"),
    ],
)
def test_an_upstream_cannot_plant_cookies_on_the_service_or_other_forks(
    cookie: str, expected: str | None
) -> None:
    domain = "qa.example.com" if "example.com" in cookie else "localhost"
    fork = "http://new-lp." + domain
    rewriter = ResponseRewriter("http://10.0.0.5:8080/", fork, domain)
    assert rewriter.set_cookie(cookie) == expected
    headers = rewriter.headers([(b"set-cookie", cookie.encode())])
    assert headers == ([] if expected is None else [(b"set-cookie", expected.encode())])


def test_our_cookie_names_come_from_the_one_place_they_are_spelled() -> None:
    from featureflag.headers import TOKEN_COOKIE
    from featureflag_server.web import SESSION_COOKIE

    assert frozenset({TOKEN_COOKIE, SESSION_COOKIE}) == OUR_COOKIES
