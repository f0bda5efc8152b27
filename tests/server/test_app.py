"""create_app: Host dispatch between the fork proxy and the service, and the lifespan."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import pytest

from featureflag_server.app import create_app
from featureflag_server.errors import StoreError
from featureflag_server.memory_store import MemoryStore
from featureflag_server.settings import Settings
from featureflag_server.sqlite_store import SQLiteStore
from featureflag_server.store import Fork

from .conftest import ALICE


class Upstream:
    """An injected proxy transport that records what reached the 'upstream'."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return httpx.Response(200, text=f"upstream saw {request.url.path}")


@pytest.fixture
async def forked(settings: Settings) -> tuple[Any, Upstream]:
    store = MemoryStore()
    await store.create_fork(Fork("new-lp", "http://upstream.test:9000", {"a.b": True}, "alice"))
    upstream = Upstream()
    app = create_app(settings, store=store, proxy_transport=httpx.MockTransport(upstream))
    return app, upstream


async def get(app: Any, path: str, host: str) -> httpx.Response:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
    ) as client:
        return await client.get(path, headers={"Host": host})


@pytest.mark.parametrize("host", ["new-lp.localhost:8000", "new-lp.localhost", "NEW-LP.localhost"])
async def test_a_fork_host_goes_to_the_upstream(forked: tuple[Any, Upstream], host: str) -> None:
    app, upstream = forked
    response = await get(app, "/api/forks", host)  # even the service's own paths
    assert response.text == "upstream saw /api/forks"
    assert len(upstream.requests) == 1
    assert "feature-flag-overrides" in upstream.requests[0].headers


@pytest.mark.parametrize(
    "host", ["localhost:8000", "127.0.0.1:8000", "qa.example.com", "www.localhost:8000", ""]
)
async def test_any_other_host_is_the_service(forked: tuple[Any, Upstream], host: str) -> None:
    app, upstream = forked
    response = await get(app, "/healthz", host)
    assert response.json() == {"status": "ok"}
    assert upstream.requests == []


async def test_the_web_page_answers_on_the_service_host(forked: tuple[Any, Upstream]) -> None:
    app, _ = forked
    response = await get(app, "/", "localhost:8000")
    assert response.status_code in (200, 303, 307)


async def test_the_api_and_the_page_share_one_forks_layer(
    forked: tuple[Any, Upstream],
) -> None:
    # A fork written through the API shows on the page's list: one store, one cache.
    app, _ = forked
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
    ) as client:
        body = {"upstream": "http://h:1", "labels": {"team": "web"}}
        auth = {"Authorization": f"Bearer {ALICE}"}
        assert (await client.put("/api/forks/from-api", json=body, headers=auth)).status_code == 201
        fetched = (await client.get("/api/forks/from-api", headers=auth)).json()
    assert fetched["labels"] == {"team": "web"}  # kept through the proxy's fork cache
    assert fetched["updated_by"] == "alice"


class Lifespan:
    """Drive an ASGI lifespan by hand."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.outbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    async def send(self, event: str) -> dict[str, Any]:
        if self.task is None:
            self.task = asyncio.create_task(
                self.app({"type": "lifespan"}, self.inbox.get, self.outbox.put)
            )
        await self.inbox.put({"type": event})
        return await asyncio.wait_for(self.outbox.get(), 30)


async def test_lifespan_opens_and_closes_its_own_store(settings: Settings) -> None:
    app = create_app(settings)
    assert (await get(app, "/healthz", "localhost")).status_code == 503
    lifespan = Lifespan(app)
    assert (await lifespan.send("lifespan.startup"))["type"] == "lifespan.startup.complete"
    assert isinstance(app.store, SQLiteStore)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8000"
    ) as client:
        response = await client.post(
            "/api/forks",
            json={"name": "new-lp", "upstream": "http://h:1"},
            headers={"Authorization": f"Bearer {ALICE}"},
        )
    assert response.status_code == 201
    assert (await lifespan.send("lifespan.shutdown"))["type"] == "lifespan.shutdown.complete"
    with pytest.raises(StoreError):
        await app.store.list_forks()
    reopened = SQLiteStore(settings.db)
    try:
        assert await reopened.get_fork("new-lp") is not None
    finally:
        await reopened.close()


async def test_lifespan_leaves_a_given_store_open(settings: Settings) -> None:
    store = MemoryStore()
    closed: list[bool] = []

    async def close() -> None:
        closed.append(True)

    store.close = close  # type: ignore[method-assign]
    lifespan = Lifespan(create_app(settings, store=store))
    await lifespan.send("lifespan.startup")
    assert (await lifespan.send("lifespan.shutdown"))["type"] == "lifespan.shutdown.complete"
    assert closed == []


async def test_a_store_that_cannot_open_fails_startup_with_the_reason(
    settings: Settings, tmp_path: Path
) -> None:
    bad = settings.model_copy(update={"db": tmp_path / "missing" / "dir" / "x.sqlite3"})
    message = await Lifespan(create_app(bad)).send("lifespan.startup")
    assert message["type"] == "lifespan.startup.failed"
    assert "--db" in message["message"]


async def test_the_app_checks_fork_upstreams_against_its_own_settings() -> None:
    # --fork-upstreams and the service's own socket apply to any app create_app builds,
    # not only to the one featureflag-server starts.
    settings = Settings(
        secret="s" * 40, api_tokens=f"alice:{ALICE}", port=8123, fork_upstreams="*.internal:*"
    )
    app = create_app(settings, store=MemoryStore())
    # Another app in the same process, with no allow-list, changes nothing for this one.
    create_app(settings.model_copy(update={"fork_upstreams": ""}), store=MemoryStore())
    auth = {"Authorization": f"Bearer {ALICE}"}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8123") as c:
        allowed = await c.put(
            "/api/forks/ok", json={"upstream": "http://shop.internal:8080"}, headers=auth
        )
        elsewhere = await c.put(
            "/api/forks/no", json={"upstream": "http://example.com"}, headers=auth
        )
        itself = await c.put(
            "/api/forks/me", json={"upstream": "http://127.0.0.1:8123"}, headers=auth
        )
    assert allowed.status_code == 201, allowed.text
    assert elsewhere.status_code == 422 and "upstream" in elsewhere.text
    assert itself.status_code == 422


async def test_fork_pages_link_to_the_service_where_people_sign_in(
    forked: tuple[Any, Upstream],
) -> None:
    # Issue 19 item 5: they linked to http://localhost:8000/, while the service (and the
    # README, the demo, the start-up line) is at http://127.0.0.1:8000, where the
    # session cookie is: a click meant signing in again.
    app, _ = forked
    for host in ("gone.localhost:8000", "gone.localhost:9123"):
        response = await get(app, "/", host)
        assert response.status_code == 404
        port = host.rpartition(":")[2]
        assert f'href="http://127.0.0.1:{port}/"' in response.text
        assert "localhost:" + port + "/" not in response.text


@pytest.mark.parametrize(
    ("host", "fork_domain", "expected"),
    [
        ("127.0.0.1", "localhost", "http://127.0.0.1:8000/"),
        ("localhost", "localhost", "http://localhost:8000/"),
        ("0.0.0.0", "localhost", "http://127.0.0.1:8000/"),
        ("::1", "localhost", "http://[::1]:8000/"),
        ("0.0.0.0", "qa.example.com", "http://qa.example.com:8000/"),
    ],
)
async def test_the_service_link_follows_host_and_fork_domain(
    settings: Settings, host: str, fork_domain: str, expected: str
) -> None:
    configured = settings.model_copy(update={"host": host, "fork_domain": fork_domain})
    app = create_app(configured, store=MemoryStore())
    response = await get(app, "/", f"gone.{fork_domain}:8000")
    assert response.status_code == 404
    assert f'href="{expected}"' in response.text
