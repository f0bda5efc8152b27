"""``featureflag-server migrate``: idempotent, safe concurrently; start-up checks the schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from featureflag_server import postgres_store
from featureflag_server.__main__ import main
from featureflag_server.errors import SchemaTooNew, SchemaTooOld
from featureflag_server.postgres_store import PostgresStore, check_schema, migrate_schema
from tests.support.postgres import PostgresServer
from tests.support.servers import free_port

from .test_store import make

TOKEN = "alice-token-0123456789"
ENV = {"FEATUREFLAG_SECRET": "k" * 40, "FEATUREFLAG_API_TOKENS": f"alice:{TOKEN}"}
COMMAND = str(Path(sys.executable).with_name("featureflag-server"))


def test_migrate_an_sqlite_file_then_nothing_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = str(tmp_path / "ff.sqlite3")
    assert main(["migrate", "--db", db], {}) == 0
    assert "migrated from schema version 0 to 4" in capsys.readouterr().out
    assert main(["migrate", "--db", db], {}) == 0
    assert "at schema version 4; nothing to do" in capsys.readouterr().out


def test_migrate_without_a_database_says_what_to_give(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["migrate"], {}) == 2
    assert "--db URL" in capsys.readouterr().err


def test_migrate_takes_the_url_from_the_environment(
    postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres.database()
    assert main(["migrate"], {"FEATUREFLAG_DATABASE_URL": url}) == 0
    assert "from schema version 0 to 2" in capsys.readouterr().out
    assert check_schema(url) == postgres_store.SCHEMA_VERSION


def test_an_unreachable_database_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"postgresql://nobody:pw@127.0.0.1:{free_port()}/none?connect_timeout=5"
    assert main(["migrate", "--db", url], {}) == 2
    err = capsys.readouterr().err
    assert err.startswith("featureflag-server migrate: The database postgresql://nobody:***@")
    assert "pw@" not in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.integration
def test_concurrent_migrations_take_turns(postgres: PostgresServer) -> None:
    url = postgres.database()
    processes = [
        subprocess.Popen(
            [COMMAND, "migrate", "--db", url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=120) for p in processes]
    assert [p.returncode for p in processes] == [0] * 6, outputs
    did = [out for out, _ in outputs if "migrated from schema version 0" in out]
    assert len(did) == 1  # one did the work, the others found it done
    assert check_schema(url) == postgres_store.SCHEMA_VERSION
    with psycopg.connect(url) as conn:
        assert conn.execute("SELECT count(*) FROM featureflag_schema").fetchone() == (1,)


def test_without_migrating_an_empty_database_is_refused(
    postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres.database()
    with pytest.raises(SchemaTooOld):
        PostgresStore.connect(url, migrate=False)
    assert main(["--db", url, "--no-migrate"], ENV) == 2
    err = capsys.readouterr().err
    assert "featureflag-server migrate" in err and len(err.strip().splitlines()) == 1


def _set_version(url: str, version: int, compatible_with: int) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(
            "UPDATE featureflag_schema SET version = %s, compatible_with = %s",
            (version, compatible_with),
        )


async def test_a_newer_additive_schema_is_used_as_it_is(postgres: PostgresServer) -> None:
    # A rolling deploy: the next release migrated (additively); this one keeps running.
    url = postgres.database()
    migrate_schema(url)
    newer = postgres_store.SCHEMA_VERSION + 1
    with psycopg.connect(url) as conn:
        conn.execute("ALTER TABLE forks ADD COLUMN next_release text NOT NULL DEFAULT ''")
    _set_version(url, newer, postgres_store.COMPATIBLE_WITH)
    assert migrate_schema(url) == (newer, newer)
    for migrating in (True, False):
        store = PostgresStore.connect(url, migrate=migrating)
        try:
            await store.create_fork(make(f"fork-{migrating}".lower()))
            assert await store.get_fork(f"fork-{migrating}".lower()) is not None
        finally:
            await store.close()


def test_a_newer_incompatible_schema_stops_start_up(
    postgres: PostgresServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres.database()
    migrate_schema(url)
    newer = postgres_store.SCHEMA_VERSION + 2
    _set_version(url, newer, newer)
    for migrating in (True, False):
        with pytest.raises(SchemaTooNew):
            PostgresStore.connect(url, migrate=migrating)
    assert main(["--db", url], ENV) == 2
    err = capsys.readouterr().err
    assert "Upgrade featureflag" in err and len(err.strip().splitlines()) == 1


def test_redact_hides_only_the_password() -> None:
    redact = postgres_store.redact
    assert redact("postgresql://u:p@h:5432/d?sslmode=require") == (
        "postgresql://u:***@h:5432/d?sslmode=require"
    )
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"
