"""KeepAlivePool against a real uvicorn upstream on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import httpx
import pytest

from server.upstream_pool import KeepAlivePool
from tests.support.servers import Server, free_port, run_uvicorn

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    log_dir: Path = tmp_path_factory.mktemp("pool-logs")
    with run_uvicorn("tests.server.proxy_upstream:app", log_dir=log_dir, name="upstream") as up:
        yield up


@pytest.fixture
async def pool() -> AsyncIterator[KeepAlivePool]:
    pool = KeepAlivePool(max_idle=4)
    yield pool
    await pool.aclose()


@pytest.fixture
async def client(pool: KeepAlivePool) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(transport=pool) as client:
        yield client


async def port_of(client: httpx.AsyncClient, upstream: Server) -> int:
    port: int = (await client.get(upstream.url + "/echo")).json()["client_port"]
    return port


async def test_sequential_requests_reuse_one_connection(
    client: httpx.AsyncClient, pool: KeepAlivePool, upstream: Server
) -> None:
    ports = {await port_of(client, upstream) for _ in range(5)}
    assert len(ports) == 1
    assert pool.idle_count() == 1


async def test_concurrent_requests_get_their_own_connections_then_keep_at_most_max_idle(
    client: httpx.AsyncClient, pool: KeepAlivePool, upstream: Server
) -> None:
    ports: set[int] = set()
    started = 0
    all_started = anyio.Event()

    async def hold_open() -> None:
        nonlocal started
        async with client.stream("GET", upstream.url + "/echo") as response:
            started += 1
            if started == 8:
                all_started.set()
            await all_started.wait()  # all eight are in flight at once
            await response.aread()
            ports.add(response.json()["client_port"])

    async with anyio.create_task_group() as tasks:
        for _ in range(8):
            tasks.start_soon(hold_open)
    assert len(ports) == 8
    assert pool.idle_count() == 4


async def test_a_body_left_unread_closes_its_connection(
    client: httpx.AsyncClient, pool: KeepAlivePool, upstream: Server
) -> None:
    async with client.stream("GET", upstream.url + "/big?size=10000000") as response:
        await response.aiter_raw().__anext__()
    assert pool.idle_count() == 0
    assert (await client.get(upstream.url + "/")).text == "hello"


async def test_an_expired_connection_is_not_reused(upstream: Server) -> None:
    pool = KeepAlivePool(keepalive_expiry=0.0)
    async with httpx.AsyncClient(transport=pool) as client:
        first = await port_of(client, upstream)
        second = await port_of(client, upstream)
    assert first != second


async def test_request_bodies_are_sent(client: httpx.AsyncClient, upstream: Server) -> None:
    async def body() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b"z" * 1000

    response = await client.post(upstream.url + "/upload", content=body())
    assert response.json() == {"size": 10000}


async def test_errors_are_httpx_errors(client: httpx.AsyncClient, upstream: Server) -> None:
    with pytest.raises(httpx.ConnectError):
        await client.get(f"http://127.0.0.1:{free_port()}/")
    with pytest.raises(httpx.ReadTimeout):
        await client.get(upstream.url + "/slow?id=pool-timeout", timeout=0.2)
    with pytest.raises(httpx.UnsupportedProtocol):
        await client.get("ftp://127.0.0.1/")


async def test_a_closed_pool_refuses_requests(upstream: Server) -> None:
    pool = KeepAlivePool()
    async with httpx.AsyncClient(transport=pool) as client:
        await client.get(upstream.url + "/")
    assert pool.idle_count() == 0
    with pytest.raises(RuntimeError):
        await pool.handle_async_request(httpx.Request("GET", upstream.url))
