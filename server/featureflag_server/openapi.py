"""The OpenAPI 3.1 document served at ``/openapi.json``.

Schemas come from the pydantic models in :mod:`featureflag_server.schemas`; the paths are
written out here, one entry per method of each endpoint in
:data:`featureflag_server.api.ROUTES` (a test checks they match).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from .forks import SERVICE_NAME
from .schemas import (
    Catalog,
    ForkCreate,
    ForkList,
    ForkOut,
    ForkUpdate,
    Health,
    Problem,
    TokenRequest,
    TokenResponse,
)

_MODELS: list[type[BaseModel]] = [
    Catalog,
    ForkCreate,
    ForkList,
    ForkOut,
    ForkUpdate,
    Health,
    Problem,
    TokenRequest,
    TokenResponse,
]
_REF = "#/components/schemas/{model}"


def _json(model: type[BaseModel]) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}}


def _ok(description: str, model: type[BaseModel] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if model is not None:
        response["content"] = _json(model)
    return response


def _problem(description: str) -> dict[str, Any]:
    return _ok(description, Problem)


def _op(
    summary: str,
    responses: dict[str, dict[str, Any]],
    *,
    body: type[BaseModel] | None = None,
    scope: str | None = None,
    name_param: bool = False,
    op_id: str,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "operationId": op_id, "responses": responses}
    if body is not None:
        op["requestBody"] = {"required": True, "content": _json(body)}
        responses.setdefault("400", _problem("The body is not JSON"))
        responses.setdefault("413", _problem("The body is too large"))
        responses.setdefault("422", _problem("A field breaks a rule (see errors)"))
    if scope is not None:
        op["security"] = [{"bearer": []}]
        op["description"] = f"Needs an API token with the `{scope}` scope."
        op["x-featureflag-scope"] = scope
        responses.setdefault("401", _problem("Missing or unknown API token"))
        responses.setdefault("403", _problem(f"The API token lacks the {scope} scope"))
        responses.setdefault(
            "429",
            _problem(
                "Too many unknown API tokens starting like this one from this address "
                "(see Retry-After)"
            ),
        )
    if name_param:
        op["parameters"] = [
            {"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}
        ]
    return op


@cache
def openapi_document(version: str = "0.1.0") -> dict[str, Any]:
    """The whole document (cached: it never changes while the process runs)."""
    _, defs = models_json_schema(
        [(m, "validation") for m in _MODELS if m not in (ForkOut, ForkList, TokenResponse)]
        + [(m, "serialization") for m in (ForkOut, ForkList, TokenResponse)],
        ref_template=_REF,
    )
    fork = "/api/forks/{name}"
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "featureflag override service",
            "version": version,
            "description": (
                "Mints override tokens, keeps the flag catalog and serves fork URLs. "
                "Every /api endpoint needs Authorization: Bearer <API token>, with a scope: "
                "read (reads), forks (fork and catalog writes), tokens (POST /api/tokens), "
                "gateway (GET /api/forward-auth)."
            ),
        },
        "components": {
            "schemas": defs.get("$defs", {}),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/healthz": {"get": _op("Liveness", {"200": _ok("OK", Health)}, op_id="health")},
            "/openapi.json": {
                "get": _op("This document", {"200": _ok("OpenAPI 3.1")}, op_id="openapi")
            },
            "/api/tokens": {
                "post": _op(
                    "Mint an override token for the caller",
                    {"201": _ok("Signed", TokenResponse)},
                    body=TokenRequest,
                    scope="tokens",
                    op_id="create_token",
                )
            },
            "/api/flags": {
                "get": _op(
                    "The flag catalog",
                    {"200": _ok("The catalog", Catalog)},
                    scope="read",
                    op_id="get_flags",
                ),
                "put": _op(
                    "Replace the flag catalog (python -m featureflag catalog --push)",
                    {
                        "200": _ok("The stored catalog", Catalog),
                        "409": _problem("A flag is in another service's catalog"),
                    },
                    body=Catalog,
                    scope="forks",
                    op_id="put_flags",
                )
                | {
                    "parameters": [
                        {
                            "name": "service",
                            "in": "query",
                            "required": False,
                            "description": "replace only this service's entries",
                            "schema": {"type": "string", "pattern": SERVICE_NAME.pattern},
                        }
                    ]
                },
            },
            "/api/forks": {
                "get": _op(
                    "Every fork", {"200": _ok("Forks", ForkList)}, scope="read", op_id="list_forks"
                ),
                "post": _op(
                    "Create a fork",
                    {
                        "201": _ok("Created", ForkOut),
                        "409": _problem("A fork with this name exists"),
                    },
                    body=ForkCreate,
                    scope="forks",
                    op_id="create_fork",
                ),
            },
            fork: {
                "get": _op(
                    "One fork",
                    {"200": _ok("The fork", ForkOut), "404": _problem("No such fork")},
                    scope="read",
                    name_param=True,
                    op_id="get_fork",
                ),
                "put": _op(
                    "Create or replace a fork (idempotent)",
                    {"200": _ok("Replaced", ForkOut), "201": _ok("Created", ForkOut)},
                    body=ForkUpdate,
                    scope="forks",
                    name_param=True,
                    op_id="put_fork",
                ),
                "delete": _op(
                    "Delete a fork",
                    {"204": _ok("Deleted"), "404": _problem("No such fork")},
                    scope="forks",
                    name_param=True,
                    op_id="delete_fork",
                ),
            },
        },
    }
