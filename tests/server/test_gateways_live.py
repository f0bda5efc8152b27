"""Fork hosts through real gateways: Debian's nginx and Caddy, started from the config
``featureflag-server gateway-config`` renders, in front of the real service process and a
real uvicorn upstream, all on 127.0.0.1.

The binaries come from ``scripts/install-gateways`` (run by ``scripts/test``); a machine
without them skips these tests and says why.
"""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect

from featureflag.tokens import OverrideSigner
from featureflag_server.forwarding import CLIENT_PROXY_HEADERS
from featureflag_server.gateway_config import GatewayOptions, render
from tests.support.servers import Server, free_port, run_server, run_uvicorn, stop, wait_ready

pytestmark = pytest.mark.integration

SECRET = "gateway-secret-" + "x" * 32
API_TOKEN = "gateway-token-0123456789"
CACHE = 1  # --forward-auth-cache: short, so edits show within a test
ENV = {
    "FEATUREFLAG_SECRET": SECRET,
    "FEATUREFLAG_ENVIRONMENT": "qa",
    "FEATUREFLAG_API_TOKENS": f"gateway:{API_TOKEN}",
}
FLAGS = {"Landing.is_new": True}
GATEWAYS = ("nginx", "caddy")


@dataclass
class Gateway:
    name: str
    port: int
    process: subprocess.Popen[bytes]

    def client(self, fork: str | None = "new-lp", *, host: str | None = None) -> httpx.Client:
        """A client for http://<fork>.localhost:PORT/ (connecting to 127.0.0.1)."""
        host = host or (f"{fork}.localhost:{self.port}" if fork else f"localhost:{self.port}")
        return httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}", headers={"Host": host}, timeout=20
        )


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("gateway-logs")


@pytest.fixture(scope="module")
def upstream(log_dir: Path) -> Iterator[Server]:
    with run_uvicorn("tests.server.gateway_upstream:app", log_dir=log_dir, name="up") as up:
        yield up


@pytest.fixture(scope="module")
def service(log_dir: Path, upstream: Server) -> Iterator[Server]:
    port = free_port()
    argv = [sys.executable, "-m", "featureflag_server", "--port", str(port)]
    argv += ["--db", str(log_dir / "ff.db"), "--forward-auth-cache", str(CACHE)]
    with run_server(
        argv, port=port, ready_path="/healthz", env=ENV, log_dir=log_dir, name="service"
    ) as server:
        with api(server) as client:
            for name, target in (
                ("new-lp", upstream.url),
                ("shop", upstream.url + "/prefix"),
                ("down", f"http://127.0.0.1:{free_port()}"),
            ):
                save_fork(client, name, target, FLAGS)
        yield server


def save_fork(client: httpx.Client, name: str, upstream: str, flags: dict[str, bool]) -> None:
    body = {"name": name, "upstream": upstream, "flags": flags}
    response = client.post("/api/forks", json=body)
    if response.status_code == 409:
        response = client.put(f"/api/forks/{name}", json=body)
    assert response.status_code in (200, 201), response.text


def api(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_TOKEN}"})


def _nginx(directory: Path, config: str, port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        pytest.skip("nginx is not installed: run scripts/install-gateways")
    (directory / "featureflag.conf").write_text(config)
    # As root, nginx's workers would drop to 'nobody' and lose the temp prefix: keep the
    # current user.
    user = f"user {pwd.getpwuid(os.getuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temps = "".join(
        f"    {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (directory / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} warn;\nevents {{ worker_connections 256; }}\n"
        f"http {{\n    access_log off;\n{temps}    include {directory / 'featureflag.conf'};\n}}\n"
    )
    argv = [binary, "-p", str(directory), "-c", str(directory / "nginx.conf")]
    argv += ["-g", "daemon off;"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)


def _caddy(directory: Path, config: str, port: int) -> subprocess.Popen[bytes]:
    binary = shutil.which("caddy")
    if binary is None:
        pytest.skip("caddy is not installed: run scripts/install-gateways")
    path = directory / "Caddyfile"
    # admin off: several test runs (and engineers) share this machine's port 2019.
    path.write_text("{\n\tadmin off\n\tauto_https off\n}\n\n" + config)
    env = {**os.environ, "XDG_DATA_HOME": str(directory), "XDG_CONFIG_HOME": str(directory)}
    argv = [binary, "run", "--config", str(path), "--adapter", "caddyfile"]
    with (directory / "caddy.log").open("wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


def start_gateway(
    name: str, directory: Path, service: Server | str, token: str, upstream: str | None = None
) -> Gateway:
    port = free_port()
    options = GatewayOptions(
        fork_domain="localhost",
        service=service if isinstance(service, str) else service.url,
        listen=f"127.0.0.1:{port}",
        cache_dir=str(directory / "cache"),
        api_token=token,
        upstream=upstream,
    )
    start = _nginx if name == "nginx" else _caddy
    process = start(directory, render(name, options), port)
    log = directory / ("error.log" if name == "nginx" else "caddy.log")
    log.touch()
    try:
        wait_ready(f"http://127.0.0.1:{port}/", process, log)
    except BaseException:
        stop(process)
        raise
    return Gateway(name, port, process)


@pytest.fixture(scope="module", params=GATEWAYS)
def gateway(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, service: Server
) -> Iterator[Gateway]:
    directory = tmp_path_factory.mktemp(request.param)
    running = start_gateway(request.param, directory, service, API_TOKEN)
    try:
        yield running
    finally:
        stop(running.process)


def verified(token: str) -> dict[str, object]:
    data = OverrideSigner(SECRET, environment="qa").loads(token)
    return {"flags": dict(data.flags), "origin": data.origin}


def test_a_fork_reaches_its_upstream_with_the_forks_token_only(gateway: Gateway) -> None:
    foreign = OverrideSigner("p" * 40, environment="production").dumps(
        {"Landing.is_new": False}, sub="mallory", origin="extension", ttl=60
    )
    with gateway.client() as client:
        response = client.get(
            "/echo?q=1",
            headers={
                "Feature-Flag-Overrides": foreign,
                "Cookie": f"a=1; featureflag_overrides={foreign}; b=2",
                "X-Featureflag-Upstream-Dial": "127.0.0.1:1",
                "Keep-Alive": "timeout=99",
                "Proxy-Connection": "keep-alive",
                # Issue 17, item 9: proxy headers a visitor forged.
                **dict.fromkeys(CLIENT_PROXY_HEADERS, "forged"),
            },
        )
    assert response.status_code == 200, response.text
    echo = response.json()
    forged = [k for k, v in echo["headers"].items() if "forged" in v]
    assert forged == [], forged
    headers = echo["headers"]
    assert echo["path"] == "/echo" and echo["query"] == "q=1"
    assert len(headers["feature-flag-overrides"]) == 1
    assert verified(headers["feature-flag-overrides"][0]) == {
        "flags": FLAGS,
        "origin": "fork:new-lp",
    }
    cookie = "; ".join(headers["cookie"])
    assert "featureflag_overrides" not in cookie
    assert "a=1" in cookie and "b=2" in cookie
    assert headers["x-forwarded-proto"] == ["http"]
    assert headers["x-forwarded-host"] == [f"new-lp.localhost:{gateway.port}"]
    assert "127.0.0.1" in headers["x-forwarded-for"][0]
    for gone in ("keep-alive", "proxy-connection", "x-featureflag-upstream-dial"):
        assert gone not in headers, gone
    assert headers["host"][0].startswith("127.0.0.1:")


def test_an_upstream_path_prefix_is_kept(gateway: Gateway) -> None:
    # The upstream answers 404 for /prefix/echo: what matters is the path it was asked for.
    with gateway.client("shop") as client:
        response = client.get("/echo")
    assert response.status_code == 404
    assert response.text == "not found"


def test_websockets_pass_through(gateway: Gateway) -> None:
    sock = socket.create_connection(("127.0.0.1", gateway.port), timeout=20)
    uri = f"ws://new-lp.localhost:{gateway.port}/ws"
    with connect(uri, sock=sock, open_timeout=20, close_timeout=5) as ws:
        ws.send("hello")
        assert ws.recv(timeout=20) == "echo:hello"


def test_bodies_stream_both_ways(gateway: Gateway, upstream: Server) -> None:
    with gateway.client() as client:
        with client.stream("GET", "/stream") as response:
            chunks = response.iter_raw()
            # A gateway that buffered the response would hold this line until /release.
            assert next(chunks).startswith(b"first\n")
            httpx.post(upstream.url + "/release")
            rest = b"".join(chunks)
        assert rest.endswith(b"second\n")
        big = client.get("/big?size=3000000")
        assert big.status_code == 200 and len(big.content) == 3_000_000
        upload = client.post("/upload", content=(b"y" * 65536 for _ in range(40)))
        assert upload.json() == {"size": 40 * 65536}


def test_any_method_first_reaches_the_fork(
    gateway: Gateway, service: Server, upstream: Server
) -> None:
    # A fork nobody has asked for yet: the forward-auth answer is not cached, and the
    # gateway's sub-request starts from a POST, a PUT or a DELETE.
    for method in ("POST", "PUT", "DELETE"):
        name = f"{method.lower()}-{gateway.name}"
        with api(service) as client:
            save_fork(client, name, upstream.url, FLAGS)
        with gateway.client(name) as client:
            response = client.request(method, "/echo", content=b"body")
        assert response.status_code == 200, (method, response.text)
        assert response.json()["method"] == method
        assert response.json()["body_size"] == 4


def test_the_bare_fork_domain_is_the_service(gateway: Gateway) -> None:
    with gateway.client(None) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        assert client.post("/api/forks", json={}).status_code == 401


def test_an_unknown_fork_gets_the_services_404_page(gateway: Gateway) -> None:
    with gateway.client("nope") as client:
        response = client.get("/anything")
    assert response.status_code == 404
    assert "There is no fork named <code>nope</code>" in response.text


@pytest.mark.parametrize("host", ["a.b.localhost", "www.localhost", "-x.localhost"])
def test_a_host_that_names_no_fork_is_404(gateway: Gateway, host: str) -> None:
    with gateway.client(host=f"{host}:{gateway.port}") as client:
        response = client.get("/")
    assert response.status_code == 404
    assert "not a fork address" in response.text.lower()


def test_a_host_of_another_domain_is_4xx(gateway: Gateway) -> None:
    with gateway.client(host="example.com") as client:
        response = client.get("/")
    assert response.status_code == 404


def test_a_malformed_host_is_4xx(gateway: Gateway) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=20) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: a b/c\r\nConnection: close\r\n\r\n")
        head = sock.recv(4096)
    status = int(head.split(b" ", 2)[1])
    assert 400 <= status < 500, head


def test_a_fork_whose_upstream_is_down_gets_a_502_page(gateway: Gateway) -> None:
    with gateway.client("down") as client:
        response = client.get("/")
    assert response.status_code == 502
    assert "could not reach its app" in response.text


def test_edits_and_deletions_show_within_the_cache_time_and_a_second(
    gateway: Gateway, service: Server, upstream: Server
) -> None:
    name = f"temp-{gateway.name}"
    with api(service) as client, gateway.client(name) as visitor:
        save_fork(client, name, upstream.url, FLAGS)
        first = visitor.get("/echo").json()["headers"]["feature-flag-overrides"][0]
        assert verified(first)["flags"] == FLAGS
        save_fork(client, name, upstream.url, {"Landing.is_new": False})
        time.sleep(CACHE + 1)
        edited = visitor.get("/echo").json()["headers"]["feature-flag-overrides"][0]
        assert verified(edited)["flags"] == {"Landing.is_new": False}
        assert client.delete(f"/api/forks/{name}").status_code == 204
        time.sleep(CACHE + 1)
        assert visitor.get("/echo").status_code == 404


def test_a_wrong_gateway_token_is_a_401_page_not_a_500(
    tmp_path: Path, service: Server, request: pytest.FixtureRequest
) -> None:
    for name in GATEWAYS:
        directory = tmp_path / name
        directory.mkdir()
        gateway = start_gateway(name, directory, service, "not-the-token-0123456789")
        try:
            with gateway.client() as client:
                response = client.get("/")
            assert response.status_code == 401, (name, response.text)
            assert "not authorized" in response.text
        finally:
            stop(gateway.process)


def test_nginx_with_upstream_sends_every_fork_to_that_app(
    tmp_path: Path, service: Server, upstream: Server
) -> None:
    gateway = start_gateway("nginx", tmp_path, service, API_TOKEN, upstream=upstream.url)
    try:
        # "down" points elsewhere; with --upstream its own upstream is not used.
        for fork in ("new-lp", "down"):
            with gateway.client(fork) as client:
                first = client.get("/echo")
                second = client.get("/echo")
            assert first.status_code == 200, first.text
            token = first.json()["headers"]["feature-flag-overrides"][0]
            assert verified(token) == {"flags": FLAGS, "origin": f"fork:{fork}"}
            # Kept-alive upstream connections: the second request reuses the first's.
            assert second.json()["client_port"] == first.json()["client_port"]
        with gateway.client("nope") as client:
            assert client.get("/").status_code == 404
    finally:
        stop(gateway.process)


def test_the_service_down_is_a_502_not_a_500(tmp_path: Path) -> None:
    nowhere = f"http://127.0.0.1:{free_port()}"
    for name in GATEWAYS:
        directory = tmp_path / name
        directory.mkdir()
        gateway = start_gateway(name, directory, nowhere, API_TOKEN)
        try:
            with gateway.client() as client:
                response = client.get("/")
            assert response.status_code == 502, (name, response.text)
        finally:
            stop(gateway.process)
