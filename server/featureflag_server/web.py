"""The service's web page: log in with an API token, then list, create, edit and delete forks.

Server-rendered with Jinja2 (autoescaped), a little CSS and one small script (the copy
button and delete confirmation). The session is a signed cookie (starlette's
``SessionMiddleware``, itsdangerous) whose key is derived from ``FEATUREFLAG_SECRET``
with its own purpose, so it signs nothing else. It holds the user's name, a fingerprint
of their API token (removing the token from ``FEATUREFLAG_API_TOKENS`` ends the session)
and a CSRF token; never the API token itself. Every POST must carry the CSRF token in a
hidden field, and the cookie is ``SameSite=Lax``. See ``docs/server.md``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .api import Api, ApiError
from .auth import FailedLogins
from .errors import ForkExists, ForkNotFound, TooManyAttempts
from .schemas import MAX_FLAGS
from .settings import Settings
from .store import Fork, Store, utcnow
from .web_forms import ForkForm, catalog_rows, parse_fork_form

HERE = Path(__file__).parent
SESSION_COOKIE = "featureflag_session"
SESSION_MAX_AGE = 12 * 3600
CSRF_FIELD = "csrf_token"
_PURPOSE = b"featureflag.web-session/"

_SECURITY_HEADERS = [
    (b"content-security-policy", b"default-src 'self'; frame-ancestors 'none'; form-action 'self'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cache-control", b"no-store"),
]


def session_key(secret: str, environment: str) -> str:
    """The session-signing key: an HMAC of the first secret naming the web session purpose."""
    digest = hmac.new(secret.encode(), _PURPOSE + environment.encode(), hashlib.sha256)
    return digest.hexdigest()


def flag_value(value: object) -> str:
    """A flag value as JSON shows it (``true``, ``"b"``); the template escapes it."""
    return json.dumps(value, ensure_ascii=False)


def _fingerprint(key: str, api_token: str) -> str:
    return hmac.new(key.encode(), b"api-token:" + api_token.encode(), hashlib.sha256).hexdigest()


class _SecurityHeaders:
    """Pure ASGI: CSP, no framing, no caching of pages that show forks and the catalog."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                extra = [h for h in _SECURITY_HEADERS if h[0] not in names]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)


class WebPage:
    """The routes of the page; one instance per app, no per-request state."""

    def __init__(
        self, settings: Settings, store: Store, logins: FailedLogins | None = None
    ) -> None:
        self.settings = settings
        self.store = store
        self.logins = logins or FailedLogins()
        self.key = session_key(settings.signing_secret, settings.environment)
        # The API's own checks (catalog types, token size, fork-domain loops), so the
        # page accepts exactly what the API accepts.
        self.api = Api(settings, store, settings.signer(), self.logins)
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["flagvalue"] = flag_value
        self.templates = env

    # -- session helpers ------------------------------------------------------------
    def csrf(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return token

    def user(self, request: Request) -> str | None:
        name = request.session.get("user")
        fingerprint = request.session.get("fp")
        if not isinstance(name, str) or not isinstance(fingerprint, str):
            return None
        token = self.settings.api_tokens.get(name)
        if token is None or not hmac.compare_digest(
            _fingerprint(self.key, token.get_secret_value()), fingerprint
        ):
            request.session.pop("user", None)
            request.session.pop("fp", None)
            return None
        return name

    def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        flash = request.session.pop("flash", None)
        html = self.templates.get_template(template).render(
            csrf_field=CSRF_FIELD,
            csrf_token=self.csrf(request),
            user=self.user(request),
            flash=flash,
            **context,
        )
        return HTMLResponse(html, status_code=status)

    async def checked_form(
        self, request: Request, *, rows: int = 0
    ) -> Mapping[str, Any] | Response:
        """The POSTed form, or a 403 page when its CSRF token is missing or wrong.

        *rows*: flag rows the form may carry (a few fields each, past starlette's
        default limit of 1000 fields for a large catalog).
        """
        form = await request.form(max_fields=1000 + 5 * rows)
        sent = form.get(CSRF_FIELD)
        expected = request.session.get("csrf")
        if (
            not isinstance(sent, str)
            or not isinstance(expected, str)
            or not hmac.compare_digest(sent.encode(), expected.encode())
        ):
            return self.render(request, "forbidden.html", status=403)
        return form

    async def api_checks(self, fork_form: ForkForm, user: str) -> None:
        """Add the API's objections (the same rules as ``POST /api/forks``) to the form."""
        try:
            self.api.check_upstream(fork_form.upstream)
            await self.api.check_flags(fork_form.flags(), name=user)
        except ApiError as exc:
            for problem in exc.errors:
                fork_form.errors[problem["field"]] = problem["rule"]

    def fork_url(self, request: Request, name: str) -> str:
        return self.settings.fork_url(name, request.url.scheme, request.url.port)

    # -- routes ---------------------------------------------------------------------
    async def index(self, request: Request) -> Response:
        user = self.user(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        forks = await self.store.list_forks()
        catalog = await self.store.get_catalog()
        rows = [(fork, self.fork_url(request, fork.name)) for fork in forks]
        return self.render(request, "index.html", forks=rows, catalog=catalog_rows(catalog))

    async def login(self, request: Request) -> Response:
        if request.method == "GET":
            if self.user(request) is not None:
                return RedirectResponse("/", status_code=303)
            return self.render(request, "login.html", error=None)
        form = await self.checked_form(request)
        if isinstance(form, Response):
            return form
        client = request.client.host if request.client else ""
        given = form.get("api_token")
        try:
            name = self.logins.attempt(
                client, given if isinstance(given, str) else "", self.settings.authenticate
            )
        except TooManyAttempts as exc:
            page = self.render(request, "login.html", status=429, error=str(exc))
            page.headers["Retry-After"] = str(exc.retry_after)
            return page
        if name is None:
            error = "That API token is not known to this service; check FEATUREFLAG_API_TOKENS."
            return self.render(request, "login.html", status=401, error=error)
        # A fresh session (and CSRF token) at the change of privilege.
        request.session.clear()
        request.session["user"] = name
        token = self.settings.api_tokens[name].get_secret_value()
        request.session["fp"] = _fingerprint(self.key, token)
        request.session["csrf"] = secrets.token_urlsafe(32)
        return RedirectResponse("/", status_code=303)

    async def logout(self, request: Request) -> Response:
        form = await self.checked_form(request)
        if isinstance(form, Response):
            return form
        request.session.clear()
        request.session["flash"] = "Logged out."
        return RedirectResponse("/login", status_code=303)

    async def new_fork(self, request: Request) -> Response:
        user = self.user(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        catalog = await self.store.get_catalog()
        if request.method == "GET":
            fork_form = ForkForm.blank(catalog)
            return self.render(request, "fork_form.html", form=fork_form, editing=False)
        form = await self.checked_form(request, rows=len(catalog) + MAX_FLAGS)
        if isinstance(form, Response):
            return form
        fork_form = parse_fork_form(form, catalog, name=None)
        if not fork_form.errors:
            await self.api_checks(fork_form, user)
        if not fork_form.errors:
            fork = Fork(
                name=fork_form.name,
                upstream=fork_form.upstream,
                flags=fork_form.flags(),
                created_by=user,
            )
            try:
                await self.store.create_fork(fork)
            except ForkExists as exc:
                fork_form.errors["name"] = str(exc)
            else:
                request.session["flash"] = f"Created fork {fork.name!r}."
                return RedirectResponse("/", status_code=303)
        return self.render(request, "fork_form.html", status=422, form=fork_form, editing=False)

    async def edit_fork(self, request: Request) -> Response:
        user = self.user(request)
        if user is None:
            return RedirectResponse("/login", status_code=303)
        name = request.path_params["name"]
        fork = await self.store.get_fork(name)
        if fork is None:
            return self.render(request, "not_found.html", status=404, name=name)
        catalog = await self.store.get_catalog()
        if request.method == "GET":
            fork_form = ForkForm.from_fork(fork, catalog)
            return self.render(request, "fork_form.html", form=fork_form, editing=True)
        form = await self.checked_form(request, rows=len(catalog) + MAX_FLAGS)
        if isinstance(form, Response):
            return form
        fork_form = parse_fork_form(form, catalog, name=name)
        if not fork_form.errors:
            await self.api_checks(fork_form, user)
        if not fork_form.errors:
            updated = Fork(
                name=name,
                upstream=fork_form.upstream,
                flags=fork_form.flags(),
                created_by=fork.created_by,
                created_at=fork.created_at,
                updated_at=utcnow(),
            )
            try:
                await self.store.update_fork(updated)
            except ForkNotFound:
                return self.render(request, "not_found.html", status=404, name=name)
            request.session["flash"] = f"Saved fork {name!r}."
            return RedirectResponse("/", status_code=303)
        return self.render(request, "fork_form.html", status=422, form=fork_form, editing=True)

    async def delete_fork(self, request: Request) -> Response:
        form = await self.checked_form(request)
        if isinstance(form, Response):
            return form
        if self.user(request) is None:
            return RedirectResponse("/login", status_code=303)
        name = request.path_params["name"]
        if await self.store.delete_fork(name):
            request.session["flash"] = f"Deleted fork {name!r}."
        else:
            request.session["flash"] = f"There was no fork {name!r} to delete."
        return RedirectResponse("/", status_code=303)


def create_web_app(settings: Settings, store: Store, logins: FailedLogins | None = None) -> ASGIApp:
    """The web page as an ASGI app (``featureflag_server.app.create_app`` mounts it at ``/``);
    *logins* is shared with the API."""
    page = WebPage(settings, store, logins)
    routes = [
        Route("/", page.index, methods=["GET"]),
        Route("/login", page.login, methods=["GET", "POST"]),
        Route("/logout", page.logout, methods=["POST"]),
        Route("/forks/new", page.new_fork, methods=["GET", "POST"]),
        Route("/forks/{name}/edit", page.edit_fork, methods=["GET", "POST"]),
        Route("/forks/{name}/delete", page.delete_fork, methods=["POST"]),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(_SecurityHeaders),
        Middleware(
            SessionMiddleware,
            secret_key=page.key,
            session_cookie=SESSION_COOKIE,
            max_age=SESSION_MAX_AGE,
            same_site="lax",
            https_only=settings.secure_cookies,
        ),
    ]
    return Starlette(routes=routes, middleware=middleware)
