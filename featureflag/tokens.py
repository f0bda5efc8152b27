"""Signed override tokens: what a browser, a fork URL or curl sends to turn flags.

A token is an itsdangerous URL-safe *timed* token whose salt binds the purpose and
the environment (``featureflag.overrides/<environment>``): a QA token is worthless in
production, and an override token is worthless as anything else. Its JSON payload
carries a format version ``v``, the environment ``env``, the ``flags``, who asked
(``sub``), where it came from (``origin``) and its own expiry ``exp`` (epoch seconds);
optionally ``routes`` (service name -> base URL, for forks of microservices), which
older SDKs ignore. See docs/tokens.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import re
import sys
import threading
import time
import zlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import itsdangerous
from itsdangerous.encoding import base64_decode, base64_encode, bytes_to_int, int_to_bytes

from ._names import NAME_RULE, is_valid_name
from ._registry import Flag, FlagType
from .exceptions import (
    BadSignature,
    ConfigurationError,
    InvalidOverride,
    MalformedToken,
    TokenError,
    TokenExpired,
    TokenTooLarge,
    TooManyFlags,
    WrongEnvironment,
)

FORMAT_VERSION = 1
MAX_TOKEN_BYTES = 4096
MAX_FLAGS = 200
MAX_VALUE_BYTES = 1024
MIN_SECRET_BYTES = 32
CACHE_SIZE = 256
SALT_PREFIX = "featureflag.overrides/"
MAKE_SECRET = 'python -c "import secrets; print(secrets.token_urlsafe(32))"'

FlagValue = bool | str
MAX_ROUTES = 50
MAX_ROUTE_BYTES = 512
SERVICE_RULE = (
    "a service name is 1 to 64 ASCII letters, digits, '.', '_' or '-', "
    "starting with a letter or digit"
)
ROUTE_RULE = (
    "a route is an http:// or https:// base URL with an ASCII host (internationalized "
    "names in punycode), an optional port, an optional path, and no user, password, "
    f"query or fragment, at most {MAX_ROUTE_BYTES} bytes, "
    "e.g. http://recs-pr-12.preview.internal:8080"
)
_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
# Written out rather than urlsplit(): what is not matched is refused, so no parser
# difference (userinfo, backslashes, IDNA dots like U+3002) can move the host.
_ROUTE = re.compile(
    rf"(?P<scheme>[Hh][Tt][Tt][Pp][Ss]?)://"
    rf"(?P<host>{_LABEL}(?:\.{_LABEL})*|\[[0-9A-Fa-f:.]+\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<path>(?:/(?:[A-Za-z0-9._~!$&'()*+,;=:@-]|%[0-9A-Fa-f]{2})*)*)"
)
# payload.timestamp.signature, each part URL-safe base64; a compressed payload starts with ".".
_SHAPE = re.compile(r"\.?[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+")


@dataclass(frozen=True, slots=True)
class VerifiedOverrides:
    """The content of a token whose signature, environment, limits and expiry all passed.

    Instances are shared through the signer's cache: treat ``flags`` as read-only.
    """

    flags: dict[str, FlagValue]
    sub: str
    origin: str
    expires_at: float
    #: Service name -> base URL, from the optional ``routes`` claim (valid entries only).
    routes: dict[str, str] = field(default_factory=dict)
    #: Service name (``*`` for the whole claim) -> why that route was dropped.
    route_problems: dict[str, str] = field(default_factory=dict)


class _ClockSigner(itsdangerous.TimestampSigner):
    """A timestamp signer whose "now" comes from the injected clock (tests)."""

    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock

    def get_timestamp(self) -> int:
        return int(self._clock())


class OverrideSigner:
    """Signs and verifies override tokens for one environment.

    *secret* is a string or a list of strings: the first signs, all verify, so a key
    can be rotated by putting the new one first and dropping the old one later.
    *max_age_cap* (seconds) bounds how long any token lives, whatever its own ``exp``.
    *clock* returns epoch seconds; tests inject one to move time.

    Example::

        signer = OverrideSigner(secret, environment="qa")
        token = signer.dumps({"SomeNewFeature.is_released": True}, sub="ana")
        signer.loads(token).flags  # {"SomeNewFeature.is_released": True}
    """

    def __init__(
        self,
        secret: str | Sequence[str],
        *,
        environment: str,
        max_age_cap: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        secrets = [secret] if isinstance(secret, str) else list(secret)
        if not secrets:
            raise ConfigurationError(f"No override secret given. Make one with: {MAKE_SECRET}")
        for s in secrets:
            if isinstance(s, str) and surrogate_problem(s) is not None:
                raise ConfigurationError(
                    f"An override secret is not valid text. Make one with: {MAKE_SECRET}"
                )
            if not isinstance(s, str) or len(s.encode()) < MIN_SECRET_BYTES:
                raise ConfigurationError(
                    f"An override secret must be at least {MIN_SECRET_BYTES} bytes; one is "
                    f"{len(str(s).encode())}. Make one with: {MAKE_SECRET}"
                )
        if not isinstance(environment, str) or not environment:
            raise ConfigurationError("The environment name must be a non-empty string.")
        if (problem := surrogate_problem(environment)) is not None:
            raise ConfigurationError(f"The environment name {environment!r} is refused: {problem}.")
        self.environment = environment
        self.max_age_cap = max_age_cap
        self._clock = clock
        # itsdangerous signs with the *last* key and verifies with all.
        self._serializer = itsdangerous.URLSafeTimedSerializer(
            list(reversed(secrets)),
            salt=SALT_PREFIX + environment,
            signer=_ClockSigner,
            signer_kwargs={"clock": clock},
        )
        self._cache: OrderedDict[str, VerifiedOverrides | TokenError] = OrderedDict()
        self._lock = threading.Lock()
        self._sig_length: int | None = None

    def capped(self, max_age: float) -> OverrideSigner:
        """This signer with ``max_age_cap`` lowered to *max_age* (seconds), if higher.

        Same secrets, environment and clock; a cache of its own (cached tokens carry
        the capped expiry). Returns ``self`` when its cap is already at most *max_age*.
        The middleware uses it for ``max_token_age``.
        """
        if math.isinf(max_age) or (self.max_age_cap is not None and self.max_age_cap <= max_age):
            return self
        clone = copy.copy(self)
        clone.max_age_cap = max_age
        clone._cache = OrderedDict()
        clone._lock = threading.Lock()
        return clone

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        *,
        secret: str | Sequence[str] | None = None,
        environment: str | None = None,
    ) -> OverrideSigner:
        """Build from ``FEATUREFLAG_SECRET`` (comma separated, first signs) and
        ``FEATUREFLAG_ENVIRONMENT`` (default ``development``); arguments win."""
        env = os.environ if environ is None else environ
        if secret is None:
            raw = env.get("FEATUREFLAG_SECRET", "")
            secret = [s.strip() for s in raw.split(",") if s.strip()]
            if not secret:
                raise ConfigurationError(
                    "FEATUREFLAG_SECRET is not set (or pass secret=...). "
                    f"Make one with: {MAKE_SECRET}"
                )
        if environment is None:
            environment = env.get("FEATUREFLAG_ENVIRONMENT") or "development"
        return cls(secret, environment=environment)

    def dumps(
        self,
        flags: Mapping[str, FlagValue],
        *,
        sub: str,
        origin: str = "extension",
        ttl: float = 3600,
        routes: Mapping[str, str] | None = None,
    ) -> str:
        """Return a token carrying *flags* that expires *ttl* seconds from now.

        Raises the same errors :meth:`loads` would, so no token is made that this
        signer would refuse. *routes* (service name -> base URL) become the ``routes``
        claim; a malformed one raises :class:`MalformedToken` naming the rule.
        """
        return self.dumps_with_expiry(flags, sub=sub, origin=origin, ttl=ttl, routes=routes)[0]

    def dumps_with_expiry(
        self,
        flags: Mapping[str, FlagValue],
        *,
        sub: str,
        origin: str = "extension",
        ttl: float = 3600,
        routes: Mapping[str, str] | None = None,
    ) -> tuple[str, float]:
        """Like :meth:`dumps`, and also return when the token expires (epoch seconds).

        The expiry is what :meth:`loads` will report for the token (``max_age_cap``
        applied), so a caller never verifies its own token just to read it.

        Example::

            token, expires_at = signer.dumps_with_expiry({"new-lp": "b"}, sub="ana", ttl=600)
        """
        payload = self._payload(flags, sub=sub, origin=origin, ttl=ttl, routes=routes)
        token: str = self._serializer.dumps(payload)
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenTooLarge(
                f"The token would be {len(token)} bytes; the limit is {MAX_TOKEN_BYTES}. "
                "Send fewer or shorter overrides."
            )
        expires_at = float(payload["exp"])
        if self.max_age_cap is not None:
            # loads() caps at the signing timestamp (whole seconds) plus the cap.
            signed_at = bytes_to_int(base64_decode(token.rsplit(".", 2)[1]))
            expires_at = min(expires_at, signed_at + self.max_age_cap)
        return token, expires_at

    def check(
        self,
        flags: Mapping[str, FlagValue],
        *,
        sub: str,
        origin: str = "extension",
        ttl: float = 3600,
        routes: Mapping[str, str] | None = None,
    ) -> int:
        """Raise what :meth:`dumps` would raise for these arguments now, without signing;
        return the length the token would have.

        A service checks that a fork's flags fit in a token when the fork is saved,
        long before it signs one. The length is exact for this moment; a token signed
        later may differ by a few bytes (its expiry has other digits).
        """
        payload = self._payload(flags, sub=sub, origin=origin, ttl=ttl, routes=routes)
        body = self._serializer.dump_payload(payload)
        stamp = base64_encode(int_to_bytes(int(self._clock())))
        length = len(body) + 1 + len(stamp) + 1 + self._signature_length()
        if length > MAX_TOKEN_BYTES:
            raise TokenTooLarge(
                f"The token would be {length} bytes; the limit is {MAX_TOKEN_BYTES}. "
                "Send fewer or shorter overrides."
            )
        return length

    def _signature_length(self) -> int:
        if self._sig_length is None:
            # Fixed by the digest: measured once on an empty value.
            self._sig_length = len(self._serializer.make_signer().get_signature(b""))
        return self._sig_length

    def _payload(
        self,
        flags: Mapping[str, FlagValue],
        *,
        sub: str,
        origin: str,
        ttl: float,
        routes: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        if not (isinstance(ttl, int | float) and math.isfinite(ttl) and ttl > 0):
            raise ValueError(f"ttl must be a positive number of seconds, not {ttl!r}")
        if self.max_age_cap is not None:
            ttl = min(ttl, self.max_age_cap)
        payload: dict[str, Any] = {
            "v": FORMAT_VERSION,
            "env": self.environment,
            "flags": check_flags(flags),
            "sub": _text("sub", sub),
            "origin": _text("origin", origin),
            "exp": round(self._clock() + ttl, 3),
        }
        if routes:
            payload["routes"] = check_routes(routes)
        return payload

    def loads(self, token: str | bytes) -> VerifiedOverrides:
        """Verify *token* and return its overrides, or raise a :class:`TokenError`.

        The size limit is checked before any cryptography; verified tokens are cached
        (256 entries) but expiry is checked on every call.
        """
        if not isinstance(token, str):
            if len(token) > MAX_TOKEN_BYTES:
                raise TokenTooLarge(
                    f"The token is {len(token)} bytes; the limit is {MAX_TOKEN_BYTES}."
                )
            try:
                token = token.decode("ascii")
            except UnicodeDecodeError:
                raise MalformedToken("The token is not ASCII.") from None
        cache = self._cache
        cached = cache.get(token)
        if cached is None:
            # Only tokens within the limit get into the cache: a hit needs no size check.
            if len(token) > MAX_TOKEN_BYTES:
                raise TokenTooLarge(
                    f"The token is {len(token)} bytes; the limit is {MAX_TOKEN_BYTES}."
                )
            cached = self._verify(token)
            with self._lock:
                cache[token] = cached
                if len(cache) > CACHE_SIZE:
                    cache.popitem(last=False)
        else:
            # One C call, atomic under the GIL: no lock on the hot path.
            try:
                cache.move_to_end(token)
            except KeyError:  # evicted by another thread meanwhile
                pass
        if isinstance(cached, TokenError):
            # A fresh exception each time: raising one instance twice chains tracebacks.
            raise type(cached)(str(cached))
        now = self._clock()
        if now >= cached.expires_at:
            cap = ""
            if self.max_age_cap is not None:
                cap = (
                    f" (tokens live at most {self.max_age_cap:g} s after signing here, "
                    "whatever their own expiry)"
                )
            raise TokenExpired(
                f"The token expired {now - cached.expires_at:.0f} s ago{cap}; get a new one."
            )
        return cached

    def _verify(self, token: str) -> VerifiedOverrides | TokenError:
        if _SHAPE.fullmatch(token) is None:
            return MalformedToken("This is not a featureflag override token.")
        try:
            payload, signed_at = self._serializer.loads(token, return_timestamp=True)
        except itsdangerous.BadSignature:
            other = _peek_environment(token)
            if other is not None and other != self.environment:
                return WrongEnvironment(
                    f"The token was made for environment {other[:60]!r}; this app runs as "
                    f"{self.environment!r}. Get a token for {self.environment!r}."
                )
            return BadSignature(
                "The token's signature does not match any configured secret "
                "(another secret, or it was altered)."
            )
        except itsdangerous.BadData:
            # Signed by us but unreadable: only someone holding the secret can make one.
            return MalformedToken("The token's payload cannot be read.")
        try:
            result = _read_payload(payload, self.environment)
        except TokenError as error:
            return error
        if self.max_age_cap is not None:
            cap = signed_at.timestamp() + self.max_age_cap
            if cap < result.expires_at:
                result = replace(result, expires_at=cap)
        return result


def surrogate_problem(text: str) -> str | None:
    """Why *text* is not valid Unicode text, or None when it is.

    A JSON ``"\\ud800"`` escape without its other half decodes to a *lone surrogate*:
    a Python string that cannot be encoded as UTF-8, so it can be neither signed nor
    sent in a header. Tokens, the service and the middleware refuse such strings here,
    before any encoding can raise :class:`UnicodeEncodeError`.
    """
    if text.isascii():  # the common case, and C-fast
        return None
    try:
        text.encode()
    except UnicodeEncodeError as error:
        return (
            f"it holds the lone surrogate U+{ord(text[error.start]):04X} at position "
            f"{error.start}, which is not text; send valid UTF-8 (a JSON \\uD800-\\uDBFF "
            "escape must be followed by its \\uDC00-\\uDFFF half)"
        )
    return None


def override_problem(
    name: object,
    value: object,
    *,
    type: FlagType | None = None,  # the catalog entry's word (FlagInfo.type)
    choices: Sequence[str] | None = None,
) -> str | None:
    """Why *value* cannot override the flag *name*, or None when it can.

    The one wording of the override rules: the flag name rule, a value that is true,
    false or a string of at most ``MAX_VALUE_BYTES``, and, when the flag's declared
    *type* (and Literal *choices*) are known, e.g. from a catalog entry, that the value
    fits them. Tokens, the middleware and the override service all say it this way.
    """
    if not is_valid_name(name):
        return f"Invalid flag name {str(name)[:60]!r}: {NAME_RULE}."
    if not isinstance(value, bool | str):
        return (
            f"Flag {name!r}: the override {value!r:.60} is a {value.__class__.__name__}; "
            "send true, false or a string."
        )
    if isinstance(value, str):
        if (bad := surrogate_problem(value)) is not None:
            return f"Flag {name!r}: the override {value[:60]!r} cannot be sent: {bad}."
        if len(value.encode()) > MAX_VALUE_BYTES:
            return f"Flag {name!r}: the override is longer than {MAX_VALUE_BYTES} bytes."
    if type is None:
        return None
    declared = Flag(
        str(name), kind="", type=type, choices=tuple(choices) if choices is not None else None
    )
    return declared.problem(value)


def check_flags(flags: object) -> dict[str, FlagValue]:
    """Return *flags* as a token carries them, or raise the :class:`TokenError` that
    names the first rule broken: :class:`TooManyFlags` past ``MAX_FLAGS``,
    :class:`InvalidOverride` with :func:`override_problem`'s words."""
    if not isinstance(flags, Mapping):
        raise MalformedToken("The token's flags are not an object.")
    if len(flags) > MAX_FLAGS:
        raise TooManyFlags(f"The token carries {len(flags)} flags; the limit is {MAX_FLAGS}.")
    for name, value in flags.items():
        problem = override_problem(name, value)
        if problem is not None:
            raise InvalidOverride(problem)
    return dict(flags)


def _text(claim: str, value: object) -> str:
    """*value* as the string a token carries, or :class:`MalformedToken` naming why not."""
    text = str(value)
    problem = surrogate_problem(text)
    if problem is not None:
        raise MalformedToken(f"The token's {claim} {text[:60]!r} is refused: {problem}.")
    return text


def _read_payload(payload: object, environment: str) -> VerifiedOverrides:
    if not isinstance(payload, dict) or payload.get("v") != FORMAT_VERSION:
        raise MalformedToken(f"The token is not format version {FORMAT_VERSION}.")
    if payload.get("env") != environment:
        raise WrongEnvironment(f"The token was not made for environment {environment!r}.")
    sub, origin, exp = payload.get("sub"), payload.get("origin"), payload.get("exp")
    if not isinstance(sub, str) or not isinstance(origin, str):
        raise MalformedToken("The token has no sub or origin.")
    # Signed elsewhere (another SDK, an older service): hold it to the rules dumps() keeps.
    _text("sub", sub)
    _text("origin", origin)
    if isinstance(exp, bool) or not isinstance(exp, int | float) or not math.isfinite(exp):
        raise MalformedToken("The token has no valid expiry.")
    routes, problems = read_routes(payload.get("routes"))
    flags = check_flags(payload.get("flags"))
    return VerifiedOverrides(flags, sub, origin, float(exp), routes, problems)


def route_problem(service: object, url: object) -> str | None:
    """Why ``service -> url`` cannot be a route, or None when it can (see ROUTE_RULE)."""
    if not isinstance(service, str) or _SERVICE.fullmatch(service) is None:
        return f"{str(service)[:64]!r}: {SERVICE_RULE}"
    if not isinstance(url, str) or not url.isascii() or len(url) > MAX_ROUTE_BYTES:
        # The rule is ASCII-only: a lone surrogate (or any non-ASCII) never gets encoded.
        return f"{service}: {ROUTE_RULE}"
    match = _ROUTE.fullmatch(url)
    port = match and match["port"]
    if match is None or (port and not 0 < int(port) < 65536):
        return f"{service}: {ROUTE_RULE}"
    return None


def check_routes(routes: object) -> dict[str, str]:
    """*routes* as a plain dict, or :class:`MalformedToken` naming the first broken rule.

    The service (``PUT /api/forks/{name}``) and the SDK share this rule.
    """
    if not isinstance(routes, Mapping):
        raise MalformedToken("routes: send an object of service name -> base URL.")
    if len(routes) > MAX_ROUTES:
        raise MalformedToken(f"routes: {len(routes)} routes; the limit is {MAX_ROUTES}.")
    for service, url in routes.items():
        problem = route_problem(service, url)
        if problem is not None:
            raise MalformedToken(f"routes.{problem}")
    return dict(routes)


def read_routes(claim: object) -> tuple[dict[str, str], dict[str, str]]:
    """The ``routes`` claim of a verified payload: (valid routes, service -> problem).

    Lenient where the token is concerned (a bad route does not refuse the token's
    flags) and strict where the network is: a malformed entry is dropped, never
    followed, and its problem reported. A claim that is not an object, or has too many
    routes, is dropped whole (problem under ``*``).
    """
    if claim is None:
        return {}, {}
    if not isinstance(claim, dict) or len(claim) > MAX_ROUTES:
        return {}, {"*": f"the routes claim must be an object of at most {MAX_ROUTES} routes"}
    routes: dict[str, str] = {}
    problems: dict[str, str] = {}
    for service, url in claim.items():
        problem = route_problem(service, url)
        if problem is None:
            routes[service] = url
        else:
            problems[str(service)[:64]] = problem
    return routes, problems


def _peek_environment(token: str) -> str | None:
    """The ``env`` an *unverified* token claims: used only to name the refusal."""
    try:
        data = token.rsplit(".", 2)[0]
        compressed = data.startswith(".")
        raw = base64_decode(data.lstrip("."))
        if compressed:
            # Bounded: an unverified token must not make us inflate megabytes.
            raw = zlib.decompressobj().decompress(raw, 16 * 1024)
        env = json.loads(raw).get("env")
    except Exception:
        return None
    return env if isinstance(env, str) else None


def _parse_value(text: str) -> FlagValue:
    return {"true": True, "false": False}.get(text, text)


def sign_main(argv: list[str]) -> int:
    """``python -m featureflag sign --flag NAME=VALUE ...``: print a token for curl.

    The secret and environment come from ``FEATUREFLAG_SECRET`` and
    ``FEATUREFLAG_ENVIRONMENT`` (never from the command line: shell history).
    """
    parser = argparse.ArgumentParser(
        prog="python -m featureflag sign",
        description="Print a signed override token (FEATUREFLAG_SECRET, "
        "FEATUREFLAG_ENVIRONMENT from the environment).",
    )
    parser.add_argument(
        "--flag",
        action="append",
        required=True,
        metavar="NAME=VALUE",
        help="an override; true/false become booleans, anything else a string",
    )
    parser.add_argument("--sub", default=os.environ.get("USER") or "cli", help="who asks")
    parser.add_argument("--origin", default="cli", help="where the token comes from")
    parser.add_argument("--ttl", type=float, default=3600, help="seconds (default 3600)")
    parser.add_argument("--environment", help="default: $FEATUREFLAG_ENVIRONMENT")
    args = parser.parse_args(argv)
    flags: dict[str, FlagValue] = {}
    for item in args.flag:
        name, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--flag {item!r}: write NAME=VALUE, e.g. --flag new-lp=b")
        flags[name] = _parse_value(value)
    try:
        signer = OverrideSigner.from_env(environment=args.environment)
        token = signer.dumps(flags, sub=args.sub, origin=args.origin, ttl=args.ttl)
    except (TokenError, ConfigurationError, ValueError) as error:
        print(f"featureflag sign: {error}", file=sys.stderr)
        return 2
    print(token)
    return 0
