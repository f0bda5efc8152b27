"""The API's request and response bodies (pydantic), also the source of /openapi.json.

Rules that need outside knowledge (a flag's type in the catalog, the token size) are
checked in :mod:`featureflag_server.api`; what a body can say about itself is checked here.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    StrictBool,
    StrictStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from featureflag._names import NAME_RULE, is_valid_name

from .store import fork_name_problem

MAX_FLAGS = 200  # what one override token may carry (featureflag.tokens.MAX_FLAGS)
MAX_CATALOG = 10_000
UPSTREAM_RULE = (
    "upstream is an absolute http:// or https:// URL with a host, "
    "no user:password@, query or fragment"
)
ORIGIN_RULE = "origin is 1-64 lowercase letters, digits, '-', '_' or ':', not starting with fork:"


def _flag_value(value: object) -> bool | str:
    if isinstance(value, bool | str):
        return value
    raise ValueError(f"an override is true, false or a string, not {type(value).__name__}")


FlagValue = Annotated[
    bool | str,
    PlainValidator(_flag_value),
    WithJsonSchema({"type": ["boolean", "string"], "description": "true/false or a string"}),
]
Flags = Annotated[
    dict[str, FlagValue],
    Field(
        max_length=MAX_FLAGS,
        description=f"flag name → override value (at most {MAX_FLAGS}); " + NAME_RULE,
    ),
]


def _check_flag_names(flags: dict[str, Any]) -> dict[str, Any]:
    for name in flags:
        if not is_valid_name(name):
            raise ValueError(f"{name[:60]!r}: {NAME_RULE}")
    return flags


def upstream_problem(url: str) -> str | None:
    """Why *url* cannot be a fork's upstream, or None."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return UPSTREAM_RULE
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return UPSTREAM_RULE
    if parts.username is not None or parts.query or parts.fragment or len(url) > 2048:
        return UPSTREAM_RULE
    if any(c.isspace() for c in url):
        return UPSTREAM_RULE
    return None


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TokenRequest(_Body):
    """``POST /api/tokens``: the overrides to sign and for how long."""

    flags: Flags
    ttl: float | None = Field(
        default=None,
        gt=0,
        strict=True,
        allow_inf_nan=False,
        description="lifetime in seconds (default 3600), capped at the service's maximum",
    )
    origin: str = Field(default="extension", description="where the token is used")

    _names = field_validator("flags")(_check_flag_names)

    @field_validator("origin")
    @classmethod
    def _check_origin(cls, value: str) -> str:
        if not (0 < len(value) <= 64) or value.startswith("fork:"):
            raise ValueError(ORIGIN_RULE)
        if not all(c.isascii() and (c.islower() or c.isdigit() or c in "-_:") for c in value):
            raise ValueError(ORIGIN_RULE)
        return value


class TokenResponse(BaseModel):
    """A freshly signed override token."""

    token: str = Field(description="send as the Feature-Flag-Overrides header or cookie")
    expires_at: str = Field(description="ISO 8601 UTC")
    sub: str = Field(description="who asked: the API token's name")


class FlagEntry(BaseModel):
    """One catalog entry, as ``featureflag.FlagInfo.to_json()`` writes it."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(description=NAME_RULE)
    type: Literal["bool", "str"] | None = None
    choices: list[StrictStr] | None = None
    default: StrictBool | StrictStr | None = None
    kind: str = ""
    module: str = ""
    path: str = ""
    line: int = Field(default=0, ge=0)
    description: str | None = None
    service: str | None = Field(
        default=None,
        description="the service whose catalog push brought it (PUT /api/flags?service=...)",
    )

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not is_valid_name(value):
            raise ValueError(NAME_RULE)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FlagEntry:
        if self.choices is not None and self.type != "str":
            raise ValueError("choices are only for flags of type 'str'")
        if self.default is not None and self.type is not None:
            if (self.type == "bool") != isinstance(self.default, bool):
                raise ValueError(f"default {self.default!r} is not of type {self.type!r}")
        return self


class Catalog(_Body):
    """``GET/PUT /api/flags``: the flag catalog (``python -m featureflag catalog``)."""

    flags: list[FlagEntry] = Field(max_length=MAX_CATALOG)

    @field_validator("flags")
    @classmethod
    def _unique(cls, value: list[FlagEntry]) -> list[FlagEntry]:
        seen: set[str] = set()
        for entry in value:
            if entry.name in seen:
                raise ValueError(f"the flag {entry.name!r} appears twice; names are unique")
            seen.add(entry.name)
        return value


class ForkUpdate(_Body):
    """``PUT /api/forks/{name}``: the fork's new upstream and flags (replaces both)."""

    name: str | None = Field(default=None, description="optional; must match the path")
    upstream: str = Field(description=UPSTREAM_RULE)
    flags: Flags = Field(default_factory=dict)

    _names = field_validator("flags")(_check_flag_names)

    @field_validator("upstream")
    @classmethod
    def _check_upstream(cls, value: str) -> str:
        problem = upstream_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class ForkCreate(ForkUpdate):
    """``POST /api/forks``: a new fork."""

    name: str = Field(description="a DNS label, not reserved")

    @field_validator("name")
    @classmethod
    def _check_fork_name(cls, value: str) -> str:
        problem = fork_name_problem(value)
        if problem:
            raise ValueError(problem)
        return value


class ForkOut(BaseModel):
    """A fork as the API returns it."""

    name: str
    upstream: str
    flags: dict[str, FlagValue]
    url: str = Field(description="where the fork is served: http://NAME.<fork domain>:PORT/")
    created_by: str
    created_at: datetime
    updated_at: datetime


class ForkList(BaseModel):
    """``GET /api/forks``."""

    forks: list[ForkOut]


class Health(BaseModel):
    """``GET /healthz``."""

    status: Literal["ok"]


class FieldProblem(BaseModel):
    """One rule a field broke."""

    field: str = Field(description="dotted path into the body, e.g. flags.new-lp")
    rule: str


class Problem(BaseModel):
    """Every error response: a short code, a sentence, and the fields at fault."""

    error: str = Field(description="e.g. invalid, malformed-json, unauthorized, not-found")
    message: str
    errors: list[FieldProblem] = Field(default_factory=list)
