"""The JSON API under ``/api``: override tokens, the flag catalog and forks.

Reads are open; every write needs ``Authorization: Bearer <API token>``. Bad input is
always a 4xx with a :class:`featureflag_server.schemas.Problem` body naming the field and the rule.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from featureflag.exceptions import TokenError
from featureflag.tokens import OverrideSigner

from .auth import FailedLogins, bearer_token, challenge
from .errors import CatalogConflict, ForkExists, ForkNotFound, TooManyAttempts
from .schemas import Catalog, ForkCreate, ForkUpdate, TokenRequest
from .settings import Settings
from .store import FlagValue, Fork, Store, iso, utcnow

M = TypeVar("M", bound=BaseModel)
MAX_BODY = 4 * 1024 * 1024
DEFAULT_TTL = 3600.0


class ApiError(Exception):
    """Becomes a JSON :class:`~featureflag_server.schemas.Problem` response."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        errors: list[dict[str, str]] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.errors = errors or []
        self.headers = dict(headers or {})

    def response(self) -> JSONResponse:
        body = {"error": self.error, "message": self.message, "errors": self.errors}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SERVICE_RULE = "a service name is 1 to 64 letters, digits, '.', '_' or '-'"


def invalid(errors: list[dict[str, str]]) -> ApiError:
    """A 422 listing each field and the rule it broke."""
    summary = "; ".join(f"{e['field']}: {e['rule']}" for e in errors[:5])
    return ApiError(422, "invalid", f"The request is invalid: {summary}", errors=errors)


def validation_problems(exc: ValidationError) -> list[dict[str, str]]:
    """pydantic's errors as ``{"field", "rule"}`` pairs."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        field = ".".join(str(part) for part in error["loc"]) or "body"
        problems.append({"field": field, "rule": str(error["msg"]).removeprefix("Value error, ")})
    return problems


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
        return json.loads(body, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise ApiError(
            400, "malformed-json", f"The body is not valid JSON ({exc}); send a JSON object."
        ) from None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")


async def parse(request: Request, model: type[M]) -> M:
    """Read and validate the body as *model*."""
    data = await read_json(request)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid(validation_problems(exc)) from None


def catalog_problems(
    flags: Mapping[str, object], catalog: list[dict[str, Any]]
) -> list[dict[str, str]]:
    """Overrides whose value does not fit a known flag's type (unknown flags pass)."""
    known = {entry.get("name"): entry for entry in catalog}
    problems = []
    for name, value in flags.items():
        entry = known.get(name)
        if entry is None:
            continue
        kind, choices = entry.get("type"), entry.get("choices")
        rule = None
        if kind == "bool" and not isinstance(value, bool):
            rule = f"flag {name!r} is declared bool; send true or false"
        elif kind == "str" and not isinstance(value, str):
            rule = f"flag {name!r} is declared str; send a string"
        elif kind == "str" and choices is not None and value not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            rule = f"flag {name!r} accepts only {allowed}; send one of those"
        if rule is not None:
            problems.append({"field": f"flags.{name}", "rule": rule})
    return problems


class Api:
    """The route handlers; one instance per app, sharing the store and signer."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        signer: OverrideSigner,
        logins: FailedLogins | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.signer = signer
        self.logins = logins or FailedLogins()

    def user(self, request: Request) -> str:
        """The API token's name, or a 401 with a ``WWW-Authenticate`` challenge (a 429
        when this address sent too many unknown tokens)."""
        token = bearer_token(request.headers.get("authorization"))
        if token is None:
            raise ApiError(
                401,
                "unauthorized",
                "Send Authorization: Bearer <API token> (one of FEATUREFLAG_API_TOKENS).",
                headers={"WWW-Authenticate": challenge()},
            )
        client = request.client.host if request.client else ""
        try:
            name = self.logins.attempt(client, token, self.settings.authenticate)
        except TooManyAttempts as exc:
            headers = {"Retry-After": str(exc.retry_after)}
            raise ApiError(429, "too-many-attempts", str(exc), headers=headers) from None
        if name is None:
            raise ApiError(
                401,
                "unauthorized",
                "The API token is not one of FEATUREFLAG_API_TOKENS; check it.",
                headers={"WWW-Authenticate": challenge("invalid_token", "unknown API token")},
            )
        return name

    async def check_flags(self, flags: Mapping[str, FlagValue], *, name: str) -> None:
        """422 when a value does not fit the catalog, or the flags cannot make a token."""
        errors = catalog_problems(flags, await self.store.get_catalog())
        if errors:
            raise invalid(errors)
        try:
            self.signer.dumps(flags, sub=name, origin="check", ttl=60)
        except TokenError as exc:
            raise invalid([{"field": "flags", "rule": str(exc)}]) from None

    def check_upstream(self, upstream: str) -> None:
        """422 when *upstream* is itself a fork host: the proxy would loop forever."""
        host = (urlsplit(upstream).hostname or "").rstrip(".").lower()
        if host.endswith("." + self.settings.fork_domain):
            rule = (
                f"upstream {host!r} is under the fork domain "
                f"{self.settings.fork_domain!r}, so requests would loop through this "
                "service; point it at the app itself (e.g. http://127.0.0.1:5000)"
            )
            raise invalid([{"field": "upstream", "rule": rule}])

    def fork_json(self, request: Request, fork: Fork) -> dict[str, Any]:
        url = self.settings.fork_url(fork.name, request.url.scheme, request.url.port)
        return fork.to_json(url)

    # -- tokens --------------------------------------------------------------------

    async def create_token(self, request: Request) -> Response:
        sub = self.user(request)
        body = await parse(request, TokenRequest)
        await self.check_flags(body.flags, name=sub)
        ttl = min(body.ttl or DEFAULT_TTL, self.settings.max_token_ttl)
        token = self.signer.dumps(body.flags, sub=sub, origin=body.origin, ttl=ttl)
        expires = datetime.fromtimestamp(self.signer.loads(token).expires_at, UTC)
        return JSONResponse(
            {"token": token, "expires_at": iso(expires), "sub": sub},
            status_code=201,
            headers={"Cache-Control": "no-store"},
        )

    # -- catalog -------------------------------------------------------------------

    async def get_flags(self, request: Request) -> Response:
        return JSONResponse({"flags": await self.store.get_catalog()})

    async def put_flags(self, request: Request) -> Response:
        """Replace the catalog; with ``?service=NAME``, only that service's entries."""
        self.user(request)
        service = request.query_params.get("service")
        if service is not None and not SERVICE_NAME.fullmatch(service):
            raise invalid([{"field": "service", "rule": SERVICE_RULE}])
        body = await parse(request, Catalog)
        entries = []
        for entry in body.flags:
            stored = entry.model_dump(mode="json")
            if service is not None:
                stored["service"] = service
            elif stored.get("service") is None:
                del stored["service"]
            entries.append(stored)
        try:
            await self.store.put_catalog(entries, service=service)
        except CatalogConflict as exc:
            problem = {"field": "flags", "rule": str(exc)}
            raise ApiError(409, "exists", str(exc), errors=[problem]) from None
        return JSONResponse({"flags": await self.store.get_catalog()})

    # -- forks ---------------------------------------------------------------------

    async def list_forks(self, request: Request) -> Response:
        forks = await self.store.list_forks()
        return JSONResponse({"forks": [self.fork_json(request, f) for f in forks]})

    async def create_fork(self, request: Request) -> Response:
        user = self.user(request)
        body = await parse(request, ForkCreate)
        self.check_upstream(body.upstream)
        await self.check_flags(body.flags, name=user)
        now = utcnow()
        fork = Fork(body.name, body.upstream, dict(body.flags), user, now, now)
        try:
            fork = await self.store.create_fork(fork)
        except ForkExists as exc:
            rule = str(exc)
            raise ApiError(409, "exists", rule, errors=[{"field": "name", "rule": rule}]) from None
        return JSONResponse(
            self.fork_json(request, fork),
            status_code=201,
            headers={"Location": f"/api/forks/{fork.name}"},
        )

    async def get_fork(self, request: Request) -> Response:
        name = request.path_params["name"]
        fork = await self.store.get_fork(name)
        if fork is None:
            raise ApiError(404, "not-found", str(ForkNotFound(name)))
        return JSONResponse(self.fork_json(request, fork))

    async def update_fork(self, request: Request) -> Response:
        user = self.user(request)
        name = request.path_params["name"]
        body = await parse(request, ForkUpdate)
        if body.name is not None and body.name != name:
            rule = f"the body's name {body.name!r} differs from the URL's {name!r}; forks "
            raise invalid([{"field": "name", "rule": rule + "cannot be renamed"}])
        self.check_upstream(body.upstream)
        await self.check_flags(body.flags, name=user)
        now = utcnow()
        try:
            fork = await self.store.update_fork(
                Fork(name, body.upstream, dict(body.flags), user, now, now)
            )
        except ForkNotFound as exc:
            raise ApiError(404, "not-found", str(exc)) from None
        return JSONResponse(self.fork_json(request, fork))

    async def delete_fork(self, request: Request) -> Response:
        self.user(request)
        name = request.path_params["name"]
        if not await self.store.delete_fork(name):
            raise ApiError(404, "not-found", str(ForkNotFound(name)))
        return Response(status_code=204)


def _handle(
    fn: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            return await fn(request)
        except ApiError as exc:
            return exc.response()

    return endpoint


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    codes = {404: "not-found", 405: "method-not-allowed"}
    message = {
        404: f"No API endpoint at {request.url.path}; see /openapi.json.",
        405: f"{request.method} is not allowed on {request.url.path}; see /openapi.json.",
    }.get(exc.status_code, str(exc.detail))
    error = ApiError(exc.status_code, codes.get(exc.status_code, "error"), message)
    response = error.response()
    if exc.headers:
        response.headers.update(exc.headers)
    return response


ROUTES: list[tuple[str, str, str]] = [
    # (path under /api, method, Api method name): also read by server.openapi.
    ("/tokens", "POST", "create_token"),
    ("/flags", "GET", "get_flags"),
    ("/flags", "PUT", "put_flags"),
    ("/forks", "GET", "list_forks"),
    ("/forks", "POST", "create_fork"),
    ("/forks/{name}", "GET", "get_fork"),
    ("/forks/{name}", "PUT", "update_fork"),
    ("/forks/{name}", "DELETE", "delete_fork"),
]


def create_api(
    settings: Settings,
    store: Store,
    signer: OverrideSigner | None = None,
    logins: FailedLogins | None = None,
) -> Starlette:
    """The ``/api`` app (mount it at ``/api``); *logins* is shared with the web page."""
    api = Api(settings, store, signer or settings.signer(), logins)
    by_path: dict[str, dict[str, Callable[[Request], Awaitable[Response]]]] = {}
    for path, method, attr in ROUTES:
        by_path.setdefault(path, {})[method] = getattr(api, attr)
    # One Route per path, so a 405 lists every allowed method in its Allow header.
    routes = [
        Route(path, _handle(_by_method(handlers)), methods=list(handlers))
        for path, handlers in by_path.items()
    ]
    return Starlette(routes=routes, exception_handlers={HTTPException: _http_error})


def _by_method(
    handlers: dict[str, Callable[[Request], Awaitable[Response]]],
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        # Starlette answers HEAD wherever GET is allowed; the server drops the body.
        method = "GET" if request.method == "HEAD" else request.method
        return await handlers[method](request)

    return endpoint
