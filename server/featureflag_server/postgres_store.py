"""A :class:`featureflag_server.store.Store` on PostgreSQL, for several replicas of the service.

psycopg 3's asyncio API over a :class:`psycopg_pool.AsyncConnectionPool` (each connection is
checked when taken, so after a database restart the pool replaces dead connections
instead of failing requests). A write returns after ``COMMIT``.

Replicas learn about each other's fork writes through ``LISTEN``/``NOTIFY``: a trigger on
``forks`` notifies the channel :data:`CHANNEL` with the fork's name, whoever wrote it
(an older release too), and :meth:`PostgresStore.watch_forks` turns that into the events
:class:`featureflag_server.fork_cache.CachedForks` needs.

The schema is versioned like the SQLite file's; :func:`migrate_schema` runs under an advisory
lock, so processes started at the same moment on an empty database take turns.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg.rows import TupleRow
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from .errors import (
    CatalogConflict,
    ForkExists,
    ForkNotFound,
    SchemaTooNew,
    SchemaTooOld,
    StoreError,
    StoreUnavailable,
)
from .store import Fork

CHANNEL = "featureflag_forks"
# pg_advisory_xact_lock keys: an arbitrary constant per purpose ("ffschema", "ffcatalg").
SCHEMA_LOCK = 0x6666736368656D61
CATALOG_LOCK = 0x66666361_74616C67

# MIGRATIONS[n - 1] takes the schema from version n - 1 to version n. Append only, and
# additive (new tables, new columns with defaults): the previous release keeps working
# on the new schema during a rolling deploy.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: forks, the catalog, failed logins, and the notification trigger
        """CREATE TABLE forks (
            name text PRIMARY KEY,
            upstream text NOT NULL,
            flags jsonb NOT NULL,
            created_by text NOT NULL,
            created_at timestamptz NOT NULL,
            updated_at timestamptz NOT NULL,
            labels jsonb NOT NULL DEFAULT '{}',
            routes jsonb NOT NULL DEFAULT '{}',
            expires_at timestamptz,
            updated_by text NOT NULL DEFAULT ''
        )""",
        "CREATE INDEX forks_expires_at ON forks (expires_at) WHERE expires_at IS NOT NULL",
        "CREATE TABLE catalog (name text PRIMARY KEY, entry jsonb NOT NULL)",
        "CREATE TABLE failed_logins (client text NOT NULL, at timestamptz NOT NULL)",
        "CREATE INDEX failed_logins_client_at ON failed_logins (client, at)",
        "CREATE INDEX failed_logins_at ON failed_logins (at)",
        f"""CREATE FUNCTION featureflag_notify_fork() RETURNS trigger AS $$
        BEGIN
            PERFORM pg_notify('{CHANNEL}', COALESCE(NEW.name, OLD.name));
            RETURN NULL;
        END $$ LANGUAGE plpgsql""",
        """CREATE TRIGGER forks_notify AFTER INSERT OR UPDATE OR DELETE ON forks
        FOR EACH ROW EXECUTE FUNCTION featureflag_notify_fork()""",
    ),
    (  # 2: web sessions ended by logging out (additive: release 1 ignores the table)
        "CREATE TABLE revoked_sessions (id text PRIMARY KEY, until timestamptz NOT NULL)",
        "CREATE INDEX revoked_sessions_until ON revoked_sessions (until)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
# The oldest schema version a release must know to use a database at SCHEMA_VERSION:
# raise it only with a migration that is not additive.
COMPATIBLE_WITH = 1

# The watch's connection sends a heartbeat query after this many quiet seconds, and has
# TCP keepalives, so a connection that died without a word is noticed within seconds.
HEARTBEAT = 5.0

_COLUMNS = (
    "name, upstream, flags, created_by, created_at, updated_at, labels, routes, expires_at, "
    "updated_by"
)
_PLACES = ", ".join(["%s"] * 10)


def redact(url: str) -> str:
    """*url* without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    user = f"{parts.username}:***@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=user + host))


@contextmanager
def _unavailable(where: str) -> Iterator[None]:
    try:
        yield
    except (psycopg.OperationalError, PoolTimeout) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise StoreUnavailable(where, reason) from exc


def _version(conn: psycopg.Connection[TupleRow]) -> tuple[int, int]:
    exists = conn.execute("SELECT to_regclass('featureflag_schema')").fetchone()
    if exists is None or exists[0] is None:
        return 0, 0
    row = conn.execute("SELECT version, compatible_with FROM featureflag_schema").fetchone()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))


def migrate_schema(url: str) -> tuple[int, int]:
    """Bring the database at *url* to this release's schema; (old version, new version).

    Idempotent, and safe when several processes run it at once: they take turns on an
    advisory lock, and each finds the work done by the one before. A database a newer
    release migrated additively is left as it is.
    """
    where = redact(url)
    with _unavailable(where), psycopg.connect(url) as conn:
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            version, compatible_with = _version(conn)
            if version > SCHEMA_VERSION:
                if compatible_with > SCHEMA_VERSION:
                    raise SchemaTooNew(where, version, SCHEMA_VERSION)
                return version, version
            if version == 0:
                conn.execute(
                    "CREATE TABLE IF NOT EXISTS featureflag_schema "
                    "(version integer NOT NULL, compatible_with integer NOT NULL)"
                )
                conn.execute("INSERT INTO featureflag_schema VALUES (0, 0)")
            for step in range(version, SCHEMA_VERSION):
                for statement in MIGRATIONS[step]:
                    conn.execute(statement.encode())
            conn.execute(
                "UPDATE featureflag_schema SET version = %s, compatible_with = %s",
                (max(version, SCHEMA_VERSION), COMPATIBLE_WITH),
            )
    return version, SCHEMA_VERSION


def check_schema(url: str) -> int:
    """The database's schema version; raise unless this release can use it as it is."""
    where = redact(url)
    with _unavailable(where), psycopg.connect(url) as conn:
        version, compatible_with = _version(conn)
    if version > SCHEMA_VERSION and compatible_with > SCHEMA_VERSION:
        raise SchemaTooNew(where, version, SCHEMA_VERSION)
    if version < SCHEMA_VERSION:
        raise SchemaTooOld(where, version, SCHEMA_VERSION)
    return version


class PostgresStore:
    """Forks, the catalog and failed logins in the PostgreSQL database at *url*.

    The pool opens on first use (it needs the running event loop); :meth:`connect`
    checks or migrates the schema first, so a database this release cannot use stops
    start-up instead of failing requests.
    """

    def __init__(self, url: str, *, min_size: int = 2, max_size: int = 10) -> None:
        self.url = url
        self.where = redact(url)
        self._min_size = min_size
        self._max_size = max_size
        self._pool: AsyncConnectionPool | None = None
        self._open_lock = asyncio.Lock()
        self._closed = False

    @classmethod
    def connect(cls, url: str, *, migrate: bool = True) -> PostgresStore:
        """A store for *url* after migrating (or, without *migrate*, checking) its schema."""
        if migrate:
            migrate_schema(url)
        else:
            check_schema(url)
        return cls(url)

    async def _get_pool(self) -> AsyncConnectionPool:
        if self._closed:
            raise StoreError(f"The store for {self.where} is closed.")
        if self._pool is None:
            async with self._open_lock:
                if self._pool is None:
                    pool = AsyncConnectionPool(
                        self.url,
                        min_size=self._min_size,
                        max_size=self._max_size,
                        open=False,
                        # A request waits this long for a connection, then gets a 503.
                        timeout=3.0,
                        check=AsyncConnectionPool.check_connection,
                        kwargs={"autocommit": True},
                    )
                    await pool.open(wait=False)
                    self._pool = pool
        return self._pool

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[psycopg.AsyncConnection[TupleRow]]:
        pool = await self._get_pool()
        with _unavailable(self.where):
            async with pool.connection() as conn:
                yield conn

    # -- forks ---------------------------------------------------------------------

    async def get_fork(self, name: str) -> Fork | None:
        async with self._connection() as conn:
            cur = await conn.execute(f"SELECT {_COLUMNS} FROM forks WHERE name = %s", (name,))
            row = await cur.fetchone()
        return None if row is None else _fork(row)

    async def list_forks(self) -> list[Fork]:
        async with self._connection() as conn:
            cur = await conn.execute(f'SELECT {_COLUMNS} FROM forks ORDER BY name COLLATE "C"')
            rows = await cur.fetchall()
        return [_fork(row) for row in rows]

    async def create_fork(self, fork: Fork) -> Fork:
        try:
            async with self._connection() as conn:
                await conn.execute(f"INSERT INTO forks ({_COLUMNS}) VALUES ({_PLACES})", _row(fork))
        except psycopg.errors.UniqueViolation:
            raise ForkExists(fork.name) from None
        return fork.copy()

    async def update_fork(self, fork: Fork) -> Fork:
        row = _row(fork)
        async with self._connection() as conn:
            cur = await conn.execute(
                "UPDATE forks SET upstream = %s, flags = %s, updated_at = %s, labels = %s, "
                "routes = %s, expires_at = %s, updated_by = %s WHERE name = %s "
                "RETURNING created_by, created_at",
                (*row[1:3], *row[5:], fork.name),
            )
            known = await cur.fetchone()
        if known is None:
            raise ForkNotFound(fork.name)
        stored = fork.copy()
        return Fork(
            stored.name,
            stored.upstream,
            stored.flags,
            known[0],
            known[1].astimezone(UTC),
            stored.updated_at,
            stored.labels,
            stored.routes,
            stored.expires_at,
            stored.updated_by,
        )

    async def delete_fork(self, name: str) -> bool:
        async with self._connection() as conn:
            cur = await conn.execute("DELETE FROM forks WHERE name = %s", (name,))
        return cur.rowcount > 0

    async def delete_expired_forks(self, before: datetime) -> list[str]:
        async with self._connection() as conn:
            cur = await conn.execute(
                "DELETE FROM forks WHERE expires_at < %s RETURNING name", (before,)
            )
            rows = await cur.fetchall()
        return sorted(row[0] for row in rows)

    async def watch_forks(self) -> AsyncIterator[str | None]:
        # A connection of its own (LISTEN holds it); when it is lost the watch ends with
        # StoreUnavailable and the cache stops trusting itself until the next None.
        with _unavailable(self.where):
            conn = await psycopg.AsyncConnection.connect(
                self.url,
                autocommit=True,
                connect_timeout=10,
                keepalives=1,
                keepalives_idle=5,
                keepalives_interval=2,
                keepalives_count=3,
            )
        try:
            with _unavailable(self.where):
                await conn.execute(f"LISTEN {CHANNEL}")
            yield None
            while True:
                with _unavailable(self.where):
                    async for notify in conn.notifies(timeout=HEARTBEAT):
                        yield notify.payload
                    # A quiet spell: make sure the connection is still there (a silently
                    # dropped one would otherwise leave the cache trusted and stale).
                    await conn.execute("SELECT 1")
        finally:
            await conn.close()

    # -- failed logins ---------------------------------------------------------------

    async def record_failed_login(self, client: str, at: datetime, window: float) -> list[datetime]:
        async with self._connection() as conn, conn.transaction():
            await conn.execute(
                "DELETE FROM failed_logins WHERE at <= %s", (at - timedelta(seconds=window),)
            )
            await conn.execute(
                "INSERT INTO failed_logins (client, at) VALUES (%s, %s)", (client, at)
            )
            cur = await conn.execute(
                "SELECT at FROM failed_logins WHERE client = %s AND at <= %s ORDER BY at",
                (client, at),
            )
            rows = await cur.fetchall()
        return [row[0].astimezone(UTC) for row in rows]

    # -- web sessions ----------------------------------------------------------------

    async def revoke_session(self, session_id: str, until: datetime) -> None:
        async with self._connection() as conn, conn.transaction():
            await conn.execute("DELETE FROM revoked_sessions WHERE until <= now()")
            await conn.execute(
                "INSERT INTO revoked_sessions (id, until) VALUES (%s, %s) ON CONFLICT (id) "
                "DO UPDATE SET until = GREATEST(revoked_sessions.until, EXCLUDED.until)",
                (session_id, until),
            )

    async def is_session_revoked(self, session_id: str) -> bool:
        async with self._connection() as conn:
            cur = await conn.execute(
                "SELECT 1 FROM revoked_sessions WHERE id = %s AND until > now()", (session_id,)
            )
            row = await cur.fetchone()
        return row is not None

    # -- catalog -------------------------------------------------------------------

    async def get_catalog(self) -> list[dict[str, Any]]:
        async with self._connection() as conn:
            cur = await conn.execute('SELECT entry FROM catalog ORDER BY name COLLATE "C"')
            rows = await cur.fetchall()
        return [dict(row[0]) for row in rows]

    async def put_catalog(self, flags: list[dict[str, Any]], *, service: str | None = None) -> None:
        by_name = {str(f.get("name", "")): f for f in flags}
        async with self._connection() as conn, conn.transaction():
            # Two services pushing at once take turns: neither loses the other's entries.
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (CATALOG_LOCK,))
            if service is None:
                await conn.execute("DELETE FROM catalog")
            else:
                cur = await conn.execute("SELECT name, entry->>'service' FROM catalog")
                owners = dict(await cur.fetchall())
                for name in by_name:
                    if name in owners and owners[name] != service:
                        raise CatalogConflict(name, owners[name])
                await conn.execute("DELETE FROM catalog WHERE entry->>'service' = %s", (service,))
            async with conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO catalog (name, entry) VALUES (%s, %s) "
                    "ON CONFLICT (name) DO UPDATE SET entry = EXCLUDED.entry",
                    [(name, Jsonb(entry)) for name, entry in by_name.items()],
                )

    # -- lifecycle -----------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def _row(fork: Fork) -> tuple[Any, ...]:
    return (
        fork.name,
        fork.upstream,
        Jsonb(fork.flags),
        fork.created_by,
        fork.created_at,
        fork.updated_at,
        Jsonb(fork.labels),
        Jsonb(fork.routes),
        fork.expires_at,
        fork.updated_by,
    )


def _fork(row: tuple[Any, ...]) -> Fork:
    expires_at = row[8]
    return Fork(
        name=row[0],
        upstream=row[1],
        flags=dict(row[2]),
        created_by=row[3],
        created_at=row[4].astimezone(UTC),
        updated_at=row[5].astimezone(UTC),
        labels=dict(row[6]),
        routes=dict(row[7]),
        expires_at=None if expires_at is None else expires_at.astimezone(UTC),
        updated_by=row[9],
    )
