"""The service's web page: log in with an API token, then list, create, edit and delete forks.

Server-rendered with Jinja2 (autoescaped), a little CSS and one small script (the copy
button and delete confirmation). The session is a signed cookie (starlette's
``SessionMiddleware``, itsdangerous) whose key is derived from ``FEATUREFLAG_SECRET``
with its own purpose, so it signs nothing else. It holds the user's name, a fingerprint
of their API token (removing the token from ``FEATUREFLAG_API_TOKENS`` ends the session),
a session id (logging out revokes it in the store, so a copy of the cookie is signed out
on every replica too) and a CSRF token; never the API token itself. With
``--secure-cookies`` the cookie is ``__Host-featureflag_session`` (Secure, Path=/, no
Domain: no subdomain, such as a fork, can set it). Every POST must be an urlencoded form
of bounded size carrying the CSRF token in a hidden field; nothing else is read. The
cookie is ``SameSite=Lax``. Logging in needs the token's ``read`` scope, changing forks
its ``forks`` scope. See ``docs/server.md``.

A thin Starlette app over :mod:`featureflag_server.forks` (the API's rules, without
importing the API): one ``HTTPEndpoint`` per page, and the app's ``exception_handlers``
turn a login redirect, a refused CSRF token and a missing fork into responses.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote_to_bytes, urlencode

import jinja2
from starlette.applications import Starlette
from starlette.datastructures import FormData, UploadFile
from starlette.endpoints import HTTPEndpoint
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from featureflag.tokens import MAX_FLAGS, OverrideSigner

from .auth import FailedLogins
from .errors import ForkExists, ForkNotFound, InvalidFork, TooManyAttempts
from .forks import Forks
from .settings import ApiScope, Settings
from .store import Fork, Store, utcnow
from .text import has_surrogate, scrub
from .upstream_policy import UpstreamPolicy
from .web_forms import TYPE_LABELS, TYPE_OPTIONS, ForkForm, catalog_rows, parse_fork_form
from .web_links import form_from_link

HERE = Path(__file__).parent
SESSION_COOKIE = "featureflag_session"
# With --secure-cookies: the __Host- prefix makes browsers refuse it unless it is Secure,
# Path=/ and has no Domain, so a fork's upstream (a subdomain) cannot plant one.
SECURE_SESSION_COOKIE = "__Host-" + SESSION_COOKIE
SESSION_MAX_AGE = 12 * 3600
CSRF_FIELD = "csrf_token"
# A POSTed form: urlencoded only (the page never uploads files), at most FORM_LIMIT
# bytes (login, logout, delete), plus FORM_ROW_BYTES per flag row for the fork form.
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"
FORM_LIMIT = 64 * 1024
FORM_ROW_BYTES = 1024
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


def flag_type(value: object) -> str:
    """A stored flag value's type in words (``boolean``, ``string``)."""
    return TYPE_LABELS["bool" if isinstance(value, bool) else "str"]


def local_path(target: object) -> str | None:
    """*target* when it is a path on this site (``/forks/new?...``), else None: where
    the login form may send the user back to, never another site (no ``//host``, no
    backslash, which some browsers read as a slash, no control characters)."""
    if not isinstance(target, str) or not target.startswith("/") or len(target) > 8192:
        return None
    if target.startswith("//") or "\\" in target:
        return None
    if any(ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0 for c in target):
        return None
    return target


def _fingerprint(key: str, api_token: str) -> str:
    return hmac.new(key.encode(), b"api-token:" + api_token.encode(), hashlib.sha256).hexdigest()


async def read_form(request: Request, limit: int, *, max_fields: int = 1000) -> FormData:
    """The POSTed urlencoded form, read into memory only: a 415 for any other content
    type (multipart is never parsed, so never spooled), a 413 past *limit* bytes (by
    ``Content-Length`` before reading anything, and while reading)."""
    content_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if content_type != FORM_CONTENT_TYPE:
        raise HTTPException(415, f"Send the form as {FORM_CONTENT_TYPE}.")
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > limit):
        raise HTTPException(413, f"The form is over {limit} bytes.")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise HTTPException(413, f"The form is over {limit} bytes.")
    pairs: list[tuple[str, str | UploadFile]] = []
    for part in bytes(body).split(b"&"):
        if not part:
            continue
        if len(pairs) >= max_fields:
            raise HTTPException(413, f"The form has more than {max_fields} fields.")
        key, _, value = part.partition(b"=")
        # Bytes that are not UTF-8 become lone surrogates, refused by checked_form.
        pairs.append((_form_text(key), _form_text(value)))
    return FormData(pairs)


def _form_text(raw: bytes) -> str:
    return unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "surrogateescape")


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


class _FirstCookieWins:
    """Pure ASGI: of several ``name`` cookies, keep the first, as the SDK does for its
    token cookie (docs/security.md, duplicate cookies). Starlette's cookie parsing keeps
    the last one, which a cookie planted for a parent domain would be."""

    def __init__(self, app: ASGIApp, name: str) -> None:
        self.app = app
        self.name = name.encode("latin-1")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            prefix = self.name + b"="
            cookies = [v for k, v in scope["headers"] if k == b"cookie"]
            if sum(v.count(prefix) for v in cookies) > 1:
                scope = dict(scope)
                scope["headers"] = _first_cookie_only(scope["headers"], prefix)
        await self.app(scope, receive, send)


def _first_cookie_only(
    headers: list[tuple[bytes, bytes]], prefix: bytes
) -> list[tuple[bytes, bytes]]:
    seen = False
    out = []
    for key, value in headers:
        if key == b"cookie":
            kept = []
            for pair in value.split(b";"):
                if pair.strip().startswith(prefix):
                    if seen:
                        continue
                    seen = True
                kept.append(pair.strip())
            value = b"; ".join(kept)
        out.append((key, value))
    return out


class WebPage:
    """What every page shares (kept in the web app's ``state.page``); no per-request state."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        logins: FailedLogins | None = None,
        signer: OverrideSigner | None = None,
        policy: UpstreamPolicy | None = None,
    ) -> None:
        policy = policy or settings.upstream_policy()
        self.settings = settings
        self.store = store
        self.logins = logins or FailedLogins()
        self.cookie = SECURE_SESSION_COOKIE if settings.secure_cookies else SESSION_COOKIE
        self.key = session_key(settings.signing_secret, settings.environment)
        # The same forks layer as the API: the page accepts exactly what the API accepts.
        self.forks = Forks(
            store, signer or settings.signer(), fork_domain=settings.fork_domain, policy=policy
        )
        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(HERE / "templates"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,
        )
        env.filters["flagvalue"] = flag_value
        env.filters["flagtype"] = flag_type
        env.globals["type_options"] = TYPE_OPTIONS
        env.globals["type_labels"] = TYPE_LABELS
        self.templates = env

    # -- session helpers ------------------------------------------------------------
    def csrf(self, request: Request) -> str:
        token = request.session.get("csrf")
        if not isinstance(token, str):
            token = secrets.token_urlsafe(32)
            request.session["csrf"] = token
        return token

    async def user(self, request: Request) -> str | None:
        """The signed-in user: a session whose token is still configured with the
        ``read`` scope and whose id was not revoked by logging out (asked once per request)."""
        if hasattr(request.state, "user"):
            known: str | None = request.state.user
            return known
        name = await self._session_user(request)
        if name is None:
            for key in ("user", "fp", "sid"):
                request.session.pop(key, None)
        request.state.user = name
        return name

    async def _session_user(self, request: Request) -> str | None:
        name = request.session.get("user")
        fingerprint = request.session.get("fp")
        sid = request.session.get("sid")
        if not isinstance(name, str) or not isinstance(fingerprint, str):
            return None
        if not isinstance(sid, str):
            return None  # a cookie from before sessions had ids: log in again
        token = self.settings.api_tokens.get(name)
        if token is None or not hmac.compare_digest(
            _fingerprint(self.key, token.get_secret_value()), fingerprint
        ):
            return None
        if "read" not in self.settings.scopes(name):
            return None
        if await self.store.is_session_revoked(sid):
            return None
        return name

    async def required_user(self, request: Request, scope: ApiScope = "read") -> str:
        """The logged-in user; otherwise a redirect to the login form (a 303 exception),
        or a 403 when the user's token lacks *scope*."""
        user = await self.user(request)
        if user is None:
            # Back to this page after logging in (a GET of a page other than "/": a
            # prefilled /forks/new link keeps its flags through the login form).
            location = "/login"
            if request.method == "GET" and request.url.path != "/":
                target = request.url.path
                if request.url.query:
                    target += "?" + request.url.query
                location += "?" + urlencode({"next": target})
            raise HTTPException(303, headers={"Location": location})
        if scope not in self.settings.scopes(user):
            raise HTTPException(
                403,
                f"Your API token ({user}) lacks the {scope!r} scope, so it cannot change "
                f"forks; log in with a token that has it.",
            )
        return user

    async def render(
        self, request: Request, template: str, status: int = 200, **context: Any
    ) -> HTMLResponse:
        flash = request.session.pop("flash", None)
        user = await self.user(request)
        html = self.templates.get_template(template).render(
            csrf_field=CSRF_FIELD,
            csrf_token=self.csrf(request),
            user=user,
            # (the page offers to change forks only to a token with the forks scope)
            can_change=user is not None and "forks" in self.settings.scopes(user),
            flash=flash,
            now=utcnow(),
            **context,
        )
        try:
            body = html.encode("utf-8")
        except UnicodeEncodeError:
            # Text stored before lone surrogates were refused: U+FFFD, not a 500 page.
            body = scrub(html).encode("utf-8")
        return HTMLResponse(body, status_code=status)

    async def catalog(self) -> list[dict[str, Any]]:
        """The flag catalog, as pages show it (the page scrubs what cannot be encoded)."""
        return await self.store.get_catalog()

    async def checked_form(self, request: Request, *, rows: int = 0) -> Mapping[str, Any]:
        """The POSTed form; a 403 (exception) when its CSRF token is missing or wrong,
        and a 422 naming a field that is not valid UTF-8 text.

        The body is an urlencoded form of at most :data:`FORM_LIMIT` bytes (plus
        :data:`FORM_ROW_BYTES` per flag row the form may carry: *rows*), read into
        memory; see :func:`read_form`.
        """
        limit = FORM_LIMIT + FORM_ROW_BYTES * rows
        form = await read_form(request, limit, max_fields=1000 + 5 * rows)
        sent = form.get(CSRF_FIELD)
        expected = request.session.get("csrf")
        if (
            not isinstance(sent, str)
            or not isinstance(expected, str)
            or has_surrogate(sent)
            or not hmac.compare_digest(sent.encode(), expected.encode())
        ):
            raise HTTPException(403)
        for key, value in form.multi_items():
            if has_surrogate(key) or (isinstance(value, str) and has_surrogate(value)):
                field = scrub(key)
                raise HTTPException(
                    422,
                    f"The field {field!r} is not valid UTF-8 text (it has a lone "
                    "surrogate or a broken byte sequence); send valid Unicode.",
                )
        return form

    def fork_url(self, request: Request, name: str) -> str:
        return self.settings.fork_url(name, request.url.scheme, request.url.port)

    async def save(
        self, request: Request, fork_form: ForkForm, user: str, existing: Fork | None
    ) -> Response:
        """Create (*existing* None) or replace a fork from the form; on any problem, the
        form again with every reason, and nothing stored."""
        spec = fork_form.spec(existing.routes if existing else None)
        try:
            await self.forks.build(fork_form.name, spec, user=user)
        except InvalidFork as exc:
            for problem in exc.problems:
                fork_form.add_problem(problem.field, problem.rule)
        if not fork_form.errors:
            try:
                if existing is None:
                    await self.forks.create(fork_form.name, spec, user=user)
                else:
                    await self.forks.update(fork_form.name, spec, user=user)
            except ForkExists as exc:
                fork_form.errors["name"] = str(exc)
            except InvalidFork as exc:  # the catalog changed in between
                for problem in exc.problems:
                    fork_form.add_problem(problem.field, problem.rule)
            else:
                verb = "Created" if existing is None else "Saved"
                request.session["flash"] = f"{verb} fork {fork_form.name!r}."
                return RedirectResponse("/", status_code=303)
        editing = existing is not None
        return await self.render(
            request, "fork_form.html", status=422, form=fork_form, editing=editing
        )


def page_of(request: Request) -> WebPage:
    """The page's shared state (Starlette sets ``scope["app"]`` to the web app)."""
    page: WebPage = request.app.state.page
    return page


# -- routes -------------------------------------------------------------------------


class Index(HTTPEndpoint):
    """``/``: the forks and the catalog."""

    async def get(self, request: Request) -> Response:
        page = page_of(request)
        await page.required_user(request)
        forks = await page.forks.all()
        catalog = await page.catalog()
        rows = [(fork, page.fork_url(request, fork.name)) for fork in forks]
        return await page.render(request, "index.html", forks=rows, catalog=catalog_rows(catalog))


class Login(HTTPEndpoint):
    """``/login``: the API token form."""

    async def get(self, request: Request) -> Response:
        page = page_of(request)
        after = local_path(request.query_params.get("next")) or "/"
        if await page.user(request) is not None:
            return RedirectResponse(after, status_code=303)
        return await page.render(request, "login.html", error=None, next=after)

    async def post(self, request: Request) -> Response:
        page = page_of(request)
        form = await page.checked_form(request)
        after = local_path(form.get("next")) or "/"
        client = request.client.host if request.client else ""
        given = form.get("api_token")
        try:
            name = page.logins.attempt(
                client, given if isinstance(given, str) else "", page.settings.authenticate
            )
        except TooManyAttempts as exc:
            response = await page.render(
                request, "login.html", status=429, error=str(exc), next=after
            )
            response.headers["Retry-After"] = str(exc.retry_after)
            return response
        if name is None:
            error = "That API token is not known to this service; check FEATUREFLAG_API_TOKENS."
            return await page.render(request, "login.html", status=401, error=error, next=after)
        if "read" not in page.settings.scopes(name):
            error = (
                f"The API token {name!r} lacks the 'read' scope the page needs; log in "
                "with a token that has it (FEATUREFLAG_API_TOKENS, name:token:read+forks)."
            )
            return await page.render(request, "login.html", status=403, error=error, next=after)
        # A fresh session (id and CSRF token) at the change of privilege.
        request.session.clear()
        request.session["user"] = name
        token = page.settings.api_tokens[name].get_secret_value()
        request.session["fp"] = _fingerprint(page.key, token)
        request.session["sid"] = secrets.token_urlsafe(24)
        request.session["csrf"] = secrets.token_urlsafe(32)
        request.state.user = name
        return RedirectResponse(after, status_code=303)


class Logout(HTTPEndpoint):
    """``/logout``."""

    async def post(self, request: Request) -> Response:
        page = page_of(request)
        await page.checked_form(request)
        sid = request.session.get("sid")
        if isinstance(sid, str):
            # Revoked in the store: a copy of this cookie is signed out on every replica
            # (until the cookie itself would have expired).
            until = utcnow() + timedelta(seconds=SESSION_MAX_AGE)
            await page.store.revoke_session(sid, until)
        request.session.clear()
        request.session["flash"] = "Logged out."
        return RedirectResponse("/login", status_code=303)


class NewFork(HTTPEndpoint):
    """``/forks/new``; ``/forks/new?flag.<name>=<JSON>&name=...&upstream=...`` prefills it
    (the extension's "save as a fork": docs/forks.md, "From a link")."""

    async def get(self, request: Request) -> Response:
        page = page_of(request)
        await page.required_user(request)
        catalog = await page.catalog()
        if not request.url.query:
            fork_form = ForkForm.blank(catalog)
            return await page.render(request, "fork_form.html", form=fork_form, editing=False)
        fork_form = form_from_link(catalog, request.query_params.multi_items())
        # The catalog's types, checked as for a POST; a bad link is a 400 page with the
        # form and every reason, never a 500.
        for problem in await page.forks.flag_problems(fork_form.flags()):
            fork_form.add_problem(problem.field, problem.rule)
        status = 400 if fork_form.errors else 200
        return await page.render(
            request, "fork_form.html", status=status, form=fork_form, editing=False
        )

    async def post(self, request: Request) -> Response:
        page = page_of(request)
        user = await page.required_user(request, "forks")
        catalog = await page.catalog()
        form = await page.checked_form(request, rows=len(catalog) + MAX_FLAGS)
        return await page.save(request, parse_fork_form(form, catalog, name=None), user, None)


class EditFork(HTTPEndpoint):
    """``/forks/{name}/edit``."""

    async def get(self, request: Request) -> Response:
        page = page_of(request)
        await page.required_user(request)
        fork = await page.forks.get(request.path_params["name"])
        fork_form = ForkForm.from_fork(fork, await page.catalog())
        return await page.render(request, "fork_form.html", form=fork_form, editing=True)

    async def post(self, request: Request) -> Response:
        page = page_of(request)
        user = await page.required_user(request, "forks")
        fork = await page.forks.get(request.path_params["name"])
        catalog = await page.catalog()
        form = await page.checked_form(request, rows=len(catalog) + MAX_FLAGS)
        return await page.save(request, parse_fork_form(form, catalog, name=fork.name), user, fork)


class DeleteFork(HTTPEndpoint):
    """``/forks/{name}/delete``."""

    async def post(self, request: Request) -> Response:
        page = page_of(request)
        await page.checked_form(request)
        user = await page.required_user(request, "forks")
        name = request.path_params["name"]
        try:
            await page.forks.delete(name, user=user)
        except ForkNotFound:
            request.session["flash"] = f"There was no fork {name!r} to delete."
        else:
            request.session["flash"] = f"Deleted fork {name!r}."
        return RedirectResponse("/", status_code=303)


# -- errors as pages ------------------------------------------------------------------


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # pragma: no cover - registered for it only
        raise exc
    if exc.status_code == 303 and exc.headers:
        return RedirectResponse(exc.headers["Location"], status_code=303)
    if exc.status_code == 403:
        # A bare 403 is a refused CSRF token; one with a detail says what is missing.
        reason = exc.detail if exc.detail != "Forbidden" else None
        return await page_of(request).render(request, "forbidden.html", status=403, reason=reason)
    return PlainTextResponse(str(exc.detail), status_code=exc.status_code, headers=exc.headers)


async def _fork_not_found(request: Request, exc: Exception) -> Response:
    name = exc.name if isinstance(exc, ForkNotFound) else ""
    return await page_of(request).render(request, "not_found.html", status=404, name=name)


def create_web_app(
    settings: Settings,
    store: Store,
    logins: FailedLogins | None = None,
    signer: OverrideSigner | None = None,
    policy: UpstreamPolicy | None = None,
) -> ASGIApp:
    """The web page as an ASGI app (``featureflag_server.app.create_app`` mounts it at ``/``);
    *logins* and *policy* (default: the settings') are shared with the API."""
    page = WebPage(settings, store, logins, signer, policy)
    routes = [
        Route("/", Index),
        Route("/login", Login),
        Route("/logout", Logout),
        Route("/forks/new", NewFork),
        Route("/forks/{name}/edit", EditFork),
        Route("/forks/{name}/delete", DeleteFork),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    middleware = [
        Middleware(_SecurityHeaders),
        # Before SessionMiddleware reads the cookie (the first in this list is outermost).
        Middleware(_FirstCookieWins, name=page.cookie),
        Middleware(
            SessionMiddleware,
            secret_key=page.key,
            session_cookie=page.cookie,
            max_age=SESSION_MAX_AGE,
            same_site="lax",
            https_only=settings.secure_cookies,
        ),
    ]
    handlers = {HTTPException: _http_error, ForkNotFound: _fork_not_found}
    app = Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)
    app.state.page = page
    return app
