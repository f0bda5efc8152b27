"""The API's request and response bodies (pydantic), also the source of /openapi.json.

These models check a body's shape only (which keys, objects where objects go); the
rules a value must follow (a fork's name, upstream, flags, labels, routes, expiry) are
:mod:`featureflag_server.forks`'s, so the API and the web page word them alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

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

from featureflag import NAME_RULE
from featureflag.tokens import MAX_FLAGS, override_problem

from .forks import (
    EXPIRES_RULE,
    FORK_NAME_RULE,
    LABEL_KEY_RULE,
    LABEL_VALUE_RULE,
    MAX_LABELS,
    MAX_ROUTES,
    ROUTE_RULE,
    SERVICE_RULE,
    TTL_RULE,
    UPSTREAM_RULE,
    ForkSpec,
)

MAX_CATALOG = 10_000
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
# Inputs take any JSON value: featureflag_server.forks checks it and says why.
AnyFlagValue = Annotated[Any, WithJsonSchema({"type": ["boolean", "string"]})]
AnyString = Annotated[Any, WithJsonSchema({"type": "string"})]
Flags = Annotated[
    dict[str, AnyFlagValue],
    Field(
        description=f"flag name → override value (at most {MAX_FLAGS}); " + NAME_RULE,
        json_schema_extra={"maxProperties": MAX_FLAGS},
    ),
]


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
        if override_problem(value, "") is not None:
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
    """``PUT /api/forks/{name}``: the whole fork (created, or replaced field by field)."""

    name: AnyString = Field(default=None, description="optional; must match the path")
    upstream: AnyString = Field(description=UPSTREAM_RULE)
    flags: Flags = Field(default_factory=dict)
    labels: dict[str, AnyString] = Field(
        default_factory=dict,
        description=f"key → value, at most {MAX_LABELS}; {LABEL_KEY_RULE}; {LABEL_VALUE_RULE}",
        json_schema_extra={"maxProperties": MAX_LABELS},
    )
    routes: dict[str, AnyString] = Field(
        default_factory=dict,
        description=f"service name → base URL, at most {MAX_ROUTES}; {SERVICE_RULE}; {ROUTE_RULE}",
        json_schema_extra={"maxProperties": MAX_ROUTES},
    )
    expires_at: Annotated[Any, WithJsonSchema({"type": "string", "format": "date-time"})] = Field(
        default=None, description=EXPIRES_RULE + "; in the future"
    )
    ttl: Annotated[Any, WithJsonSchema({"type": "number", "exclusiveMinimum": 0})] = Field(
        default=None, description=f"{TTL_RULE} from now; instead of expires_at"
    )

    def spec(self) -> ForkSpec:
        """What the forks layer checks and stores."""
        return ForkSpec(
            upstream=self.upstream,
            flags=self.flags,
            labels=self.labels,
            routes=self.routes,
            expires_at=self.expires_at,
            ttl=self.ttl,
        )


class ForkCreate(ForkUpdate):
    """``POST /api/forks``: a new fork."""

    name: AnyString = Field(description=FORK_NAME_RULE + ", not reserved")


class ForkOut(BaseModel):
    """A fork as the API returns it."""

    name: str
    upstream: str
    flags: dict[str, FlagValue]
    url: str = Field(description="where the fork is served: http://NAME.<fork domain>:PORT/")
    created_by: str
    created_at: datetime
    updated_at: datetime
    labels: dict[str, str]
    routes: dict[str, str] = Field(description="service name → base URL")
    expires_at: datetime | None = Field(description="None: the fork never expires")
    updated_by: str = Field(description="the API token's name that last wrote it")


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
