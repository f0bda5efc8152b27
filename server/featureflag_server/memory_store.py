"""An in-memory :class:`~featureflag_server.store.Store`: for tests, nothing persists."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

from .errors import CatalogConflict, ForkExists, ForkNotFound
from .store import Fork, utcnow


class MemoryStore:
    """Forks and the catalog in dicts, one asyncio lock around writes."""

    def __init__(self) -> None:
        self._forks: dict[str, Fork] = {}
        self._catalog: list[dict[str, Any]] = []
        self._failed_logins: dict[str, list[datetime]] = {}
        self._revoked: dict[str, datetime] = {}
        self._lock = asyncio.Lock()

    async def get_fork(self, name: str) -> Fork | None:
        fork = self._forks.get(name)
        return None if fork is None else fork.copy()

    async def list_forks(self) -> list[Fork]:
        return [self._forks[name].copy() for name in sorted(self._forks)]

    async def create_fork(self, fork: Fork) -> Fork:
        async with self._lock:
            if fork.name in self._forks:
                raise ForkExists(fork.name)
            self._forks[fork.name] = fork.copy()
            return fork.copy()

    async def update_fork(self, fork: Fork) -> Fork:
        async with self._lock:
            known = self._forks.get(fork.name)
            if known is None:
                raise ForkNotFound(fork.name)
            stored = replace(fork, created_by=known.created_by, created_at=known.created_at)
            self._forks[fork.name] = stored.copy()
            return stored.copy()

    async def delete_fork(self, name: str) -> bool:
        async with self._lock:
            return self._forks.pop(name, None) is not None

    async def delete_expired_forks(self, before: datetime) -> list[str]:
        async with self._lock:
            expired = sorted(
                name
                for name, fork in self._forks.items()
                if fork.expires_at is not None and fork.expires_at < before
            )
            for name in expired:
                del self._forks[name]
            return expired

    async def record_failed_login(self, client: str, at: datetime, window: float) -> list[datetime]:
        since = at - timedelta(seconds=window)
        kept = [t for t in self._failed_logins.get(client, []) if since < t <= at]
        kept.append(at)
        kept.sort()
        self._failed_logins.pop(client, None)
        if len(self._failed_logins) >= 10_000:
            # Bounded: forget the buckets with nothing left in the window, else the one
            # that failed least recently (the dict keeps the order of the last failure).
            for key in [k for k, v in self._failed_logins.items() if v[-1] <= since]:
                del self._failed_logins[key]
            if len(self._failed_logins) >= 10_000:
                del self._failed_logins[next(iter(self._failed_logins))]
        self._failed_logins[client] = kept
        return list(kept)

    async def revoke_session(self, session_id: str, until: datetime) -> None:
        now = utcnow()
        for key in [k for k, v in self._revoked.items() if v <= now]:
            del self._revoked[key]
        self._revoked[session_id] = max(until, self._revoked.get(session_id, until))

    async def is_session_revoked(self, session_id: str) -> bool:
        until = self._revoked.get(session_id)
        return until is not None and until > utcnow()

    async def watch_forks(self) -> AsyncIterator[str | None]:
        # No other process can write here: established once, then nothing to report.
        yield None
        await asyncio.Event().wait()

    async def get_catalog(self) -> list[dict[str, Any]]:
        return copy.deepcopy(self._catalog)

    async def put_catalog(self, flags: list[dict[str, Any]], *, service: str | None = None) -> None:
        async with self._lock:
            # Keyed by name, like a table with a primary key: a repeated name keeps the last.
            by_name = {str(f.get("name", "")): copy.deepcopy(f) for f in flags}
            if service is not None:
                kept = {e["name"]: e for e in self._catalog if e.get("service") != service}
                for name in by_name.keys() & kept.keys():
                    raise CatalogConflict(name, kept[name].get("service"))
                by_name |= kept
            self._catalog = [by_name[name] for name in sorted(by_name)]

    async def close(self) -> None:
        return None
