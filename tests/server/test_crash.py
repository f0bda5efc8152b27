"""SIGKILL the real server during a burst of fork writes: every acknowledged fork survives
(SQLite: after a restart; PostgreSQL: served by the other replica)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import PostgresServer
from tests.support.replicas import replicas
from tests.support.servers import free_port, run_server

TOKEN = "alice-token-0123456789"
ENV = {"FEATUREFLAG_SECRET": "k" * 40, "FEATUREFLAG_API_TOKENS": f"alice:{TOKEN}"}
COMMAND = str(Path(sys.executable).with_name("featureflag-server"))
WORKERS = 16
KILL_AFTER = 60  # acknowledged forks before the kill


def _argv(port: int, db: Path) -> list[str]:
    return [COMMAND, "--port", str(port), "--db", str(db)]


@pytest.mark.integration
async def test_every_acknowledged_fork_survives_sigkill(tmp_path: Path) -> None:
    db = tmp_path / "ff.sqlite3"
    acknowledged: dict[str, dict[str, object]] = {}
    in_flight_at_kill = -1
    port = free_port()
    with run_server(
        _argv(port, db), port=port, ready_path="/healthz", env=ENV, log_dir=tmp_path
    ) as server:
        killed = asyncio.Event()
        in_flight = 0
        counter = iter(range(1_000_000))

        async def worker(client: httpx.AsyncClient) -> None:
            nonlocal in_flight, in_flight_at_kill
            while not killed.is_set():
                i = next(counter)
                body = {
                    "name": f"fork-{i}",
                    "upstream": f"http://127.0.0.1:{9000 + i % 100}",
                    "flags": {"Burst.is_on": i % 2 == 0, "burst.index": str(i)},
                }
                in_flight += 1
                try:
                    response = await client.post("/api/forks", json=body)
                except httpx.TransportError:
                    return  # the server is gone
                finally:
                    in_flight -= 1
                if response.status_code == 201:
                    acknowledged[body["name"]] = body  # type: ignore[index]
                if len(acknowledged) >= KILL_AFTER and not killed.is_set():
                    in_flight_at_kill = in_flight
                    os.kill(server.process.pid, signal.SIGKILL)
                    killed.set()

        limits = httpx.Limits(max_connections=WORKERS)
        async with httpx.AsyncClient(
            base_url=server.url,
            headers={"Authorization": f"Bearer {TOKEN}"},
            limits=limits,
            timeout=30,
        ) as client:
            await asyncio.gather(*(worker(client) for _ in range(WORKERS)))
        assert server.process.wait(timeout=30) == -signal.SIGKILL

    # The kill came while other writes were still on their way.
    assert in_flight_at_kill > 0
    assert len(acknowledged) >= KILL_AFTER

    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    finally:
        conn.close()

    port = free_port()
    with run_server(
        _argv(port, db), port=port, ready_path="/healthz", env=ENV, log_dir=tmp_path,
        name="restarted",
    ) as server:  # fmt: skip
        forks = httpx.get(
            f"{server.url}/api/forks", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
        ).json()["forks"]
    stored = {fork["name"]: fork for fork in forks}
    missing = sorted(set(acknowledged) - set(stored))
    assert missing == []
    for name, body in acknowledged.items():
        assert stored[name]["upstream"] == body["upstream"]
        assert stored[name]["flags"] == body["flags"]


@pytest.mark.integration
async def test_sigkill_of_one_replica_loses_no_acknowledged_fork_on_postgresql(
    tmp_path: Path, postgres: PostgresServer
) -> None:
    url = postgres.database()
    acknowledged: dict[str, dict[str, object]] = {}
    counter = iter(range(1_000_000))
    with replicas(url, log_dir=tmp_path) as (victim, survivor):
        killed = asyncio.Event()
        in_flight_at_kill = -1
        in_flight = 0

        async def worker(client: httpx.AsyncClient, *, stop_after: int | None) -> None:
            nonlocal in_flight, in_flight_at_kill
            while True:
                if stop_after is not None and len(acknowledged) >= stop_after:
                    return
                if stop_after is None and killed.is_set():
                    return
                i = next(counter)
                body = {
                    "name": f"fork-{i}",
                    "upstream": f"http://127.0.0.1:{9000 + i % 100}",
                    "flags": {"Burst.is_on": i % 2 == 0, "burst.index": str(i)},
                }
                in_flight += 1
                try:
                    response = await client.post("/api/forks", json=body)
                except httpx.TransportError:
                    return  # the victim is gone
                finally:
                    in_flight -= 1
                if response.status_code == 201:
                    acknowledged[body["name"]] = body  # type: ignore[index]
                if len(acknowledged) >= KILL_AFTER and not killed.is_set():
                    in_flight_at_kill = in_flight
                    os.kill(victim.process.pid, signal.SIGKILL)
                    killed.set()

        headers = {"Authorization": f"Bearer {TOKEN}"}
        limits = httpx.Limits(max_connections=WORKERS)
        async with (
            httpx.AsyncClient(
                base_url=victim.url, headers=headers, limits=limits, timeout=30
            ) as to_victim,
            httpx.AsyncClient(
                base_url=survivor.url, headers=headers, limits=limits, timeout=30
            ) as to_survivor,
        ):
            await asyncio.gather(
                *(worker(to_victim, stop_after=None) for _ in range(WORKERS // 2)),
                *(worker(to_survivor, stop_after=KILL_AFTER * 2) for _ in range(WORKERS // 2)),
            )
        assert victim.process.wait(timeout=30) == -signal.SIGKILL
        assert in_flight_at_kill > 0
        assert len(acknowledged) >= KILL_AFTER * 2

        # The survivor serves every acknowledged fork (its list, and each by name).
        async with httpx.AsyncClient(base_url=survivor.url, headers=headers, timeout=30) as client:
            forks = (await client.get("/api/forks")).json()["forks"]
            stored = {fork["name"]: fork for fork in forks}
            assert sorted(set(acknowledged) - set(stored)) == []
            for name, body in acknowledged.items():
                assert stored[name]["upstream"] == body["upstream"]
                assert stored[name]["flags"] == body["flags"]
                one = await client.get(f"/api/forks/{name}")
                assert one.status_code == 200 and one.json()["flags"] == body["flags"]
