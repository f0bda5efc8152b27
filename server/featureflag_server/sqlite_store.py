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
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

from .errors import CatalogConflict, ForkExists, ForkNotFound, SchemaTooNew, StoreError
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
)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, path: str, *, target: int = SCHEMA_VERSION) -> int:
    """Bring the schema in *conn* to *target* in one transaction; return the old version."""
    with _transaction(conn):
        conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
        row = conn.execute("SELECT version FROM schema_version").fetchone()
        if row is None:
            conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            version = 0
        else:
            version = int(row[0])
        if version > len(MIGRATIONS):
            raise SchemaTooNew(path, version, len(MIGRATIONS))
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
    """Forks and the catalog in the SQLite file at *path* (created when missing)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = str(Path(path))
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
                f"Cannot open the database {self.path}: {exc}. Check that its directory "
                "exists and is writable (--db)."
            ) from exc
        try:
            migrate(conn, self.path)
        except sqlite3.DatabaseError as exc:
            conn.close()
            raise StoreError(f"Cannot use the database {self.path}: {exc}.") from exc
        except BaseException:
            conn.close()
            raise
        self._conn = conn

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
                self._db.execute(
                    f"INSERT INTO forks ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)", _row(fork)
                )
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
            name, upstream, flags, _, _, updated_at = _row(fork)
            self._db.execute(
                "UPDATE forks SET upstream = ?, flags = ?, updated_at = ? WHERE name = ?",
                (upstream, flags, updated_at, name),
            )
        return _fork((name, upstream, flags, known[0], known[1], updated_at))

    async def delete_fork(self, name: str) -> bool:
        return await self._run(self._delete_fork, name)

    def _delete_fork(self, name: str) -> bool:
        with _transaction(self._db):
            cursor = self._db.execute("DELETE FROM forks WHERE name = ?", (name,))
        return cursor.rowcount > 0

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


_COLUMNS = "name, upstream, flags, created_by, created_at, updated_at"


def _row(fork: Fork) -> tuple[str, str, str, str, str, str]:
    return (
        fork.name,
        fork.upstream,
        json.dumps(fork.flags, sort_keys=True),
        fork.created_by,
        fork.created_at.isoformat(),
        fork.updated_at.isoformat(),
    )


def _fork(row: tuple[Any, ...]) -> Fork:
    name, upstream, flags, created_by, created_at, updated_at = row
    return Fork(
        name=name,
        upstream=upstream,
        flags=json.loads(flags),
        created_by=created_by,
        created_at=datetime.fromisoformat(created_at),
        updated_at=datetime.fromisoformat(updated_at),
    )
