"""The override service's exceptions, rooted in :class:`featureflag.FeatureFlagError`.

::

    FeatureFlagError
     ├── ConfigurationError         a bad setting at start-up (featureflag.exceptions)
     └── ServerError                the override service
          ├── ApiError              a request the API refuses: status, code, field problems
          ├── InvalidFork           a fork breaks the fork rules, per field (HTTP 422)
          ├── ForkExists            create_fork: the name is taken        (HTTP 409)
          ├── ForkNotFound          update_fork: no fork by that name     (HTTP 404)
          ├── CatalogConflict       put_catalog: a flag another service pushed (HTTP 409)
          ├── TooManyAttempts       too many unknown API tokens from one address (HTTP 429)
          └── StoreError            the store cannot be used as it is
               ├── SchemaTooNew     the database was written by a newer release
               ├── SchemaTooOld     the database needs `featureflag-server migrate`
               └── StoreUnavailable the database cannot be reached now   (HTTP 503)

Context travels as attributes (``name``, ``version``, ``problems``). The API turns each
into a JSON problem and the web page into a re-rendered form, through Starlette's
``exception_handlers``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from featureflag.exceptions import FeatureFlagError


class ServerError(FeatureFlagError):
    """Root of the errors raised by the ``server`` package."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    """One rule a field broke: *field* is a dotted path (``flags.new-lp``)."""

    field: str
    rule: str

    def to_json(self) -> dict[str, str]:
        """The API's ``{"field", "rule"}`` form."""
        return {"field": self.field, "rule": self.rule}


class ApiError(ServerError):
    """A request the API refuses; it becomes a JSON
    :class:`~featureflag_server.schemas.Problem` response with *status*."""

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        *,
        problems: Sequence[FieldProblem] = (),
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.problems = list(problems)
        self.headers = dict(headers or {})


class InvalidFork(ServerError, ValueError):
    """A fork (or the flags of a token) breaks the rules; *problems* names each field."""

    def __init__(self, problems: Sequence[FieldProblem]) -> None:
        summary = "; ".join(f"{p.field}: {p.rule}" for p in problems[:5])
        super().__init__(f"The request is invalid: {summary}")
        self.problems = list(problems)


class ForkExists(ServerError):
    """A fork with this name already exists."""

    def __init__(self, name: str) -> None:
        super().__init__(
            f"A fork named {name!r} already exists; choose another name or update that fork."
        )
        self.name = name


class ForkNotFound(ServerError, LookupError):
    """No fork has this name."""

    def __init__(self, name: str) -> None:
        super().__init__(f"No fork is named {name!r}; create it first (POST /api/forks).")
        self.name = name


class CatalogConflict(ServerError):
    """A service pushed a flag that another service's catalog already has."""

    def __init__(self, name: str, owner: str | None) -> None:
        if owner:
            whose = f"service {owner!r}"
            fix = "rename one of them, or push it from one service only"
        else:
            whose = "the catalog pushed without a service"
            fix = "a push without ?service replaces the whole catalog, so it can clear it"
        super().__init__(
            f"The flag {name!r} is already in {whose}; a flag name belongs to one service ({fix})."
        )
        self.name = name
        self.owner = owner


class TooManyAttempts(ServerError):
    """Too many unknown API tokens came from one address; it may try again later."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(
            f"Too many unknown API tokens from this address; try again in {retry_after} s."
        )
        self.retry_after = retry_after


class StoreError(ServerError):
    """The store cannot be opened or used (a bad path, a damaged file)."""


class SchemaTooNew(StoreError):
    """The database has a schema version this release does not know."""

    def __init__(self, path: str, version: int, known: int) -> None:
        super().__init__(
            f"The database {path} has schema version {version}, but this release of "
            f"featureflag-server knows versions up to {known}. Upgrade featureflag, or "
            "point --db at another file."
        )
        self.version = version
        self.known = known


class SchemaTooOld(StoreError):
    """The database's schema is older than this release needs (started with --no-migrate)."""

    def __init__(self, where: str, version: int, needed: int) -> None:
        super().__init__(
            f"The database {where} has schema version {version}, but this release of "
            f"featureflag-server needs version {needed}. Run: featureflag-server migrate "
            f"--db URL (or start without --no-migrate)."
        )
        self.version = version
        self.needed = needed


class StoreUnavailable(StoreError):
    """The database cannot be reached right now (restarting, network); retry later."""

    def __init__(self, where: str, reason: object) -> None:
        super().__init__(
            f"The database {where} is unavailable ({reason}); the service retries on "
            "every request, try again in a moment."
        )
        self.where = where
