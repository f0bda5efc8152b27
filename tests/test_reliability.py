"""Reliability and security of the middleware under hostile and concurrent input.

- Hypothesis throws arbitrary bytes at the token header, the cookie, ``If-None-Match``
  and the OFREP body (ASGI apps called directly, WSGI apps called with an environ):
  never a 5xx, never an override from a token the signer would not verify.
- 1,100 concurrent requests through a real uvicorn, async and sync (threadpool)
  endpoints, each with its own token (or none): each answer carries exactly its own
  overrides.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import featureflag
from featureflag import Evaluation
from featureflag.asgi import FeatureFlagMiddleware
from featureflag.exceptions import TokenError
from featureflag.report import parse_report
from featureflag.tokens import OverrideSigner
from featureflag.wsgi import FeatureFlagMiddleware as WSGIFeatureFlagMiddleware
from tests.support.servers import Server, run_uvicorn

SECRET = "reliability-test-secret-" + "r" * 32
SIGNER = OverrideSigner(SECRET, environment="development")
FLAGS: dict[str, bool | str] = {"Fuzz.enabled": True, "Fuzz.variant": "b"}
DEFAULTS = {"enabled": False, "variant": "a"}
OFREP = "/ofrep/v1/evaluate/flags"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# Signed once: hypothesis needs the same input on every replay of an example.
TOKEN = SIGNER.dumps(FLAGS, sub="fuzz", ttl=7 * 24 * 3600)


def valid_token() -> str:
    return TOKEN


def fuzz_enabled() -> bool:
    return featureflag.intercept("Fuzz.enabled", lambda: False)


def fuzz_variant() -> str:
    return featureflag.intercept("Fuzz.variant", lambda: "a")


def answer() -> bytes:
    return json.dumps({"enabled": fuzz_enabled(), "variant": fuzz_variant()}).encode()


async def asgi_inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
    body = answer()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


def wsgi_inner(environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
    body = answer()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


ASGI_APP = FeatureFlagMiddleware(asgi_inner, secret=SECRET, report="always")
WSGI_APP = WSGIFeatureFlagMiddleware(wsgi_inner, secret=SECRET, report="always")


class Answer:
    def __init__(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        self.status = status
        self.headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in headers}
        self.body = body


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


async def call_asgi(
    method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> Answer:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"app.example.com"), *headers],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop()
        await asyncio.sleep(3600)  # a disconnect never comes in these tests
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await ASGI_APP(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return Answer(start["status"], list(start.get("headers", [])), out)


def call_wsgi(
    method: str, path: str, headers: list[tuple[bytes, bytes]], body: bytes = b""
) -> Answer:
    import io

    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": "",
        "PATH_INFO": path,
        "QUERY_STRING": "",
        "SERVER_NAME": "app.example.com",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": "app.example.com",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": io.StringIO(),
        "wsgi.multithread": False,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    for name, value in headers:
        key = name.decode("latin-1").upper().replace("-", "_")
        # PEP 3333: header values are latin-1 decoded native strings.
        text = value.decode("latin-1")
        if key == "CONTENT_TYPE":
            environ[key] = text
        else:
            environ["HTTP_" + key] = text
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str, response_headers: list[tuple[str, str]], exc: Any = None
    ) -> Any:
        started.append((status, response_headers))
        return lambda data: None

    chunks = WSGI_APP(environ, start_response)
    try:
        out = b"".join(chunks)
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()
    status, response_headers = started[-1]
    return Answer(
        int(status.split()[0]),
        [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response_headers],
        out,
    )


def verifies_to_flags(raw: bytes) -> bool:
    """True when the signer itself accepts *raw* as a token carrying FLAGS.

    Also in the forms HTTP itself normalizes: surrounding whitespace, cookie quotes,
    a cookie value cut at ``;``.
    """
    forms = {raw, raw.strip(b" \t"), raw.strip(b' \t"'), raw.split(b";")[0].strip(b' \t"')}
    for form in forms:
        try:
            if SIGNER.loads(form).flags == FLAGS:
                return True
        except TokenError:
            pass
    return False


def overrides_in(answer: Answer) -> list[Evaluation]:
    report = answer.headers.get("feature-flags")
    return [e for e in parse_report(report or "") if e.source == "override"]


def assert_no_override(answer: Answer) -> None:
    assert answer.status < 500, answer.body
    assert answer.status == 200
    assert json.loads(answer.body) == DEFAULTS
    assert overrides_in(answer) == []
    assert "no-store" not in answer.headers.get("cache-control", "")


def assert_override_only_if_verified(answer: Answer, raw: bytes) -> bool:
    """Check the property; return whether the override was applied."""
    assert answer.status == 200, answer.body
    body = json.loads(answer.body)
    if body != DEFAULTS or overrides_in(answer):
        assert verifies_to_flags(raw), f"override applied from {raw!r}"
        assert body == {"enabled": True, "variant": "b"}
        return True
    return False


def run(runner: asyncio.Runner, kind: str, *args: Any) -> Answer:
    if kind == "asgi":
        return runner.run(call_asgi(*args))
    return call_wsgi(*args)


both = pytest.mark.parametrize("kind", ["asgi", "wsgi"])
junk = st.binary(max_size=6000)


def mutations(token: bytes) -> st.SearchStrategy[bytes]:
    """A valid token with a few bytes replaced, inserted or deleted, or cut short."""
    position = st.integers(min_value=0, max_value=len(token) - 1)
    byte = st.integers(min_value=0, max_value=255).map(lambda b: bytes([b]))
    edit = st.one_of(
        st.tuples(st.just("replace"), position, byte),
        st.tuples(st.just("insert"), position, byte),
        st.tuples(st.just("delete"), position, st.just(b"")),
    )

    def apply(edits: list[tuple[str, int, bytes]]) -> bytes:
        data = bytearray(token)
        for kind, at, value in edits:
            at = min(at, len(data) - 1)
            if kind == "replace":
                data[at : at + 1] = value
            elif kind == "insert":
                data[at:at] = value
            elif len(data) > 1:
                del data[at]
        return bytes(data)

    return st.one_of(
        st.lists(edit, min_size=1, max_size=4).map(apply),
        position.map(lambda n: token[:n]),
    )


@both
@FUZZ
@given(value=junk)
def test_junk_in_the_header_applies_nothing(
    runner: asyncio.Runner, kind: str, value: bytes
) -> None:
    assert_no_override(run(runner, kind, "GET", "/", [(b"feature-flag-overrides", value)]))


@both
@FUZZ
@given(value=junk, prefix=st.sampled_from([b"", b"session=1; ", b'a="b"; ']))
def test_junk_in_the_cookie_applies_nothing(
    runner: asyncio.Runner, kind: str, value: bytes, prefix: bytes
) -> None:
    cookie = prefix + b"featureflag_overrides=" + value
    assert_no_override(run(runner, kind, "GET", "/", [(b"cookie", cookie)]))
    assert_no_override(run(runner, kind, "GET", "/", [(b"cookie", value)]))


@both
@pytest.mark.parametrize(
    "template",
    [
        b"featureflag_overrides={token}",
        b"a=1; featureflag_overrides={token}; b=2",
        b"a=1;featureflag_overrides={token}",
        b'featureflag_overrides="{token}"',
        b"x_featureflag_overrides=junk; featureflag_overrides={token}",
        b'note="featureflag_overrides=junk"; featureflag_overrides={token}',
        # Browsers keep spaces inside cookie values (RFC 6265 forbids them, Chrome
        # and Firefox send them): another cookie's value that mentions our name
        # after a space must not hide our cookie.
        b"note=see featureflag_overrides=junk; featureflag_overrides={token}",
    ],
)
def test_our_cookie_is_found_among_others(
    runner: asyncio.Runner, kind: str, template: bytes
) -> None:
    cookie = template.replace(b"{token}", valid_token().encode())
    got = run(runner, kind, "GET", "/", [(b"cookie", cookie)])
    assert json.loads(got.body) == {"enabled": True, "variant": "b"}


@both
@FUZZ
@given(data=st.data())
def test_an_altered_token_never_applies_unless_the_signer_accepts_it(
    runner: asyncio.Runner, kind: str, data: st.DataObject
) -> None:
    token = valid_token().encode()
    raw = data.draw(mutations(token))
    header = run(runner, kind, "GET", "/", [(b"feature-flag-overrides", raw)])
    if not assert_override_only_if_verified(header, raw) and raw.strip():
        # Refused, and the answer says why.
        assert header.headers.get("feature-flag-override-error"), header.headers
    cookie = run(runner, kind, "GET", "/", [(b"cookie", b"featureflag_overrides=" + raw)])
    assert_override_only_if_verified(cookie, raw)


@both
def test_the_valid_token_does_apply(runner: asyncio.Runner, kind: str) -> None:
    # The properties above would pass vacuously if nothing ever applied.
    token = valid_token().encode()
    header = run(runner, kind, "GET", "/", [(b"feature-flag-overrides", token)])
    cookie = run(runner, kind, "GET", "/", [(b"cookie", b"featureflag_overrides=" + token)])
    for got in (header, cookie):
        assert json.loads(got.body) == {"enabled": True, "variant": "b"}
        assert {e.name for e in overrides_in(got)} == set(FLAGS)


@both
@FUZZ
@given(
    body=junk,
    content_type=st.sampled_from([b"application/json", b"text/plain", b""]),
    token=st.sampled_from(["valid", "junk", "none"]),
    junk_token=junk,
    etag=st.one_of(st.none(), junk),
    method=st.sampled_from(["POST", "POST", "GET", "PUT", "HEAD", "OPTIONS"]),
)
def test_the_ofrep_endpoint_never_fails_and_never_leaks(
    runner: asyncio.Runner,
    kind: str,
    method: str,
    body: bytes,
    content_type: bytes,
    token: str,
    junk_token: bytes,
    etag: bytes | None,
) -> None:
    headers = [(b"content-type", content_type)] if content_type else []
    if token == "valid":
        headers.append((b"feature-flag-overrides", valid_token().encode()))
    elif token == "junk":
        headers.append((b"feature-flag-overrides", junk_token))
    if etag is not None:
        headers.append((b"if-none-match", etag))
    got = run(runner, kind, method, OFREP, headers, body)
    assert got.status < 500, got.body
    if got.status == 200 and method != "HEAD":
        flags = json.loads(got.body)["flags"]
        if token == "valid":
            assert {f["key"] for f in flags} == set(FLAGS)
        elif token == "none" or not verifies_to_flags(junk_token):
            assert flags == []


@both
@FUZZ
@given(value=junk)
def test_junk_if_none_match_never_fails(runner: asyncio.Runner, kind: str, value: bytes) -> None:
    headers = [
        (b"feature-flag-overrides", valid_token().encode()),
        (b"if-none-match", value),
        (b"content-type", b"application/json"),
    ]
    got = run(runner, kind, "POST", OFREP, headers, b"{}")
    assert got.status in (200, 304), got.body


async def websocket_flag(headers: list[tuple[bytes, bytes]]) -> str:
    """Open a websocket through the middleware; the app sends the flag value it got."""

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": json.dumps(fuzz_enabled())})
        await send({"type": "websocket.close", "code": 1000})

    app = FeatureFlagMiddleware(inner, secret=SECRET)
    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "scheme": "ws",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"app.example.com"), *headers],
        "subprotocols": [],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    text: str = next(m["text"] for m in sent if m["type"] == "websocket.send")
    return text


@FUZZ
@given(data=st.data())
def test_a_websocket_gets_overrides_only_from_a_verified_token(
    runner: asyncio.Runner, data: st.DataObject
) -> None:
    raw = data.draw(st.one_of(junk, mutations(valid_token().encode())))
    got = runner.run(websocket_flag([(b"feature-flag-overrides", raw)]))
    assert got == "false" or verifies_to_flags(raw)


def test_a_websocket_gets_the_overrides_of_its_handshake(runner: asyncio.Runner) -> None:
    headers = [(b"cookie", b"featureflag_overrides=" + valid_token().encode())]
    assert runner.run(websocket_flag(headers)) == "true"


# --- concurrency through a real uvicorn ---------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_uvicorn(
        "tests.apps.concurrency_app:create_app",
        factory=True,
        log_dir=tmp_path_factory.mktemp("concurrency"),
        env={"FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_ENVIRONMENT": "development"},
        name="concurrency",
    ) as running:
        yield running


@pytest.mark.integration
async def test_concurrent_requests_each_see_exactly_their_own_overrides(server: Server) -> None:
    plan: list[tuple[str, str, str | None]] = []  # (path, flag, value or None for no token)
    for i in range(1100):
        path, flag = (
            ("/async", "Reliability.async_value") if i % 2 else ("/sync", "Reliability.sync_value")
        )
        plan.append((path, flag, None if i % 11 == 10 else f"request-{i}"))
    tokens = [
        SIGNER.dumps({flag: value}, sub=f"user-{i}") if value is not None else None
        for i, (_, flag, value) in enumerate(plan)
    ]
    assert sum(t is not None for t in tokens) == 1000

    # All 1,100 are started at once; the semaphore keeps them out of httpcore's pool
    # queue, which rescans every waiting request on each event (quadratic), and 16
    # connections keep the server busy without the pool's per-connection checks
    # dominating the client (32 took twice as long on 2 cores).
    in_flight = asyncio.Semaphore(16)
    limits = httpx.Limits(max_connections=16, max_keepalive_connections=16)
    async with httpx.AsyncClient(base_url=server.url, limits=limits, timeout=120) as client:

        async def one(path: str, token: str | None) -> httpx.Response:
            headers = {"Feature-Flag-Overrides": token} if token is not None else {}
            async with in_flight:
                return await client.get(path, headers=headers)

        responses = await asyncio.gather(
            *(one(path, token) for (path, _, _), token in zip(plan, tokens, strict=True))
        )

    wrong = []
    for (path, flag, value), response in zip(plan, responses, strict=True):
        expected = value if value is not None else "none"
        body = response.json()
        report = (
            parse_report(response.headers["feature-flags"])
            if "feature-flags" in response.headers
            else None
        )
        want_report = [Evaluation(flag, value, "override")] if value is not None else None
        if body != {"first": expected, "second": expected} or report != want_report:
            wrong.append((path, value, body, report))
    assert wrong == [], f"{len(wrong)} responses saw another request's state: {wrong[:3]}"
