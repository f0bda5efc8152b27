"""sdk-js and the official OpenFeature web SDK against the Python middleware's OFREP endpoint.

A real uvicorn app (tests/interop/app.py) behind ``FeatureFlagMiddleware``; Node scripts
in sdk-js/interop/ use the *built* package (``@featureflag/sdk``, imported by its own
name) and ``@openfeature/web-sdk`` + ``@openfeature/ofrep-web-provider``. Needs
``./scripts/install-js`` (npm ci + build), which ``./scripts/test`` runs first.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from featureflag.tokens import OverrideSigner
from tests.support.servers import ROOT, Server, run_uvicorn

SDK = ROOT / "sdk-js"
SECRET = "interop-secret-that-is-long-enough-0123456789"
ENVIRONMENT = "interop"
OVERRIDES: dict[str, bool | str] = {"new-checkout": True, "lp-variant": "b", "typed": "on"}
# What app code gets with OVERRIDES: "typed" is a boolean flag, so the string is refused.
EXPECTED = {"new-checkout": True, "lp-variant": "b", "typed": False, "untouched": True}
DEFAULTS = {"new-checkout": False, "lp-variant": "a", "typed": False, "untouched": True}
OFREP = "/ofrep/v1/evaluate/flags"

pytestmark = pytest.mark.integration


def _missing() -> str | None:
    if shutil.which("node") is None:
        return "node is not installed"
    needed = ("dist/index.js", "node_modules/@openfeature/ofrep-web-provider", "node_modules/jsdom")
    for path in needed:
        if not (SDK / path).exists():
            return f"sdk-js/{path} is missing: run ./scripts/install-js"
    return None


@pytest.fixture(scope="module", autouse=True)
def _needs_built_sdk() -> None:
    problem = _missing()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(problem)  # CI installs and builds first: missing means broken
        pytest.skip(problem)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with run_uvicorn(
        "tests.interop.app:create_app",
        factory=True,
        log_dir=tmp_path_factory.mktemp("interop"),
        env={"FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_ENVIRONMENT": ENVIRONMENT},
        name="interop",
    ) as server:
        yield server


@pytest.fixture(scope="module")
def token() -> str:
    return OverrideSigner(SECRET, environment=ENVIRONMENT).dumps(OVERRIDES, sub="interop-test")


_runs: dict[tuple[str, ...], Any] = {}


def node(script: str, server: Server, token: str | None, via: str = "cookie") -> Any:
    """Run sdk-js/interop/<script> against *server* and return the JSON it prints.

    Each script is deterministic for its arguments, so a run is shared between tests.
    """
    argv = ("node", f"interop/{script}", server.url, token or "-", via)
    if argv not in _runs:
        done = subprocess.run(
            argv, cwd=SDK, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr}"
        _runs[argv] = json.loads(done.stdout.strip().splitlines()[-1])
    return _runs[argv]


def test_the_server_itself_sees_the_overrides(app: Server, token: str) -> None:
    cookies = {"featureflag_overrides": token}
    assert httpx.get(f"{app.url}/server-flags", cookies=cookies).json() == EXPECTED
    assert httpx.get(f"{app.url}/server-flags").json() == DEFAULTS


@pytest.mark.parametrize("via", ["cookie", "header"])
def test_our_client_sees_the_overrides_and_revalidates_with_etag(
    app: Server, token: str, via: str
) -> None:
    out = node("client.mjs", app, token, via)
    assert out["status"] == "ready"
    assert out["values"] == EXPECTED
    assert out["afterRevalidation"] == EXPECTED
    assert out["statuses"] == [200, 304]  # If-None-Match on the second refresh
    assert out["details"]["new-checkout"]["source"] == "override"
    assert out["details"]["untouched"]["source"] == "default"
    typed = out["details"]["typed"]
    assert (typed["source"], typed["errorCode"]) == ("default", "TYPE_MISMATCH")
    assert '"typed"' in typed["errorMessage"] and "send true or false" in typed["errorMessage"]
    assert out["html"] == "<p>new-checkout=true lp-variant=b typed=false</p>"  # hooks, SSR
    assert out["warnings"] == []


def test_our_hooks_in_a_page_on_the_apps_origin_render_and_report_the_overrides(
    app: Server, token: str
) -> None:
    out = node("hooks.mjs", app, token, "cookie")
    assert out["urls"] == [app.url + OFREP]  # the provider's default: the page's origin
    assert out["whileLoading"] == DEFAULTS
    assert out["rendered"] == EXPECTED
    assert out["targetOrigins"] == [app.url]  # same origin only
    reported = out["reported"]
    assert reported["new-checkout"] == {"name": "new-checkout", "value": True, "source": "override"}
    assert reported["lp-variant"] == {"name": "lp-variant", "value": "b", "source": "override"}
    assert reported["untouched"] == {"name": "untouched", "value": True, "source": "default"}
    assert reported["typed"]["value"] is False
    assert "send true or false" in reported["typed"]["rejected"]


@pytest.mark.parametrize("via", ["header", "cookie"])
def test_the_openfeature_web_sdk_evaluates_the_same_values(
    app: Server, token: str, via: str
) -> None:
    theirs = node("openfeature.mjs", app, token, via)
    ours = node("client.mjs", app, token, via)
    assert theirs["values"] == ours["values"] == EXPECTED
    details = theirs["details"]
    assert details["new-checkout"] == {
        "value": True,
        "reason": "STATIC",
        "errorCode": None,
        "variant": "true",
    }
    assert details["lp-variant"]["reason"] == "STATIC"
    assert details["typed"]["errorCode"] == "TYPE_MISMATCH"
    assert details["untouched"]["errorCode"] == "FLAG_NOT_FOUND"  # no override: the default


@pytest.mark.parametrize("bad", [None, "tampered"])
def test_without_a_valid_token_everyone_gets_the_defaults(
    app: Server, token: str, bad: str | None
) -> None:
    # A tampered token: the signature no longer matches, so the middleware ignores it.
    sent = None if bad is None else token[:-4] + ("BBBB" if token.endswith("AAAA") else "AAAA")
    ours = node("client.mjs", app, sent, "header")
    theirs = node("openfeature.mjs", app, sent, "header")
    assert ours["status"] == "ready"
    assert ours["values"] == theirs["values"] == DEFAULTS
    hooks = node("hooks.mjs", app, sent, "cookie")
    assert hooks["rendered"] == DEFAULTS
