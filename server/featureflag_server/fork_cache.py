"""A read cache for forks in front of any :class:`featureflag_server.store.Store`.

Every proxied request looks its fork up. With SQLite that lookup is a round trip to the
store's database thread, with PostgreSQL one to the database server: more than the rest
of the proxy's own work. :class:`CachedForks` answers ``get_fork`` from memory.

It stays right by watching the store (:meth:`featureflag_server.store.Store.watch_forks`):
PostgreSQL notifies every replica of each fork another one wrote (``LISTEN``/``NOTIFY``),
SQLite is asked a few times a second whether another process wrote the file. Writes
made through the cache drop their entry at once. While the watch is down (the database
restarting) nothing is answered from memory, and the cache starts empty when the watch
is back, so a change made meanwhile is not missed. Entries then need no lifetime: 10,000
forks in use stay in memory. A store that cannot watch falls back to a *ttl*.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

from .store import Fork, Store

__all__ = ["CachedForks"]

logger = logging.getLogger("featureflag.server")


class CachedForks:
    """*store*, with ``get_fork`` answered from memory while the store's watch is up.

    At most *max_entries* forks and *max_misses* unknown names (a Host header can name
    any fork) are remembered; past either bound that part starts over. A store without
    ``watch_forks`` is re-read after *ttl* seconds instead. *retry* is how long to wait
    before watching again after the watch was lost.
    """

    def __init__(
        self,
        store: Store,
        *,
        max_entries: int = 100_000,
        max_misses: int = 10_000,
        ttl: float = 1.0,
        retry: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.max_entries = max_entries
        self.max_misses = max_misses
        self.ttl = ttl
        self.retry = retry
        self.clock = clock
        self._forks: dict[str, tuple[float, Fork]] = {}
        self._misses: dict[str, float] = {}
        # Bumped by every write and reset: a lookup that raced one does not store what it read.
        self._generation = 0
        self._can_watch = callable(getattr(store, "watch_forks", None))
        self._watching = False
        self._watcher: asyncio.Task[None] | None = None

    @property
    def watching(self) -> bool:
        """True while the store's watch is up (entries are then kept until a change)."""
        return self._watching

    async def get_fork(self, name: str) -> Fork | None:
        """The fork called *name*, or None; from memory when it can be trusted."""
        if self._watcher is None and self._can_watch:
            self._start_watching()
        now = self.clock()
        entry = self._forks.get(name)
        if entry is not None and entry[0] > now:
            fork: Fork | None = entry[1]
        elif name in self._misses and self._misses[name] > now:
            fork = None
        else:
            fork = await self._load(name, now)
        if fork is None:
            return None
        # A copy: callers must not change what other requests will be given.
        return fork.copy()

    async def _load(self, name: str, now: float) -> Fork | None:
        generation = self._generation
        fork = await self.store.get_fork(name)
        if generation != self._generation:
            return fork
        if self._watching:
            deadline = math.inf
        elif not self._can_watch:
            deadline = now + self.ttl
        else:
            return fork  # the watch is down: nothing can be trusted until it is back
        if fork is None:
            if len(self._misses) >= self.max_misses:
                self._misses.clear()
            self._misses[name] = deadline
        else:
            if len(self._forks) >= self.max_entries:
                self._forks.clear()
            self._forks[name] = (deadline, fork)
        return fork

    def _forget(self, name: str) -> None:
        self._generation += 1
        self._forks.pop(name, None)
        self._misses.pop(name, None)

    def _forget_all(self) -> None:
        self._generation += 1
        self._forks.clear()
        self._misses.clear()

    # -- watching --------------------------------------------------------------------

    def _start_watching(self) -> None:
        self._watcher = asyncio.get_running_loop().create_task(self._watch())

    async def _watch(self) -> None:
        lost_before = False
        while True:
            try:
                async for name in self.store.watch_forks():
                    if name is None:
                        self._forget_all()
                        self._watching = True
                        if lost_before:
                            logger.info("fork cache: watching the store again")
                            lost_before = False
                    else:
                        self._forget(name)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not lost_before:
                    logger.warning("fork cache: lost the store's watch (%s); retrying", exc)
                lost_before = True
            self._watching = False
            self._forget_all()
            await asyncio.sleep(self.retry)

    # -- everything else goes to the store -------------------------------------------

    async def list_forks(self) -> list[Fork]:
        """Every fork, sorted by name (not cached)."""
        return await self.store.list_forks()

    async def create_fork(self, fork: Fork) -> Fork:
        """Store a new fork (see :meth:`featureflag_server.store.Store.create_fork`)."""
        try:
            return await self.store.create_fork(fork)
        finally:
            self._forget(fork.name)

    async def update_fork(self, fork: Fork) -> Fork:
        """Replace a fork (see :meth:`featureflag_server.store.Store.update_fork`)."""
        try:
            return await self.store.update_fork(fork)
        finally:
            self._forget(fork.name)

    async def delete_fork(self, name: str) -> bool:
        """Delete a fork; True when it existed."""
        try:
            return await self.store.delete_fork(name)
        finally:
            self._forget(name)

    async def delete_expired_forks(self, before: datetime) -> list[str]:
        """Delete the forks that expired before *before*; their names."""
        try:
            names = await self.store.delete_expired_forks(before)
        except BaseException:
            self._forget_all()
            raise
        for name in names:
            self._forget(name)
        return names

    async def record_failed_login(self, client: str, at: datetime, window: float) -> list[datetime]:
        """See :meth:`featureflag_server.store.Store.record_failed_login`."""
        return await self.store.record_failed_login(client, at, window)

    async def revoke_session(self, session_id: str, until: datetime) -> None:
        """See :meth:`featureflag_server.store.Store.revoke_session`."""
        await self.store.revoke_session(session_id, until)

    async def is_session_revoked(self, session_id: str) -> bool:
        """See :meth:`featureflag_server.store.Store.is_session_revoked` (not cached)."""
        return await self.store.is_session_revoked(session_id)

    def watch_forks(self) -> AsyncIterator[str | None]:
        """The store's watch (see :meth:`featureflag_server.store.Store.watch_forks`)."""
        return self.store.watch_forks()

    async def get_catalog(self) -> list[dict[str, Any]]:
        """The flag catalog (not cached)."""
        return await self.store.get_catalog()

    async def put_catalog(self, flags: list[dict[str, Any]], *, service: str | None = None) -> None:
        """Replace the flag catalog, or one service's part of it."""
        await self.store.put_catalog(flags, service=service)

    async def close(self) -> None:
        """Stop watching and close the store underneath."""
        if self._watcher is not None:
            self._watcher.cancel()
            try:
                await self._watcher
            except asyncio.CancelledError:
                pass
            except Exception:
                logger.exception("fork cache: the watch failed while closing")
            self._watcher = None
        self._watching = False
        await self.store.close()
