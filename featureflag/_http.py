"""What the ASGI and WSGI middleware share: reading the token, the per-request state,
and the headers added to every response. Header names and the rules are in
docs/middleware.md.
"""

from __future__ import annotations

import contextvars
import logging
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from ._scope import Mark, Scope
from .exceptions import ConfigurationError, TokenError
from .headers import ERROR_HEADER as ERROR_HEADER
from .headers import OFREP_PATH as OFREP_PATH
from .headers import REPORT_HEADER as REPORT_HEADER
from .headers import TOKEN_COOKIE as COOKIE
from .headers import TOKEN_HEADER as TOKEN_HEADER
from .headers import VARY as VARY
from .headers import asgi_name
from .report import scope_report
from .tokens import OverrideSigner, VerifiedOverrides

# The names are spelled in .headers; the ``X as X`` imports above re-export them (and
# the cookie as COOKIE), so code that imported them from here keeps working.
NO_STORE = "private, no-store"
_VARY = VARY.encode()
_NO_STORE = NO_STORE.encode()
_TOKEN = asgi_name(TOKEN_HEADER)
_ERROR = asgi_name(ERROR_HEADER)
_REPORT = asgi_name(REPORT_HEADER)
# The names Vary must list, as written in VARY.
_VARY_NAMES = tuple(name.strip().encode() for name in VARY.split(","))

ReportMode = Literal["with-token", "always", "never"]
RawHeaders = list[tuple[bytes, bytes]]

logger = logging.getLogger("featureflag")

# (verified raw token, the ASGI scope or WSGI environ) while serving a request that
# carried a valid token. The host is read from the request only when asked for.
_token: contextvars.ContextVar[tuple[str, Mapping[str, Any]] | None] = contextvars.ContextVar(
    "featureflag_token", default=None
)


def current_token() -> str | None:
    """The verified override token of the request being served, for propagation.

    None outside a request, when the request carried no token, or when it was refused.
    """
    current = _token.get()
    return None if current is None else current[0]


def current_host() -> str | None:
    """The ``Host`` of the request being served, when it carried a valid token, else None.

    Propagation uses it to send the token back to the same site only.
    """
    current = _token.get()
    return None if current is None else _host(current[1])


def _host(request: Mapping[str, Any]) -> str | None:
    if "wsgi.version" in request:  # a WSGI environ
        host: str | None = request.get("HTTP_HOST") or request.get("SERVER_NAME")
        return host
    for name, value in request.get("headers", ()):  # an ASGI scope
        if name == b"host":
            return str(value.decode("latin-1"))
    server = request.get("server")
    if server:
        address, port = server
        return f"{address}:{port}" if port is not None else str(address)
    return None


#: How long after it was signed the middleware accepts a token, whatever its own ``exp``.
DEFAULT_MAX_TOKEN_AGE = 12 * 3600.0
MAX_TOKEN_AGE_ENV = "FEATUREFLAG_MAX_TOKEN_AGE"


def max_token_age_from(value: object, environ: Mapping[str, str] | None = None) -> float:
    """*value* as a ``max_token_age``: None means ``FEATUREFLAG_MAX_TOKEN_AGE``, else 12 h.

    A positive number of seconds (``inf`` turns the cap off); anything else is a
    :class:`ConfigurationError` that names the setting.
    """
    where = "max_token_age"
    if value is None:
        raw = (os.environ if environ is None else environ).get(MAX_TOKEN_AGE_ENV, "").strip()
        if not raw:
            return DEFAULT_MAX_TOKEN_AGE
        where = MAX_TOKEN_AGE_ENV
        try:
            value = float(raw)
        except ValueError:
            value = raw
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or math.isnan(value)
        or value <= 0
    ):
        raise ConfigurationError(
            f"{where}={value!r}: give a positive number of seconds, e.g. 43200 (12 h, "
            "the default); inf accepts a token until its own expiry."
        )
    return float(value)


class Config:
    """The middleware's settings, resolved once at start-up (fail loudly here)."""

    __slots__ = ("budget", "max_token_age", "ofrep_path", "report_always", "report_token", "signer")

    def __init__(
        self,
        *,
        secret: str | Sequence[str] | None,
        environment: str | None,
        signer: OverrideSigner | None,
        report: ReportMode,
        ofrep_path: str | None,
        report_budget: int,
        max_token_age: float | None = None,
    ) -> None:
        if signer is None:
            signer = OverrideSigner.from_env(secret=secret, environment=environment)
        elif secret is not None or environment is not None:
            raise ConfigurationError("Pass either signer= or secret=/environment=, not both.")
        if report not in ("with-token", "always", "never"):
            raise ConfigurationError(
                f"report={report!r}: use 'with-token' (default), 'always' or 'never'."
            )
        if ofrep_path is not None and not ofrep_path.startswith("/"):
            raise ConfigurationError(f"ofrep_path={ofrep_path!r} must start with '/'.")
        if report_budget < 64:
            raise ConfigurationError(f"report_budget={report_budget} is too small; use >= 64.")
        # A token lives at most max_token_age after it was signed, whatever its own exp
        # (capped, as itsdangerous' max_age does; see docs/middleware.md).
        self.max_token_age = max_token_age_from(max_token_age)
        self.signer = signer.capped(self.max_token_age)
        # The report mode as the two questions each request asks of it.
        self.report_always = report == "always"
        self.report_token = report == "with-token"
        self.ofrep_path = ofrep_path
        self.budget = report_budget


class Request:
    """One request's state. Lives on the stack of the middleware call, never on ``self``."""

    __slots__ = ("error", "no_store", "raw", "report_due", "reported", "scope", "verified")

    no_store: bool  # set with ``reported``: whether the response was marked no-store

    def __init__(self, config: Config, token: str | bytes | None) -> None:
        # Where the scope stood when the header went: what came later is "late".
        self.reported: Mark | None = None
        self.error: str | None = None
        verified: VerifiedOverrides | None = None
        raw: str | None = None
        if token is not None:
            try:
                if not isinstance(token, str):
                    token = token.decode("latin-1")
                verified = config.signer.loads(token)
            except TokenError as refused:
                self.error = refused.reason
                logger.debug("Override token refused (%s): %s", refused.reason, refused)
            else:
                raw = token
        self.raw = raw
        self.verified = verified
        # A fresh scope only when there is something to apply or to report. Otherwise
        # the context is left alone: a request without a token pays nothing per flag,
        # and overrides a test set around an in-process call still reach the app.
        self.scope: Scope | None
        if verified is not None:
            self.report_due = config.report_token or config.report_always
            self.scope = Scope(verified.flags)
        else:
            self.report_due = config.report_always
            self.scope = Scope({}) if config.report_always else None


_COOKIE_PREFIX = COOKIE.encode() + b"="
_PREFIX_LEN = len(_COOKIE_PREFIX)


def token_from_cookie(cookie: bytes) -> bytes | None:
    """The token cookie's value in a ``Cookie`` header, or None."""
    # find() on the raw bytes rather than splitting every cookie: this runs on every
    # request that carries cookies, and most carry only other people's.
    at = cookie.find(_COOKIE_PREFIX)
    while at != -1:
        # A whole name starts the header or follows ";" (and optional white space). A
        # value may hold our name after a space ("note=see featureflag_overrides=x"),
        # as browsers send such values: that is not our cookie. (Written out rather
        # than a call: this runs on every request that carries our cookie.)
        before = at - 1
        while before >= 0 and cookie[before] in (32, 9):  # spaces and tabs
            before -= 1
        if before < 0 or cookie[before] == 59:  # ";"
            start = at + _PREFIX_LEN
            end = cookie.find(b";", start)
            value = (cookie[start:] if end == -1 else cookie[start:end]).strip()
            if len(value) >= 2 and value[0] == value[-1] == 34:  # a quoted value
                value = value[1:-1]
            return value or None
        at = cookie.find(_COOKIE_PREFIX, at + 1)
    return None


def token_from_headers(headers: Iterable[tuple[bytes, bytes]]) -> bytes | None:
    """The token of an ASGI request: the header wins over the cookie."""
    cookie: bytes | None = None
    token_name = _TOKEN
    for name, value in headers:
        if name == token_name and value:
            return value  # an empty header (an unset shell variable) counts as absent
        if name == b"cookie":
            cookie = value if cookie is None else cookie + b"; " + value
    return None if cookie is None else token_from_cookie(cookie)


def response_headers(
    config: Config, request: Request, headers: Iterable[Sequence[bytes]]
) -> RawHeaders:
    """*headers* plus Vary, the refusal reason, Cache-Control and the report."""
    scope = request.scope
    verified = request.verified
    # Without a verified token nothing can have been overridden: skip the scan. A token
    # with routes only can still have sent a request to another build.
    no_store = (
        scope is not None
        and verified is not None
        and bool(verified.flags or verified.routes)
        and scope.used_override
    )
    out: RawHeaders = []
    vary: list[bytes] = []
    for name, value in headers:
        # Only Vary (4 letters) and Cache-Control (13) are looked at: lower-casing every
        # name would allocate per header, on every response.
        size = len(name)
        if size == 4 or size == 13:
            lower = name.lower()
            if lower == b"vary":
                vary.append(value)
                continue
            if no_store and lower == b"cache-control":
                continue
        out.append((name, value))
    out.append((b"vary", _merge_vary(vary) if vary else _VARY))
    if request.error is not None:
        out.append((_ERROR, request.error.encode()))
    if no_store:
        out.append((b"cache-control", _NO_STORE))
    if request.report_due and scope is not None:
        request.reported = scope.mark()
        request.no_store = no_store
        report = scope_report(scope, budget=config.budget)
        if report:
            out.append((_REPORT, report))
    return out


# The app's own Vary values, merged: an app sends the same few on every response. A
# pure function of its key (nothing from the request), so a hit serves nobody else's
# data. Bounded: cleared when full.
_VARY_CACHE_MAX = 64
_merged_vary: dict[tuple[bytes, ...], bytes] = {}


def _merge_vary(existing: list[bytes]) -> bytes:
    """The app's Vary values with the names ours must list, from a cache when possible."""
    key = tuple(existing)
    merged = _merged_vary.get(key)
    if merged is None:
        merged = _merge_vary_values(existing)
        if len(_merged_vary) >= _VARY_CACHE_MAX:
            _merged_vary.clear()
        _merged_vary[key] = merged
    return merged


def _merge_vary_values(existing: list[bytes]) -> bytes:
    parts = [p.strip() for value in existing for p in value.split(b",") if p.strip()]
    have = {p.lower() for p in parts}
    if b"*" in have:
        return b"*"
    missing = [m for m in _VARY_NAMES if m.lower() not in have]
    return b", ".join(parts + missing)


def warn_late(request: Request, where: Mapping[str, Any]) -> None:
    """Log the flags evaluated after the report header went (streaming bodies).

    *where* is the ASGI scope or the WSGI environ, read only when there is a warning.
    """
    scope = request.scope
    if scope is None or request.reported is None:
        return
    late = scope.since(request.reported)
    if not late:
        return
    shown = ", ".join(late[:20]) + (f" and {len(late) - 20} more" if len(late) > 20 else "")
    cache = ""
    if not request.no_store and scope.used_override:
        cache = (
            " An override was used after the headers went, so the response could not be "
            "marked Cache-Control: private, no-store (Vary still keeps shared caches apart)."
        )
    logger.warning(
        "%d flag(s) evaluated after the %s header of %s was sent, so the "
        "header does not list them: %s. Evaluate them before the response starts "
        "(before the first body chunk of a streaming response) to have them reported.%s",
        len(late),
        REPORT_HEADER,
        _request_line(where),
        shown,
        cache,
    )


def _request_line(request: Mapping[str, Any]) -> str:
    if "REQUEST_METHOD" in request:  # a WSGI environ (or Django's request.META)
        return f"{request.get('REQUEST_METHOD')} {request.get('PATH_INFO')}"
    return f"{request.get('method', 'GET')} {request.get('path')}"
