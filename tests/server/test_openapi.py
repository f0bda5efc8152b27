"""/openapi.json: an OpenAPI 3.1 document that covers every route the app serves."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import jsonschema
import pytest
from starlette.routing import Mount, Route

from featureflag_server.app import ServiceApp, create_app
from featureflag_server.memory_store import MemoryStore
from featureflag_server.settings import Settings

from .conftest import ALICE

METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


@pytest.fixture
async def document(settings: Settings) -> dict[str, Any]:
    app = create_app(settings, store=MemoryStore())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
    ) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    body: dict[str, Any] = response.json()
    return body


def served_routes(app: ServiceApp) -> set[tuple[str, str]]:
    """(path, method) for every JSON route the service answers (not the web page)."""
    assert app.service is not None
    found: set[tuple[str, str]] = set()

    def walk(routes: list[Any], prefix: str) -> Iterator[tuple[str, str]]:
        for route in routes:
            if isinstance(route, Mount) and route.path:  # "/" is the web page
                yield from walk(route.routes, prefix + route.path)
            elif isinstance(route, Route):
                for method in route.methods or ():
                    if method != "HEAD":
                        yield prefix + route.path, method.lower()

    found.update(walk(app.service.routes, ""))  # type: ignore[attr-defined]
    return found


def test_it_is_shaped_like_openapi_3_1(document: dict[str, Any]) -> None:
    assert document["openapi"].startswith("3.1.")
    assert document["info"]["title"] and document["info"]["version"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path, item in document["paths"].items():
        assert path.startswith("/")
        for method, op in item.items():
            assert method in METHODS
            assert op["responses"], (path, method)
            assert op["operationId"]
            for status in op["responses"]:
                assert status.isdigit() and len(status) == 3
            for param in op.get("parameters", []):
                assert param["in"] in ("path", "query")
                if param["in"] == "path":
                    assert "{" + param["name"] + "}" in path


def test_it_covers_every_route(document: dict[str, Any], settings: Settings) -> None:
    app = create_app(settings, store=MemoryStore())
    documented = {(path, method) for path, item in document["paths"].items() for method in item}
    served = served_routes(app)
    assert ("/api/forks/{name}", "delete") in served
    assert served == documented


def test_writes_declare_the_bearer_scheme_and_401(document: dict[str, Any]) -> None:
    for path, item in document["paths"].items():
        for method, op in item.items():
            if method in {"post", "put", "delete"}:
                assert op["security"] == [{"bearer": []}], (path, method)
                assert "401" in op["responses"]


def test_every_schema_is_valid_json_schema_and_every_ref_resolves(
    document: dict[str, Any],
) -> None:
    schemas = document["components"]["schemas"]
    for schema in schemas.values():
        jsonschema.Draft202012Validator.check_schema(schema)

    def refs(node: object) -> Iterator[str]:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "$ref":
                    yield value
                else:
                    yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = list(refs(document))
    assert found
    for ref in found:
        assert ref.startswith("#/components/schemas/")
        assert ref.removeprefix("#/components/schemas/") in schemas


async def test_real_responses_match_their_documented_schemas(
    document: dict[str, Any], settings: Settings
) -> None:
    registry_doc = {"components": document["components"]}

    def check(instance: object, name: str) -> None:
        schema = {"$ref": f"#/components/schemas/{name}", **registry_doc}
        jsonschema.validate(instance, schema, cls=jsonschema.Draft202012Validator)

    app = create_app(settings, store=MemoryStore())
    auth = {"Authorization": f"Bearer {ALICE}"}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
    ) as client:
        fork = {"name": "new-lp", "upstream": "http://h:1", "flags": {"a": True, "b": "x"}}
        check(fork, "ForkCreate")
        created = await client.post("/api/forks", json=fork, headers=auth)
        check(created.json(), "ForkOut")
        check((await client.get("/api/forks")).json(), "ForkList")
        token = await client.post("/api/tokens", json={"flags": {"a": True}}, headers=auth)
        check(token.json(), "TokenResponse")
        check((await client.post("/api/forks", json=fork, headers=auth)).json(), "Problem")
        check((await client.get("/healthz")).json(), "Health")
        catalog = {"flags": [{"name": "a", "type": "bool", "default": True}]}
        check(catalog, "Catalog")
        check((await client.put("/api/flags", json=catalog, headers=auth)).json(), "Catalog")
    with pytest.raises(jsonschema.ValidationError):
        check({"name": "new-lp", "upstream": "http://h:1", "flags": {"a": 1}}, "ForkCreate")
