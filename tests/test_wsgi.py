"""featureflag.wsgi.FeatureFlagMiddleware with a real Flask app: through Flask's test
client, and once through a real werkzeug server process."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import itsdangerous
import pytest
from flask import Flask, Response, jsonify, stream_with_context
from flask.testing import FlaskClient

import featureflag
from featureflag import Evaluation
from featureflag._scope import current_scope
from featureflag.exceptions import ConfigurationError
from featureflag.report import parse_report
from featureflag.tokens import OverrideSigner
from featureflag.wsgi import FeatureFlagMiddleware, current_host, current_token
from tests.support.clock import Clock
from tests.support.servers import free_port, run_server

SECRET = "wsgi-test-secret-" + "w" * 32
OTHER_SECRET = "another-wsgi-secret-" + "q" * 32
OVERRIDES = {"WsgiDemo.is_released": True, "wsgi-lp": "b"}


@featureflag.trap(name="WsgiDemo")
class WsgiDemo:
    @staticmethod
    def is_released() -> bool:
        return False

    @staticmethod
    def checkout() -> str:
        return "classic"


def landing() -> str:
    return featureflag.intercept("wsgi-lp", lambda: "a")


def create_flask_app(**options: Any) -> Flask:
    app = Flask(__name__)

    @app.get("/")
    def home() -> Response:
        body = (
            f"released={WsgiDemo.is_released()} lp={landing()} token={current_token() is not None}"
        )
        return Response(body, headers={"Cache-Control": "public, max-age=60"})

    @app.get("/stream")
    def stream() -> Response:
        released = WsgiDemo.is_released()

        def body() -> Iterator[str]:
            yield f"released={released}\n"
            yield f"checkout={WsgiDemo.checkout()}\n"

        return Response(stream_with_context(body()))

    @app.get("/token")
    def token_info() -> Response:
        return jsonify(token=current_token(), host=current_host())

    @app.get("/boom")
    def boom() -> Response:
        WsgiDemo.is_released()
        raise RuntimeError("boom")

    app.wsgi_app = FeatureFlagMiddleware(app.wsgi_app, **options)  # type: ignore[method-assign]
    return app


def server_app() -> Flask:
    """For ``flask --app 'tests.test_wsgi:server_app()' run``: settings from the env."""
    return create_flask_app()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> OverrideSigner:
    return OverrideSigner(SECRET, environment="test", clock=clock)


def client(signer: OverrideSigner, **options: Any) -> FlaskClient:
    app = create_flask_app(signer=signer, **options)
    app.testing = True
    return app.test_client()


def test_no_token_runs_the_defaults_and_reports_nothing(signer: OverrideSigner) -> None:
    r = client(signer).get("/")
    assert r.text == "released=False lp=a token=False"
    assert "Feature-Flags" not in r.headers
    assert "Feature-Flag-Override-Error" not in r.headers
    assert r.headers["Cache-Control"] == "public, max-age=60"
    assert r.headers["Vary"] == "Cookie, Feature-Flag-Overrides"
    assert current_scope() is None


def test_token_in_header(signer: OverrideSigner) -> None:
    token = signer.dumps(OVERRIDES, sub="ana")
    r = client(signer).get("/", headers={"Feature-Flag-Overrides": token})
    assert r.text == "released=True lp=b token=True"
    assert parse_report(r.headers["Feature-Flags"]) == [
        Evaluation("WsgiDemo.is_released", True, "override"),
        Evaluation("wsgi-lp", "b", "override"),
    ]
    assert r.headers.getlist("Cache-Control") == ["private, no-store"]
    assert r.headers["Vary"] == "Cookie, Feature-Flag-Overrides"


def test_token_in_cookie_and_header_wins(signer: OverrideSigner) -> None:
    c = client(signer)
    c.set_cookie("featureflag_overrides", signer.dumps({"wsgi-lp": "from-cookie"}, sub="ana"))
    assert "lp=from-cookie" in c.get("/").text
    header = signer.dumps({"wsgi-lp": "from-header"}, sub="ana")
    assert "lp=from-header" in c.get("/", headers={"Feature-Flag-Overrides": header}).text


def test_an_empty_header_counts_as_absent(signer: OverrideSigner) -> None:
    c = client(signer)
    c.set_cookie("featureflag_overrides", signer.dumps({"wsgi-lp": "from-cookie"}, sub="ana"))
    assert "lp=from-cookie" in c.get("/", headers={"Feature-Flag-Overrides": ""}).text


def refused_tokens(clock: Clock) -> dict[str, str]:
    test = OverrideSigner(SECRET, environment="test", clock=clock)
    expired = test.dumps(OVERRIDES, sub="ana", ttl=10)
    clock.now += 11
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
        "invalid-override": raw.dumps({**base, "flags": {"WsgiDemo.is_released": 1}}),
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
def test_refused_token_runs_the_app_normally_and_says_why(
    reason: str, clock: Clock, signer: OverrideSigner
) -> None:
    token = refused_tokens(clock)[reason]
    r = client(signer).get("/", headers={"Feature-Flag-Overrides": token})
    assert r.status_code == 200
    assert r.text == "released=False lp=a token=False"
    assert r.headers["Feature-Flag-Override-Error"] == reason
    assert "Feature-Flags" not in r.headers


def test_rotation() -> None:
    old = OverrideSigner(OTHER_SECRET, environment="test").dumps(OVERRIDES, sub="ana")
    app = create_flask_app(secret=[SECRET, OTHER_SECRET], environment="test")
    r = app.test_client().get("/", headers={"Feature-Flag-Overrides": old})
    assert r.text == "released=True lp=b token=True"


def test_wrong_typed_override_is_rejected_with_a_readable_reason(
    signer: OverrideSigner,
) -> None:
    token = signer.dumps({"WsgiDemo.is_released": "yes"}, sub="ana")
    r = client(signer).get("/", headers={"Feature-Flag-Overrides": token})
    assert r.text == "released=False lp=a token=True"
    first = parse_report(r.headers["Feature-Flags"])[0]
    assert first.rejected is not None and "send true or false" in first.rejected


def test_without_a_token_the_callers_context_is_left_alone(signer: OverrideSigner) -> None:
    c = client(signer)
    with featureflag.overrides({"wsgi-lp": "from-test"}):
        assert c.get("/").text == "released=False lp=from-test token=False"
        token = signer.dumps({"WsgiDemo.is_released": True}, sub="ana")
        r = c.get("/", headers={"Feature-Flag-Overrides": token})
        assert r.text == "released=True lp=a token=True"


def test_report_always_and_never(signer: OverrideSigner) -> None:
    r = client(signer, report="always").get("/")
    assert [e.name for e in parse_report(r.headers["Feature-Flags"])] == [
        "WsgiDemo.is_released",
        "wsgi-lp",
    ]
    token = signer.dumps(OVERRIDES, sub="ana")
    r = client(signer, report="never").get("/", headers={"Feature-Flag-Overrides": token})
    assert "Feature-Flags" not in r.headers
    assert r.headers["Cache-Control"] == "private, no-store"


def test_streaming_body_keeps_its_overrides_and_late_flags_are_logged(
    signer: OverrideSigner, caplog: pytest.LogCaptureFixture
) -> None:
    token = signer.dumps({"WsgiDemo.is_released": True, "WsgiDemo.checkout": "new"}, sub="ana")
    with caplog.at_level(logging.WARNING, logger="featureflag"):
        r = client(signer).get("/stream", headers={"Feature-Flag-Overrides": token})
        assert r.text == "released=True\ncheckout=new\n"
        r.close()
    assert [e.name for e in parse_report(r.headers["Feature-Flags"])] == ["WsgiDemo.is_released"]
    [record] = [r for r in caplog.records if "after the Feature-Flags header" in r.message]
    assert "WsgiDemo.checkout" in record.message and "GET /stream" in record.message
    assert current_token() is None and current_scope() is None


def test_current_token_and_host(signer: OverrideSigner) -> None:
    token = signer.dumps(OVERRIDES, sub="ana")
    c = client(signer)
    assert c.get("/token", headers={"Feature-Flag-Overrides": token}).json == {
        "token": token,
        "host": "localhost",
    }
    assert c.get("/token").json == {"token": None, "host": None}


def test_state_is_reset_after_an_error(signer: OverrideSigner) -> None:
    token = signer.dumps(OVERRIDES, sub="ana")
    with pytest.raises(RuntimeError):
        client(signer).get("/boom", headers={"Feature-Flag-Overrides": token})
    assert current_token() is None and current_scope() is None


def test_configuration_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FEATUREFLAG_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="token_urlsafe"):
        create_flask_app()
    with pytest.raises(ConfigurationError, match="report="):
        create_flask_app(secret=SECRET, report="sometimes")


@pytest.mark.integration
def test_through_a_real_werkzeug_server(tmp_path: Path) -> None:
    env = {"FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_ENVIRONMENT": "qa"}
    signer = OverrideSigner(SECRET, environment="qa")
    port = free_port()
    argv = [sys.executable, "-m", "flask", "--app", "tests.test_wsgi:server_app()"]
    argv += ["run", "--host", "127.0.0.1", "--port", str(port), "--with-threads"]
    with run_server(argv, port=port, env=env, log_dir=tmp_path, name="flask") as s:

        def fetch(i: int) -> tuple[int, httpx.Response]:
            token = signer.dumps({"wsgi-lp": f"v{i}"}, sub=str(i))
            return i, httpx.get(s.url + "/", headers={"Feature-Flag-Overrides": token})

        with ThreadPoolExecutor(8) as pool:
            for i, r in pool.map(fetch, range(40)):
                assert r.text == f"released=False lp=v{i} token=True"
                assert parse_report(r.headers["feature-flags"])[1].value == f"v{i}"
        r = httpx.get(s.url + "/stream", cookies={"featureflag_overrides": "garbage"})
        assert r.headers["feature-flag-override-error"] == "malformed"
        assert r.text == "released=False\ncheckout=classic\n"


def test_a_long_lived_token_stops_working_12_hours_after_signing(
    clock: Clock, signer: OverrideSigner
) -> None:
    # Issue 17, item 15: a leaked month-long token used to work until the secret rotated.
    token = signer.dumps(OVERRIDES, sub="ana", ttl=30 * 86400)
    c = client(signer)
    clock.now += 12 * 3600 - 1
    assert c.get("/", headers={"Feature-Flag-Overrides": token}).text.startswith("released=True")
    clock.now += 1
    r = c.get("/", headers={"Feature-Flag-Overrides": token})
    assert r.text == "released=False lp=a token=False"
    assert r.headers["Feature-Flag-Override-Error"] == "expired"


def test_max_token_age_argument(clock: Clock, signer: OverrideSigner) -> None:
    token = signer.dumps(OVERRIDES, sub="ana", ttl=3600)
    c = client(signer, max_token_age=60)
    clock.now += 60
    r = c.get("/", headers={"Feature-Flag-Overrides": token})
    assert r.headers["Feature-Flag-Override-Error"] == "expired"
    with pytest.raises(ConfigurationError, match="max_token_age=0"):
        client(signer, max_token_age=0)


# Issue 17, item 2: a lone surrogate computed by app code never breaks the response.
def test_a_lone_surrogate_from_app_code_is_left_out_of_the_report(signer: OverrideSigner) -> None:
    app = Flask(__name__)

    @app.get("/")
    def home() -> Response:
        value = featureflag.intercept("wsgi-lone", lambda: "bad \udc00")
        return Response(f"lp={landing()} {len(value)}")

    app.wsgi_app = FeatureFlagMiddleware(app.wsgi_app, signer=signer)  # type: ignore[method-assign]
    token = signer.dumps({"wsgi-lp": "b"}, sub="ana")
    r = app.test_client().get("/", headers={"Feature-Flag-Overrides": token})
    assert r.status_code == 200 and r.text == "lp=b 5"
    reported = parse_report(r.headers["Feature-Flags"])
    assert reported == [Evaluation("wsgi-lp", "b", "override")]
    assert reported.dropped == 1  # type: ignore[attr-defined]
