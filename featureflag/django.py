"""``FeatureFlagMiddleware`` for Django's ``MIDDLEWARE`` setting (WSGI and ASGI).

The same token rules, headers, report and OFREP endpoints as :mod:`featureflag.asgi`,
as a Django middleware, so that Django's test ``Client`` and Django's own caches see
them. Place it right after ``UpdateCacheMiddleware`` (and so before
``FetchFromCacheMiddleware``)::

    MIDDLEWARE = [
        "django.middleware.cache.UpdateCacheMiddleware",
        "featureflag.django.FeatureFlagMiddleware",
        ...,
        "django.middleware.cache.FetchFromCacheMiddleware",
    ]

Settings (each falls back to the environment variable of the same name, as the other
middlewares do): ``FEATUREFLAG_SECRET`` (a string, or a list for rotation),
``FEATUREFLAG_ENVIRONMENT``, ``FEATUREFLAG_REPORT``, ``FEATUREFLAG_OFREP_PATH``,
``FEATUREFLAG_REPORT_BUDGET``, ``FEATUREFLAG_MAX_TOKEN_AGE`` (seconds a token is
accepted after signing; default 12 h). See docs/django.md.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any, TypeVar

from asgiref.sync import iscoroutinefunction, markcoroutinefunction
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.utils.cache import patch_vary_headers

from ._http import (
    NO_STORE,
    Config,
    Request,
    _token,
    response_headers,
    warn_late,
)
from ._scope import Scope, _current, current_scope
from .headers import ERROR_HEADER, OFREP_PATH, REPORT_HEADER, TOKEN_COOKIE, TOKEN_HEADER, asgi_name
from .ofrep import MAX_BODY, evaluate, match
from .report import DEFAULT_BUDGET

__all__ = ["FeatureFlagMiddleware", "vary_on_overrides"]

# The headers response_headers() may add, change or drop; the others pass unchanged.
_OURS = frozenset({b"vary", b"cache-control", asgi_name(REPORT_HEADER), asgi_name(ERROR_HEADER)})
_View = TypeVar("_View", bound=Callable[..., Any])
_Resets = tuple[
    contextvars.Token[Scope | None] | None,
    contextvars.Token[tuple[str, Mapping[str, Any]] | None] | None,
]


def _config() -> Config:
    def setting(name: str, default: Any = None) -> Any:
        return getattr(settings, name, default)

    return Config(
        secret=setting("FEATUREFLAG_SECRET"),
        environment=setting("FEATUREFLAG_ENVIRONMENT"),
        signer=None,
        report=setting("FEATUREFLAG_REPORT", "with-token"),
        ofrep_path=setting("FEATUREFLAG_OFREP_PATH", OFREP_PATH),
        report_budget=setting("FEATUREFLAG_REPORT_BUDGET", DEFAULT_BUDGET),
        max_token_age=setting("FEATUREFLAG_MAX_TOKEN_AGE"),
    )


class FeatureFlagMiddleware:
    """Per-request flag overrides from a signed token, and the ``Feature-Flags`` report.

    Django builds it when the app loads (``get_wsgi_application()``,
    ``get_asgi_application()``, ``runserver``, the first test request): a missing or
    short secret raises :class:`featureflag.ConfigurationError` there. Works for sync
    and async views.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.config = _config()
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        state = self._request(request)
        if isinstance(state, HttpResponse):
            return state
        resets = _enter(state, request)
        try:
            response = self.get_response(request)
            self._headers(state, response)
        finally:
            _exit(resets)
        return self._done(state, request, response)

    async def __acall__(self, request: HttpRequest) -> Any:
        state = self._request(request)
        if isinstance(state, HttpResponse):
            return state
        resets = _enter(state, request)
        try:
            response = await self.get_response(request)
            self._headers(state, response)
        finally:
            _exit(resets)
        return self._done(state, request, response)

    def _request(self, request: HttpRequest) -> Request | HttpResponse:
        """The request's state, or the OFREP answer when it asks an OFREP endpoint."""
        config = self.config
        token = request.headers.get(TOKEN_HEADER) or request.COOKIES.get(TOKEN_COOKIE)
        state = Request(config, token or None)
        key = match(config.ofrep_path, request.path_info)
        if key is None:
            return state
        method = request.method or "GET"
        status, headers, content = evaluate(
            config,
            state,
            method=method,
            body=request.read(MAX_BODY + 1) if method == "POST" else b"",
            if_none_match=request.headers.get("If-None-Match"),
            key=key or None,
            preflight=method == "OPTIONS" and "Access-Control-Request-Method" in request.headers,
        )
        response = HttpResponse(content, status=status)
        for name, value in headers:
            response[name.decode("latin-1")] = value.decode("latin-1")
        return response

    def _headers(self, state: Request, response: HttpResponseBase) -> None:
        raw = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in response.items()]
        added = response_headers(self.config, state, raw)
        for header in ("Vary", "Cache-Control"):
            if response.has_header(header):
                del response[header]
        for name, value in added:
            if name.lower() in _OURS:
                response[name.decode("latin-1").title()] = value.decode("latin-1")

    def _done(self, state: Request, request: HttpRequest, response: HttpResponseBase) -> Any:
        """Warn about late flags now, or, for a streaming body, once it is sent."""
        if state.reported is None:
            return response
        if not response.streaming:
            warn_late(state, request.META)
            return response
        content = response.streaming_content
        if getattr(response, "is_async", False):
            response.streaming_content = _stream_async(content, state, request)
        else:
            response.streaming_content = _stream(content, state, request)
        return response


def _enter(state: Request, request: HttpRequest) -> _Resets:
    scope = None if state.scope is None else _current.set(state.scope)
    token = None
    if state.raw is not None:
        meta = request.META
        # current_host() reads a WSGI environ; Django's ASGI META is one but for the key.
        environ = meta if "wsgi.version" in meta else {"wsgi.version": (1, 0), **meta}
        token = _token.set((state.raw, environ))
    return scope, token


def _exit(resets: _Resets) -> None:
    scope, token = resets
    if token is not None:
        _token.reset(token)
    if scope is not None:
        _current.reset(scope)


def _stream(content: Iterator[bytes], state: Request, request: HttpRequest) -> Iterator[bytes]:
    # Django iterates a streaming body after the middleware returned: each step runs
    # with the request's overrides again.
    try:
        while True:
            resets = _enter(state, request)
            try:
                chunk = next(content)
            except StopIteration:
                return
            finally:
                _exit(resets)
            yield chunk
    finally:
        warn_late(state, request.META)


async def _stream_async(
    content: AsyncIterator[bytes], state: Request, request: HttpRequest
) -> AsyncIterator[bytes]:
    try:
        while True:
            resets = _enter(state, request)
            try:
                chunk = await content.__anext__()
            except StopAsyncIteration:
                return
            finally:
                _exit(resets)
            yield chunk
    finally:
        warn_late(state, request.META)


def _mark(response: HttpResponseBase) -> HttpResponseBase:
    patch_vary_headers(response, ("Cookie", TOKEN_HEADER))
    scope = current_scope()
    if scope is not None and scope.used_override:
        response["Cache-Control"] = NO_STORE
    return response


def vary_on_overrides(view: _View) -> _View:
    """Put under ``@cache_page``: its cache then keys pages on the override token.

    ``cache_page`` stores and serves pages *inside* the view, beneath every middleware,
    so only a decorator beneath it can add ``Vary: Cookie, Feature-Flag-Overrides``
    (and ``no-store`` when an override was used) before it decides::

        @cache_page(60)
        @vary_on_overrides
        def home(request): ...
    """
    if iscoroutinefunction(view):

        @functools.wraps(view)
        async def async_wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            return _mark(await view(request, *args, **kwargs))

        return async_wrapper  # type: ignore[return-value]

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        return _mark(view(request, *args, **kwargs))

    return wrapper  # type: ignore[return-value]
