"""The JSON API under ``/api``: override tokens, the flag catalog and forks.

A thin Starlette app over :mod:`featureflag_server.forks`: each path is an
``HTTPEndpoint``, and errors become :class:`featureflag_server.schemas.Problem` bodies
through the app's ``exception_handlers``. Every endpoint needs
``Authorization: Bearer <API token>`` with a scope (:data:`featureflag_server.settings.SCOPES`):
``read`` for reads, ``forks`` for fork and catalog writes, ``tokens`` to mint override
tokens; a token without it is a 403 naming the scope. Bad input is always a 4xx naming
the field and the rule (a lone surrogate in any string of a body too).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from featureflag.exceptions import TokenError
from featureflag.tokens import OverrideSigner

from .auth import FailedLogins, bearer_token, challenge
from .errors import (
    ApiError,
    CatalogConflict,
    FieldProblem,
    ForkExists,
    ForkNotFound,
    InvalidFork,
    TooManyAttempts,
)
from .forks import SERVICE_NAME, SERVICE_RULE, Forks, route_problems
from .schemas import Catalog, ForkCreate, ForkUpdate, TokenRequest
from .settings import ApiScope, Settings
from .store import Fork, Store, iso
from .text import may_hold_surrogate, scrub_json, surrogate_problems
from .upstream_policy import UpstreamPolicy

M = TypeVar("M", bound=BaseModel)
MAX_BODY = 4 * 1024 * 1024
DEFAULT_TTL = 3600.0


@dataclass(frozen=True, slots=True)
class ApiContext:
    """What every endpoint shares: kept in the API app's ``state.api``."""

    settings: Settings
    forks: Forks
    signer: OverrideSigner
    logins: FailedLogins

    @property
    def store(self) -> Store:
        return self.forks.store

    def user(self, request: Request, scope: ApiScope) -> str:
        """The API token's name, or a 401 with a ``WWW-Authenticate`` challenge (a 429
        when this address sent too many unknown tokens like it); a 403 when the token
        lacks *scope*."""
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise ApiError(
                401,
                "unauthorized",
                "Send Authorization: Bearer <API token> (one of FEATUREFLAG_API_TOKENS).",
                headers={"WWW-Authenticate": challenge()},
            )
        client = request.client.host if request.client else ""
        name = self.logins.attempt(client, token, self.settings.authenticate)
        if name is None:
            raise ApiError(
                401,
                "unauthorized",
                "The API token is not one of FEATUREFLAG_API_TOKENS; check it.",
                headers={"WWW-Authenticate": challenge("invalid_token", "unknown API token")},
            )
        if scope not in self.settings.scopes(name):
            raise ApiError(403, "insufficient-scope", scope_message(name, scope))
        return name

    def fork_json(self, request: Request, fork: Fork) -> dict[str, Any]:
        url = self.settings.fork_url(fork.name, request.url.scheme, request.url.port)
        return fork.to_json(url)


class TextSafeJSONResponse(JSONResponse):
    """A JSON response that survives a lone surrogate stored before they were refused
    (shown as U+FFFD) instead of failing with a 500; no cost when there is none."""

    def render(self, content: Any) -> bytes:
        try:
            return super().render(content)
        except UnicodeEncodeError:
            return super().render(scrub_json(content))


def scope_message(name: str, scope: str) -> str:
    """Why the API token *name* is refused here: it lacks *scope*."""
    return (
        f"The API token {name!r} lacks the {scope!r} scope; use a token that has it, or "
        f"add it in FEATUREFLAG_API_TOKENS ({name}:<token>:...+{scope}, or no scopes for all)."
    )


def context(request: Request) -> ApiContext:
    """The API's shared context (Starlette sets ``scope["app"]`` to the API app)."""
    api: ApiContext = request.app.state.api
    return api


async def read_json(request: Request) -> Any:
    """The request body as JSON; 413 past MAX_BODY, 400 when it is not JSON."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(413, "too-large", f"The body is over {MAX_BODY} bytes.")
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body.strip():
        raise ApiError(400, "malformed-json", "The body is empty; send a JSON object.")
    try:
        value = json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(
            400, "malformed-json", f"The body is not valid JSON ({exc}); send a JSON object."
        ) from None
    # "\ud800" is valid JSON but no text: refused here, before any rule or store sees it.
    if may_hold_surrogate(body) and (problems := surrogate_problems(value)):
        raise InvalidFork(problems)
    return value


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def parse(request: Request, model: type[M]) -> M:
    """Read and validate the body as *model* (a ValidationError becomes a 422)."""
    return model.model_validate(await read_json(request))


# -- endpoints ---------------------------------------------------------------------


class Tokens(HTTPEndpoint):
    """``/api/tokens``."""

    async def post(self, request: Request) -> Response:
        """Mint an override token for the caller."""
        api = context(request)
        sub = api.user(request, "tokens")
        body = await parse(request, TokenRequest)
        ttl = min(body.ttl or DEFAULT_TTL, api.settings.max_token_ttl)
        flags = await api.forks.check_flags(body.flags, sub=sub, origin=body.origin, ttl=ttl)
        routes = body.routes or {}
        if problems := route_problems(routes):
            raise InvalidFork(problems)
        try:
            token, expires_at = api.signer.dumps_with_expiry(
                flags, sub=sub, origin=body.origin, ttl=ttl, routes=routes or None
            )
        except TokenError as exc:  # e.g. a few bytes more than check() saw a moment ago
            raise InvalidFork([FieldProblem("flags", str(exc))]) from None
        return JSONResponse(
            {"token": token, "expires_at": iso_epoch(expires_at), "sub": sub},
            status_code=201,
            headers={"Cache-Control": "no-store"},
        )


def iso_epoch(seconds: float) -> str:
    """Epoch seconds as ISO 8601 UTC with a ``Z``."""
    return iso(datetime.fromtimestamp(seconds, UTC))


class Flags(HTTPEndpoint):
    """``/api/flags``: the flag catalog."""

    async def get(self, request: Request) -> Response:
        """The catalog."""
        api = context(request)
        api.user(request, "read")
        return TextSafeJSONResponse({"flags": await api.store.get_catalog()})

    async def put(self, request: Request) -> Response:
        """Replace the catalog; with ``?service=NAME``, only that service's entries."""
        api = context(request)
        api.user(request, "forks")
        service = request.query_params.get("service")
        if service is not None and not SERVICE_NAME.fullmatch(service):
            raise InvalidFork([FieldProblem("service", SERVICE_RULE)])
        body = await parse(request, Catalog)
        entries = []
        for entry in body.flags:
            stored = entry.model_dump(mode="json")
            if service is not None:
                stored["service"] = service
            elif stored.get("service") is None:
                del stored["service"]
            entries.append(stored)
        await api.store.put_catalog(entries, service=service)
        return TextSafeJSONResponse({"flags": await api.store.get_catalog()})


class ForkCollection(HTTPEndpoint):
    """``/api/forks``."""

    async def get(self, request: Request) -> Response:
        """Every fork."""
        api = context(request)
        api.user(request, "read")
        forks = await api.forks.all()
        return TextSafeJSONResponse({"forks": [api.fork_json(request, f) for f in forks]})

    async def post(self, request: Request) -> Response:
        """Create a fork (409 when the name is taken)."""
        api = context(request)
        user = api.user(request, "forks")
        body = await parse(request, ForkCreate)
        fork = await api.forks.create(body.name, body.spec(), user=user)
        return JSONResponse(
            api.fork_json(request, fork),
            status_code=201,
            headers={"Location": f"/api/forks/{fork.name}"},
        )


class ForkResource(HTTPEndpoint):
    """``/api/forks/{name}``."""

    async def get(self, request: Request) -> Response:
        """One fork."""
        api = context(request)
        api.user(request, "read")
        fork = await api.forks.get(request.path_params["name"])
        return TextSafeJSONResponse(api.fork_json(request, fork))

    async def put(self, request: Request) -> Response:
        """Create or replace the fork: 201 when new, 200 when replaced."""
        api = context(request)
        user = api.user(request, "forks")
        name = request.path_params["name"]
        body = await parse(request, ForkUpdate)
        if body.name is not None and body.name != name:
            rule = f"the body's name {body.name!r:.70} differs from the URL's {name!r}; "
            raise InvalidFork([FieldProblem("name", rule + "forks cannot be renamed")])
        fork, created = await api.forks.replace(name, body.spec(), user=user)
        headers = {"Location": f"/api/forks/{fork.name}"} if created else None
        return JSONResponse(
            api.fork_json(request, fork), status_code=201 if created else 200, headers=headers
        )

    async def delete(self, request: Request) -> Response:
        """Delete the fork."""
        api = context(request)
        user = api.user(request, "forks")
        await api.forks.delete(request.path_params["name"], user=user)
        return Response(status_code=204)


ROUTES: list[Route] = [
    Route("/tokens", Tokens),
    Route("/flags", Flags),
    Route("/forks", ForkCollection),
    Route("/forks/{name}", ForkResource),
]


# -- errors as responses -----------------------------------------------------------


def problem(
    status: int,
    error: str,
    message: str,
    problems: list[FieldProblem] | None = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """A :class:`~featureflag_server.schemas.Problem` response."""
    body = {"error": error, "message": message, "errors": [p.to_json() for p in problems or []]}
    return JSONResponse(body, status_code=status, headers=headers)


def validation_problems(exc: ValidationError) -> list[FieldProblem]:
    """pydantic's errors as field problems."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append(FieldProblem(field, str(error["msg"]).removeprefix("Value error, ")))
    return problems


async def _api_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, ApiError):  # pragma: no cover - registered for ApiError only
        raise exc
    return problem(exc.status, exc.error, exc.message, exc.problems, exc.headers)


async def _invalid(request: Request, exc: Exception) -> Response:
    if isinstance(exc, ValidationError):
        exc = InvalidFork(validation_problems(exc))
    if not isinstance(exc, InvalidFork):  # pragma: no cover
        raise exc
    return problem(422, "invalid", str(exc), exc.problems)


async def _conflict(request: Request, exc: Exception) -> Response:
    field = "name" if isinstance(exc, ForkExists) else "flags"
    return problem(409, "exists", str(exc), [FieldProblem(field, str(exc))])


async def _not_found(request: Request, exc: Exception) -> Response:
    return problem(404, "not-found", str(exc))


async def _too_many(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, TooManyAttempts):  # pragma: no cover
        raise exc
    headers = {"Retry-After": str(exc.retry_after)}
    return problem(429, "too-many-attempts", str(exc), headers=headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # pragma: no cover
        raise exc
    codes = {404: "not-found", 405: "method-not-allowed"}
    message = {
        404: f"No API endpoint at {request.url.path}; see /openapi.json.",
        405: f"{request.method} is not allowed on {request.url.path}; see /openapi.json.",
    }.get(exc.status_code, str(exc.detail))
    return problem(
        exc.status_code, codes.get(exc.status_code, "error"), message, headers=exc.headers
    )


EXCEPTION_HANDLERS = {
    ApiError: _api_error,
    InvalidFork: _invalid,
    ValidationError: _invalid,
    ForkExists: _conflict,
    CatalogConflict: _conflict,
    ForkNotFound: _not_found,
    TooManyAttempts: _too_many,
    HTTPException: _http_error,
}


def create_api(
    settings: Settings,
    store: Store,
    signer: OverrideSigner | None = None,
    logins: FailedLogins | None = None,
    policy: UpstreamPolicy | None = None,
) -> Starlette:
    """The ``/api`` app (mount it at ``/api``); *logins* is shared with the web page, and
    *policy* (default: the settings') with the rest of the service."""
    signer = signer or settings.signer()
    policy = policy or settings.upstream_policy()
    forks = Forks(store, signer, fork_domain=settings.fork_domain, policy=policy)
    app = Starlette(routes=ROUTES, exception_handlers=EXCEPTION_HANDLERS)
    app.state.api = ApiContext(settings, forks, signer, logins or FailedLogins())
    return app
