"""``featureflag-server migrate --db URL``: bring the database's schema to this release.

Idempotent, and safe when several run at once (PostgreSQL: an advisory lock; SQLite: an
immediate transaction), as a Kubernetes Job does before a rolling deploy. Migrations are
additive, so replicas of the previous release keep working on the migrated schema.
The service also migrates at start-up unless it is started with ``--no-migrate``.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Mapping, Sequence

from .errors import StoreError
from .store import is_postgres_url

EXIT_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    """The ``featureflag-server migrate`` command line."""
    parser = argparse.ArgumentParser(
        prog="featureflag-server migrate",
        description="Apply the schema migrations this release needs (idempotent).",
    )
    parser.add_argument(
        "--db",
        default=None,
        help="an SQLite file or postgresql://user@host:port/dbname (FEATUREFLAG_DATABASE_URL)",
    )
    return parser


def migrate(db: str) -> tuple[int, int]:
    """Migrate *db* (a ``postgresql://`` URL or an SQLite file); (old version, new version)."""
    if is_postgres_url(db):
        from .postgres_store import migrate_schema

        return migrate_schema(db)
    from . import sqlite_store

    try:
        conn = sqlite_store.connect(db)
    except sqlite3.Error as exc:
        raise StoreError(f"Cannot open the database {db}: {exc}.") from exc
    try:
        old = sqlite_store.migrate(conn, db)
        return old, max(old, sqlite_store.SCHEMA_VERSION)
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"Cannot use the database {db}: {exc}.") from exc
    finally:
        conn.close()


def main(argv: Sequence[str], environ: Mapping[str, str]) -> int:
    """Run the command; one line on stderr and exit code 2 when it cannot."""
    args = build_parser().parse_args(argv)
    db = args.db or environ.get("FEATUREFLAG_DATABASE_URL")
    if not db:
        print(
            "featureflag-server migrate: give --db URL (or set FEATUREFLAG_DATABASE_URL).",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    where = db
    if is_postgres_url(db):
        from .postgres_store import redact

        where = redact(db)
    try:
        old, new = migrate(db)
    except StoreError as exc:
        print(f"featureflag-server migrate: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if old == new:
        print(f"featureflag-server migrate: {where} is at schema version {new}; nothing to do.")
    else:
        print(f"featureflag-server migrate: {where} migrated from schema version {old} to {new}.")
    return 0
