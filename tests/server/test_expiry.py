"""The expiry sweep: forks expired for longer than the grace period are deleted."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest

from featureflag_server.app import create_app
from featureflag_server.expiry import ExpirySweeper
from featureflag_server.fork_cache import CachedForks
from featureflag_server.memory_store import MemoryStore
from featureflag_server.settings import Settings, load_settings
from featureflag_server.store import Fork

from .conftest import ALICE, SECRET

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
GRACE = timedelta(days=7)


async def forks_with_expiries() -> MemoryStore:
    store = MemoryStore()
    expiries = {
        "long-gone": NOW - GRACE - timedelta(seconds=1),
        "in-grace": NOW - GRACE + timedelta(seconds=1),
        "live": NOW + timedelta(hours=1),
        "forever": None,
    }
    for name, expires_at in expiries.items():
        await store.create_fork(Fork(name, "http://127.0.0.1:9", expires_at=expires_at))
    return store


async def test_the_sweep_deletes_only_forks_past_their_grace(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = await forks_with_expiries()
    cached = CachedForks(store)
    sweeper = ExpirySweeper(cached, grace=GRACE.total_seconds(), clock=lambda: NOW)
    with caplog.at_level(logging.INFO, logger="featureflag.server.forks"):
        assert await sweeper.sweep() == ["long-gone"]
    assert [f.name for f in await store.list_forks()] == ["forever", "in-grace", "live"]
    assert "fork long-gone deleted by the expiry sweep" in caplog.text
    assert await sweeper.sweep() == []  # idempotent: another replica may sweep too


async def test_the_service_sweeps_at_start_up_and_stops_on_shutdown() -> None:
    store = MemoryStore()
    old = datetime.now(UTC) - timedelta(days=30)
    await store.create_fork(Fork("old", "http://127.0.0.1:9", expires_at=old))
    await store.create_fork(Fork("fresh", "http://127.0.0.1:9"))
    settings = Settings(secret=SECRET, api_tokens=f"alice:{ALICE}", expired_fork_grace=3600)
    app = create_app(settings, store=store)
    await app.startup()
    try:
        for _ in range(100):
            if await store.get_fork("old") is None:
                break
            await asyncio.sleep(0.01)
        assert [f.name for f in await store.list_forks()] == ["fresh"]
    finally:
        await app.shutdown()
    assert app.sweeper is not None and app.sweeper._task is None


def test_the_grace_period_is_a_setting() -> None:
    env = {"FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_API_TOKENS": f"alice:{ALICE}"}
    assert load_settings([], env).expired_fork_grace == 7 * 86400
    assert load_settings(["--expired-fork-grace", "60"], env).expired_fork_grace == 60
