"""Forks and the storage interface every backend implements.

A :class:`Store` keeps forks and the flag catalog.
:class:`~featureflag_server.sqlite_store.SQLiteStore` is the default backend,
:class:`~featureflag_server.postgres_store.PostgresStore` the one for several replicas,
and :class:`~featureflag_server.memory_store.MemoryStore` a test double; all pass the
shared suite in ``tests/server/test_store.py``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

FlagValue = bool | str


def utcnow() -> datetime:
    """The current time, timezone-aware UTC (what stores record)."""
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class Fork:
    """A named fork: requests to ``<name>.<fork domain>`` go to *upstream* with *flags*."""

    name: str
    upstream: str
    flags: dict[str, FlagValue] = field(default_factory=dict)
    created_by: str = ""
    created_at: datetime = field(default_factory=utcnow)
    updated_at: datetime = field(default_factory=utcnow)
    labels: dict[str, str] = field(default_factory=dict)
    routes: dict[str, str] = field(default_factory=dict)
    expires_at: datetime | None = None
    updated_by: str = ""

    def copy(self) -> Fork:
        """A copy whose dicts the caller may change without changing this fork's.

        Stores and the fork cache hand out copies. (The constructor, not
        ``dataclasses.replace``: the cache calls this on every proxied request.)
        """
        return Fork(
            self.name,
            self.upstream,
            dict(self.flags),
            self.created_by,
            self.created_at,
            self.updated_at,
            dict(self.labels),
            dict(self.routes),
            self.expires_at,
            self.updated_by,
        )

    def to_json(self, url: str) -> dict[str, Any]:
        """The API's JSON form; *url* is where the fork is served (see ``Settings.fork_url``)."""
        return {
            "name": self.name,
            "upstream": self.upstream,
            "flags": dict(self.flags),
            "url": url,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "labels": dict(self.labels),
            "routes": dict(self.routes),
            "expires_at": iso(self.expires_at) if self.expires_at else None,
            "updated_by": self.updated_by,
        }


def __getattr__(name: str) -> Callable[[object], str | None]:
    # The fork name rule moved to featureflag_server.forks (the fork rules' one home);
    # ``from .store import fork_name_problem`` keeps working. Imported lazily because
    # forks imports this module.
    if name == "fork_name_problem":
        from .forks import fork_name_problem

        return fork_name_problem
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: ``2026-11-26T03:15:10.123456Z``."""
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Store(Protocol):
    """Async storage for forks and the flag catalog.

    A write returns only after it is durable (committed). Timestamps are timezone-aware
    UTC. ``update_fork`` replaces every field but ``created_by`` and ``created_at``,
    which stay as first stored. ``get_catalog`` returns the
    entries of the last ``put_catalog`` sorted by their ``"name"``.
    """

    async def get_fork(self, name: str) -> Fork | None:
        """The fork called *name*, or None."""
        ...

    async def list_forks(self) -> list[Fork]:
        """Every fork, sorted by name."""
        ...

    async def create_fork(self, fork: Fork) -> Fork:
        """Store a new fork; raise :class:`~featureflag_server.errors.ForkExists` if taken."""
        ...

    async def update_fork(self, fork: Fork) -> Fork:
        """Replace a fork; raise :class:`~featureflag_server.errors.ForkNotFound` if none."""
        ...

    async def delete_fork(self, name: str) -> bool:
        """Delete a fork; True when it existed."""
        ...

    async def get_catalog(self) -> list[dict[str, Any]]:
        """The flag catalog (``FlagInfo.to_json()`` dicts), sorted by name."""
        ...

    async def put_catalog(self, flags: list[dict[str, Any]], *, service: str | None = None) -> None:
        """Replace the whole flag catalog; or, with *service*, only the entries whose
        ``"service"`` is *service* (each of *flags* carries it). Raise
        :class:`featureflag_server.errors.CatalogConflict`, storing nothing, when one of *flags* is
        named like an entry of another service."""
        ...

    async def delete_expired_forks(self, before: datetime) -> list[str]:
        """Delete every fork whose ``expires_at`` is earlier than *before*; their names, sorted."""
        ...

    async def record_failed_login(self, client: str, at: datetime, window: float) -> list[datetime]:
        """Record an unknown API token in the bucket *client* (an address and token
        prefix, see :class:`featureflag_server.auth.FailedLogins`) at *at*; return that
        bucket's failures of the last *window* seconds up to *at*, oldest first (every
        replica's: the limit on guessing is shared). Older records may be dropped."""
        ...

    async def revoke_session(self, session_id: str, until: datetime) -> None:
        """Revoke the web page's session *session_id* (logging out) until *until*, when
        its cookie expires anyway; every replica then refuses it. Records past their
        *until* may be dropped."""
        ...

    async def is_session_revoked(self, session_id: str) -> bool:
        """Whether :meth:`revoke_session` revoked *session_id* (and its *until* is ahead)."""
        ...

    def watch_forks(self) -> AsyncIterator[str | None]:
        """Changes to forks made by *other* processes, for caches: yields None once the watch
        is established (and whenever changes may have been missed: forget everything),
        then the name of each fork another process wrote. Ends, or raises
        :class:`featureflag_server.errors.StoreError`, when the watch is lost; until the
        next None nothing cached may be trusted."""
        ...

    async def close(self) -> None:
        """Release the store's resources; safe to call twice."""
        ...


def is_postgres_url(db: str) -> bool:
    """True when *db* names a PostgreSQL database rather than an SQLite file."""
    return db.startswith(("postgresql://", "postgres://"))


def open_store(db: str, *, migrate: bool = True) -> Store:
    """The store for ``--db``: a ``postgresql://`` URL or an SQLite file path.

    With *migrate* the schema is brought to this release's version first (safe when
    several processes start at once); without, a schema this release cannot use is a
    :class:`featureflag_server.errors.StoreError`. Either way a database that cannot be
    used stops here, before the service serves anything.
    """
    if is_postgres_url(db):
        from .postgres_store import PostgresStore

        return PostgresStore.connect(db, migrate=migrate)
    from .sqlite_store import SQLiteStore

    return SQLiteStore(db, migrate=migrate)
