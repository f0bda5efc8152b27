"""FeatureFlagMiddleware in a real FastAPI app (issue 16's FastAPI problems, follow-up).

FastAPI subclasses Starlette but builds its own middleware stack: these tests check
the start-up failure, overrides in sync and async endpoints and dependencies,
background tasks, OFREP under ``root_path`` and CORS with FastAPI itself, in process
and through a real uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import re
from pathlib import Path
from typing import Annotated, Any

import httpx
import pytest
from fastapi import BackgroundTasks, Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

import featureflag
from featureflag.asgi import FeatureFlagMiddleware
from featureflag.exceptions import ConfigurationError
from featureflag.report import parse_report
from featureflag.tokens import OverrideSigner
from tests.support.servers import run_uvicorn

SECRET = "fastapi-test-secret-" + "f" * 40
OVERRIDES = {"fastapi.sync": "b", "fastapi.async": "b", "fastapi.dep": "b"}


def variant() -> str:
    """One call site for ``fastapi.sync`` (an endpoint and a background task use it)."""
    return featureflag.intercept("fastapi.sync", lambda: "a")


def checkout() -> str:
    """A dependency that evaluates a flag (FastAPI runs a sync one in its threadpool)."""
    return featureflag.intercept("fastapi.dep", lambda: "a")


ran_in_background: list[str] = []


def create_app(*middleware: tuple[type[Any], dict[str, Any]], **options: Any) -> FastAPI:
    """A FastAPI app with *middleware* added in order (the last added is outermost)."""
    app = FastAPI(**options)

    @app.get("/sync")
    def sync_endpoint() -> dict[str, str]:
        return {"sync": variant()}

    @app.get("/async")
    async def async_endpoint(dep: Annotated[str, Depends(checkout)]) -> dict[str, str]:
        return {"async": featureflag.intercept("fastapi.async", lambda: "a"), "dep": dep}

    @app.get("/background")
    async def background(tasks: BackgroundTasks) -> dict[str, str]:
        def later() -> None:
            ran_in_background.append(variant())

        tasks.add_task(later)
        return {"ok": "yes"}

    for cls, kwargs in middleware:
        app.add_middleware(cls, **kwargs)
    return app


@pytest.fixture
def signer() -> OverrideSigner:
    return OverrideSigner(SECRET, environment="test")


@pytest.fixture
def token(signer: OverrideSigner) -> str:
    return signer.dumps(OVERRIDES, sub="ana")


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://app.test")


async def lifespan(app: Any) -> tuple[list[dict[str, Any]], Exception | None]:
    """Drive the lifespan (httpx.ASGITransport does not): startup, then shutdown.

    Returns the messages the app sent and what it raised, if anything: after
    ``lifespan.startup.failed`` an app may raise (Starlette's router does).
    """
    sent: list[dict[str, Any]] = []
    messages = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    try:
        await app(scope, receive, send)
    except Exception as error:
        return sent, error
    return sent, None


# 1. A missing secret fails start-up


async def test_add_middleware_without_a_secret_fails_the_lifespan_startup(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("FEATUREFLAG_SECRET", raising=False)
    sent, error = await lifespan(create_app((FeatureFlagMiddleware, {})))
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert "FEATUREFLAG_SECRET" in sent[0]["message"]
    assert error is None or isinstance(error, ConfigurationError)
    # Configured, FastAPI's own lifespan runs.
    ok, error = await lifespan(create_app((FeatureFlagMiddleware, {"secret": SECRET})))
    assert [m["type"] for m in ok] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]
    assert error is None


async def test_after_a_failed_startup_the_app_raises_as_starlette_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # TestClient (and the ASGI convention Starlette's router follows) expect the app to
    # raise after lifespan.startup.failed; uvicorn then exits quietly all the same.
    monkeypatch.delenv("FEATUREFLAG_SECRET", raising=False)
    sent, error = await lifespan(create_app((FeatureFlagMiddleware, {})))
    assert [m["type"] for m in sent] == ["lifespan.startup.failed"]
    assert isinstance(error, ConfigurationError)


def no_secret_app() -> FastAPI:
    """For ``uvicorn --factory``: add_middleware() with no secret in the environment."""
    return create_app((FeatureFlagMiddleware, {}))


@pytest.mark.integration
def test_add_middleware_without_a_secret_stops_a_real_uvicorn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEATUREFLAG_SECRET", raising=False)  # run_uvicorn copies os.environ
    with (
        pytest.raises(RuntimeError, match="server exited") as failed,
        run_uvicorn("tests.test_fastapi:no_secret_app", factory=True, log_dir=tmp_path),
    ):
        pass
    exited = re.search(r"server exited with (-?\d+)", str(failed.value))
    assert exited is not None and int(exited.group(1)) != 0
    assert "FEATUREFLAG_SECRET" in str(failed.value)
    assert "Application startup failed" in str(failed.value)


# 2. Overrides reach routes and dependencies, and are reported


async def test_a_tokens_overrides_reach_sync_async_endpoints_and_dependencies(
    signer: OverrideSigner, token: str
) -> None:
    app = create_app((FeatureFlagMiddleware, {"signer": signer}))
    headers = {"Feature-Flag-Overrides": token}
    async with client(app) as c:
        sync = await c.get("/sync", headers=headers)
        asynchronous = await c.get("/async", headers=headers)
        default = await c.get("/async")
    assert sync.json() == {"sync": "b"}
    assert asynchronous.json() == {"async": "b", "dep": "b"}
    assert default.json() == {"async": "a", "dep": "a"}
    assert "feature-flags" not in default.headers

    [one] = parse_report(sync.headers["feature-flags"])
    assert (one.name, one.value, one.source) == ("fastapi.sync", "b", "override")
    report = {
        e.name: (e.value, e.source) for e in parse_report(asynchronous.headers["feature-flags"])
    }
    assert report == {"fastapi.dep": ("b", "override"), "fastapi.async": ("b", "override")}
    assert asynchronous.headers["cache-control"] == "private, no-store"


# 3. Background tasks


async def test_a_background_task_gets_the_overrides_and_no_late_flag_warning(
    signer: OverrideSigner, token: str, caplog: pytest.LogCaptureFixture
) -> None:
    ran_in_background.clear()
    app = create_app((FeatureFlagMiddleware, {"signer": signer}))
    with caplog.at_level(logging.DEBUG, logger="featureflag"):
        async with client(app) as c:
            r = await c.get("/background", headers={"Feature-Flag-Overrides": token})
    assert r.json() == {"ok": "yes"}
    assert ran_in_background == ["b"]  # the task ran, in the request's context
    assert not [rec for rec in caplog.records if rec.levelno >= logging.WARNING], caplog.text
    assert "before the response starts" not in caplog.text


# 4. OFREP under root_path, and from another origin


@pytest.mark.parametrize("where", ["server", "app"])
@pytest.mark.filterwarnings("ignore:The `root_path` parameter is deprecated")
async def test_ofrep_answers_under_root_path(
    where: str, signer: OverrideSigner, token: str
) -> None:
    # The server's root path (uvicorn --root-path: FastAPI's advice), else the deprecated
    # FastAPI(root_path=...): both put "/api" in the scope's root_path and path.
    middleware = (FeatureFlagMiddleware, {"signer": signer})
    if where == "server":
        app = create_app(middleware)
        transport = httpx.ASGITransport(app, root_path="/api")
    else:
        app = create_app(middleware, root_path="/api")
        transport = httpx.ASGITransport(app)
    headers = {"Feature-Flag-Overrides": token}
    async with httpx.AsyncClient(transport=transport, base_url="http://app.test") as c:
        page = await c.get("/api/sync", headers=headers)
        bulk = await c.post("/api/ofrep/v1/evaluate/flags", json={}, headers=headers)
        one = await c.post("/api/ofrep/v1/evaluate/flags/fastapi.dep", json={}, headers=headers)
    assert page.json() == {"sync": "b"}  # FastAPI's own routes answer there too
    assert bulk.status_code == 200
    assert sorted(f["key"] for f in bulk.json()["flags"]) == sorted(OVERRIDES)
    assert one.status_code == 200
    assert one.json()["value"] == "b"


def root_path_app() -> FastAPI:
    """For ``uvicorn --factory --root-path /api``: secret from the environment."""
    return create_app((FeatureFlagMiddleware, {}))


@pytest.mark.integration
def test_ofrep_answers_under_uvicorns_root_path(tmp_path: Path) -> None:
    env = {"FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_ENVIRONMENT": "qa"}
    token = OverrideSigner(SECRET, environment="qa").dumps(OVERRIDES, sub="ana")
    headers = {"Feature-Flag-Overrides": token}
    with run_uvicorn(
        "tests.test_fastapi:root_path_app",
        factory=True,
        env=env,
        log_dir=tmp_path,
        ready_path="/sync",
        extra=["--root-path", "/api"],
    ) as s:
        # A proxy strips /api; uvicorn puts it back into the scope's path and root_path.
        page = httpx.get(s.url + "/sync", headers=headers)
        bulk = httpx.post(s.url + "/ofrep/v1/evaluate/flags", json={}, headers=headers)
        one = httpx.post(s.url + "/ofrep/v1/evaluate/flags/fastapi.sync", json={}, headers=headers)
    assert page.json() == {"sync": "b"}
    assert bulk.status_code == 200
    assert sorted(f["key"] for f in bulk.json()["flags"]) == sorted(OVERRIDES)
    assert one.status_code == 200
    assert one.json()["value"] == "b"


ORIGIN = "http://localhost:5173"
CORS = {
    "allow_origins": [ORIGIN],
    "allow_methods": ["POST"],
    "allow_headers": ["content-type"],
    "allow_credentials": True,
}
PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


async def test_ofrep_from_another_origin_with_cors_added_after_ours(
    signer: OverrideSigner, token: str
) -> None:
    # docs/middleware.md: CORSMiddleware added after FeatureFlagMiddleware is outside it.
    app = create_app((FeatureFlagMiddleware, {"signer": signer}), (CORSMiddleware, CORS))
    async with client(app) as c:
        for path in ("/ofrep/v1/evaluate/flags", "/ofrep/v1/evaluate/flags/fastapi.dep"):
            preflight = await c.options(path, headers=PREFLIGHT)
            assert preflight.status_code == 200, preflight.text
            assert preflight.headers["access-control-allow-origin"] == ORIGIN
            assert "POST" in preflight.headers["access-control-allow-methods"]
        r = await c.post(
            "/ofrep/v1/evaluate/flags/fastapi.dep",
            json={},
            headers={"Origin": ORIGIN, "Cookie": f"featureflag_overrides={token}"},
        )
    assert r.json()["value"] == "b"
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert r.headers["access-control-allow-credentials"] == "true"
