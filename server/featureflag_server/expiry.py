"""Deleting expired forks once their grace period is over.

An expired fork's URL answers 410 with how to renew it (``featureflag fork apply ...
--ttl``) for ``--expired-fork-grace`` seconds, so a preview that CI renews a little late
comes back under the same name; after that the fork is deleted. Every replica sweeps:
a delete is idempotent, and each deletion is logged once by the replica that made it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from .errors import StoreError
from .fork_cache import CachedForks
from .store import utcnow

__all__ = ["SWEEP_EVERY", "ExpirySweeper"]

logger = logging.getLogger("featureflag.server.forks")

SWEEP_EVERY = 60.0
"""Seconds between two sweeps."""


class ExpirySweeper:
    """A background task deleting forks expired for longer than *grace* seconds."""

    def __init__(
        self,
        store: CachedForks,
        *,
        grace: float,
        every: float = SWEEP_EVERY,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.grace = timedelta(seconds=grace)
        self.every = every
        self.clock = clock
        self._task: asyncio.Task[None] | None = None

    async def sweep(self) -> list[str]:
        """Delete the forks whose expiry is more than the grace period ago; their names."""
        names = await self.store.delete_expired_forks(self.clock() - self.grace)
        for name in names:
            logger.info(
                "fork %s deleted by the expiry sweep (expired over %s ago)", name, self.grace
            )
        return names

    def start(self) -> None:
        """Sweep now and then every :attr:`every` seconds, until :meth:`stop`."""
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="featureflag expiry sweep")

    async def stop(self) -> None:
        """Cancel the task and wait for it."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep()
            except StoreError as exc:  # an outage: the next sweep tries again
                logger.warning("expiry sweep skipped: %s", exc)
            await asyncio.sleep(self.every)
