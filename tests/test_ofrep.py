"""The OFREP bulk evaluation endpoint of both middlewares, validated against the OFREP
OpenAPI schema (open-feature/protocol, service/openapi.yaml, written down below)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx
import jsonschema
import pytest
from flask import Flask

from featureflag import asgi, wsgi
from featureflag.ofrep import MAX_BODY
from featureflag.tokens import OverrideSigner

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
