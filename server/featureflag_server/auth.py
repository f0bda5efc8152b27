"""API authentication: ``Authorization: Bearer <token>`` against FEATUREFLAG_API_TOKENS,
and a limit on unknown tokens per client address (the API and the web page's login)."""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Protocol

from pydantic import SecretStr

from .errors import StoreError, TooManyAttempts

logger = logging.getLogger("featureflag.server")


class FailureRecords(Protocol):
    """Where replicas share failed logins (a :class:`featureflag_server.store.Store`)."""

    def record_failed_login(
        self, client: str, at: datetime, window: float
    ) -> Awaitable[list[datetime]]:
        """Record one; every replica's failures of *client* in the window, oldest first."""
        ...


REALM = "featureflag"


def authenticate(tokens: Mapping[str, SecretStr], given: str) -> str | None:
    """The name whose token is *given*, or None.

    Every configured token is compared, in constant time, whatever matches first, so
    the response time says nothing about which token (or which prefix) was close.
    """
    found: str | None = None
    candidate = given.encode()
    for name, token in tokens.items():
        if hmac.compare_digest(candidate, token.get_secret_value().encode()) and found is None:
            found = name
    return found if given else None


def bearer_token(authorization: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` header value, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def challenge(error: str | None = None, description: str | None = None) -> str:
    """A ``WWW-Authenticate`` value (RFC 6750 section 3)."""
    value = f'Bearer realm="{REALM}"'
    if error:
        value += f', error="{error}"'
    if description:
        value += f', error_description="{description}"'
    return value


class FailedLogins:
    """Unknown API tokens per client address: after *limit* within *window* seconds,
    that address is refused until the oldest of them is *window* seconds old.

    Shared by the API and the web page's login form, so guessing tokens is slow by
    either way in. At most *max_clients* addresses are remembered (past that the record
    starts over): memory stays bounded whatever addresses a flood comes from.

    With *shared* (the store), each failure is also recorded there, and what comes back
    (every replica's failures of that address) replaces the local record: replicas
    refuse an address together. The check stays in memory (no database round trip per
    request), so an address that spreads its guesses over N replicas gets at most N - 1
    more than *limit* before each replica has heard of the others' failures.
    """

    def __init__(
        self,
        *,
        limit: int = 10,
        window: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
        shared: FailureRecords | None = None,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.limit = limit
        self.window = window
        self.max_clients = max_clients
        self.clock = clock
        self.shared = shared
        self.wall_clock = wall_clock
        self._failures: dict[str, deque[float]] = {}
        self._sharing: set[asyncio.Task[None]] = set()

    def retry_after(self, client: str) -> int | None:
        """Whole seconds until *client* may try again, or None when it may now."""
        failures = self._failures.get(client)
        if failures is None:
            return None
        now = self.clock()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[client]
            return None
        if len(failures) < self.limit:
            return None
        return max(1, math.ceil(failures[0] + self.window - now))

    def attempt(
        self, client: str, given: str, authenticate: Callable[[str], str | None]
    ) -> str | None:
        """``authenticate(given)`` for *client*, counting an unknown token against it.

        Raises :class:`featureflag_server.errors.TooManyAttempts` (without trying *given*) while
        *client* is refused.
        """
        wait = self.retry_after(client)
        if wait is not None:
            raise TooManyAttempts(wait)
        name = authenticate(given)
        if name is None:
            self.failed(client)
        return name

    def failed(self, client: str) -> None:
        """Record an unknown token from *client* (and, with *shared*, tell the others)."""
        self._record(client).append(self.clock())
        if self.shared is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside the service (a synchronous test): local only
        task = loop.create_task(self._share(self.shared, client))
        self._sharing.add(task)
        task.add_done_callback(self._sharing.discard)

    def _record(self, client: str) -> deque[float]:
        failures = self._failures.get(client)
        if failures is None:
            if len(self._failures) >= self.max_clients:
                self._failures.clear()
            failures = self._failures[client] = deque(maxlen=self.limit)
        return failures

    async def _share(self, shared: FailureRecords, client: str) -> None:
        at = datetime.fromtimestamp(self.wall_clock(), UTC)
        try:
            everyone = await shared.record_failed_login(client, at, self.window)
        except StoreError as exc:
            # The local record still counts; the database is down for everything else too.
            logger.warning("failed logins: could not share one (%s)", exc)
            return
        # Wall-clock moments from the database, as moments of this record's clock.
        offset = self.clock() - self.wall_clock()
        failures = self._record(client)
        failures.clear()
        failures.extend(moment.timestamp() + offset for moment in everyone[-self.limit :])
