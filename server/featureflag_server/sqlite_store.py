"""The default :class:`featureflag_server.store.Store`: one SQLite file, WAL mode, versioned schema.

Threading: sqlite3 blocks, so every call runs on one dedicated worker thread that owns
the store's single connection (a one-worker executor). Calls are therefore serialized
without a lock, the connection is only ever touched by the thread that opened it, and
the event loop never waits on disk. A write's coroutine returns only after ``COMMIT``
(``synchronous=FULL``: the WAL is synced on every commit), so an acknowledged write
survives a crash of the process, and of the machine.
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from .errors import (
    CatalogConflict,
    ForkExists,
    ForkNotFound,
    SchemaTooNew,
    SchemaTooOld,
    StoreError,
)
from .store import Fork

T = TypeVar("T")

# MIGRATIONS[n - 1] takes the schema from version n - 1 to version n. Append only:
# a released migration never changes, so every old file can still be brought forward.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    (  # 1: forks
        """CREATE TABLE forks (
            name TEXT PRIMARY KEY,
            upstream TEXT NOT NULL,
            flags TEXT NOT NULL,
            created_by TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        ) WITHOUT ROWID""",
    ),
    (  # 2: the flag catalog
        """CREATE TABLE catalog (
            name TEXT PRIMARY KEY,
            entry TEXT NOT NULL
        ) WITHOUT ROWID""",
    ),
    (  # 3: fork labels, routes, expiry and last writer; failed logins; compatibility
        "ALTER TABLE forks ADD COLUMN labels TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE forks ADD COLUMN routes TEXT NOT NULL DEFAULT '{}'",
        "ALTER TABLE forks ADD COLUMN expires_at TEXT",
        "ALTER TABLE forks ADD COLUMN updated_by TEXT NOT NULL DEFAULT ''",
        "CREATE INDEX forks_expires_at ON forks (expires_at) WHERE expires_at IS NOT NULL",
        "CREATE TABLE failed_logins (client TEXT NOT NULL, at REAL NOT NULL)",
        "CREATE INDEX failed_logins_client_at ON failed_logins (client, at)",
        # The oldest schema version a release must know to use this file. Additive
        # migrations leave it alone, so an older release keeps working on a newer file.
        "ALTER TABLE schema_version ADD COLUMN compatible_with INTEGER NOT NULL DEFAULT 3",
    ),
    (  # 4: web sessions ended by logging out (additive: release 3 ignores the table)
        """CREATE TABLE revoked_sessions (
            id TEXT PRIMARY KEY,
            until REAL NOT NULL
        ) WITHOUT ROWID""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
# How often a watcher asks SQLite whether another process committed (PRAGMA data_version).
WATCH_INTERVAL = 0.25


def schema_version(conn: sqlite3.Connection) -> tuple[int, int]:
    """The file's schema version and the oldest version a release must know to use it."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
    ).fetchone()
    if exists is None:
        return 0, 0
    columns = {row[1] for row in conn.execute("PRAGMA table_info(schema_version)")}
    extra = ", compatible_with" if "compatible_with" in columns else ""
    row = conn.execute(f"SELECT version{extra} FROM schema_version").fetchone()
    if row is None:
        return 0, 0
    version = int(row[0])
    return version, int(row[1]) if extra else version


def check_schema(conn: sqlite3.Connection, path: str) -> int:
    """The file's schema version; raise unless this release can use it as it is."""
    version, compatible_with = schema_version(conn)
    if version > SCHEMA_VERSION and compatible_with > SCHEMA_VERSION:
        raise SchemaTooNew(path, version, SCHEMA_VERSION)
    if version < SCHEMA_VERSION:
        raise SchemaTooOld(path, version, SCHEMA_VERSION)
    return version


def migrate(conn: sqlite3.Connection, path: str, *, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema in *conn* to *target* in one transaction; return the old version.

    A file a newer release migrated is left as it is when this release can still use it
    (the newer migrations were additive)."""
    with _transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        version, compatible_with = schema_version(conn)
        if conn.execute("SELECT version FROM schema_version").fetchone() is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
        if version > len(MIGRATIONS):
            if compatible_with > len(MIGRATIONS):
                raise SchemaTooNew(path, version, len(MIGRATIONS))
            return version
        for step in range(version, target):
            for statement in MIGRATIONS[step]:
                conn.execute(statement)
        if target > version:
            conn.execute("UPDATE schema_version SET version = ?", (target,))
    return version


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front, so a second process waits (busy_timeout)
    # instead of failing half-way through.
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def connect(path: str) -> sqlite3.Connection:
    """Open *path* in autocommit mode with WAL, FULL sync and a busy timeout."""
    conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
    try:
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if mode != "wal" and path != ":memory:":
            raise StoreError(f"SQLite refused WAL mode for {path} (got {mode!r})")
        conn.execute("PRAGMA synchronous=FULL")
    except BaseException:
        conn.close()
        raise
    return conn


class SQLiteStore:
    """Forks and the catalog in the SQLite file at *path* (created when missing).

    With *migrate* (the default) the schema is brought to this release's version; without,
    a file this release cannot use as it is raises :class:`featureflag_server.errors.StoreError`.
    A file that is read-only or damaged raises it too: at start-up, not on every write.
    """

    def __init__(self, path: str | os.PathLike[str], *, migrate: bool = True) -> None:
        self.path = str(Path(path))
        self._migrate = migrate
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="featureflag-db")
        self._conn: sqlite3.Connection | None = None
        self._closed = False
        try:
            self._executor.submit(self._open).result()
        except BaseException:
            self._executor.shutdown(wait=True)
            self._closed = True
            raise

    def _open(self) -> None:
        try:
            conn = connect(self.path)
        except sqlite3.Error as exc:
            raise StoreError(
                f"Cannot open the database {self.path}: {exc}. Check that the file and its "
                "directory exist and are writable (--db)."
            ) from exc
        try:
            if self._migrate:
                migrate(conn, self.path)
            else:
                check_schema(conn, self.path)
            _check_usable(conn, self.path)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"Cannot use the database {self.path}: {exc}.") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        self._data_version = self._read_data_version()

    def _read_data_version(self) -> int:
        return int(self._db.execute("PRAGMA data_version").fetchone()[0])

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._closed:
            raise StoreError(f"The store for {self.path} is closed.")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    @property
    def _db(self) -> sqlite3.Connection:
        assert self._conn is not None, "used on the worker thread after open"
        return self._conn

    # -- forks ---------------------------------------------------------------------

    async def get_fork(self, name: str) -> Fork | None:
        return await self._run(self._get_fork, name)

    def _get_fork(self, name: str) -> Fork | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM forks WHERE name = ?", (name,)).fetchone()
        return None if row is None else _fork(row)

    async def list_forks(self) -> list[Fork]:
        return await self._run(self._list_forks)

    def _list_forks(self) -> list[Fork]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM forks ORDER BY name").fetchall()
        return [_fork(row) for row in rows]

    async def create_fork(self, fork: Fork) -> Fork:
        return await self._run(self._create_fork, fork)

    def _create_fork(self, fork: Fork) -> Fork:
        try:
            with _transaction(self._db):
                self._db.execute(f"INSERT INTO forks ({_COLUMNS}) VALUES ({_PLACES})", _row(fork))
        except sqlite3.IntegrityError:
            raise ForkExists(fork.name) from None
        return _fork(_row(fork))

    async def update_fork(self, fork: Fork) -> Fork:
        return await self._run(self._update_fork, fork)

    def _update_fork(self, fork: Fork) -> Fork:
        with _transaction(self._db):
            known = self._db.execute(
                "SELECT created_by, created_at FROM forks WHERE name = ?", (fork.name,)
            ).fetchone()
            if known is None:
                raise ForkNotFound(fork.name)
            row = _row(fork)
            self._db.execute(
                "UPDATE forks SET upstream = ?, flags = ?, updated_at = ?, labels = ?, "
                "routes = ?, expires_at = ?, updated_by = ? WHERE name = ?",
                (*row[1:3], *row[5:], fork.name),
            )
        return _fork((*row[:3], known[0], known[1], *row[5:]))

    async def delete_fork(self, name: str) -> bool:
        return await self._run(self._delete_fork, name)

    def _delete_fork(self, name: str) -> bool:
        with _transaction(self._db):
            cursor = self._db.execute("DELETE FROM forks WHERE name = ?", (name,))
        return cursor.rowcount > 0

    async def delete_expired_forks(self, before: datetime) -> list[str]:
        return await self._run(self._delete_expired_forks, before)

    def _delete_expired_forks(self, before: datetime) -> list[str]:
        with _transaction(self._db):
            rows = self._db.execute(
                "DELETE FROM forks WHERE expires_at < ? RETURNING name", (_moment(before),)
            ).fetchall()
        return sorted(row[0] for row in rows)

    async def watch_forks(self) -> AsyncIterator[str | None]:
        # SQLite cannot notify: ask it a few times a second whether another connection
        # committed (data_version changes only for other connections' commits).
        yield None
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            version = await self._run(self._read_data_version)
            if version != self._data_version:
                self._data_version = version
                yield None

    # -- failed logins ---------------------------------------------------------------

    async def record_failed_login(self, client: str, at: datetime, window: float) -> list[datetime]:
        return await self._run(self._record_failed_login, client, at.timestamp(), window)

    def _record_failed_login(self, client: str, at: float, window: float) -> list[datetime]:
        with _transaction(self._db):
            self._db.execute("DELETE FROM failed_logins WHERE at <= ?", (at - window,))
            self._db.execute("INSERT INTO failed_logins (client, at) VALUES (?, ?)", (client, at))
            rows = self._db.execute(
                "SELECT at FROM failed_logins WHERE client = ? AND at <= ? ORDER BY at",
                (client, at),
            ).fetchall()
        return [datetime.fromtimestamp(row[0], UTC) for row in rows]

    # -- web sessions ----------------------------------------------------------------

    async def revoke_session(self, session_id: str, until: datetime) -> None:
        await self._run(self._revoke_session, session_id, until.timestamp())

    def _revoke_session(self, session_id: str, until: float) -> None:
        with _transaction(self._db):
            now = datetime.now(UTC).timestamp()
            self._db.execute("DELETE FROM revoked_sessions WHERE until <= ?", (now,))
            self._db.execute(
                "INSERT INTO revoked_sessions (id, until) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET until = max(until, excluded.until)",
                (session_id, until),
            )

    async def is_session_revoked(self, session_id: str) -> bool:
        return await self._run(self._is_session_revoked, session_id)

    def _is_session_revoked(self, session_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM revoked_sessions WHERE id = ? AND until > ?",
            (session_id, datetime.now(UTC).timestamp()),
        ).fetchone()
        return row is not None

    # -- catalog -------------------------------------------------------------------

    async def get_catalog(self) -> list[dict[str, Any]]:
        return await self._run(self._get_catalog)

    def _get_catalog(self) -> list[dict[str, Any]]:
        rows = self._db.execute("SELECT entry FROM catalog ORDER BY name").fetchall()
        return [json.loads(row[0]) for row in rows]

    async def put_catalog(self, flags: list[dict[str, Any]], *, service: str | None = None) -> None:
        await self._run(self._put_catalog, flags, service)

    def _put_catalog(self, flags: list[dict[str, Any]], service: str | None) -> None:
        rows = [(str(f.get("name", "")), json.dumps(f)) for f in flags]
        with _transaction(self._db):
            if service is None:
                self._db.execute("DELETE FROM catalog")
            else:
                # Read and write in one IMMEDIATE transaction: two services pushing at
                # once cannot lose each other's entries.
                owners = {
                    name: json.loads(entry).get("service")
                    for name, entry in self._db.execute("SELECT name, entry FROM catalog")
                }
                for name, _ in rows:
                    if name in owners and owners[name] != service:
                        raise CatalogConflict(name, owners[name])
                mine = [(name,) for name, owner in owners.items() if owner == service]
                self._db.executemany("DELETE FROM catalog WHERE name = ?", mine)
            self._db.executemany("INSERT OR REPLACE INTO catalog (name, entry) VALUES (?, ?)", rows)

    # -- lifecycle -----------------------------------------------------------------

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=False)

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _check_usable(conn: sqlite3.Connection, path: str) -> None:
    # A damaged page or a read-only file would otherwise fail every write later, one
    # request at a time: find out now. (quick_check reads every page once; the tables
    # are small.)
    result = conn.execute("PRAGMA quick_check").fetchone()
    if result is None or result[0] != "ok":
        raise StoreError(
            f"The database {path} is damaged (PRAGMA quick_check: {result and result[0]}). "
            "Restore it from a backup, or point --db at another file."
        )
    try:
        with _transaction(conn):
            conn.execute("UPDATE schema_version SET version = version")
            raise _Probe
    except _Probe:
        pass
    except sqlite3.OperationalError as exc:
        raise StoreError(
            f"The database {path} cannot be written ({exc}). Check the file's and its "
            "directory's permissions and free space, or point --db at another file."
        ) from exc


class _Probe(Exception):
    """Rolls the write probe back."""


_COLUMNS = (
    "name, upstream, flags, created_by, created_at, updated_at, labels, routes, expires_at, "
    "updated_by"
)
_PLACES = ", ".join("?" * len(_COLUMNS.split(",")))


def _moment(moment: datetime) -> str:
    # Fixed width in UTC, so text order is time order (expires_at is compared in SQL).
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _row(fork: Fork) -> tuple[Any, ...]:
    return (
        fork.name,
        fork.upstream,
        json.dumps(fork.flags, sort_keys=True),
        fork.created_by,
        fork.created_at.isoformat(),
        fork.updated_at.isoformat(),
        json.dumps(fork.labels, sort_keys=True),
        json.dumps(fork.routes, sort_keys=True),
        None if fork.expires_at is None else _moment(fork.expires_at),
        fork.updated_by,
    )


def _fork(row: tuple[Any, ...]) -> Fork:
    name, upstream, flags, created_by, created_at, updated_at = row[:6]
    labels, routes, expires_at, updated_by = row[6:]
    return Fork(
        name=name,
        upstream=upstream,
        flags=json.loads(flags),
        created_by=created_by,
        created_at=datetime.fromisoformat(created_at),
        updated_at=datetime.fromisoformat(updated_at),
        labels=json.loads(labels),
        routes=json.loads(routes),
        expires_at=None if expires_at is None else datetime.fromisoformat(expires_at),
        updated_by=updated_by,
    )
