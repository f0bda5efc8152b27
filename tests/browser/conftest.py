"""Shared fixtures for the browser tests: a headless Chromium and the live demo.

``browser`` / ``page``
    Debian's Chromium (``/usr/bin/chromium``, see ``../shared/browser-testing.md``)
    driven by Python Playwright, headless. Tests that need an unpacked extension launch
    their own persistent context with :data:`CHROMIUM` and :data:`CHROMIUM_ARGS`.

``live_demo`` (session-scoped)
    The demo as ``./scripts/demo`` runs it, but on free ports and a temporary SQLite
    file: the override service (``python -m featureflag_server``), the demo shop
    (``examples.demo_app``) and its downstream service (``examples.downstream``), real
    uvicorn processes on 127.0.0.1, sharing one secret. The flag catalog is pushed and
    the fork ``new-lp`` (``"new-lp": "b"``, ``"Recommendations.strategy": "personal"``)
    exists. Yields a :class:`LiveDemo` with the URLs and the API token. Tests may add
    forks of their own (use a name only your test uses); leave ``new-lp`` as it is.

    Example::

        def test_fork(live_demo: LiveDemo, page: Page) -> None:
            page.goto(live_demo.fork_url)        # http://new-lp.localhost:<port>/
            expect(page.locator("h1")).to_have_attribute("data-variant", "b")
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, sync_playwright

from examples.run_demo import ensure_fork, push_catalog
from tests.support.servers import ROOT, free_port, run_server, run_uvicorn

CHROMIUM = "/usr/bin/chromium"
# Headless in a container as root: no sandbox, no /dev/shm limits, no GPU.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"]
SDK_BUNDLE = ROOT / "sdk-js" / "dist" / "featureflag.iife.js"


@dataclass(frozen=True)
class LiveDemo:
    """The running demo (see the module docstring). URLs have no trailing slash but the fork's."""

    service_url: str  # http://127.0.0.1:<port>: the override service (API, web page)
    service_port: int
    app_url: str  # http://127.0.0.1:<port>: the demo shop
    downstream_url: str  # http://127.0.0.1:<port>: the downstream service
    fork_url: str  # http://new-lp.localhost:<service port>/
    api_token: str  # an API token of the service (user "demo")
    secret: str  # FEATUREFLAG_SECRET shared by all three processes
    environment: str  # FEATUREFLAG_ENVIRONMENT
    db: Path  # the service's SQLite file
    logs: Path  # the processes' logs

    def fork_url_for(self, name: str) -> str:
        """Where a fork called *name* is served (``http://NAME.localhost:<port>/``)."""
        return f"http://{name}.localhost:{self.service_port}/"


@pytest.fixture(scope="session")
def live_demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveDemo]:
    """Start the service, the demo shop and the downstream service; see the module docs."""
    base = tmp_path_factory.mktemp("live-demo")
    logs = base / "logs"
    logs.mkdir()
    secret = secrets.token_urlsafe(48)
    api_token = secrets.token_urlsafe(32)
    environment = "development"
    env = {
        "FEATUREFLAG_SECRET": secret,
        "FEATUREFLAG_ENVIRONMENT": environment,
        "FEATUREFLAG_API_TOKENS": f"demo:{api_token}",
    }
    db = base / "featureflag.sqlite3"
    with ExitStack() as stack:
        port = free_port()
        argv = [sys.executable, "-m", "featureflag_server"]
        argv += ["--host", "127.0.0.1", "--port", str(port)]
        argv += ["--db", str(db)]
        service = stack.enter_context(
            run_server(
                argv, port=port, ready_path="/healthz", env=env, log_dir=logs, name="service"
            )
        )
        downstream = stack.enter_context(
            run_uvicorn(
                "examples.downstream:app",
                log_dir=logs,
                env=env,
                ready_path="/healthz",
                name="downstream",
            )
        )
        app = stack.enter_context(
            run_uvicorn(
                "examples.demo_app:app",
                log_dir=logs,
                env={**env, "DEMO_DOWNSTREAM_URL": downstream.url},
                ready_path="/healthz",
                name="demo-app",
            )
        )
        push_catalog(service.url, api_token, {**os.environ, **env})
        fork = ensure_fork(service.url, api_token, app.url)
        yield LiveDemo(
            service_url=service.url,
            service_port=port,
            app_url=app.url,
            downstream_url=downstream.url,
            fork_url=str(fork["url"]),
            api_token=api_token,
            secret=secret,
            environment=environment,
            db=db,
            logs=logs,
        )


@pytest.fixture(scope="session")
def playwright_session() -> Iterator[Playwright]:
    """Python Playwright, started once."""
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing: run ./scripts/install-browser")
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright_session: Playwright) -> Iterator[Browser]:
    """Headless Chromium from /usr/bin/chromium (never a downloaded build)."""
    chromium = playwright_session.chromium.launch(
        executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
    )
    yield chromium
    chromium.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A page in a fresh context (no cookies), 1280x900, clipboard allowed."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.grant_permissions(["clipboard-read", "clipboard-write"])
    tab = context.new_page()
    yield tab
    context.close()


@pytest.fixture(scope="session")
def sdk_bundle() -> Path:
    """sdk-js's ``<script>`` bundle, built when missing (needs ./scripts/install-js)."""
    if not SDK_BUNDLE.exists():
        if not (ROOT / "sdk-js" / "node_modules").exists():
            pytest.skip("sdk-js is not installed: run ./scripts/install-js")
        subprocess.run(["npm", "run", "build"], cwd=ROOT / "sdk-js", check=True, timeout=300)
    return SDK_BUNDLE
