"""What only the PostgreSQL store promises: the watch (LISTEN/NOTIFY, heartbeat, loss),
and StoreUnavailable when the database cannot be reached. The rest is the shared suite."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

from featureflag_server import postgres_store
from featureflag_server.errors import StoreUnavailable
from featureflag_server.postgres_store import PostgresStore
from tests.support.postgres import PostgresServer
from tests.support.servers import free_port

from .test_store import make


@pytest.fixture
async def two(postgres: PostgresServer) -> object:
    url = postgres.database()
    mine, other = PostgresStore.connect(url), PostgresStore.connect(url)
    yield mine, other
    await mine.close()
    await other.close()


async def next_event(watch: object) -> str | None:
    return await asyncio.wait_for(anext(watch), 30)  # type: ignore[call-overload]


async def test_the_watch_names_each_fork_another_process_writes(two: object) -> None:
    mine, other = two  # type: ignore[misc]
    watch = mine.watch_forks()
    try:
        assert await next_event(watch) is None
        await other.create_fork(make("one"))
        assert await next_event(watch) == "one"
        await other.update_fork(make("one", upstream="http://elsewhere:1"))
        assert await next_event(watch) == "one"
        await other.create_fork(make("two", expires_at=make().created_at))
        assert await next_event(watch) == "two"
        assert await other.delete_expired_forks(make().updated_at.replace(year=2030)) == ["two"]
        assert await next_event(watch) == "two"
        await other.delete_fork("one")
        assert await next_event(watch) == "one"
    finally:
        await watch.aclose()


async def test_the_watch_survives_quiet_spells(
    two: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, other = two  # type: ignore[misc]
    monkeypatch.setattr(postgres_store, "HEARTBEAT", 0.05)
    watch = mine.watch_forks()
    try:
        assert await next_event(watch) is None
        pending = asyncio.ensure_future(next_event(watch))
        await asyncio.sleep(0.5)  # several heartbeats, nothing to report
        assert not pending.done()
        await other.create_fork(make("late"))
        assert await pending == "late"
    finally:
        await watch.aclose()


async def test_losing_the_watchs_connection_ends_it_with_store_unavailable(
    two: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    mine, _ = two  # type: ignore[misc]
    monkeypatch.setattr(postgres_store, "HEARTBEAT", 0.05)
    watch = mine.watch_forks()
    try:
        assert await next_event(watch) is None
        with psycopg.connect(mine.url, autocommit=True) as admin:
            admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%%' OR query = 'SELECT 1'"
            )
        with pytest.raises(StoreUnavailable, match="unavailable"):
            await next_event(watch)
    finally:
        await watch.aclose()


async def test_an_unreachable_database_is_store_unavailable() -> None:
    url = f"postgresql://nobody:pw@127.0.0.1:{free_port()}/none?connect_timeout=2"
    store = PostgresStore(url)
    try:
        with pytest.raises(StoreUnavailable) as info:
            await store.get_fork("new-lp")
        assert "pw@" not in str(info.value)
        assert "postgresql://nobody:***@" in str(info.value)
    finally:
        await store.close()


def test_the_sessions_migration_is_additive(postgres: PostgresServer) -> None:
    # Issue 17 item 13: a database at version 1 gets revoked_sessions; release 1 (which
    # knows version 1) can still use it during a rolling deploy.
    url = postgres.database()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE featureflag_schema (version integer NOT NULL, "
            "compatible_with integer NOT NULL)"
        )
        conn.execute("INSERT INTO featureflag_schema VALUES (1, 1)")
        for statement in postgres_store.MIGRATIONS[0]:
            conn.execute(statement.encode())
    assert postgres_store.migrate_schema(url) == (1, postgres_store.SCHEMA_VERSION)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version, compatible_with FROM featureflag_schema").fetchone()
        assert row == (2, 1)
        assert conn.execute("SELECT to_regclass('revoked_sessions')").fetchone() != (None,)
