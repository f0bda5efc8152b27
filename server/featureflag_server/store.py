"""Forks and the storage interface every backend implements.

A :class:`Store` keeps forks and the flag catalog.
:class:`~featureflag_server.sqlite_store.SQLiteStore` is the default backend and
:class:`~featureflag_server.memory_store.MemoryStore` a test double; both pass the
shared suite in ``tests/server/test_store.py``, which a new backend (a shared database
for several replicas) must pass too.
"""

from __future__ import annotations

from collections.abc import Callable
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
    UTC. ``update_fork`` replaces ``upstream``, ``flags`` and ``updated_at`` and keeps
    ``created_by`` and ``created_at`` as first stored. ``get_catalog`` returns the
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

    async def close(self) -> None:
        """Release the store's resources; safe to call twice."""
        ...
