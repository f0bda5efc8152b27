"""``FeatureFlagMiddleware`` for WSGI apps (Flask, Django): the twin of the ASGI one.

Same token rules, headers, report and OFREP endpoint as :mod:`featureflag.asgi`. The
request runs in its own copy of the context, and so does every step of iterating the
response body, so flags evaluated by a streaming body see the request's overrides.
See docs/middleware.md.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

from ._http import (
    Config,
    ReportMode,
    Request,
    _token,
    current_host,
    current_token,
    response_headers,
    token_from_cookie,
    warn_late,
)
from ._scope import _current
from .headers import OFREP_PATH, TOKEN_HEADER, wsgi_key
from .ofrep import MAX_BODY, evaluate, match
from .report import DEFAULT_BUDGET
from .tokens import OverrideSigner

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["FeatureFlagMiddleware", "current_host", "current_token"]

_TOKEN_KEY = wsgi_key(TOKEN_HEADER)
_ExcInfo = tuple[type[BaseException], BaseException, TracebackType] | tuple[None, None, None]


class FeatureFlagMiddleware:
    """Per-request flag overrides from a signed token, and the ``Feature-Flags`` report.

    Takes the same keyword arguments as :class:`featureflag.asgi.FeatureFlagMiddleware`.

    Example::

        app.wsgi_app = FeatureFlagMiddleware(app.wsgi_app)  # Flask
    """

    def __init__(
        self,
        app: WSGIApplication,
        *,
        secret: str | Sequence[str] | None = None,
        environment: str | None = None,
        signer: OverrideSigner | None = None,
        report: ReportMode = "with-token",
        ofrep_path: str | None = OFREP_PATH,
        report_budget: int = DEFAULT_BUDGET,
        max_token_age: float | None = None,
    ) -> None:
        self.app = app
        self.config = Config(
            secret=secret,
            environment=environment,
            signer=signer,
            report=report,
            ofrep_path=ofrep_path,
            report_budget=report_budget,
            max_token_age=max_token_age,
        )

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        config = self.config
        token: str | bytes | None = environ.get(_TOKEN_KEY) or None
        if token is None:
            cookie = environ.get("HTTP_COOKIE")
            if cookie:
                # WSGI strings are latin-1 decoded bytes; "replace" guards odd servers.
                token = token_from_cookie(cookie.encode("latin-1", "replace"))
        request = Request(config, token)
        key = match(config.ofrep_path, environ.get("PATH_INFO", ""))
        if key is not None:
            return _serve_ofrep(config, request, environ, start_response, key)

        def start_with_headers(
            status: str, headers: list[tuple[str, str]], exc_info: _ExcInfo | None = None, /
        ) -> Callable[[bytes], object]:
            raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers]
            added = response_headers(config, request, raw)
            out = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in added]
            return start_response(status, out, exc_info)

        if request.scope is None and request.raw is None:
            # Nothing to apply or report: no context to manage, only headers to add.
            return self.app(environ, start_with_headers)
        # A copied context per request: the ContextVars set here stay with this request
        # while the server iterates the body, after this call has returned.
        context = contextvars.copy_context()
        return context.run(self._call, context, request, environ, start_with_headers)

    def _call(
        self,
        context: contextvars.Context,
        request: Request,
        environ: WSGIEnvironment,
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        reset_scope = None if request.scope is None else _current.set(request.scope)
        reset_token = None
        if request.raw is not None:
            reset_token = _token.set((request.raw, environ))

        def finish() -> None:
            if request.reported is not None:
                warn_late(request, environ)
            if reset_token is not None:
                _token.reset(reset_token)
            if reset_scope is not None:
                _current.reset(reset_scope)

        try:
            result = self.app(environ, start_response)
        except BaseException:
            finish()
            raise
        return _Body(result, context, finish)


class _Body:
    """The app's response iterable, each step run in the request's context."""

    def __init__(
        self, inner: Iterable[bytes], context: contextvars.Context, finish: Callable[[], None]
    ) -> None:
        self._inner = inner
        self._iterator: Iterator[bytes] | None = None
        self._context = context
        self._finish = finish
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._iterator is None:
            self._iterator = self._context.run(iter, self._inner)
        return self._context.run(next, self._iterator)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._context.run(self._close)

    def _close(self) -> None:
        try:
            close = getattr(self._inner, "close", None)
            if close is not None:
                close()
        finally:
            self._finish()


def _serve_ofrep(
    config: Config,
    request: Request,
    environ: WSGIEnvironment,
    start_response: StartResponse,
    key: str,
) -> list[bytes]:
    method = environ.get("REQUEST_METHOD", "GET")
    body = b""
    if method == "POST":
        try:
            length = int(environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        # Read at most one byte past the limit: enough to refuse, never a huge read.
        body = environ["wsgi.input"].read(min(max(length, 0), MAX_BODY + 1))
    status, headers, content = evaluate(
        config,
        request,
        method=method,
        body=body,
        if_none_match=environ.get("HTTP_IF_NONE_MATCH"),
        # PATH_INFO is the URL's bytes as latin-1; flag names are UTF-8.
        key=key.encode("latin-1", "replace").decode("utf-8", "replace") if key else None,
        preflight=method == "OPTIONS" and "HTTP_ACCESS_CONTROL_REQUEST_METHOD" in environ,
    )
    reason = {
        200: "OK",
        304: "Not Modified",
        400: "Bad Request",
        404: "Not Found",
        405: "Method Not Allowed",
    }
    start_response(
        f"{status} {reason[status]}",
        [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers],
    )
    return [content] if content else []
