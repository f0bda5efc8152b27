"""Two real ``featureflag-server`` processes on one PostgreSQL database.

A fork written through one is served accordingly by the other (its fork cache hears of
the write through LISTEN/NOTIFY), unknown-token failures count for both, and two
processes started at once on an empty database both come up (the schema is migrated
under an advisory lock).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from featureflag_server import postgres_store
from tests.support.postgres import PostgresServer
from tests.support.replicas import TOKEN, replicas
from tests.support.servers import Server, free_port, run_uvicorn

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def app_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The forks' upstream: an app of its own (the service refuses itself as an upstream)."""
    log_dir = tmp_path_factory.mktemp("replicas-upstream")
    with run_uvicorn("tests.server.proxy_upstream:app", log_dir=log_dir) as upstream:
        yield upstream.url


@pytest.fixture(scope="module")
def pair(postgres: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[
    tuple[Server, Server, str]
]:  # fmt: skip
    url = postgres.database()  # empty: both processes migrate it at the same moment
    with replicas(url, log_dir=tmp_path_factory.mktemp("replicas")) as (a, b):
        yield a, b, url


def test_two_processes_started_at_once_on_an_empty_database_both_serve(
    pair: tuple[Server, Server, str],
) -> None:
    a, b, url = pair
    for server in (a, b):
        assert httpx.get(server.url + "/healthz").json() == {"status": "ok"}
        assert "Traceback" not in server.output()
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT version FROM featureflag_schema").fetchall()
    assert row == [(postgres_store.SCHEMA_VERSION,)]


def on_fork(server: Server, name: str) -> int:
    """The status of ``GET /`` on fork host *name* of *server*."""
    host = f"{name}.localhost:{server.port}"
    return httpx.get(server.url + "/", headers={"Host": host}, timeout=30).status_code


def until(check: Callable[[], bool], what: str) -> float:
    """Poll *check* until true; how long it took (reported, not asserted: no timed
    assertions on a shared machine)."""
    start = time.monotonic()
    while time.monotonic() - start < 30:
        if check():
            return time.monotonic() - start
        time.sleep(0.02)
    raise AssertionError(f"never saw {what}")


def test_a_fork_written_through_one_is_served_accordingly_by_the_other(
    pair: tuple[Server, Server, str], app_url: str
) -> None:
    a, b, _ = pair
    name = "shared-fork"
    # b remembers the miss first: the create must make it forget it.
    assert on_fork(b, name) == 404
    with httpx.Client(base_url=a.url, headers=AUTH, timeout=30) as api:
        body = {"name": name, "upstream": app_url, "flags": {"Replica.is_on": True}}
        assert api.post("/api/forks", json=body).status_code == 201
        seen = [until(lambda: on_fork(b, name) == 200, "the create on b")]
        assert on_fork(b, name) == 200  # b keeps serving it (from its cache)

        dead = f"http://127.0.0.1:{free_port()}"
        body = {"upstream": dead, "flags": {"Replica.is_on": False}}
        assert api.put(f"/api/forks/{name}", json=body).status_code == 200
        seen.append(until(lambda: on_fork(b, name) == 502, "the replace on b"))

        assert api.delete(f"/api/forks/{name}").status_code == 204
        seen.append(until(lambda: on_fork(b, name) == 404, "the delete on b"))
    print(f"seen by the other replica after {[round(s * 1000) for s in seen]} ms")


def test_the_failed_login_limit_is_shared(pair: tuple[Server, Server, str]) -> None:
    a, b, _ = pair
    # An address of its own (the services trust X-Forwarded-For from 127.0.0.1), so the
    # other tests' requests are not refused.
    client = {"X-Forwarded-For": "203.0.113.9"}
    # Guesses that start like the right token (the limit counts per token prefix), so a
    # probe with the right token is refused only once the guesses' bucket is full.
    bad = client | {"Authorization": f"Bearer {TOKEN[:6]}not-a-token-but-long-enough"}
    good = client | AUTH
    # Ten unknown tokens (the limit), five through each replica.
    for server in (a, b):
        for _ in range(5):
            assert httpx.delete(server.url + "/api/forks/none", headers=bad).status_code == 401

    def refused(server: Server) -> bool:
        # The right token: refused only because of the failures of tokens starting like it.
        return httpx.delete(server.url + "/api/forks/none", headers=good).status_code == 429

    until(lambda: refused(b), "b refusing")  # b's fifth failure brought back all ten
    # a has heard of b's failures after at most one more of its own.
    httpx.delete(a.url + "/api/forks/none", headers=bad)
    until(lambda: refused(a), "a refusing")


def test_a_change_made_straight_in_the_database_reaches_both_caches(
    pair: tuple[Server, Server, str], tmp_path: Path, app_url: str
) -> None:
    # Whoever writes (an older release, an operator's UPDATE), the trigger notifies.
    a, b, url = pair
    with httpx.Client(base_url=a.url, headers=AUTH, timeout=30) as api:
        body = {"name": "by-hand", "upstream": app_url, "flags": {}}
        assert api.post("/api/forks", json=body).status_code == 201
    for server in (a, b):
        until(lambda s=server: on_fork(s, "by-hand") == 200, "the fork")
    with psycopg.connect(url) as conn:
        conn.execute("DELETE FROM forks WHERE name = 'by-hand'")
    for server in (a, b):
        until(lambda s=server: on_fork(s, "by-hand") == 404, "the delete")


async def test_failed_logins_of_two_replicas_add_up_through_the_store() -> None:
    # In one process, the two replicas' records over one store (the real pair is above).
    import asyncio

    from featureflag_server.auth import FailedLogins
    from featureflag_server.memory_store import MemoryStore
    from tests.support.clock import Clock

    store, wall = MemoryStore(), Clock(1_800_000_000.0)
    a = FailedLogins(limit=10, shared=store, clock=Clock(100.0), wall_clock=wall)
    b = FailedLogins(limit=10, shared=store, clock=Clock(9000.0), wall_clock=wall)

    def nobody(given: str) -> None:
        return None

    for replica in (a, b):
        for _ in range(5):
            assert replica.attempt("203.0.113.9", "guess", nobody) is None
            await asyncio.gather(*replica._sharing)
    assert b.retry_after("203.0.113.9", "guess") == 60  # b heard of a's five
    assert a.retry_after("203.0.113.9", "guess") is None  # a has not heard of b's yet...
    a.attempt("203.0.113.9", "guess", nobody)
    await asyncio.gather(*a._sharing)
    assert a.retry_after("203.0.113.9", "guess") == 60  # ...until its next failure
    assert a.retry_after("198.51.100.1", "guess") is None  # other addresses are not affected
