"""The override service's settings: command-line options and environment variables.

Secrets and users come from the environment only (never from argv, which other users
of the machine can read): ``FEATUREFLAG_SECRET`` (comma-separated; the first signs, all
verify), ``FEATUREFLAG_ENVIRONMENT`` and ``FEATUREFLAG_API_TOKENS`` (``name:token,...``,
every scope; ``name:token:read+forks`` for a token with only those scopes, see
:data:`SCOPES`);
the database URL may come from ``FEATUREFLAG_DATABASE_URL`` (``--db`` wins).
A missing or weak value stops start-up with a :class:`ConfigurationError` that says
what to set.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from featureflag import __version__
from featureflag.exceptions import ConfigurationError

if TYPE_CHECKING:
    from featureflag.tokens import OverrideSigner

    from .upstream_policy import UpstreamPolicy

MIN_SECRET_BYTES = 32
MIN_API_TOKEN_LENGTH = 16
DEFAULT_MAX_TOKEN_TTL = 12 * 3600.0
GENERATE = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
_TOKEN_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")
_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
# What an API token may do. ``read``: GET /api/flags and /api/forks, and the web page;
# ``forks``: write forks and the catalog (API and page); ``tokens``: POST /api/tokens;
# ``gateway``: GET /api/forward-auth.
ApiScope = Literal["read", "forks", "tokens", "gateway"]
SCOPES: tuple[ApiScope, ...] = get_args(ApiScope)
ALL_SCOPES: frozenset[str] = frozenset(SCOPES)
# The tail of a scoped entry (name:token:read+forks): lower-case words joined by '+'.
_SCOPE_LIST = re.compile(r"^[a-z]+(?:\+[a-z]+)*$")

# Where each setting comes from, so an error message names what to change.
SOURCES = {
    "secret": "FEATUREFLAG_SECRET",
    "environment": "FEATUREFLAG_ENVIRONMENT",
    "api_tokens": "FEATUREFLAG_API_TOKENS",
    "api_scopes": "FEATUREFLAG_API_TOKENS",
    "max_token_ttl": "FEATUREFLAG_MAX_TOKEN_TTL (or --max-token-ttl)",
    "host": "--host",
    "port": "--port",
    "db": "--db (or FEATUREFLAG_DATABASE_URL)",
    "migrate": "--no-migrate",
    "fork_domain": "--fork-domain",
    "forwarded_allow_ips": "--forwarded-allow-ips",
    "secure_cookies": "--secure-cookies",
    "access_log": "--no-access-log",
    "loop": "--loop",
    "forward_auth_cache": "--forward-auth-cache",
    "expired_fork_grace": "--expired-fork-grace",
    "upstream_connections": "--upstream-connections",
    "fork_upstreams": "--fork-upstreams",
    "server": "--server",
    "http": "--http",
    "max_header_bytes": "--max-header-bytes",
    "header_timeout": "--header-timeout",
    "keep_alive_timeout": "--keep-alive-timeout",
    "max_connections": "--max-connections",
}

DEFAULT_EXPIRED_FORK_GRACE = 7 * 86400.0

Loop = Literal["auto", "asyncio", "uvloop"]
LOOPS: tuple[Loop, ...] = get_args(Loop)
HttpParser = Literal["h11", "httptools"]
HTTP_PARSERS: tuple[HttpParser, ...] = get_args(HttpParser)
# The HTTP server the service runs on: uvicorn (the default) has no header timeout;
# granian enforces every limit (docs/server.md, "Limits on direct connections").
ServerName = Literal["uvicorn", "granian"]
SERVERS: tuple[ServerName, ...] = get_args(ServerName)
# Limits on direct connections (docs/server.md, "Limits"): the server's own settings.
# hyper (granian's HTTP/1.1) refuses a read buffer smaller than 8 KiB.
DEFAULT_MAX_HEADER_BYTES = 64 * 1024
DEFAULT_KEEP_ALIVE_TIMEOUT = 5
DEFAULT_MAX_CONNECTIONS = 1000
GRANIAN_MIN_HEADER_BYTES = 8192


class Settings(BaseModel):
    """Everything the service needs to start; build it with :func:`load_settings`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    # An SQLite file (a Path) or a postgresql:// URL (a str; kept out of repr: it may
    # carry a password).
    db: Path | str = Field(default=Path("featureflag.sqlite3"), repr=False)
    migrate: bool = True
    fork_domain: str = "localhost"
    secret: tuple[SecretStr, ...]
    environment: str = Field(default="development", min_length=1, max_length=64)
    api_tokens: dict[str, SecretStr] = Field(default_factory=dict)
    # The scopes of each API token by name; a name not in it has every scope.
    api_scopes: dict[str, frozenset[ApiScope]] = Field(default_factory=dict)
    max_token_ttl: float = Field(default=DEFAULT_MAX_TOKEN_TTL, gt=0, le=366 * 86400)
    forwarded_allow_ips: str = "127.0.0.1"
    secure_cookies: bool = False
    access_log: bool = True
    loop: Loop = "auto"
    # How long a gateway may reuse a /api/forward-auth answer (Cache-Control: max-age).
    forward_auth_cache: int = Field(default=5, ge=0, le=3600)
    # How long an expired fork's URL keeps answering 410 (with how to renew it) before
    # the fork is deleted.
    expired_fork_grace: float = Field(default=DEFAULT_EXPIRED_FORK_GRACE, ge=0, le=366 * 86400)
    # Most connections the fork proxy keeps open to upstreams, all together.
    upstream_connections: int = Field(default=100, ge=1, le=100_000)
    # Where forks may point (upstream_policy.HostPattern entries, comma-separated); empty:
    # anywhere but the always-refused addresses.
    fork_upstreams: str = ""
    server: ServerName = "uvicorn"
    # The HTTP/1.1 parser: h11 bounds a request head (max_header_bytes); httptools does not.
    http: HttpParser = "h11"
    max_header_bytes: int = Field(default=DEFAULT_MAX_HEADER_BYTES, ge=1024, le=16 * 1024 * 1024)
    # Seconds from a connection's start (or its last response) to a complete request
    # head; None: no such timeout (uvicorn has none). See _server_limits.
    header_timeout: int | None = Field(default=None, ge=1, le=3600)
    keep_alive_timeout: int = Field(default=DEFAULT_KEEP_ALIVE_TIMEOUT, ge=1, le=3600)
    max_connections: int = Field(default=DEFAULT_MAX_CONNECTIONS, ge=1, le=1_000_000)

    @model_validator(mode="before")
    @classmethod
    def _server_limits(cls, data: object) -> object:
        """Fill in the limits the chosen server can honour; refuse those it cannot.

        A limit left out (or None) takes the server's default. uvicorn has no header
        timeout. granian (hyper's header_read_timeout) has one timer for both: it runs
        from a connection's start, and again from the end of each response, until a
        request head is complete; so --header-timeout and --keep-alive-timeout are one
        value there. hyper's read buffer (--max-header-bytes) is at least 8 KiB.
        """
        if not isinstance(data, dict):
            return data
        given = {key: value for key, value in data.items() if value is not None}
        server = given.get("server", "uvicorn")
        header, keep_alive = given.get("header_timeout"), given.get("keep_alive_timeout")
        if server == "uvicorn":
            if header is not None:
                raise ValueError(
                    "--header-timeout needs --server granian: uvicorn has no timeout for "
                    "reading a request head (put a gateway with one in front, or run on "
                    "granian; docs/server.md, 'Limits on direct connections')"
                )
            return given
        if server == "granian":
            if header is not None and keep_alive is not None and header != keep_alive:
                raise ValueError(
                    f"--header-timeout {header} and --keep-alive-timeout {keep_alive} differ, "
                    "but on granian they are one timer (it runs from a connection's start "
                    "and from the end of each response until a request head is complete): "
                    "give one of them, or the same value"
                )
            if given.get("max_header_bytes", DEFAULT_MAX_HEADER_BYTES) < GRANIAN_MIN_HEADER_BYTES:
                raise ValueError(
                    f"--max-header-bytes on granian is at least {GRANIAN_MIN_HEADER_BYTES} "
                    "(the smallest read buffer hyper, its HTTP/1.1 parser, accepts)"
                )
            if given.get("http", "h11") != "h11":
                raise ValueError(
                    "--http httptools needs --server uvicorn: granian parses with hyper"
                )
            timer = header if header is not None else keep_alive
            timer = DEFAULT_KEEP_ALIVE_TIMEOUT if timer is None else timer
            return given | {"header_timeout": timer, "keep_alive_timeout": timer}
        return given

    @field_validator("fork_upstreams")
    @classmethod
    def _check_fork_upstreams(cls, value: str) -> str:
        from .upstream_policy import parse_patterns

        parse_patterns(value)  # ValueError says which entry and how to spell it
        return value

    @field_validator("db", mode="before")
    @classmethod
    def _db_kind(cls, value: object) -> object:
        from .store import is_postgres_url

        if isinstance(value, str) and not is_postgres_url(value):
            if "://" in value:
                raise ValueError(
                    "give an SQLite file path or a postgresql://user@host:port/dbname URL"
                )
            return Path(value)
        return value

    @property
    def database(self) -> str:
        """The database for messages: the file, or the URL without its password."""
        if isinstance(self.db, Path):
            return str(self.db)
        from .postgres_store import redact

        return redact(self.db)

    @field_validator("secret", mode="before")
    @classmethod
    def _split_secret(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("secret")
    @classmethod
    def _check_secret(cls, value: tuple[SecretStr, ...]) -> tuple[SecretStr, ...]:
        if not value:
            raise ValueError(f"set it to a random string of at least {MIN_SECRET_BYTES} bytes")
        for i, secret in enumerate(value):
            if len(secret.get_secret_value().encode()) < MIN_SECRET_BYTES:
                which = "the secret" if len(value) == 1 else f"secret number {i + 1}"
                raise ValueError(
                    f"{which} is shorter than {MIN_SECRET_BYTES} bytes; generate one with "
                    f"{GENERATE}"
                )
        return value

    @model_validator(mode="before")
    @classmethod
    def _parse_api_tokens(cls, data: object) -> object:
        # FEATUREFLAG_API_TOKENS as one string carries the scopes too.
        if isinstance(data, dict) and isinstance(data.get("api_tokens"), str):
            tokens, scopes = parse_scoped_api_tokens(data["api_tokens"])
            data = {**data, "api_tokens": tokens, "api_scopes": scopes}
        return data

    @field_validator("api_tokens")
    @classmethod
    def _check_api_tokens(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        seen: set[str] = set()
        for name, token in value.items():
            if not _TOKEN_NAME.fullmatch(name):
                raise ValueError(
                    f"the name {name!r} must be 1-64 letters, digits, '_', '.', '@' or '-'"
                )
            raw = token.get_secret_value()
            if len(raw) < MIN_API_TOKEN_LENGTH or any(c.isspace() for c in raw):
                raise ValueError(
                    f"the token for {name!r} must be at least {MIN_API_TOKEN_LENGTH} "
                    f"characters with no spaces; generate one with {GENERATE}"
                )
            if raw in seen:
                raise ValueError(f"the token for {name!r} is also another user's token")
            seen.add(raw)
        return value

    @model_validator(mode="after")
    def _scoped_names_exist(self) -> Settings:
        for name in self.api_scopes:
            if name not in self.api_tokens:
                raise ValueError(f"api_scopes names {name!r}, which has no API token")
        return self

    @field_validator("fork_domain", mode="before")
    @classmethod
    def _check_fork_domain(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        domain = value.strip().strip(".").lower()
        if not domain or not all(_LABEL.fullmatch(label) for label in domain.split(".")):
            raise ValueError(
                "give a host name without scheme or port, like qa.example.com or localhost"
            )
        return domain

    @property
    def secret_values(self) -> list[str]:
        """The secrets as plain strings, the signing one first."""
        return [s.get_secret_value() for s in self.secret]

    @property
    def signing_secret(self) -> str:
        """The secret that signs (the first one)."""
        return self.secret[0].get_secret_value()

    def scopes(self, name: str) -> frozenset[str]:
        """What the API token called *name* may do (every scope unless it was scoped)."""
        scoped = self.api_scopes.get(name)
        return ALL_SCOPES if scoped is None else frozenset(scoped)

    def authenticate(self, given: str) -> str | None:
        """The name of the API token *given*, or None (constant-time compare)."""
        from .auth import authenticate

        return authenticate(self.api_tokens, given)

    def signer(self) -> OverrideSigner:
        """An :class:`featureflag.OverrideSigner` for these secrets and environment."""
        from featureflag.tokens import OverrideSigner

        return OverrideSigner(
            self.secret_values, environment=self.environment, max_age_cap=self.max_token_ttl
        )

    def upstream_policy(self) -> UpstreamPolicy:
        """Where forks may point: ``--fork-upstreams`` and this service's own socket."""
        from .upstream_policy import UpstreamPolicy

        return UpstreamPolicy.create(self.fork_upstreams, [(self.host, self.port)])

    @property
    def service_host(self) -> str:
        """The host name of the service itself, as fork pages link to it (their scheme and
        port are those of the visitor's request).

        With the fork domain ``localhost`` (one machine: browsers resolve ``*.localhost``
        to loopback) it is the address the service listens on and announces at start-up,
        ``--host`` (``127.0.0.1`` by default, and for an all-addresses ``0.0.0.0`` or
        ``::``), where the README and the demo sign people in: a session cookie is kept
        per host, so a link to ``localhost`` would ask them to sign in again. With a real
        fork domain, the bare domain, which the team's DNS or ingress sends to the service.
        """
        domain = self.fork_domain
        if domain != "localhost" and not domain.endswith(".localhost"):
            return domain
        host = self.host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            return "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    def fork_url(self, name: str, scheme: str = "http", port: int | None = None) -> str:
        """Where fork *name* is served: ``http://new-lp.localhost:8000/``.

        *scheme* and *port* are those the client used to reach the service (so behind a
        TLS proxy on 443 the URL is ``https://new-lp.qa.example.com/``).
        """
        default = {"http": 80, "https": 443}.get(scheme)
        suffix = "" if port is None or port == default else f":{port}"
        return f"{scheme}://{name}.{self.fork_domain}{suffix}/"


def parse_api_tokens(value: str) -> dict[str, str]:
    """Parse ``name:token,name2:token2`` (scopes, if any, dropped: see
    :func:`parse_scoped_api_tokens`); raise ValueError saying what is wrong."""
    return parse_scoped_api_tokens(value)[0]


def parse_scoped_api_tokens(value: str) -> tuple[dict[str, str], dict[str, frozenset[ApiScope]]]:
    """Parse ``name:token,name2:token2:read+forks``: the tokens by name, and the scopes of
    the entries that name them (an entry without scopes has every scope).

    A third ``:``-separated part made of lower-case words joined by ``+`` is a scope list;
    an unknown word in it is an error (a typo must not grant every scope).
    """
    tokens: dict[str, str] = {}
    scopes: dict[str, frozenset[ApiScope]] = {}
    for item in value.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, token = item.partition(":")
        if not sep or not name.strip() or not token.strip():
            raise ValueError(
                f"each entry must be name:token or name:token:scope+scope, got {_mask(item)!r}"
            )
        name = name.strip()
        if name in tokens:
            raise ValueError(f"the name {name!r} appears twice")
        secret, colon, tail = token.strip().rpartition(":")
        if colon and secret and _SCOPE_LIST.fullmatch(tail):
            words = tail.split("+")
            unknown = [word for word in words if word not in SCOPES]
            if unknown:
                raise ValueError(
                    f"the scope {unknown[0]!r} of {name!r} is not one of "
                    f"{'+'.join(SCOPES)} (leave the scopes out for all of them)"
                )
            scopes[name] = frozenset(word for word in SCOPES if word in words)
            token = secret
        tokens[name] = token.strip()
    return tokens, scopes


def _mask(item: str) -> str:
    # Never echo a token into a log: keep the part before ':' and the length.
    name, _, token = item.partition(":")
    return f"{name}:<{len(token)} characters>" if token else f"<{len(item)} characters>"


def build_parser() -> argparse.ArgumentParser:
    """The ``featureflag-server`` command line."""
    parser = argparse.ArgumentParser(
        prog="featureflag-server",
        description=(
            "The featureflag override service: mints override tokens, keeps the flag "
            "catalog and serves fork URLs. Secrets come from the environment: "
            "FEATUREFLAG_SECRET, FEATUREFLAG_ENVIRONMENT, FEATUREFLAG_API_TOKENS."
        ),
    )
    parser.add_argument("--version", action="version", version=f"featureflag-server {__version__}")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port to bind (8000)")
    parser.add_argument(
        "--db",
        default=None,
        help=(
            "an SQLite file, or postgresql://user@host:port/dbname for several replicas "
            "(FEATUREFLAG_DATABASE_URL, else ./featureflag.sqlite3)"
        ),
    )
    parser.add_argument(
        "--no-migrate",
        dest="migrate",
        action="store_false",
        help="do not migrate the schema at start-up (run featureflag-server migrate first)",
    )
    parser.add_argument(
        "--fork-domain",
        default="localhost",
        help="forks are served at NAME.<fork domain> (localhost)",
    )
    parser.add_argument(
        "--max-token-ttl",
        type=float,
        default=None,
        help="longest override token lifetime in seconds (43200 = 12 h)",
    )
    parser.add_argument(
        "--forwarded-allow-ips",
        default="127.0.0.1",
        help="proxies trusted for X-Forwarded-* headers (127.0.0.1)",
    )
    parser.add_argument(
        "--secure-cookies",
        action="store_true",
        help="mark the web page's session cookie Secure (set this behind HTTPS)",
    )
    parser.add_argument(
        "--no-access-log",
        dest="access_log",
        action="store_false",
        help="no line per request (when the proxy in front already logs them)",
    )
    parser.add_argument(
        "--loop",
        choices=LOOPS,
        default="auto",
        help="event loop: uvloop when it is installed, else asyncio (auto)",
    )
    parser.add_argument(
        "--forward-auth-cache",
        type=int,
        default=5,
        help="seconds a gateway may cache a /api/forward-auth answer (5)",
    )
    parser.add_argument(
        "--expired-fork-grace",
        type=float,
        default=DEFAULT_EXPIRED_FORK_GRACE,
        help="seconds an expired fork stays (its URL answers 410) before it is deleted "
        "(604800 = 7 days)",
    )
    parser.add_argument(
        "--upstream-connections",
        type=int,
        default=100,
        help="most connections the fork proxy keeps open to upstreams, all together (100)",
    )
    parser.add_argument(
        "--fork-upstreams",
        default="",
        help="comma-separated hosts forks may point at: HOST, *.DOMAIN, an address or "
        "network, each with an optional :PORT or :* (default: any host but link-local, "
        "cloud metadata and this service's own address)",
    )
    parser.add_argument(
        "--server",
        choices=SERVERS,
        default="uvicorn",
        help="the HTTP server: granian enforces every limit below, uvicorn all but "
        "--header-timeout (uvicorn)",
    )
    parser.add_argument(
        "--http",
        choices=HTTP_PARSERS,
        default=None,
        help="uvicorn's HTTP/1.1 parser: h11 enforces --max-header-bytes, httptools is "
        "faster but unbounded; use it only behind a gateway that limits headers (h11)",
    )
    parser.add_argument(
        "--max-header-bytes",
        type=int,
        default=DEFAULT_MAX_HEADER_BYTES,
        help=f"largest request head (request line and headers) in bytes; past it the "
        f"connection gets a 400 (granian: 431, at least 8192) and is closed "
        f"({DEFAULT_MAX_HEADER_BYTES})",
    )
    parser.add_argument(
        "--header-timeout",
        type=int,
        default=None,
        help="seconds a client has to send a complete request head, from connecting or from "
        "the end of the last response; then the connection is closed (granian only: the "
        f"same timer as --keep-alive-timeout; {DEFAULT_KEEP_ALIVE_TIMEOUT})",
    )
    parser.add_argument(
        "--keep-alive-timeout",
        type=int,
        default=None,
        help=f"seconds an idle kept-alive connection stays open ({DEFAULT_KEEP_ALIVE_TIMEOUT})",
    )
    parser.add_argument(
        "--max-connections",
        type=int,
        default=None,
        help=f"most client connections at once; past it uvicorn answers 503, granian "
        f"leaves new connections waiting to be accepted ({DEFAULT_MAX_CONNECTIONS})",
    )
    return parser


def load_settings(argv: Sequence[str] | None, environ: Mapping[str, str]) -> Settings:
    """Settings from *argv* and *environ*; raise ConfigurationError naming what to set.

    argparse itself exits with status 2 on an unknown option.
    """
    args = build_parser().parse_args(argv)
    missing = [
        name for name in ("FEATUREFLAG_SECRET", "FEATUREFLAG_API_TOKENS") if not environ.get(name)
    ]
    if missing:
        raise ConfigurationError(_missing_message(missing))
    raw: dict[str, Any] = {
        "host": args.host,
        "port": args.port,
        "db": args.db or environ.get("FEATUREFLAG_DATABASE_URL") or "featureflag.sqlite3",
        "migrate": args.migrate,
        "fork_domain": args.fork_domain,
        "forwarded_allow_ips": args.forwarded_allow_ips,
        "secure_cookies": args.secure_cookies,
        "access_log": args.access_log,
        "loop": args.loop,
        "forward_auth_cache": args.forward_auth_cache,
        "expired_fork_grace": args.expired_fork_grace,
        "upstream_connections": args.upstream_connections,
        "fork_upstreams": args.fork_upstreams,
        "server": args.server,
        "http": args.http,
        "max_header_bytes": args.max_header_bytes,
        "header_timeout": args.header_timeout,
        "keep_alive_timeout": args.keep_alive_timeout,
        "max_connections": args.max_connections,
        "secret": environ["FEATUREFLAG_SECRET"],
        "environment": environ.get("FEATUREFLAG_ENVIRONMENT") or "development",
    }
    ttl = args.max_token_ttl
    if ttl is None and environ.get("FEATUREFLAG_MAX_TOKEN_TTL"):
        ttl = environ["FEATUREFLAG_MAX_TOKEN_TTL"]
    if ttl is not None:
        raw["max_token_ttl"] = ttl
    if args.loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        raise ConfigurationError(
            "--loop uvloop needs the uvloop package: pip install uvloop, or use --loop asyncio."
        )
    if args.server == "granian" and importlib.util.find_spec("granian") is None:
        raise ConfigurationError(
            "--server granian needs the granian package: pip install "
            "'featureflag[granian]', or use --server uvicorn."
        )
    try:
        raw["api_tokens"], raw["api_scopes"] = parse_scoped_api_tokens(
            environ["FEATUREFLAG_API_TOKENS"]
        )
    except ValueError as exc:
        raise ConfigurationError(f"FEATUREFLAG_API_TOKENS is invalid: {exc}.") from None
    if not raw["api_tokens"]:
        raise ConfigurationError(_missing_message(["FEATUREFLAG_API_TOKENS"]))
    try:
        return Settings(**raw)
    except ValidationError as exc:
        raise ConfigurationError(describe_validation_error(exc)) from None


def describe_validation_error(exc: ValidationError) -> str:
    """One line per problem, naming the variable or option to change."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        message = str(error["msg"]).removeprefix("Value error, ")
        if not error["loc"]:  # a rule across settings: its message names the options
            lines.append(f"{message}.")
            continue
        field = str(error["loc"][0])
        lines.append(f"{SOURCES.get(field, field)} is invalid: {message}.")
    return "\n".join(lines)


def _missing_message(missing: list[str]) -> str:
    hints = {
        "FEATUREFLAG_SECRET": (
            f"FEATUREFLAG_SECRET (at least {MIN_SECRET_BYTES} random bytes; generate one "
            f"with {GENERATE})"
        ),
        "FEATUREFLAG_API_TOKENS": (
            "FEATUREFLAG_API_TOKENS (who may use the API, as name:token,name2:token2, "
            "or name:token:read+forks for a token with only those scopes; "
            "each token at least 16 characters)"
        ),
    }
    return "Set " + " and ".join(hints[name] for name in missing) + " in the environment."
