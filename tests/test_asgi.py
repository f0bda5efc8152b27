"""featureflag.asgi.FeatureFlagMiddleware: in-process through httpx.ASGITransport, and
once through a real uvicorn process."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import itsdangerous
import pytest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.websockets import WebSocket

import featureflag
from featureflag import Evaluation
from featureflag._http import token_from_cookie
from featureflag._scope import current_scope
from featureflag.asgi import FeatureFlagMiddleware, current_host, current_token
from featureflag.exceptions import ConfigurationError
from featureflag.report import TRUNCATED, parse_report
from featureflag.tokens import OverrideSigner
from tests.support.clock import Clock
from tests.support.servers import run_uvicorn

SECRET = "asgi-test-secret-" + "k" * 32
OTHER_SECRET = "another-secret-entirely-" + "z" * 32


@featureflag.trap(name="AsgiDemo")
class AsgiDemo:
    @staticmethod
    def is_released() -> bool:
        return False

    @staticmethod
    def checkout() -> str:
        return "classic"


def landing() -> str:
    return featureflag.intercept("asgi-lp", lambda: "a")


async def home(request: Request) -> Response:
    body = f"released={AsgiDemo.is_released()} lp={landing()} token={current_token() is not None}"
    return PlainTextResponse(body, headers={"Cache-Control": "public, max-age=60"})


async def many(request: Request) -> Response:
    for i in range(int(request.query_params["n"])):
        featureflag.intercept(f"asgi.many.flag{i}", True)
    return PlainTextResponse("ok")


async def vary(request: Request) -> Response:
    return PlainTextResponse("ok", headers={"Vary": request.query_params["vary"]})


async def stream(request: Request) -> Response:
    released = AsgiDemo.is_released()  # before the headers: reported

    async def body() -> AsyncIterator[str]:
        yield f"released={released}\n"
        yield f"checkout={AsgiDemo.checkout()}\n"  # after the headers: late

    return StreamingResponse(body())


async def token_info(request: Request) -> Response:
    return JSONResponse({"token": current_token(), "host": current_host()})


async def boom(request: Request) -> Response:
    AsgiDemo.is_released()
    raise RuntimeError("boom")


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(f"released={AsgiDemo.is_released()} lp={landing()}")
    await websocket.close()


def create_app(**options: Any) -> FeatureFlagMiddleware:
    routes = [
        Route("/", home),
        Route("/many", many),
        Route("/vary", vary),
        Route("/stream", stream),
        Route("/token", token_info),
        Route("/boom", boom),
        WebSocketRoute("/ws", socket),
    ]
    return FeatureFlagMiddleware(Starlette(routes=routes), **options)


def uvicorn_app() -> FeatureFlagMiddleware:
    """For ``uvicorn --factory``: secret and environment from the environment."""
    return create_app()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> OverrideSigner:
    return OverrideSigner(SECRET, environment="test", clock=clock)


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app.test")


OVERRIDES = {"AsgiDemo.is_released": True, "asgi-lp": "b"}


async def test_no_token_runs_the_defaults_and_reports_nothing(signer: OverrideSigner) -> None:
    async with client(create_app(signer=signer)) as c:
        r = await c.get("/")
    assert r.text == "released=False lp=a token=False"
    assert "feature-flags" not in r.headers
    assert "feature-flag-override-error" not in r.headers
    assert r.headers["cache-control"] == "public, max-age=60"
    # A shared cache must never hand this response to someone with a token.
    assert r.headers["vary"] == "Cookie, Feature-Flag-Overrides"


async def test_token_in_header_overrides_and_is_reported(signer: OverrideSigner) -> None:
    token = signer.dumps(OVERRIDES, sub="ana")
    async with client(create_app(signer=signer)) as c:
        r = await c.get("/", headers={"Feature-Flag-Overrides": token})
    assert r.text == "released=True lp=b token=True"
    assert parse_report(r.headers["feature-flags"]) == [
        Evaluation("AsgiDemo.is_released", True, "override"),
        Evaluation("asgi-lp", "b", "override"),
    ]
    assert r.headers["cache-control"] == "private, no-store"
    assert r.headers["vary"] == "Cookie, Feature-Flag-Overrides"


async def test_token_in_cookie(signer: OverrideSigner) -> None:
    token = signer.dumps(OVERRIDES, sub="ana")
    async with client(create_app(signer=signer)) as c:
        r = await c.get("/", headers={"Cookie": f"session=x; featureflag_overrides={token}; a=b"})
    assert r.text == "released=True lp=b token=True"


@pytest.mark.parametrize(
    ("cookie", "token"),
    [
        (b"featureflag_overrides=abc", b"abc"),
        (b"a=b; featureflag_overrides=abc; c=d", b"abc"),
        (b"a=b;featureflag_overrides=tight", b"tight"),
        (b'featureflag_overrides="quoted"', b"quoted"),
        (b"x_featureflag_overrides=no; featureflag_overrides=yes", b"yes"),
        (b"x_featureflag_overrides=no", None),
        (b"a=featureflag_overrides=inside-a-value", None),
        (b"a=b;  featureflag_overrides=two-spaces", b"two-spaces"),
        (b"a=b;\tfeatureflag_overrides=tab", b"tab"),
        (b"note=see featureflag_overrides=x", None),
        (b"note=see featureflag_overrides=x; featureflag_overrides=y", b"y"),
        (b"featureflag_overrides=", None),
        (b"session=abc", None),
    ],
)
def test_token_from_cookie(cookie: bytes, token: bytes | None) -> None:
    assert token_from_cookie(cookie) == token


async def test_header_wins_over_cookie(signer: OverrideSigner) -> None:
    header = signer.dumps({"asgi-lp": "from-header"}, sub="ana")
    cookie = signer.dumps({"asgi-lp": "from-cookie"}, sub="ana")
    async with client(create_app(signer=signer)) as c:
        r = await c.get(
            "/",
            headers={"Feature-Flag-Overrides": header, "Cookie": f"featureflag_overrides={cookie}"},
        )
        assert "lp=from-header" in r.text
        # Even a refused header wins: the cookie is not a fallback for a bad header.
        r = await c.get(
            "/",
            headers={"Feature-Flag-Overrides": "bad", "Cookie": f"featureflag_overrides={cookie}"},
        )
    assert "lp=a" in r.text
    assert r.headers["feature-flag-override-error"] == "malformed"


async def test_an_empty_header_counts_as_absent(signer: OverrideSigner) -> None:
    cookie = signer.dumps({"asgi-lp": "from-cookie"}, sub="ana")
    async with client(create_app(signer=signer)) as c:
        r = await c.get(
            "/", headers={"Feature-Flag-Overrides": "", "Cookie": f"featureflag_overrides={cookie}"}
        )
        assert "lp=from-cookie" in r.text
        r = await c.get("/", headers={"Feature-Flag-Overrides": ""})
    assert "feature-flag-override-error" not in r.headers


def refused_tokens(clock: Clock) -> dict[str, str]:
    test = OverrideSigner(SECRET, environment="test", clock=clock)
    expired = test.dumps(OVERRIDES, sub="ana", ttl=10)
    clock.now += 11
    import itsdangerous

    raw = itsdangerous.URLSafeTimedSerializer(SECRET, salt="featureflag.overrides/test")
    base = {"v": 1, "env": "test", "sub": "ana", "origin": "extension", "exp": 4e9}
    return {
        "expired": expired,
        "bad-signature": OverrideSigner(OTHER_SECRET, environment="test").dumps(
            OVERRIDES, sub="ana"
        ),
        "wrong-environment": OverrideSigner(SECRET, environment="production").dumps(
            OVERRIDES, sub="ana"
        ),
        "too-large": "x" * 5000,
        "malformed": "not-a-token",
        "invalid-override": raw.dumps({**base, "flags": {"AsgiDemo.is_released": 1}}),
        "too-many-flags": raw.dumps({**base, "flags": {f"f{i}": True for i in range(201)}}),
    }


@pytest.mark.parametrize(
    "reason",
    [
        "expired",
        "bad-signature",
        "wrong-environment",
        "too-large",
        "malformed",
        "invalid-override",
        "too-many-flags",
    ],
)
async def test_refused_token_runs_the_app_normally_and_says_why(
    reason: str, clock: Clock, signer: OverrideSigner
) -> None:
    token = refused_tokens(clock)[reason]
    async with client(create_app(signer=signer)) as c:
        r = await c.get("/", headers={"Feature-Flag-Overrides": token})
    assert r.status_code == 200
    assert r.text == "released=False lp=a token=False"
    assert r.headers["feature-flag-override-error"] == reason
    assert "feature-flags" not in r.headers
    assert r.headers["cache-control"] == "public, max-age=60"


async def test_rotation_accepts_tokens_of_the_old_secret() -> None:
    old = OverrideSigner(OTHER_SECRET, environment="test").dumps(OVERRIDES, sub="ana")
    async with client(create_app(secret=[SECRET, OTHER_SECRET], environment="test")) as c:
        r = await c.get("/", headers={"Feature-Flag-Overrides": old})
    assert r.text == "released=True lp=b token=True"


async def test_wrong_typed_override_is_rejected_with_a_readable_reason(
    signer: OverrideSigner,
) -> None:
    token = signer.dumps({"AsgiDemo.is_released": "yes"}, sub="ana")
    async with client(create_app(signer=signer)) as c:
        r = await c.get("/", headers={"Feature-Flag-Overrides": token})
    assert r.text == "released=False lp=a token=True"
    first = parse_report(r.headers["feature-flags"])[0]
    assert first.name == "AsgiDemo.is_released"
    assert (first.value, first.source) == (False, "default")
    assert first.rejected is not None
    assert "declared `-> bool`" in first.rejected and "send true or false" in first.rejected
    # Nothing was overridden: the app's own caching stands.
    assert r.headers["cache-control"] == "public, max-age=60"


async def test_without_a_token_the_callers_context_is_left_alone(signer: OverrideSigner) -> None:
    # What featureflag.testing relies on: overrides set around an in-process call.
    async with client(create_app(signer=signer)) as c:
        with featureflag.overrides({"asgi-lp": "from-test"}):
            r = await c.get("/")
            assert r.text == "released=False lp=from-test token=False"
            assert [e.name for e in featureflag.evaluations()] == [
                "AsgiDemo.is_released",
                "asgi-lp",
            ]
            # A request with a token gets the token's overrides and nothing else.
            token = signer.dumps({"AsgiDemo.is_released": True}, sub="ana")
            r = await c.get("/", headers={"Feature-Flag-Overrides": token})
            assert r.text == "released=True lp=a token=True"


async def test_report_always_and_never(signer: OverrideSigner) -> None:
    token = signer.dumps(OVERRIDES, sub="ana")
    async with client(create_app(signer=signer, report="always")) as c:
        r = await c.get("/")
    assert parse_report(r.headers["feature-flags"]) == [
        Evaluation("AsgiDemo.is_released", False),
        Evaluation("asgi-lp", "a"),
    ]
    async with client(create_app(signer=signer, report="never")) as c:
        r = await c.get("/", headers={"Feature-Flag-Overrides": token})
    assert r.text == "released=True lp=b token=True"
    assert "feature-flags" not in r.headers
    assert r.headers["cache-control"] == "private, no-store"


async def test_report_budget(signer: OverrideSigner) -> None:
    token = signer.dumps({}, sub="ana")
    async with client(create_app(signer=signer, report_budget=300)) as c:
        r = await c.get("/many?n=100", headers={"Feature-Flag-Overrides": token})
    header = r.headers["feature-flags"]
    assert len(header) <= 300
    assert header.endswith(f'"{TRUNCATED}";omitted={100 - header.count("asgi.many.flag")}')


@pytest.mark.parametrize(
    ("existing", "expected"),
    [
        ("Accept-Encoding", "Accept-Encoding, Cookie, Feature-Flag-Overrides"),
        ("cookie", "cookie, Feature-Flag-Overrides"),
        ("Feature-Flag-Overrides, Cookie", "Feature-Flag-Overrides, Cookie"),
        ("*", "*"),
        ("Accept, *", "*"),
        ("", "Cookie, Feature-Flag-Overrides"),
    ],
)
async def test_vary_is_merged(existing: str, expected: str, signer: OverrideSigner) -> None:
    async with client(create_app(signer=signer)) as c:
        r = await c.get("/vary", params={"vary": existing})
    assert r.headers.get_list("vary") == [expected]


def _many_trapped(count: int) -> list[Any]:
    methods: dict[str, Any] = {}
    for i in range(count):
        exec(f"def flag_{i:03d}(self) -> str:\n    return 'default'", methods)
    cls = featureflag.trap(name="AsgiMany")(type("AsgiMany", (), methods))
    return [getattr(cls(), f"flag_{i:03d}") for i in range(count)]


async def test_past_the_budget_and_the_limit_each_request_reports_its_own(
    signer: OverrideSigner,
) -> None:
    # Issue 18: trapped flags stored without counting (the limit applied when read) and a
    # report formatted only up to its budget. Interleaved requests with the same flags
    # overridden to different values, and without a token, each get exactly their own.
    flags = _many_trapped(600)

    async def evaluate_all(request: Request) -> Response:
        return PlainTextResponse(",".join({flag() for flag in flags}))

    app = FeatureFlagMiddleware(Starlette(routes=[Route("/", evaluate_all)]), signer=signer)
    tokens = {
        value: signer.dumps({"AsgiMany.flag_000": value, "AsgiMany.flag_550": value}, sub="qa")
        for value in ("a", "b")
    }
    async with client(app) as c:
        for value in ("a", "b", None, "b", "a"):
            headers = {} if value is None else {"Feature-Flag-Overrides": tokens[value]}
            r = await c.get("/", headers=headers)
            if value is None:
                assert set(r.text.split(",")) == {"default"}
                assert "feature-flags" not in r.headers
                continue
            assert set(r.text.split(",")) == {"default", value}
            assert r.headers["cache-control"] == "private, no-store"
            report = parse_report(r.headers["feature-flags"])
            assert report[0] == Evaluation("AsgiMany.flag_000", value, "override")
            assert all(e.value == "default" for e in report[1:])
            assert [e.name for e in report] == [
                f"AsgiMany.flag_{i:03d}" for i in range(len(report))
            ]
            assert len(report) + report.dropped == 600  # type: ignore[attr-defined]
            assert len(r.headers["feature-flags"]) <= 4096


async def test_merged_vary_is_remembered_per_set_of_values(signer: OverrideSigner) -> None:
    # Issue 18: the merge is cached by the app's values; each answer stays its own,
    # asked in any order, and the cache stays bounded.
    from featureflag import _http

    cases = [("Accept-Encoding", "Accept-Encoding, Cookie, Feature-Flag-Overrides"), ("*", "*")]
    async with client(create_app(signer=signer)) as c:
        for existing, expected in cases * 3:
            r = await c.get("/vary", params={"vary": existing})
            assert r.headers.get_list("vary") == [expected]
    assert _http._merge_vary([b"Accept", b"Origin"]) == b"Accept, Origin, " + _http._VARY
    assert _http._merge_vary([b"Accept, Origin"]) == b"Accept, Origin, " + _http._VARY
    for i in range(_http._VARY_CACHE_MAX * 2):
        assert _http._merge_vary([b"X-%d" % i]) == b"X-%d, " % i + _http._VARY
    assert len(_http._merged_vary) <= _http._VARY_CACHE_MAX


async def test_streaming_rule_late_flags_are_logged_not_lost(
    signer: OverrideSigner, caplog: pytest.LogCaptureFixture
) -> None:
    token = signer.dumps({"AsgiDemo.is_released": True, "AsgiDemo.checkout": "new"}, sub="ana")
    async with client(create_app(signer=signer)) as c:
        with caplog.at_level(logging.WARNING, logger="featureflag"):
            r = await c.get("/stream", headers={"Feature-Flag-Overrides": token})
    # The streamed body still gets its override...
    assert r.text == "released=True\ncheckout=new\n"
    # ...but the header went before the flag ran, so only the early one is listed,
    assert [e.name for e in parse_report(r.headers["feature-flags"])] == ["AsgiDemo.is_released"]
    # ...and the late one is named in a warning instead of vanishing.
    [record] = [r for r in caplog.records if "after the Feature-Flags header" in r.message]
    assert "AsgiDemo.checkout" in record.message and "GET /stream" in record.message


async def test_an_override_used_only_after_the_headers_is_named_in_the_warning(
    signer: OverrideSigner, caplog: pytest.LogCaptureFixture
) -> None:
    token = signer.dumps({"AsgiDemo.checkout": "new"}, sub="ana")
    async with client(create_app(signer=signer)) as c:
        with caplog.at_level(logging.WARNING, logger="featureflag"):
            r = await c.get("/stream", headers={"Feature-Flag-Overrides": token})
    assert r.text == "released=False\ncheckout=new\n"
    # Too late for Cache-Control: the warning says so.
    assert "cache-control" not in r.headers
    [record] = caplog.records
    assert "could not be marked Cache-Control: private, no-store" in record.message


async def test_no_warning_when_nothing_came_late(
    signer: OverrideSigner, caplog: pytest.LogCaptureFixture
) -> None:
    token = signer.dumps(OVERRIDES, sub="ana")
    async with client(create_app(signer=signer)) as c:
        with caplog.at_level(logging.WARNING, logger="featureflag"):
            await c.get("/", headers={"Feature-Flag-Overrides": token})
    assert caplog.records == []


async def test_current_token_and_host(signer: OverrideSigner) -> None:
    token = signer.dumps(OVERRIDES, sub="ana")
    async with client(create_app(signer=signer)) as c:
        with_token = (await c.get("/token", headers={"Feature-Flag-Overrides": token})).json()
        refused = (await c.get("/token", headers={"Feature-Flag-Overrides": "x.y.z"})).json()
        without = (await c.get("/token")).json()
    assert with_token == {"token": token, "host": "app.test"}
    assert refused == without == {"token": None, "host": None}
    assert current_token() is None and current_host() is None


async def test_state_is_reset_after_an_error(signer: OverrideSigner) -> None:
    token = signer.dumps(OVERRIDES, sub="ana")
    app = create_app(signer=signer)
    with pytest.raises(RuntimeError):
        async with client(app) as c:
            await c.get("/boom", headers={"Feature-Flag-Overrides": token})
    assert current_token() is None
    assert current_scope() is None


async def test_concurrent_requests_each_see_their_own_token(signer: OverrideSigner) -> None:
    app = create_app(signer=signer)
    tokens = [signer.dumps({"asgi-lp": f"v{i}"}, sub=str(i)) for i in range(50)]
    async with client(app) as c:
        responses = await asyncio.gather(
            *(c.get("/", headers={"Feature-Flag-Overrides": t}) for t in tokens)
        )
    for i, r in enumerate(responses):
        assert f"lp=v{i} " in r.text
        assert parse_report(r.headers["feature-flags"])[1] == Evaluation(
            "asgi-lp", f"v{i}", "override"
        )


async def test_lifespan_passes_through(signer: OverrideSigner) -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])
        assert current_scope() is None

    async def receive() -> dict[str, Any]:
        return {"type": "lifespan.startup"}

    async def send(message: Any) -> None:
        pass

    await FeatureFlagMiddleware(app, signer=signer)({"type": "lifespan"}, receive, send)
    assert seen == ["lifespan"]


async def websocket_exchange(app: Any, headers: list[tuple[bytes, bytes]]) -> list[Any]:
    """Drive one websocket connection by hand: connect, collect what the app sends."""
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "websocket",
        "asgi": {"version": "3.0"},
        "path": "/ws",
        "raw_path": b"/ws",
        "root_path": "",
        "query_string": b"",
        "scheme": "ws",
        "server": ("app.test", 80),
        "client": ("127.0.0.1", 5000),
        "subprotocols": [],
        "headers": [(b"host", b"app.test"), *headers],
    }
    await app(scope, receive, send)
    return sent


async def test_websocket_keeps_its_handshake_overrides(signer: OverrideSigner) -> None:
    token = signer.dumps(OVERRIDES, sub="ana").encode()
    app = create_app(signer=signer)
    for headers in (
        [(b"feature-flag-overrides", token)],
        [(b"cookie", b"featureflag_overrides=" + token)],
    ):
        sent = await websocket_exchange(app, headers)
        assert [m["type"] for m in sent] == [
            "websocket.accept",
            "websocket.send",
            "websocket.close",
        ]
        assert sent[1]["text"] == "released=True lp=b"
    sent = await websocket_exchange(app, [])
    assert sent[1]["text"] == "released=False lp=a"
    assert current_scope() is None


async def test_websocket_accept_says_why_a_token_was_refused(signer: OverrideSigner) -> None:
    sent: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept", "headers": [(b"x-app", b"1")]})

    async def receive() -> dict[str, Any]:
        return {"type": "websocket.connect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "websocket", "path": "/ws", "headers": [(b"feature-flag-overrides", b"bad")]}
    await FeatureFlagMiddleware(app, signer=signer)(scope, receive, send)
    assert sent[0]["headers"] == [(b"x-app", b"1"), (b"feature-flag-override-error", b"malformed")]


def test_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEATUREFLAG_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="FEATUREFLAG_SECRET"):
        create_app()
    with pytest.raises(ConfigurationError, match="token_urlsafe"):
        create_app(secret="short")
    with pytest.raises(ConfigurationError, match="report="):
        create_app(secret=SECRET, report="sometimes")
    with pytest.raises(ConfigurationError, match="ofrep_path"):
        create_app(secret=SECRET, ofrep_path="no-slash")
    monkeypatch.setenv("FEATUREFLAG_SECRET", SECRET)
    monkeypatch.setenv("FEATUREFLAG_ENVIRONMENT", "qa")
    assert create_app().config.signer.environment == "qa"


@pytest.mark.integration
def test_through_a_real_uvicorn(tmp_path: Path) -> None:
    env = {"FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_ENVIRONMENT": "qa"}
    token = OverrideSigner(SECRET, environment="qa").dumps(OVERRIDES, sub="ana")
    with run_uvicorn("tests.test_asgi:uvicorn_app", factory=True, env=env, log_dir=tmp_path) as s:
        r = httpx.get(s.url + "/", headers={"Feature-Flag-Overrides": token})
        assert r.text == "released=True lp=b token=True"
        assert r.headers["cache-control"] == "private, no-store"
        assert [e.source for e in parse_report(r.headers["feature-flags"])] == ["override"] * 2
        r = httpx.get(s.url + "/", cookies={"featureflag_overrides": "x" * 5000})
        assert r.headers["feature-flag-override-error"] == "too-large"
        assert r.text == "released=False lp=a token=False"
        r = httpx.post(
            s.url + "/ofrep/v1/evaluate/flags",
            json={"context": {}},
            headers={"Feature-Flag-Overrides": token},
        )
        assert [f["key"] for f in r.json()["flags"]] == ["AsgiDemo.is_released", "asgi-lp"]


# Starlette's add_middleware(), background tasks, CORS, mounting


def added_app(*middleware: Any) -> Starlette:
    """A Starlette app with *middleware* added in order (the last added is outermost)."""
    app = Starlette(routes=[Route("/", home), Route("/background", background)])
    for cls, options in middleware:
        app.add_middleware(cls, **options)
    return app


async def lifespan_startup(app: Any) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0) if messages else await asyncio.Event().wait()  # type: ignore[func-returns-value]

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    try:
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, receive, send)
    except ConfigurationError:
        assert sent[-1]["type"] == "lifespan.startup.failed"  # told the server first
    return sent


async def test_add_middleware_without_a_secret_fails_the_lifespan_startup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FEATUREFLAG_SECRET", raising=False)
    sent = await lifespan_startup(added_app((FeatureFlagMiddleware, {})))
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "FEATUREFLAG_SECRET" in sent[0]["message"]
    weak = await lifespan_startup(added_app((FeatureFlagMiddleware, {"secret": "short"})))
    assert "token_urlsafe" in weak[0]["message"]
    # Configured, the lifespan goes through to the app.
    ok = await lifespan_startup(added_app((FeatureFlagMiddleware, {"secret": SECRET})))
    assert [m["type"] for m in ok] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


def no_secret_app() -> Starlette:
    """For ``uvicorn --factory``: add_middleware() with no secret in the environment."""
    return added_app((FeatureFlagMiddleware, {}))


@pytest.mark.integration
def test_add_middleware_without_a_secret_stops_a_real_uvicorn(tmp_path: Path) -> None:
    env = {"FEATUREFLAG_SECRET": ""}
    with (
        pytest.raises(RuntimeError, match="server exited") as failed,
        run_uvicorn("tests.test_asgi:no_secret_app", factory=True, env=env, log_dir=tmp_path),
    ):
        pass
    assert "FEATUREFLAG_SECRET" in str(failed.value)


ran_in_background: list[bool] = []


async def background(request: Request) -> Response:
    def later() -> None:
        ran_in_background.append(AsgiDemo.is_released())

    return PlainTextResponse("ok", background=BackgroundTask(later))


async def test_background_tasks_get_no_late_flag_warning(
    signer: OverrideSigner, caplog: pytest.LogCaptureFixture
) -> None:
    ran_in_background.clear()
    app = added_app((FeatureFlagMiddleware, {"signer": signer}))
    token = signer.dumps(OVERRIDES, sub="ana")
    with caplog.at_level(logging.WARNING, logger="featureflag"):
        async with client(app) as c:
            r = await c.get("/background", headers={"Feature-Flag-Overrides": token})
    assert r.text == "ok"
    assert ran_in_background == [True]  # the task still sees the request's overrides
    assert "evaluated after" not in caplog.text


CORS = {
    "allow_origins": ["http://localhost:5173"],
    "allow_methods": ["POST"],
    "allow_headers": ["content-type"],
    "allow_credentials": True,
}
PREFLIGHT = {
    "Origin": "http://localhost:5173",
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


async def test_ofrep_from_another_origin_with_cors_outside_ours(signer: OverrideSigner) -> None:
    # docs/middleware.md: add CORSMiddleware after FeatureFlagMiddleware (outermost).
    app = added_app((FeatureFlagMiddleware, {"signer": signer}), (CORSMiddleware, CORS))
    token = signer.dumps(OVERRIDES, sub="ana")
    async with client(app) as c:
        preflight = await c.options("/ofrep/v1/evaluate/flags", headers=PREFLIGHT)
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "http://localhost:5173"
        r = await c.post(
            "/ofrep/v1/evaluate/flags/asgi-lp",
            json={},
            headers={"Origin": "http://localhost:5173", "Cookie": f"featureflag_overrides={token}"},
        )
    assert r.json()["value"] == "b"
    assert r.headers["access-control-allow-origin"] == "http://localhost:5173"
    assert r.headers["access-control-allow-credentials"] == "true"


async def test_ofrep_with_cors_inside_ours_says_how_to_fix_it(signer: OverrideSigner) -> None:
    app = added_app((CORSMiddleware, CORS), (FeatureFlagMiddleware, {"signer": signer}))
    async with client(app) as c:
        preflight = await c.options("/ofrep/v1/evaluate/flags", headers=PREFLIGHT)
    assert preflight.status_code == 405
    assert "outside FeatureFlagMiddleware" in preflight.json()["errorDetails"]


async def test_mounted_ofrep_answers_at_the_mounted_path(signer: OverrideSigner) -> None:
    token = signer.dumps(OVERRIDES, sub="ana")
    inner = FeatureFlagMiddleware(Starlette(routes=[Route("/", home)]), signer=signer)
    app = Starlette(routes=[Mount("/api", app=inner)])
    headers = {"Feature-Flag-Overrides": token}
    async with client(app) as c:
        bulk = await c.post("/api/ofrep/v1/evaluate/flags", json={}, headers=headers)
        one = await c.post("/api/ofrep/v1/evaluate/flags/asgi-lp", json={}, headers=headers)
        page = await c.get("/api/", headers=headers)
    assert [f["key"] for f in bulk.json()["flags"]] == ["AsgiDemo.is_released", "asgi-lp"]
    assert one.json()["value"] == "b"
    assert page.text.startswith("released=True lp=b")


# Issue 17, item 2: a lone surrogate must never turn a response into a 500.


async def lone_surrogate(request: Request) -> Response:
    # App code may compute a value from bad input: "\ud800" cannot be encoded.
    value = featureflag.intercept("asgi-lone", lambda: "bad \ud800 value")
    return PlainTextResponse(f"lp={landing()} lone={value.encode('utf-8', 'replace')!r}")


@pytest.mark.parametrize("report", ["always", "with-token"])
async def test_a_lone_surrogate_from_app_code_is_left_out_of_the_report(
    signer: OverrideSigner, report: str
) -> None:
    app = FeatureFlagMiddleware(
        Starlette(routes=[Route("/", lone_surrogate)]), signer=signer, report=report
    )
    token = signer.dumps({"asgi-lp": "b"}, sub="ana")
    async with client(app) as c:
        r = await c.get("/", headers={"Feature-Flag-Overrides": token})
    assert r.status_code == 200
    assert r.text.startswith("lp=b lone=")
    report_value = r.headers["feature-flags"]
    assert report_value.isascii()
    reported = parse_report(report_value)
    # The flag that cannot be written is counted as omitted, never half-written.
    assert reported == [Evaluation("asgi-lp", "b", "override")]
    assert reported.dropped == 1  # type: ignore[attr-defined]


async def test_a_signed_token_with_a_lone_surrogate_is_refused_not_a_500(
    signer: OverrideSigner,
) -> None:
    serializer = itsdangerous.URLSafeTimedSerializer(
        SECRET, salt="featureflag.overrides/test", serializer=json
    )
    base = {"v": 1, "env": "test", "sub": "ana", "origin": "extension", "exp": 4e9}
    token = serializer.dumps({**base, "flags": {"asgi-lp": "\ud800"}})
    async with client(create_app(signer=signer, report="always")) as c:
        r = await c.get("/", headers={"Feature-Flag-Overrides": token})
        ofrep = await c.post("/ofrep/v1/evaluate/flags", headers={"Feature-Flag-Overrides": token})
    assert r.status_code == 200
    assert r.text == "released=False lp=a token=False"
    assert r.headers["feature-flag-override-error"] == "invalid-override"
    assert ofrep.status_code == 200 and ofrep.json() == {"flags": []}


async def test_an_ofrep_key_with_a_lone_surrogate_is_answered(signer: OverrideSigner) -> None:
    # Servers decode the path; a lenient one (or an app mounting us) can hand a lone
    # surrogate to the single-flag endpoint, which echoes the key in its JSON.
    app = create_app(signer=signer)
    path = "/ofrep/v1/evaluate/flags/x\ud800"
    scope = {
        "type": "http",
        "method": "POST",
        "path": path,
        "raw_path": path.encode("utf-8", "surrogatepass"),
        "root_path": "",
        "query_string": b"",
        "headers": [],
    }
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Any) -> None:
        sent.append(message)

    await app(scope, receive, send)
    assert sent[0]["status"] == 404
    assert json.loads(sent[1]["body"])["key"] == "x\ud800"


# Issue 17, item 15: the middleware used to accept a token of any lifetime until the
# secret rotated. Now a token lives at most max_token_age (12 h) after it was signed.
DAY = 86400.0
TWELVE_HOURS = 12 * 3600.0


async def test_a_long_lived_token_stops_working_12_hours_after_signing(
    clock: Clock, signer: OverrideSigner
) -> None:
    token = signer.dumps(OVERRIDES, sub="ana", ttl=30 * DAY)  # a leaked month-long token
    app = create_app(signer=signer)
    async with client(app) as c:
        clock.now += TWELVE_HOURS - 1
        r = await c.get("/", headers={"Feature-Flag-Overrides": token})
        assert r.text == "released=True lp=b token=True"
        clock.now += 1
        r = await c.get("/", headers={"Feature-Flag-Overrides": token})
    assert r.text == "released=False lp=a token=False"
    assert r.headers["feature-flag-override-error"] == "expired"
    assert app.config is not None and app.config.max_token_age == TWELVE_HOURS
    # The signer the app was given keeps its own rules (and its own cache).
    assert signer.loads(token).flags == OVERRIDES


async def test_a_short_token_keeps_its_own_expiry(clock: Clock, signer: OverrideSigner) -> None:
    token = signer.dumps(OVERRIDES, sub="ana", ttl=60)
    async with client(create_app(signer=signer)) as c:
        clock.now += 60
        r = await c.get("/", headers={"Feature-Flag-Overrides": token})
    assert r.headers["feature-flag-override-error"] == "expired"


@pytest.mark.parametrize(
    ("option", "env", "lives"),
    [
        (60, None, 60.0),
        (None, "90", 90.0),
        (60, "90", 60.0),  # the argument wins over the environment
        (float("inf"), None, 30 * DAY),  # off: the token's own expiry only
    ],
)
async def test_max_token_age_from_the_argument_or_the_environment(
    clock: Clock,
    signer: OverrideSigner,
    monkeypatch: pytest.MonkeyPatch,
    option: float | None,
    env: str | None,
    lives: float,
) -> None:
    if env is not None:
        monkeypatch.setenv("FEATUREFLAG_MAX_TOKEN_AGE", env)
    token = signer.dumps(OVERRIDES, sub="ana", ttl=30 * DAY)
    async with client(create_app(signer=signer, max_token_age=option)) as c:
        clock.now += lives - 1
        alive = await c.get("/", headers={"Feature-Flag-Overrides": token})
        clock.now += 1
        dead = await c.get("/", headers={"Feature-Flag-Overrides": token})
    assert "feature-flag-override-error" not in alive.headers
    assert dead.headers["feature-flag-override-error"] == "expired"


async def test_a_signer_with_a_shorter_cap_keeps_it(clock: Clock) -> None:
    strict = OverrideSigner(SECRET, environment="test", clock=clock, max_age_cap=30)
    token = strict.dumps(OVERRIDES, sub="ana", ttl=3600)
    app = create_app(signer=strict)
    assert app.config is not None and app.config.signer is strict
    async with client(app) as c:
        clock.now += 30
        r = await c.get("/", headers={"Feature-Flag-Overrides": token})
    assert r.headers["feature-flag-override-error"] == "expired"


@pytest.mark.parametrize("value", [0, -1, float("nan"), "60", True])
def test_a_bad_max_token_age_fails_at_start_up(signer: OverrideSigner, value: Any) -> None:
    with pytest.raises(ConfigurationError, match="max_token_age"):
        create_app(signer=signer, max_token_age=value)


def test_a_bad_max_token_age_in_the_environment_fails_at_start_up(
    signer: OverrideSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEATUREFLAG_MAX_TOKEN_AGE", "12h")
    with pytest.raises(ConfigurationError, match="FEATUREFLAG_MAX_TOKEN_AGE='12h'"):
        create_app(signer=signer)
