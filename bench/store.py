"""Benchmark the stores: SQLite vs PostgreSQL, with 10 and 10,000 forks.

Measured in one process, on the service's own objects:

- ``lookup (proxy path)``: what the fork proxy calls per request,
  ``CachedForks(store).get_fork(name)``, names drawn uniformly from all forks, after one
  pass that fills the cache (the cache is kept by the store's watch, so it stays full);
- ``lookup (uncached)``: ``store.get_fork(name)`` itself, what a cache miss costs;
- ``lookup (before: 1 s)``: the cache as it was (1,024 entries kept 1 s, no watch);
- ``token minting``: ``POST /api/tokens`` through the whole service app (in-process ASGI,
  no sockets), which reads the catalog (50 flags) from the store and signs a token.

Each figure is p50 / p99 in microseconds, and a ratio to SQLite's p50 in the same run.
PostgreSQL is a throwaway cluster this script starts (as in the tests: Debian's
PostgreSQL, as the ``postgres`` user when run as root), or ``--postgres URL``.

    .venv/bin/python bench/store.py [--samples 5000] [--postgres postgresql://...]

Target (issue 14): lookup on the proxy path <= 1 ms p50 with 10,000 forks on PostgreSQL.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from featureflag_server.app import create_app  # noqa: E402
from featureflag_server.fork_cache import CachedForks  # noqa: E402
from featureflag_server.postgres_store import PostgresStore  # noqa: E402
from featureflag_server.settings import Settings  # noqa: E402
from featureflag_server.sqlite_store import SQLiteStore  # noqa: E402
from featureflag_server.store import Fork, Store  # noqa: E402

TOKEN = "bench-token-0123456789"
CATALOG = [{"name": f"Bench.flag_{i:02}", "type": "bool"} for i in range(50)]
FLAGS = {"Bench.flag_01": True, "Bench.flag_02": False}


async def percentiles(call: Callable[[], Awaitable[object]], samples: int) -> tuple[float, float]:
    """p50 and p99 of *call* in microseconds."""
    times = []
    for _ in range(samples):
        start = time.perf_counter_ns()
        await call()
        times.append((time.perf_counter_ns() - start) / 1000)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99)]


async def fill(store: Store, count: int) -> list[str]:
    names = [f"fork-{i:05}" for i in range(count)]
    batch = 200
    for i in range(0, count, batch):
        await asyncio.gather(
            *(
                store.create_fork(Fork(name, "http://127.0.0.1:9000", dict(FLAGS), "bench"))
                for name in names[i : i + batch]
            )
        )
    await store.put_catalog(CATALOG)
    return names


async def measure(store: Store, forks: int, samples: int) -> dict[str, tuple[float, float]]:
    names = await fill(store, forks)
    rng = random.Random(14)
    cache = CachedForks(store)
    await cache.get_fork(names[0])  # starts the watch
    for _ in range(200):
        if cache.watching:
            break
        await asyncio.sleep(0.01)
    for name in names:
        await cache.get_fork(name)
    # The cache as it was before issue 14 (1,024 entries for 1 s, no watch), for comparison.
    before = CachedForks(_Unwatched(store), ttl=1.0, max_entries=1024, max_misses=1024)
    for name in names:
        await before.get_fork(name)
    results = {
        "lookup (before: 1 s)": await percentiles(
            lambda: before.get_fork(rng.choice(names)), samples
        ),
        "lookup (proxy path)": await percentiles(
            lambda: cache.get_fork(rng.choice(names)), samples
        ),
        "lookup (uncached)": await percentiles(lambda: store.get_fork(rng.choice(names)), samples),
    }
    settings = Settings(
        secret="bench-secret-" + "x" * 40, environment="bench", api_tokens={"bench": TOKEN}
    )
    app = create_app(settings, store=store)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url="http://flags.test",
        headers={"Authorization": f"Bearer {TOKEN}"},
    ) as client:

        async def mint() -> None:
            response = await client.post("/api/tokens", json={"flags": FLAGS})
            if response.status_code != 201:
                raise RuntimeError(response.text)

        results["token minting"] = await percentiles(mint, max(samples // 5, 200))
    await cache.close()  # closes the store too (the caller's close is then a no-op)
    return results


class _Unwatched:
    """*store* without ``watch_forks``: CachedForks falls back to its ttl."""

    def __init__(self, store: Store) -> None:
        self.get_fork = store.get_fork


@contextmanager
def postgres(url: str | None) -> Iterator[Callable[[], str]]:
    if url is not None:
        yield lambda: url
        return
    from tests.support.postgres import postgres_server

    with postgres_server() as server:
        yield server.database


async def run(samples: int, pg_url: str | None) -> None:
    print(f"bench/store.py: {samples} samples, {os.cpu_count()} cores, p50 / p99 in µs")
    rows: list[tuple[str, int, str, float, float, float]] = []
    with postgres(pg_url) as new_database, tempfile.TemporaryDirectory() as tmp:
        for forks in (10, 10_000):
            by_backend: dict[str, dict[str, tuple[float, float]]] = {}
            for backend in ("sqlite", "postgresql"):
                store: Store = (
                    SQLiteStore(Path(tmp) / f"bench-{forks}.sqlite3")
                    if backend == "sqlite"
                    else PostgresStore.connect(new_database())
                )
                try:
                    by_backend[backend] = await measure(store, forks, samples)
                finally:
                    await store.close()
            for what in by_backend["sqlite"]:
                base = by_backend["sqlite"][what][0]
                for backend, results in by_backend.items():
                    p50, p99 = results[what]
                    rows.append((what, forks, backend, p50, p99, p50 / base))
    print(f"{'measure':<22}{'forks':>7}  {'store':<11}{'p50':>9}{'p99':>9}{'x SQLite':>10}")
    for what, forks, backend, p50, p99, ratio in sorted(rows, key=lambda r: (r[0], r[1])):
        print(f"{what:<22}{forks:>7}  {backend:<11}{p50:>9.1f}{p99:>9.1f}{ratio:>10.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5000)
    parser.add_argument("--postgres", default=None, help="an empty database's URL")
    args = parser.parse_args()
    asyncio.run(run(args.samples, args.postgres))


if __name__ == "__main__":
    main()
