"""Shared fixtures for the override service's tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from featureflag_server.memory_store import MemoryStore
from featureflag_server.settings import Settings
from featureflag_server.sqlite_store import SQLiteStore
from featureflag_server.store import Store

SECRET = "s" * 40
ALICE = "alice-token-0123456789"
BOB = "bob-token-0123456789ab"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings for tests: two API users, alice and bob."""
    return Settings(
        secret=SECRET,
        environment="test",
        api_tokens={"alice": ALICE, "bob": BOB},
        db=tmp_path / "featureflag.sqlite3",
    )


@pytest.fixture(params=["sqlite", "memory"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """Every Store implementation; the shared suite runs once for each."""
    impl: Store
    if request.param == "sqlite":
        impl = SQLiteStore(tmp_path / "store.sqlite3")
    else:
        impl = MemoryStore()
    try:
        yield impl
    finally:
        await impl.close()
