"""What only the SQLite store promises: WAL, a versioned schema, migrations, clear errors."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import sqlite3
import tempfile
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from featureflag_server.errors import SchemaTooNew, SchemaTooOld, StoreError
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


async def test_migrates_the_previous_releases_database_and_keeps_its_forks(
    tmp_path: Path,
) -> None:
    path = tmp_path / "v2.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path), target=2)
    conn.execute(
        "INSERT INTO forks VALUES (?, ?, ?, ?, ?, ?)",
        ("new-lp", "http://127.0.0.1:9000", json.dumps(make().flags), "alice",
         make().created_at.isoformat(), make().updated_at.isoformat()),
    )  # fmt: skip
    conn.close()
    store = SQLiteStore(path)
    try:
        got = await store.get_fork("new-lp")
        assert got == make()  # labels {}, routes {}, no expiry, updated_by ""
        await store.update_fork(make(labels={"pr": "7"}, updated_by="bob"))
        again = await store.get_fork("new-lp")
        assert again is not None and again.labels == {"pr": "7"}
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        # Migration 4 (revoked web sessions) is additive: release 3 still uses the file.
        assert conn.execute("SELECT version, compatible_with FROM schema_version").fetchone() == (
            SCHEMA_VERSION,
            3,
        )
        # The previous release's INSERT (six named columns) still works on the new schema.
        conn.execute(
            "INSERT INTO forks (name, upstream, flags, created_by, created_at, updated_at) "
            "VALUES ('old-release', 'http://x', '{}', 'a', '2026-01-01T00:00:00+00:00', "
            "'2026-01-01T00:00:00+00:00')"
        )
    finally:
        conn.close()


async def test_a_newer_but_compatible_schema_is_used_as_it_is(tmp_path: Path) -> None:
    # What a rolling deploy needs: the next release migrated additively; this one still runs.
    path = tmp_path / "next.sqlite3"
    store = SQLiteStore(path)
    await store.create_fork(make())
    await store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("ALTER TABLE forks ADD COLUMN next_release_column TEXT")
    conn.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    conn.close()
    for migrating in (True, False):
        store = SQLiteStore(path, migrate=migrating)
        try:
            assert await store.get_fork("new-lp") == make()
        finally:
            await store.close()
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("SELECT version FROM schema_version").fetchone() == (
            SCHEMA_VERSION + 1,
        )
    finally:
        conn.close()


def test_a_newer_incompatible_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "next.sqlite3"
    SQLiteStore(path)._executor.shutdown()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(
        "UPDATE schema_version SET version = ?, compatible_with = ?",
        (SCHEMA_VERSION + 2, SCHEMA_VERSION + 1),
    )
    conn.close()
    with pytest.raises(SchemaTooNew, match="Upgrade featureflag"):
        SQLiteStore(path)


@pytest.mark.parametrize("version", [0, 1, 2])
def test_without_migrating_an_older_schema_is_refused(tmp_path: Path, version: int) -> None:
    path = tmp_path / "old.sqlite3"
    if version:
        conn = sqlite3.connect(path, isolation_level=None)
        migrate(conn, str(path), target=version)
        conn.close()
    with pytest.raises(SchemaTooOld, match="featureflag-server migrate") as info:
        SQLiteStore(path, migrate=False)
    assert info.value.version == version


def test_a_damaged_file_stops_start_up_with_a_message(tmp_path: Path) -> None:
    path = tmp_path / "damaged.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path))
    conn.execute("PRAGMA wal_checkpoint")
    with conn:
        for i in range(400):
            conn.execute(
                "INSERT INTO forks (name, upstream, flags, created_by, created_at, updated_at) "
                "VALUES (?, 'http://x', ?, 'a', 't', 't')",
                (f"fork-{i:04}", json.dumps({"padding": "x" * 200})),
            )
    conn.execute("PRAGMA journal_mode=DELETE")
    conn.close()
    data = bytearray(path.read_bytes())
    page = 4096
    assert len(data) > 8 * page
    data[5 * page : 6 * page] = os.urandom(page)  # a page in the middle of the forks
    path.write_bytes(bytes(data))
    with pytest.raises(StoreError, match=r"damaged|malformed"):
        SQLiteStore(path)


def _open_as(path: Path, uid: int | None) -> str:
    """Open the store (as *uid* when given, in a forked child); the error it raised."""
    read, write = os.pipe()
    with warnings.catch_warnings():
        # The child only opens a file and exits: the multi-threaded fork warning is moot.
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            os.close(read)
            if uid is not None:
                os.setgid(pwd.getpwuid(uid).pw_gid)
                os.setuid(uid)
            try:
                SQLiteStore(path)
                message = "opened"
            except StoreError as exc:
                message = f"StoreError: {exc}"
            os.write(write, message.encode())
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        message = pipe.read().decode()
    os.waitpid(pid, 0)
    return message


def test_a_read_only_file_stops_start_up_with_a_message() -> None:
    # Root writes whatever the file's mode: as root, the store opens as another user.
    uid = pwd.getpwnam("nobody").pw_uid if os.geteuid() == 0 else None
    directory = Path(tempfile.mkdtemp(prefix="featureflag-ro-"))
    try:
        directory.chmod(0o777)  # the directory is writable, only the file is not
        path = directory / "ro.sqlite3"
        conn = sqlite3.connect(path, isolation_level=None)
        migrate(conn, str(path))
        conn.close()
        path.chmod(0o444)
        message = _open_as(path, uid)
        assert message.startswith("StoreError: "), message
        assert str(path) in message and "\n" not in message
        assert "cannot be written" in message or "readonly" in message
    finally:
        shutil.rmtree(directory, ignore_errors=True)


async def test_a_release_3_file_gets_the_sessions_table_and_stays_usable_by_release_3(
    tmp_path: Path,
) -> None:
    # Issue 17 item 13's migration is additive: a rolling deploy keeps the old release up.
    path = tmp_path / "v3.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn, str(path), target=3)
    conn.close()
    store = SQLiteStore(path)
    try:
        await store.revoke_session("sid", datetime.now(UTC) + timedelta(hours=1))
        assert await store.is_session_revoked("sid")
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    try:
        version, compatible_with = conn.execute(
            "SELECT version, compatible_with FROM schema_version"
        ).fetchone()
        assert (version, compatible_with) == (4, 3)  # release 3 knows version 3: usable
    finally:
        conn.close()
