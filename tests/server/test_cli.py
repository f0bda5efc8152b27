"""``featureflag-server``: start-up errors are one clear message and exit code 2."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from featureflag_server.__main__ import main
from featureflag_server.app import ServiceApp
from featureflag_server.upstream_aiohttp import AiohttpUpstream
from tests.support.servers import free_port, run_server

SECRET = "k" * 40
TOKEN = "alice-token-0123456789"
ENV = {"FEATUREFLAG_SECRET": SECRET, "FEATUREFLAG_API_TOKENS": f"alice:{TOKEN}"}
AUTH = {"Authorization": f"Bearer {TOKEN}"}
COMMAND = str(Path(sys.executable).with_name("featureflag-server"))


@pytest.mark.parametrize(
    ("environ", "argv", "says"),
    [
        ({}, [], "FEATUREFLAG_SECRET"),
        (ENV | {"FEATUREFLAG_SECRET": "weak"}, [], "shorter than 32 bytes"),
        (ENV | {"FEATUREFLAG_API_TOKENS": "alice"}, [], "FEATUREFLAG_API_TOKENS"),
        (ENV, ["--port", "99999"], "--port"),
        (ENV, ["--db", "/nonexistent-dir/x/ff.sqlite3"], "--db"),
        (ENV, ["--upstream-connections", "0"], "--upstream-connections"),
        (ENV, ["--fork-upstreams", "app:port"], "--fork-upstreams is invalid"),
        (ENV, ["--max-header-bytes", "10"], "--max-header-bytes"),
        (ENV, ["--keep-alive-timeout", "0"], "--keep-alive-timeout"),
        (ENV, ["--max-connections", "0"], "--max-connections"),
        (ENV, ["--header-timeout", "10"], "--header-timeout needs --server granian"),
        (ENV, ["--server", "granian", "--max-header-bytes", "4096"], "at least 8192"),
    ],
)
def test_startup_errors_exit_2_with_a_message(
    environ: dict[str, str], argv: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv, environ) == 2
    err = capsys.readouterr().err
    assert err.startswith("featureflag-server: ")
    assert says in err
    assert "Traceback" not in err


@pytest.mark.parametrize(("argv", "loop"), [([], "auto"), (["--loop", "asyncio"], "asyncio")])
def test_the_service_runs_on_uvicorns_own_protocol_and_the_chosen_loop(
    argv: list[str], loop: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **options: seen.update(options))
    monkeypatch.setattr("gc.freeze", lambda: None)
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))  # main() switches them
    assert main(["--db", str(tmp_path / "ff.sqlite3"), *argv], ENV) == 0
    assert seen["http"] == "h11"  # uvicorn's own protocol (by name): no subclass of it
    assert seen["access_log"] is True
    assert seen["loop"] == loop
    # Issue 17, item 6: the limits on direct connections are uvicorn's own settings.
    assert seen["h11_max_incomplete_event_size"] == 64 * 1024
    assert seen["limit_concurrency"] == 1000
    assert seen["timeout_keep_alive"] == 5


def test_the_limits_and_the_upstream_policy_come_from_the_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, object] = {}
    monkeypatch.setattr("uvicorn.run", lambda app, **options: seen.update(options, app=app))
    monkeypatch.setattr("gc.freeze", lambda: None)
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    argv = ["--db", str(tmp_path / "ff.sqlite3"), "--port", "8123", "--http", "httptools"]
    argv += ["--max-header-bytes", "32768", "--keep-alive-timeout", "9"]
    argv += ["--max-connections", "50", "--fork-upstreams", "*.internal,127.0.0.1:*"]
    assert main(argv, ENV) == 0
    app = seen["app"]
    assert isinstance(app, ServiceApp) and app.proxy is not None
    assert isinstance(app.proxy.upstream, AiohttpUpstream)
    policy = app.proxy.upstream.policy  # the one the forks layer and forward-auth share
    assert (seen["http"], seen["h11_max_incomplete_event_size"]) == ("httptools", 32768)
    assert (seen["timeout_keep_alive"], seen["limit_concurrency"]) == (9, 50)
    assert [p.host for p in policy.allow] == ["*.internal", "127.0.0.1"]
    assert policy.listening == (("127.0.0.1", 8123),)


def test_on_granian_the_limits_are_its_own_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from granian.constants import HTTPModes, Interfaces
    from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

    seen: dict[str, object] = {}

    class Server:
        def __init__(self, target: object, **options: object) -> None:
            seen.update(options, app=target)
            self.interrupt_children: list[int] = []

        async def serve(self) -> None:
            pass

        def stop(self) -> None:
            pass

    monkeypatch.setattr("granian.server.embed.Server", Server)
    monkeypatch.setattr("gc.freeze", lambda: None)
    for name in ("_srcfile", "logThreads", "logProcesses", "logMultiprocessing"):
        monkeypatch.setattr(logging, name, getattr(logging, name))
    argv = ["--db", str(tmp_path / "ff.sqlite3"), "--server", "granian", "--port", "8124"]
    argv += ["--header-timeout", "7", "--max-header-bytes", "32768", "--max-connections", "50"]
    argv += ["--forwarded-allow-ips", "10.0.0.1", "--no-access-log", "--loop", "asyncio"]
    assert main(argv, ENV) == 0
    assert (seen["address"], seen["port"]) == ("127.0.0.1", 8124)
    assert (seen["interface"], seen["websockets"]) == (Interfaces.ASGI, True)
    # Issue 17, item 6: HTTP/1.1 only (no HTTP/2 preface to escape the header timer), one
    # timer until a request head is complete (header and keep-alive timeouts), hyper's
    # bound on a head, and the connection cap.
    assert seen["http"] == HTTPModes.http1
    http1 = seen["http1_settings"]
    assert (http1.header_read_timeout, http1.keep_alive) == (7000, True)  # type: ignore[attr-defined]
    assert http1.max_buffer_size == 32768  # type: ignore[attr-defined]
    assert seen["backpressure"] == 50
    assert seen["log_access"] is False
    # Proxy headers as uvicorn trusts them: only from --forwarded-allow-ips.
    app = seen["app"]
    assert isinstance(app, ProxyHeadersMiddleware)
    assert "10.0.0.1" in app.trusted_hosts and "127.0.0.1" not in app.trusted_hosts
    assert isinstance(app.app, ServiceApp)


def test_an_unknown_option_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--nope"], ENV)
    assert info.value.code == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err


def test_a_newer_database_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    db = tmp_path / "new.sqlite3"
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    conn.execute("INSERT INTO schema_version VALUES (999)")
    conn.close()
    assert main(["--db", str(db)], ENV) == 2
    assert "Upgrade featureflag" in capsys.readouterr().err


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATUREFLAG_")}
    return env | extra


@pytest.mark.integration
@pytest.mark.parametrize("command", [[COMMAND], [sys.executable, "-m", "featureflag_server"]])
def test_the_real_command_fails_cleanly(command: list[str], tmp_path: Path) -> None:
    done = subprocess.run(
        [*command, "--db", str(tmp_path / "x.sqlite3")],
        env=_env(FEATUREFLAG_SECRET="weak", FEATUREFLAG_API_TOKENS=f"alice:{TOKEN}"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "FEATUREFLAG_SECRET is invalid" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "x.sqlite3").exists()


@pytest.mark.integration
def test_help_exits_0() -> None:
    done = subprocess.run(
        [COMMAND, "--help"], env=_env(), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0
    assert "--fork-domain" in done.stdout and "FEATUREFLAG_API_TOKENS" in done.stdout


APP_MODULE = """
from typing import Literal

import featureflag


@featureflag.trap(name="PushedFeature")
class Feature:
    def is_released(self) -> bool:
        return False

    def layout(self) -> Literal["grid", "list"]:
        return "grid"


def banner() -> str:
    return featureflag.intercept("pushed-banner", lambda: "hello")
"""


@pytest.mark.integration
def test_catalog_push_round_trips_through_a_real_server(tmp_path: Path) -> None:
    (tmp_path / "pushed_app.py").write_text(APP_MODULE)
    port = free_port()
    argv = [COMMAND, "--port", str(port), "--db", str(tmp_path / "ff.sqlite3")]
    with run_server(
        argv, port=port, ready_path="/healthz", env=_env(**ENV), log_dir=tmp_path
    ) as server:
        printed = subprocess.run(
            [sys.executable, "-m", "featureflag", "catalog", "pushed_app"],
            cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=60, check=True,
        )  # fmt: skip
        pushed = subprocess.run(
            [sys.executable, "-m", "featureflag", "catalog", "pushed_app", "--push",
             f"{server.url}/api/flags"],
            cwd=tmp_path, env=_env(FEATUREFLAG_API_TOKEN=TOKEN), capture_output=True,
            text=True, timeout=60,
        )  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        stored = httpx.get(f"{server.url}/api/flags", headers=AUTH).json()
        scoped = [sys.executable, "-m", "featureflag", "catalog", "pushed_app", "--push",
                  f"{server.url}/api/flags", "--service", "shop"]  # fmt: skip
        env = _env(FEATUREFLAG_API_TOKEN=TOKEN)

        def push_as_shop() -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                scoped, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
            )

        # The unscoped push's entries belong to no service: "shop" may not take them.
        conflicting = push_as_shop()
        emptied = httpx.put(
            f"{server.url}/api/flags",
            json={"flags": []},
            headers={"Authorization": f"Bearer {TOKEN}"},
        )
        as_shop = push_as_shop()
        listed = httpx.get(f"{server.url}/api/flags", headers=AUTH).json()["flags"]
        services = [f["service"] for f in listed]
        refused = subprocess.run(
            [sys.executable, "-m", "featureflag", "catalog", "pushed_app", "--push",
             f"{server.url}/api/flags"],
            cwd=tmp_path, env=_env(FEATUREFLAG_API_TOKEN="wrong-token-0123456789"),
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
    log = server.output()
    assert stored == json.loads(printed.stdout)
    # One access line per request, with a timestamp (featureflag_server.logs.LOG_CONFIG).
    access = r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO uvicorn\.access: 127\.0\.0\.1:\d+ - "
    assert re.search(access + r'"PUT /api/flags HTTP/1\.1" 200$', log, re.MULTILINE), log
    assert re.search(access + r'"PUT /api/flags HTTP/1\.1" 401$', log, re.MULTILINE), log
    names = [f["name"] for f in stored["flags"]]
    assert names == ["PushedFeature.is_released", "PushedFeature.layout"]
    assert stored["flags"][1]["choices"] == ["grid", "list"]
    assert refused.returncode == 1
    assert "401" in refused.stderr
    assert conflicting.returncode == 1
    assert "409" in conflicting.stderr
    assert "already in the catalog pushed without a service" in conflicting.stderr
    assert emptied.status_code == 200
    assert as_shop.returncode == 0, as_shop.stderr
    assert services == ["shop", "shop"]


@pytest.mark.integration
def test_no_access_log_leaves_out_the_line_per_request(tmp_path: Path) -> None:
    port = free_port()
    argv = [COMMAND, "--port", str(port), "--db", str(tmp_path / "ff.sqlite3"), "--no-access-log"]
    with run_server(
        argv, port=port, ready_path="/healthz", env=_env(**ENV), log_dir=tmp_path
    ) as server:
        assert httpx.get(f"{server.url}/healthz").status_code == 200
    log = server.output()
    assert "INFO uvicorn.error: Application startup complete." in log
    assert "uvicorn.access" not in log
