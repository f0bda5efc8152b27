"""``FeatureFlagMiddleware`` for ASGI apps (Starlette, FastAPI, Django ASGI, ...).

Per request: read the override token (``Feature-Flag-Overrides`` header, else the
``featureflag_overrides`` cookie), verify it, open the request's flag scope with its
overrides, and add ``Vary``, ``Feature-Flag-Override-Error``, ``Cache-Control`` and the
``Feature-Flags`` report to the response. Serves the OFREP endpoint. See
docs/middleware.md.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from ._http import (
    Config,
    ReportMode,
    Request,
    _token,
    current_host,
    current_token,
    response_headers,
    token_from_headers,
    warn_late,
)
from ._scope import _current
from .exceptions import ConfigurationError
from .headers import ERROR_HEADER, OFREP_PATH, asgi_name
from .ofrep import MAX_BODY, evaluate, match
from .report import DEFAULT_BUDGET
from .tokens import OverrideSigner

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["FeatureFlagMiddleware", "current_host", "current_token"]

_ERROR = asgi_name(ERROR_HEADER)


class FeatureFlagMiddleware:
    """Per-request flag overrides from a signed token, and the ``Feature-Flags`` report.

    Keyword arguments left out come from ``FEATUREFLAG_SECRET`` and
    ``FEATUREFLAG_ENVIRONMENT``; a missing or short secret fails here, at start-up.
    ``report`` is ``"with-token"`` (report only to requests with a valid token),
    ``"always"`` (a QA setting) or ``"never"``. ``ofrep_path=None`` turns the OFREP
    endpoints off. ``max_token_age`` (seconds; default ``FEATUREFLAG_MAX_TOKEN_AGE``,
    else 12 h) is how long after signing a token is accepted, whatever its own expiry:
    past it the token is refused as ``expired``.

    Added with Starlette's or FastAPI's ``app.add_middleware(FeatureFlagMiddleware)``,
    the class is built on the app's first ASGI event, the lifespan startup; a bad
    configuration then fails that startup (``lifespan.startup.failed``), so the server
    does not start.

    Example::

        app = FeatureFlagMiddleware(app, report="with-token")
    """

    def __init__(
        self,
        app: ASGIApp,
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
        self.error: ConfigurationError | None = None
        self.config: Config | None = None
        try:
            self.config = Config(
                secret=secret,
                environment=environment,
                signer=signer,
                report=report,
                ofrep_path=ofrep_path,
                report_budget=report_budget,
                max_token_age=max_token_age,
            )
        except ConfigurationError as error:
            if not _built_by_starlette():
                raise
            self.error = error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        config = self.config
        if kind != "http" and kind != "websocket":
            if kind == "lifespan" and config is None:
                await _fail_startup(self.error, receive, send)
                return
            await self.app(scope, receive, send)
            return
        if config is None:
            raise ConfigurationError(str(self.error))
        request = Request(config, token_from_headers(scope["headers"]))
        reset_scope = None if request.scope is None else _current.set(request.scope)
        reset_token = None if request.raw is None else _token.set((request.raw, scope))
        try:
            if kind == "websocket":
                wrapped = send if request.error is None else _websocket_send(request, send)
                await self.app(scope, receive, wrapped)
            elif (
                # A substring test first: most paths are not OFREP, and this is C-fast.
                config.ofrep_path is not None
                and config.ofrep_path in scope["path"]
                and (key := match(config.ofrep_path, _route_path(scope))) is not None
            ):
                await _serve_ofrep(config, request, scope, receive, send, key or None)
            else:

                async def send_with_headers(message: Message) -> None:
                    kind = message["type"]
                    if kind == "http.response.start":
                        message = dict(message)
                        message["headers"] = response_headers(
                            config, request, message.get("headers", ())
                        )
                    elif kind == "http.response.body" and not message.get("more_body"):
                        # The response is complete: flags evaluated from here on belong
                        # to background tasks, which are not late for any header.
                        if request.reported is not None:
                            warn_late(request, scope)
                            request.reported = None
                    await send(message)

                await self.app(scope, receive, send_with_headers)
        finally:
            if request.reported is not None:
                warn_late(request, scope)
            if reset_token is not None:
                _token.reset(reset_token)
            if reset_scope is not None:
                _current.reset(reset_scope)


def _built_by_starlette() -> bool:
    # Starlette (and FastAPI) build add_middleware() classes on the first ASGI event,
    # the lifespan. An exception there reads to uvicorn as "lifespan unsupported", and
    # the server starts anyway, then answers 500 to every request. So, only there, the
    # error waits for the lifespan startup, which it fails properly.
    frame: FrameType | None = sys._getframe(2)
    for _ in range(4):  # __init__ of a subclass adds frames
        if frame is None:
            return False
        if frame.f_code.co_name == "build_middleware_stack":
            return True
        frame = frame.f_back
    return False


async def _fail_startup(error: ConfigurationError | None, receive: Receive, send: Send) -> None:
    message = await receive()
    if message["type"] == "lifespan.startup":
        await send({"type": "lifespan.startup.failed", "message": str(error)})
        # Raise after telling the server, as Starlette's router does: a server (or
        # TestClient) that waits for the app to end then stops instead of hanging.
        raise ConfigurationError(str(error))


def _route_path(scope: Scope) -> str:
    """The path below the mount point: ``path`` without ``root_path`` (as Starlette)."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root):
        return path[len(root) :]
    return path


def _websocket_send(request: Request, send: Send) -> Send:
    # A websocket has no report (no response headers after the handshake); it keeps
    # its handshake's overrides and, on accept, says why a token was refused.
    async def send_accept(message: Message) -> None:
        if message["type"] == "websocket.accept" and request.error is not None:
            message = dict(message)
            headers = list(message.get("headers", ()))
            headers.append((_ERROR, request.error.encode()))
            message["headers"] = headers
        await send(message)

    return send_accept


async def _serve_ofrep(
    config: Config, request: Request, scope: Scope, receive: Receive, send: Send, key: str | None
) -> None:
    chunks: list[bytes] = []
    size = 0
    more = scope["method"] == "POST"
    while more and size <= MAX_BODY:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        more = message.get("more_body", False)
    tags = [value.decode("latin-1") for name, value in scope["headers"] if name == b"if-none-match"]
    preflight = any(name == b"access-control-request-method" for name, _ in scope["headers"])
    status, headers, content = evaluate(
        config,
        request,
        method=scope["method"],
        body=b"".join(chunks),
        if_none_match=", ".join(tags) if tags else None,
        key=key,
        preflight=preflight and scope["method"] == "OPTIONS",
    )
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
