"""PostgreSQL restarts under a running service: 503 with a clear message meanwhile (an HTML
page on fork hosts), and the service recovers without a restart of its own."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.postgres import PostgresServer, postgres_server
from tests.support.replicas import TOKEN, replicas
from tests.support.servers import Server, run_uvicorn

pytestmark = pytest.mark.integration
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture
def own_postgres() -> Iterator[PostgresServer]:
    """A cluster of this test's own: it is stopped and started again."""
    with postgres_server() as server:
        yield server


def until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"never saw {what}")


def fork_page(server: Server) -> httpx.Response:
    host = f"kept.localhost:{server.port}"
    return httpx.get(server.url + "/", headers={"Host": host}, timeout=30)


def logged_in(server: Server) -> httpx.Client:
    """A client with the web page's session."""
    client = httpx.Client(base_url=server.url, timeout=30)
    form = client.get("/login").text
    match = re.search(r'name="csrf_token" value="([^"]+)"', form)
    assert match is not None
    done = client.post("/login", data={"api_token": TOKEN, "csrf_token": match[1]})
    assert done.status_code == 303, done.text
    return client


def test_a_database_restart_is_503_meanwhile_and_recovers(
    own_postgres: PostgresServer, tmp_path: Path
) -> None:
    url = own_postgres.database()
    # The fork's upstream: an app of its own (the service refuses itself as an upstream).
    with (
        run_uvicorn("tests.server.proxy_upstream:app", log_dir=tmp_path) as app,
        replicas(url, count=1, log_dir=tmp_path) as (service,),
    ):
        api = httpx.Client(base_url=service.url, headers=AUTH, timeout=30)
        body = {"name": "kept", "upstream": app.url, "flags": {"Outage.is_on": True}}
        assert api.post("/api/forks", json=body).status_code == 201
        assert fork_page(service).status_code == 200
        web = logged_in(service)
        assert web.get("/").status_code == 200

        own_postgres.stop()
        # The fork host: once the cache has lost its watch, an HTML page, not the fork.
        until(lambda: fork_page(service).status_code == 503, "503 on the fork host")
        page = fork_page(service)
        assert page.headers["content-type"].startswith("text/html")
        assert "cannot reach its database" in page.text
        assert page.headers["retry-after"] == "1"
        # The API: a JSON problem that says what is wrong.
        listed = api.get("/api/forks")
        assert listed.status_code == 503
        assert listed.json()["error"] == "store-unavailable"
        assert "is unavailable" in listed.json()["message"]
        assert "Traceback" not in listed.text
        # The web page (people, logged in before the outage): an HTML page too.
        page = web.get("/")
        assert page.status_code == 503
        assert page.headers["content-type"].startswith("text/html")
        assert "cannot reach its database" in page.text
        assert service.process.poll() is None  # still running

        own_postgres.start()
        until(lambda: api.get("/api/forks").status_code == 200, "the API back")
        assert web.get("/").status_code == 200
        assert [f["name"] for f in api.get("/api/forks").json()["forks"]] == ["kept"]
        until(lambda: fork_page(service).status_code == 200, "the fork back")
        body = {"name": "after", "upstream": app.url, "flags": {}}
        assert api.post("/api/forks", json=body).status_code == 201
        api.close()
        web.close()
        assert service.process.poll() is None
