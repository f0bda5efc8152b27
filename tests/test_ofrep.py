"""The OFREP bulk evaluation endpoint of both middlewares, validated against the OFREP
OpenAPI schema (open-feature/protocol, service/openapi.yaml, written down below)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from flask import Flask
from openfeature import api
from openfeature.contrib.provider.ofrep import OFREPProvider
from openfeature.exception import ErrorCode

from featureflag import asgi, wsgi
from featureflag.ofrep import CORS_HINT, MAX_BODY
from featureflag.tokens import OverrideSigner
from tests.support.servers import run_uvicorn

SECRET = "ofrep-test-secret-" + "o" * 32
PATH = "/ofrep/v1/evaluate/flags"

# components/schemas of the OFREP OpenAPI document (open-feature/protocol
# service/openapi.yaml, version 0.1.0), as JSON Schema: the parts a bulk evaluation
# answer uses, names and nesting unchanged.
OFREP_SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$defs": {
        "bulkEvaluationSuccess": {
            "type": "object",
            "required": ["flags"],
            "properties": {
                "flags": {
                    "type": "array",
                    "items": {
                        "oneOf": [
                            {"$ref": "#/$defs/evaluationSuccess"},
                            {"$ref": "#/$defs/evaluationFailure"},
                        ]
                    },
                }
            },
        },
        "bulkEvaluationFailure": {
            "properties": {
                "errorCode": {"type": "string"},
                "errorDetails": {"type": "string"},
            },
            "required": ["errorCode"],
        },
        "evaluationSuccess": {
            "allOf": [
                {
                    "properties": {
                        "key": {"$ref": "#/$defs/key"},
                        "reason": {"type": "string"},
                        "variant": {"type": "string"},
                        "metadata": {
                            "type": "object",
                            "additionalProperties": {
                                "oneOf": [
                                    {"type": "boolean"},
                                    {"type": "string"},
                                    {"type": "number"},
                                ]
                            },
                        },
                    }
                },
                {
                    "oneOf": [
                        {"$ref": "#/$defs/booleanFlag"},
                        {"$ref": "#/$defs/stringFlag"},
                        {"$ref": "#/$defs/integerFlag"},
                        {"$ref": "#/$defs/floatFlag"},
                        {"$ref": "#/$defs/objectFlag"},
                    ]
                },
            ]
        },
        "evaluationFailure": {
            "properties": {
                "key": {"$ref": "#/$defs/key"},
                "errorCode": {
                    "type": "string",
                    "enum": ["PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL"],
                },
                "errorDetails": {"$ref": "#/$defs/errorDetails"},
            },
            "required": ["key", "errorCode"],
        },
        "flagNotFound": {
            "properties": {
                "key": {"$ref": "#/$defs/key"},
                "errorCode": {"type": "string", "enum": ["FLAG_NOT_FOUND"]},
                "errorDetails": {"$ref": "#/$defs/errorDetails"},
            },
            "required": ["key", "errorCode"],
        },
        "generalErrorResponse": {
            "properties": {"errorDetails": {"$ref": "#/$defs/errorDetails"}},
        },
        "key": {"type": "string"},
        "booleanFlag": {"properties": {"value": {"type": "boolean"}}, "required": ["value"]},
        "stringFlag": {"properties": {"value": {"type": "string"}}, "required": ["value"]},
        "integerFlag": {"properties": {"value": {"type": "integer"}}, "required": ["value"]},
        "floatFlag": {"properties": {"value": {"type": "number"}}, "required": ["value"]},
        "objectFlag": {"properties": {"value": {"type": "object"}}, "required": ["value"]},
        "errorDetails": {"type": "string"},
    },
}
SUCCESS_FIELDS = {"key", "value", "reason", "variant", "metadata"}
# The OFREP error-code words (https://openfeature.dev/specification/types#error-code).
ERROR_CODES = {"PARSE_ERROR", "TARGETING_KEY_MISSING", "INVALID_CONTEXT", "GENERAL"}


def validate(document: object, definition: str) -> None:
    schema = {**OFREP_SCHEMA, "$ref": f"#/$defs/{definition}"}
    jsonschema.Draft202012Validator(schema).validate(document)


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


Post = Callable[..., Answer]
signer = OverrideSigner(SECRET, environment="test")


def asgi_post(**options: Any) -> tuple[Post, list[str]]:
    app_calls: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        app_calls.append(scope["path"])
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b"app"})

    middleware = asgi.FeatureFlagMiddleware(app, signer=signer, **options)

    def post(
        body: bytes = b'{"context": {}}',
        headers: dict[str, str] | None = None,
        method: str = "POST",
        path: str = PATH,
        cookie: str | None = None,
    ) -> Answer:
        headers = dict(headers or {})
        if cookie is not None:
            headers["Cookie"] = f"featureflag_overrides={cookie}"
        transport = httpx.ASGITransport(middleware)

        async def go() -> httpx.Response:
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
                return await c.request(method, path, content=body, headers=headers)

        r = asyncio.run(go())
        return Answer(r.status_code, dict(r.headers), r.content)

    return post, app_calls


def wsgi_post(**options: Any) -> tuple[Post, list[str]]:
    app_calls: list[str] = []
    flask = Flask(__name__)

    @flask.route("/<path:rest>", methods=["GET", "POST"])
    def anything(rest: str) -> tuple[str, int]:
        app_calls.append("/" + rest)
        return "app", 404

    flask.wsgi_app = wsgi.FeatureFlagMiddleware(  # type: ignore[method-assign]
        flask.wsgi_app, signer=signer, **options
    )
    client = flask.test_client()

    def post(
        body: bytes = b'{"context": {}}',
        headers: dict[str, str] | None = None,
        method: str = "POST",
        path: str = PATH,
        cookie: str | None = None,
    ) -> Answer:
        # Werkzeug's client drops a Cookie header; its own jar sets the cookie.
        if cookie is None:
            client.delete_cookie("featureflag_overrides")
        else:
            client.set_cookie("featureflag_overrides", cookie)
        r = client.open(path, method=method, data=body, headers=headers or {})
        return Answer(r.status_code, dict(r.headers), r.data)

    return post, app_calls


@pytest.fixture(params=["asgi", "wsgi"])
def make(request: pytest.FixtureRequest) -> Callable[..., tuple[Post, list[str]]]:
    return asgi_post if request.param == "asgi" else wsgi_post  # type: ignore[return-value]


def test_without_a_token_the_flag_list_is_empty(make: Any) -> None:
    post, app_calls = make()
    r = post()
    assert r.status == 200
    assert r.json() == {"flags": []}
    validate(r.json(), "bulkEvaluationSuccess")
    assert r.headers["content-type"] == "application/json"
    assert r.headers["etag"].startswith('"')
    assert r.headers["vary"] == "Cookie, Feature-Flag-Overrides"
    assert app_calls == []  # the middleware answers; the app never sees the request


def test_the_verified_overrides_follow_the_schema(make: Any) -> None:
    post, _ = make()
    token = signer.dumps({"SomeNewFeature.is_released": True, "new-lp": "b"}, sub="ana")
    r = post(headers={"Feature-Flag-Overrides": token})
    assert r.status == 200
    document = r.json()
    validate(document, "bulkEvaluationSuccess")
    assert document == {
        "flags": [
            {
                "key": "SomeNewFeature.is_released",
                "value": True,
                "reason": "STATIC",
                "variant": "true",
                "metadata": {"source": "override"},
            },
            {
                "key": "new-lp",
                "value": "b",
                "reason": "STATIC",
                "variant": "b",
                "metadata": {"source": "override"},
            },
        ]
    }
    for flag in document["flags"]:
        assert set(flag) <= SUCCESS_FIELDS
        validate(flag, "evaluationSuccess")
    assert r.headers["cache-control"] == "private, no-store"


def test_cookie_token_works_too(make: Any) -> None:
    post, _ = make()
    token = signer.dumps({"new-lp": "c"}, sub="ana")
    r = post(cookie=token)
    assert [f["value"] for f in r.json()["flags"]] == ["c"]


def test_etag_and_304(make: Any) -> None:
    post, _ = make()
    token = signer.dumps({"new-lp": "b"}, sub="ana")
    first = post(headers={"Feature-Flag-Overrides": token})
    etag = first.headers["etag"]
    for if_none_match in (etag, f"W/{etag}", f'"other", {etag}', "*"):
        again = post(headers={"Feature-Flag-Overrides": token, "If-None-Match": if_none_match})
        assert again.status == 304, if_none_match
        assert again.body == b""
        assert again.headers["etag"] == etag
    changed = post(
        headers={
            "Feature-Flag-Overrides": signer.dumps({"new-lp": "c"}, sub="ana"),
            "If-None-Match": etag,
        }
    )
    assert changed.status == 200
    assert changed.headers["etag"] != etag
    assert post(headers={"If-None-Match": etag}).status == 200  # no token: other answer


@pytest.mark.parametrize(
    "body",
    [b"{", b"[]", b'"context"', b'{"context": 3}', b'{"context": []}', b"\xff\xfe"],
)
def test_a_bad_body_is_a_400_in_ofrep_shape(make: Any, body: bytes) -> None:
    post, _ = make()
    r = post(body=body)
    assert r.status == 400
    document = r.json()
    validate(document, "bulkEvaluationFailure")
    assert set(document) == {"errorCode", "errorDetails"}
    assert document["errorCode"] == "INVALID_CONTEXT"
    assert document["errorCode"] in ERROR_CODES
    assert document["errorDetails"]


def test_a_huge_body_is_refused(make: Any) -> None:
    post, _ = make()
    r = post(body=b'{"context": {"x": "' + b"a" * MAX_BODY + b'"}}')
    assert r.status == 400
    assert "larger than" in r.json()["errorDetails"]


def test_an_empty_body_is_a_request_without_context(make: Any) -> None:
    post, _ = make()
    assert post(body=b"").json() == {"flags": []}


def test_other_methods_get_405(make: Any) -> None:
    post, _ = make()
    r = post(method="GET", body=b"")
    assert r.status == 405
    assert r.headers["allow"] == "POST"
    validate(r.json(), "generalErrorResponse")


def test_a_refused_token_gets_no_flags_and_the_reason(make: Any) -> None:
    post, _ = make()
    wrong = OverrideSigner(SECRET, environment="production").dumps({"new-lp": "b"}, sub="x")
    r = post(headers={"Feature-Flag-Overrides": wrong})
    assert r.status == 200
    assert r.json() == {"flags": []}
    assert r.headers["feature-flag-override-error"] == "wrong-environment"
    assert "feature-flags" not in r.headers


def test_path_is_configurable_and_can_be_turned_off(make: Any) -> None:
    post, app_calls = make(ofrep_path="/flags")
    assert post(path="/flags").status == 200
    assert post().status == 404
    post, app_calls = make(ofrep_path=None)
    r = post()
    assert (r.status, r.body) == (404, b"app")
    assert app_calls == [PATH]


# The single-flag endpoint: POST <prefix>/{key}


def test_single_flag_answers_the_override(make: Any) -> None:
    post, app_calls = make()
    token = signer.dumps({"SomeNewFeature.is_released": True, "new-lp": "b"}, sub="ana")
    r = post(path=PATH + "/new-lp", headers={"Feature-Flag-Overrides": token})
    assert r.status == 200
    validate(r.json(), "evaluationSuccess")
    assert r.json() == {
        "key": "new-lp",
        "value": "b",
        "reason": "STATIC",
        "variant": "b",
        "metadata": {"source": "override"},
    }
    released = post(path=PATH + "/SomeNewFeature.is_released", cookie=token)
    assert (released.json()["value"], released.json()["variant"]) == (True, "true")
    assert r.headers["cache-control"] == "private, no-store"
    assert r.headers["vary"] == "Cookie, Feature-Flag-Overrides"
    assert "feature-flags" not in r.headers
    assert app_calls == []


def test_single_flag_not_overridden_is_flag_not_found(make: Any) -> None:
    post, _ = make()
    token = signer.dumps({"new-lp": "b"}, sub="ana")
    for headers in ({"Feature-Flag-Overrides": token}, {}):
        r = post(path=PATH + "/other-flag", headers=headers)
        assert r.status == 404
        validate(r.json(), "flagNotFound")
        assert r.json()["key"] == "other-flag"
        assert r.json()["errorCode"] == "FLAG_NOT_FOUND"
        assert "default" in r.json()["errorDetails"]


def test_single_flag_etag_and_304(make: Any) -> None:
    post, _ = make()
    token = {"Feature-Flag-Overrides": signer.dumps({"new-lp": "b"}, sub="ana")}
    first = post(path=PATH + "/new-lp", headers=token)
    etag = first.headers["etag"]
    again = post(path=PATH + "/new-lp", headers={**token, "If-None-Match": f"W/{etag}"})
    assert (again.status, again.body, again.headers["etag"]) == (304, b"", etag)
    other = signer.dumps({"new-lp": "c"}, sub="ana")
    changed = post(path=PATH + "/new-lp", headers={"Feature-Flag-Overrides": other,
                                                   "If-None-Match": etag})  # fmt: skip
    assert changed.status == 200
    assert changed.json()["value"] == "c"


def test_single_flag_errors(make: Any) -> None:
    post, _ = make()
    bad = post(path=PATH + "/new-lp", body=b'{"context": 3}')
    assert bad.status == 400
    validate(bad.json(), "evaluationFailure")
    assert bad.json()["key"] == "new-lp"
    assert post(path=PATH + "/new-lp", method="GET", body=b"").status == 405
    # A trailing slash names no flag: the app answers.
    assert post(path=PATH + "/").body == b"app"


def test_single_flag_keys_with_slashes_and_unicode(make: Any) -> None:
    post, _ = make()
    token = signer.dumps({"team/checkout": True, "caf\u00e9": "b"}, sub="ana")
    headers = {"Feature-Flag-Overrides": token}
    assert post(path=PATH + "/team/checkout", headers=headers).json()["value"] is True
    assert post(path=PATH + "/caf%C3%A9", headers=headers).json()["key"] == "caf\u00e9"


def test_a_cors_preflight_reaching_ofrep_names_the_fix(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    post, _ = make()
    r = post(
        method="OPTIONS",
        body=b"",
        headers={"Origin": "http://localhost:5173", "Access-Control-Request-Method": "POST"},
    )
    assert r.status == 405
    assert r.json()["errorDetails"] == CORS_HINT
    assert "outside FeatureFlagMiddleware" in caplog.text


def provider_app() -> asgi.FeatureFlagMiddleware:
    """For ``uvicorn --factory``: a Starlette app behind the middleware, secret from env."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def home(request: Any) -> PlainTextResponse:
        return PlainTextResponse("ok")

    return asgi.FeatureFlagMiddleware(Starlette(routes=[Route("/", home)]))


@pytest.mark.integration
def test_the_official_ofrep_provider_against_a_real_uvicorn_under_root_path(
    tmp_path: Path,
) -> None:
    # openfeature-provider-ofrep calls only the single-flag endpoint. uvicorn's
    # --root-path puts the prefix in scope["path"] too (as a proxy that strips it
    # would have us see): the endpoints must answer below it.
    env = {"FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_ENVIRONMENT": "test"}
    token = signer.dumps({"new-lp": "b", "SomeNewFeature.is_released": True}, sub="ana")
    with run_uvicorn(
        "tests.test_ofrep:provider_app",
        factory=True,
        env=env,
        log_dir=tmp_path,
        extra=["--root-path", "/api"],
    ) as server:
        with_token = OFREPProvider(
            server.url, headers_factory=lambda: {"Feature-Flag-Overrides": token}
        )
        api.set_provider(with_token, domain="with-token")
        api.set_provider(OFREPProvider(server.url), domain="without")
        try:
            client = api.get_client("with-token")
            details = client.get_string_details("new-lp", "a")
            assert (details.value, details.reason, details.variant) == ("b", "STATIC", "b")
            assert details.flag_metadata == {"source": "override"}
            assert client.get_boolean_value("SomeNewFeature.is_released", False) is True
            missing = client.get_string_details("not-overridden", "a")
            assert (missing.value, missing.error_code) == ("a", ErrorCode.FLAG_NOT_FOUND)
            anonymous = api.get_client("without").get_string_details("new-lp", "a")
            assert (anonymous.value, anonymous.error_code) == ("a", ErrorCode.FLAG_NOT_FOUND)
            bulk = httpx.post(server.url + PATH, json={}, headers={"Feature-Flag-Overrides": token})
            assert [f["key"] for f in bulk.json()["flags"]] == [
                "new-lp",
                "SomeNewFeature.is_released",
            ]
        finally:
            api.clear_providers()
