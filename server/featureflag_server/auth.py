"""API authentication: ``Authorization: Bearer <token>`` against FEATUREFLAG_API_TOKENS,
the token's scopes, and a limit on unknown tokens per client address and token prefix
(the API, forward-auth and the web page's login)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import time
from collections import OrderedDict, deque
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
        """Record one in bucket *client*; every replica's failures of that bucket in the
        window, oldest first."""
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


PREFIX_CHARS = 6
GLOBAL = "*"


def token_prefix(given: str, key: bytes) -> str:
    """A keyed digest of the first :data:`PREFIX_CHARS` characters of *given*: which
    bucket of failed logins it falls in (the characters themselves are never kept)."""
    head = given[:PREFIX_CHARS].encode("utf-8", "surrogatepass")
    return hmac.new(key, head, hashlib.sha256).hexdigest()[:16]


class FailedLogins:
    """Unknown API tokens, counted per (client address, token prefix) and per token prefix.

    A token's *prefix* is its first :data:`PREFIX_CHARS` characters. After *limit*
    unknown tokens with one prefix from one address within *window* seconds, or
    *prefix_limit* with one prefix from any address (a trusted proxy rotating
    ``X-Forwarded-For``), tokens with that prefix are refused untried until the oldest of
    those failures is *window* seconds old. Other prefixes are not affected: a correct
    token is never refused because of other tokens' failures (a NAT's other users, an
    attacker's guesses), only when someone who knows its first characters (or its owner
    mistyping it) failed that often.

    Shared by the API, the web page's login form and forward-auth, so guessing is slow by
    any way in. At most *max_keys* buckets are remembered; past that, the one that failed
    least recently and is not refusing now is forgotten (never a bucket that is refusing:
    an attacker cannot flush the record by failing from many addresses).

    With *shared* (the store), each failure is also recorded there, and what comes back
    (every replica's failures of that bucket) replaces the local record: replicas refuse
    together. The check stays in memory (no database round trip per request), so guesses
    spread over N replicas get at most N - 1 more than the limit before each replica has
    heard of the others'. *key* (the same on every replica) keys the prefix digests.
    """

    def __init__(
        self,
        *,
        limit: int = 10,
        window: float = 60.0,
        prefix_limit: int = 100,
        max_keys: int = 20_000,
        clock: Callable[[], float] = time.monotonic,
        shared: FailureRecords | None = None,
        wall_clock: Callable[[], float] = time.time,
        key: str | bytes = b"featureflag.failed-logins",
    ) -> None:
        self.limit = limit
        self.window = window
        self.prefix_limit = prefix_limit
        self.max_keys = max_keys
        self.clock = clock
        self.shared = shared
        self.wall_clock = wall_clock
        raw = key.encode() if isinstance(key, str) else key
        self._key = hmac.new(raw, b"featureflag.failed-logins/prefix", hashlib.sha256).digest()
        # Least recently failed first (moved to the end at each failure).
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._sharing: set[asyncio.Task[None]] = set()
        self._full_warned = False
        # While every bucket refuses: when the first of them may stop (no scan before).
        self._no_room_until = -math.inf

    def buckets(self, client: str, given: str) -> tuple[str, str]:
        """The two buckets an unknown *given* from *client* counts in."""
        prefix = token_prefix(given, self._key)
        return f"{client} {prefix}", f"{GLOBAL} {prefix}"

    def limit_of(self, bucket: str) -> int:
        """How many failures *bucket* may have within the window."""
        return self.prefix_limit if bucket.startswith(GLOBAL + " ") else self.limit

    def retry_after(self, client: str, given: str | None = None) -> int | None:
        """Whole seconds until *given* may be tried from *client* again, or None when it
        may now. Without *given*, *client* names one bucket (see :meth:`buckets`)."""
        buckets = (client,) if given is None else self.buckets(client, given)
        waits = [w for b in buckets if (w := self._retry_after(b)) is not None]
        return max(waits) if waits else None

    def _retry_after(self, bucket: str) -> int | None:
        failures = self._failures.get(bucket)
        if failures is None:
            return None
        now = self.clock()
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        if not failures:
            del self._failures[bucket]
            return None
        if len(failures) < self.limit_of(bucket):
            return None
        return max(1, math.ceil(failures[0] + self.window - now))

    def attempt(
        self, client: str, given: str, authenticate: Callable[[str], str | None]
    ) -> str | None:
        """``authenticate(given)`` for *client*, counting an unknown token against it.

        Raises :class:`featureflag_server.errors.TooManyAttempts` (without trying *given*)
        while *given*'s prefix is refused for *client*.
        """
        wait = self.retry_after(client, given)
        if wait is not None:
            raise TooManyAttempts(wait)
        name = authenticate(given)
        if name is None:
            for bucket in self.buckets(client, given):
                self.failed(bucket)
        return name

    def failed(self, bucket: str) -> None:
        """Record an unknown token in *bucket* (and, with *shared*, tell the others)."""
        failures = self._record(bucket)
        if failures is not None:
            failures.append(self.clock())
        if self.shared is None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside the service (a synchronous test): local only
        task = loop.create_task(self._share(self.shared, bucket))
        self._sharing.add(task)
        task.add_done_callback(self._sharing.discard)

    def _blocked(self, bucket: str, failures: deque[float], now: float) -> bool:
        return len(failures) >= self.limit_of(bucket) and failures[0] > now - self.window

    def _record(self, bucket: str) -> deque[float] | None:
        failures = self._failures.get(bucket)
        if failures is not None:
            self._failures.move_to_end(bucket)
            return failures
        if len(self._failures) >= self.max_keys and not self._evict(self.clock()):
            if not self._full_warned:
                self._full_warned = True
                logger.warning(
                    "failed logins: all %d buckets are refusing; new ones are not "
                    "remembered locally until one expires",
                    self.max_keys,
                )
            return None
        failures = self._failures[bucket] = deque(maxlen=self.limit_of(bucket))
        return failures

    def _evict(self, now: float) -> bool:
        # Forget the least recently failed bucket that is not refusing. Refusing ones
        # met on the way go to the end, so the next eviction does not walk them again.
        if now < self._no_room_until:
            return False  # all refused a moment ago, and none can have stopped since
        refusing = []
        victim = None
        for bucket, failures in self._failures.items():
            if self._blocked(bucket, failures, now):
                refusing.append(bucket)
            else:
                victim = bucket
                break
        for bucket in refusing:
            self._failures.move_to_end(bucket)
        if victim is None:
            self._no_room_until = min(self._failures[b][0] for b in refusing) + self.window
            return False
        del self._failures[victim]
        self._full_warned = False
        return True

    async def _share(self, shared: FailureRecords, bucket: str) -> None:
        at = datetime.fromtimestamp(self.wall_clock(), UTC)
        try:
            everyone = await shared.record_failed_login(bucket, at, self.window)
        except StoreError as exc:
            # The local record still counts; the database is down for everything else too.
            logger.warning("failed logins: could not share one (%s)", exc)
            return
        # Wall-clock moments from the database, as moments of this record's clock.
        offset = self.clock() - self.wall_clock()
        failures = self._record(bucket)
        if failures is None:
            return
        failures.clear()
        limit = self.limit_of(bucket)
        failures.extend(moment.timestamp() + offset for moment in everyone[-limit:])
