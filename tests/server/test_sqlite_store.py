"""What only the SQLite store promises: WAL, a versioned schema, migrations, clear errors."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from featureflag_server.errors import SchemaTooNew, StoreError
from featureflag_server.sqlite_store import SCHEMA_VERSION, SQLiteStore, migrate

from .test_store import CATALOG, make


async def test_the_file_is_in_wal_mode_with_the_current_schema(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SQLiteStore(path)
    await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT version FROM schema_version").fetchall() == [(SCHEMA_VERSION,)]
    finally:
        conn.close()


async def test_writes_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    store = SQLiteStore(path)
    await store.create_fork(make())
    await store.put_catalog(CATALOG)
    await store.close()
    again = SQLiteStore(path)
    try:
        assert await again.get_fork("new-lp") == make()
        assert len(await again.get_catalog()) == 2
    finally:
        await again.close()


async def test_a_committed_write_is_visible_to_another_connection_at_once(
    tmp_path: Path,
) -> None:
    # "Acknowledged only after commit": when create_fork returns, the row is committed.
    path = tmp_path / "db.sqlite3"
    store = SQLiteStore(path)
    try:
        await store.create_fork(make())
        other = sqlite3.connect(path)
        try:
            assert other.execute("SELECT name FROM forks").fetchall() == [("new-lp",)]
        finally:
            other.close()
    finally:
        await store.close()


async def test_migrates_a_version_1_database(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    assert migrate(conn, str(path), target=1) == 0
    conn.execute(
        "INSERT INTO forks VALUES (?, ?, ?, ?, ?, ?)",
        (
            "new-lp",
            "http://127.0.0.1:9000",
            json.dumps({"SomeNewFeature.is_released": True, "new-lp": "b"}),
            "alice",
            "2026-11-26T03:15:10.123456+00:00",
            "2026-11-26T03:15:10.123456+00:00",
        ),
    )
    assert conn.execute("SELECT name FROM sqlite_master WHERE name='catalog'").fetchone() is None
    conn.close()

    store = SQLiteStore(path)
    try:
        assert await store.get_fork("new-lp") == make()
        await store.put_catalog(CATALOG)  # the table version 2 added
        assert len(await store.get_catalog()) == 2
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    finally:
        conn.close()


def test_migrating_an_up_to_date_database_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert migrate(conn, str(path)) == 0
        assert migrate(conn, str(path)) == SCHEMA_VERSION
    finally:
        conn.close()


def test_a_failed_migration_leaves_the_old_version(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        migrate(conn, str(path), target=1)
        conn.execute("CREATE TABLE catalog (x)")  # makes migration 2 fail half-way
        with pytest.raises(sqlite3.OperationalError):
            migrate(conn, str(path))
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (1,)
    finally:
        conn.close()


def test_a_newer_schema_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    path = tmp_path / "new.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (?)", (SCHEMA_VERSION + 1,))
    conn.close()
    with pytest.raises(SchemaTooNew, match="Upgrade featureflag") as info:
        SQLiteStore(path)
    assert info.value.version == SCHEMA_VERSION + 1


def test_a_missing_directory_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="--db"):
        SQLiteStore(tmp_path / "no" / "such" / "dir.sqlite3")


def test_a_file_that_is_not_a_database_is_a_store_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_bytes(b"this is not sqlite, just some text " * 100)
    with pytest.raises(StoreError, match=r"notes\.txt"):
        SQLiteStore(path)


async def test_using_a_closed_store_is_a_store_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.close()
    with pytest.raises(StoreError, match="closed"):
        await store.list_forks()
