"""Fork URLs end to end: a real uvicorn upstream, the real ``python -m featureflag_server``.

The client talks to 127.0.0.1 with ``Host: new-lp.localhost:PORT``, exactly what a browser
sends for ``http://new-lp.localhost:PORT/``.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import httpx
import pytest
import trustme

from featureflag.tokens import OverrideSigner
from featureflag_server.memory_store import MemoryStore
from featureflag_server.proxy import ForkProxy
from featureflag_server.store import Fork
from tests.support.servers import ROOT, Server, free_port, run_server, run_uvicorn, stop

pytestmark = pytest.mark.integration

SECRET = "integration-secret-" + "x" * 32
API_TOKEN = "alice-token-0123456789"
ENV = {
    "FEATUREFLAG_SECRET": SECRET,
    "FEATUREFLAG_ENVIRONMENT": "qa",
    "FEATUREFLAG_API_TOKENS": f"alice:{API_TOKEN}",
}
MB = 1024 * 1024


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proxy-logs")


@pytest.fixture(scope="module")
def upstream(log_dir: Path) -> Iterator[Server]:
    with run_uvicorn("tests.server.proxy_upstream:app", log_dir=log_dir, name="upstream") as up:
        yield up


# uvicorn's two event loops: plain asyncio, and uvloop (what `--loop auto` picks when it is
# installed, as with `uvicorn[standard]`); their transports differ (the pool, the
# coalescing protocol and the disconnect watcher all touch them). And the whole module
# again on granian (`--server granian`, issue 17: its limits), on asyncio.
@pytest.fixture(scope="module", params=["asyncio", "uvloop", "granian"])
def service(request: pytest.FixtureRequest, log_dir: Path, upstream: Server) -> Iterator[Server]:
    server_name = "granian" if request.param == "granian" else "uvicorn"
    loop = "asyncio" if server_name != "uvicorn" else request.param
    port = free_port()
    argv = [sys.executable, "-m", "featureflag_server", "--port", str(port), "--loop", loop]
    argv += ["--db", str(log_dir / f"ff-{request.param}.db"), "--server", server_name]
    with run_server(
        argv, port=port, ready_path="/healthz", env=ENV, log_dir=log_dir, name="service"
    ) as server:
        assert f"event loop: {loop}" in server.output()
        assert f"on {server_name})" in server.output()
        api = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {API_TOKEN}"})
        for name, target in (("new-lp", upstream.url), ("down", f"http://127.0.0.1:{free_port()}")):
            created = api.post(
                "/api/forks",
                json={"name": name, "upstream": target, "flags": {"Landing.is_new": True}},
            )
            assert created.status_code == 201, created.text
        api.close()
        yield server


@pytest.fixture
def fork(service: Server) -> Iterator[httpx.Client]:
    """A client for http://new-lp.localhost:PORT/ (connecting to 127.0.0.1)."""
    host = f"new-lp.localhost:{service.port}"
    with httpx.Client(base_url=service.url, headers={"Host": host}, timeout=30) as client:
        yield client


def signer() -> OverrideSigner:
    return OverrideSigner(SECRET, environment="qa")


def test_fork_url_reaches_the_upstream_with_the_forks_token(
    fork: httpx.Client, service: Server
) -> None:
    response = fork.get(
        "/echo?a=1",
        headers={
            "Feature-Flag-Overrides": signer().dumps({"Landing.is_new": False}, sub="ana"),
            "Cookie": "featureflag_overrides=theirs; session=s1",
        },
    )
    assert response.status_code == 200
    assert response.headers["x-robots-tag"] == "noindex"
    assert len(response.headers.get_list("date")) == 1  # the upstream's and uvicorn's: one
    seen = response.json()
    assert seen["query"] == "a=1"
    token = seen["headers"]["feature-flag-overrides"]
    assert len(token) == 1
    verified = signer().loads(token[0])
    assert verified.flags == {"Landing.is_new": True}
    assert verified.origin == "fork:new-lp"
    assert seen["headers"]["cookie"] == ["session=s1"]
    assert seen["headers"]["x-forwarded-host"] == [f"new-lp.localhost:{service.port}"]
    assert seen["headers"]["x-forwarded-proto"] == ["http"]
    assert seen["headers"]["x-forwarded-for"] == ["127.0.0.1"]


def test_upstream_connections_are_kept_alive_and_reused(fork: httpx.Client) -> None:
    ports = {fork.get("/echo").json()["client_port"] for _ in range(5)}
    assert len(ports) == 1, f"one request per connection: {ports}"


def test_the_service_itself_answers_on_other_hosts(service: Server) -> None:
    assert httpx.get(service.url + "/healthz").json() == {"status": "ok"}
    response = httpx.get(service.url + "/healthz", headers={"Host": f"localhost:{service.port}"})
    assert response.json() == {"status": "ok"}


def test_an_edit_through_the_api_applies_on_the_next_request(
    fork: httpx.Client, service: Server, upstream: Server
) -> None:
    api = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {API_TOKEN}"})
    try:
        edited = api.put(
            "/api/forks/new-lp", json={"upstream": upstream.url, "flags": {"hero": "b"}}
        )
        assert edited.status_code == 200, edited.text
        token = fork.get("/echo").json()["headers"]["feature-flag-overrides"][0]
        assert signer().loads(token).flags == {"hero": "b"}
    finally:
        api.put(
            "/api/forks/new-lp", json={"upstream": upstream.url, "flags": {"Landing.is_new": True}}
        )
        api.close()


def test_head_requests_get_headers_and_no_body(fork: httpx.Client) -> None:
    response = fork.head("/big?size=1000")
    assert response.status_code == 200
    assert response.headers["content-length"] == "1000"
    assert response.content == b""
    assert fork.get("/").text == "hello"  # the connection is still in step


def test_redirects_and_cookies_keep_the_user_on_the_fork(
    fork: httpx.Client, service: Server
) -> None:
    response = fork.get("/redirect")
    assert response.status_code == 302
    assert response.headers["location"] == (
        f"http://new-lp.localhost:{service.port}/echo?from=redirect"
    )
    assert response.headers["set-cookie"] == "session=abc; Path=/"


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_100_mb_download_streams_with_flat_memory(fork: httpx.Client, service: Server) -> None:
    pid = service.process.pid
    fork.get("/big?size=1048576").read()  # warm up: imports, pools, buffers
    before = rss_kib(pid, "VmRSS")
    received = 0
    with fork.stream("GET", f"/big?size={100 * MB}") as response:
        assert response.status_code == 200
        for chunk in response.iter_raw():
            received += len(chunk)
    peak = rss_kib(pid, "VmHWM")  # the process's peak RSS so far
    assert received == 100 * MB
    # Buffering the body would cost 100 MB; streaming costs a few socket buffers.
    assert peak - before < 40 * 1024, f"RSS grew by {(peak - before) // 1024} MB"


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_a_50_mb_upload_streams_with_flat_memory(fork: httpx.Client, service: Server) -> None:
    pid = service.process.pid
    fork.post("/upload", content=b"x" * MB).read()
    before = rss_kib(pid, "VmRSS")
    chunk = b"y" * 65536

    def body() -> Iterator[bytes]:
        for _ in range(50 * MB // len(chunk)):
            yield chunk

    response = fork.post("/upload", content=body())
    peak = rss_kib(pid, "VmHWM")
    assert response.json() == {"size": 50 * MB}
    assert peak - before < 40 * 1024, f"RSS grew by {(peak - before) // 1024} MB"


def test_an_upload_the_upstream_refuses_at_once_gets_its_answer(fork: httpx.Client) -> None:
    # The upstream answers 413 before reading the body; the client gets that answer.
    # (uvicorn goes on reading and dropping the body, so the proxy's upload never stalls
    # here; an upstream that stops reading is tested in test_upstream_aiohttp.py.)
    chunk = b"z" * 65536

    def body() -> Iterator[bytes]:
        for _ in range(64 * MB // len(chunk)):  # far more than the socket buffers hold
            yield chunk

    response = fork.post("/reject", content=body(), timeout=20)
    assert (response.status_code, response.text) == (413, "too big for this upstream")


def test_client_going_away_cancels_the_upstream_request(service: Server, upstream: Server) -> None:
    host = f"new-lp.localhost:{service.port}"
    with pytest.raises(httpx.ReadTimeout):
        # The client gives up (and closes its connection) long before the proxy would.
        httpx.get(service.url + "/slow?id=cancel-test", headers={"Host": host}, timeout=0.5)
    deadline = time.monotonic() + 20
    while "slow-disconnected:id=cancel-test" not in httpx.get(upstream.url + "/events").json():
        assert time.monotonic() < deadline, "the upstream request was never cancelled"
        time.sleep(0.05)


def test_unknown_fork_is_a_404_page(service: Server) -> None:
    response = httpx.get(service.url + "/", headers={"Host": f"gone.localhost:{service.port}"})
    assert response.status_code == 404
    assert "<code>gone</code>" in response.text
    assert response.headers["x-robots-tag"] == "noindex"


def test_upstream_refusing_connections_is_a_502_page(service: Server) -> None:
    response = httpx.get(service.url + "/", headers={"Host": f"down.localhost:{service.port}"})
    assert response.status_code == 502
    assert "<code>down</code>" in response.text
    assert "refused" in response.text


async def test_upstream_too_slow_is_a_504_page(upstream: Server) -> None:
    # The service's timeout is 30 s; this proxy, in process, uses a real transport to the
    # real upstream with a short one.
    store = MemoryStore()
    await store.create_fork(Fork(name="new-lp", upstream=upstream.url))
    proxy = ForkProxy(store=store, signer=signer(), fork_domain="localhost", timeout=0.3)
    transport = httpx.ASGITransport(app=proxy)
    try:
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get("http://new-lp.localhost/slow")
    finally:
        await proxy.aclose()
    assert response.status_code == 504
    assert "<code>new-lp</code>" in response.text
    assert "0.3 seconds" in response.text


# --- capped response heads ---------------------------------------------------------------


@contextmanager
def header_flood(piece: bytes, total: int) -> Iterator[str]:
    """A raw upstream that answers every request with a head of *total* bytes of *piece*
    repeated (and never ends it): what a hostile or broken upstream can send."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                try:
                    conn.recv(65536)
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    chunk = piece * max(1, 512 * 1024 // len(piece))
                    for _ in range(total // len(chunk)):
                        conn.sendall(chunk)
                except OSError:
                    pass  # the proxy hung up, as it should

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        listener.close()


@contextmanager
def temporary_fork(service: Server, name: str, upstream: str) -> Iterator[httpx.Client]:
    api = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {API_TOKEN}"})
    created = api.post("/api/forks", json={"name": name, "upstream": upstream, "flags": {}})
    assert created.status_code == 201, created.text
    host = f"{name}.localhost:{service.port}"
    try:
        with httpx.Client(base_url=service.url, headers={"Host": host}, timeout=60) as client:
            yield client
    finally:
        api.delete(f"/api/forks/{name}")
        api.close()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    "piece",
    [b"X-Junk: " + b"v" * 8000 + b"\r\n", b"v" * 65536],
    ids=["many-headers", "one-endless-header"],
)
def test_200_mb_of_response_headers_is_a_502_with_flat_memory(
    service: Server, piece: bytes
) -> None:
    pid = service.process.pid
    with header_flood(piece, 200 * MB) as flood, temporary_fork(service, "flood", flood) as fork:
        before = rss_kib(pid, "VmRSS")
        response = fork.get("/")
        peak = rss_kib(pid, "VmHWM")
    assert response.status_code == 502
    assert "header" in response.text
    assert "<code>flood</code>" in response.text
    assert peak - before < 40 * 1024, f"RSS grew by {(peak - before) // 1024} MB"


def test_response_heads_past_64_kib_in_all_are_a_502(fork: httpx.Client) -> None:
    assert fork.get("/headers?count=10&size=4000").status_code == 200  # 40 KB: passes
    response = fork.get("/headers?count=20&size=4000")  # 80 KB in fields each small
    assert response.status_code == 502
    assert "past the limit of 65536" in response.text


# --- the connection cap ------------------------------------------------------------------


async def test_upstream_connections_are_capped_and_requests_wait_for_one(
    upstream: Server,
) -> None:
    store = MemoryStore()
    await store.create_fork(Fork(name="new-lp", upstream=upstream.url))
    proxy = ForkProxy(store=store, signer=signer(), fork_domain="localhost", connections=2)
    transport = httpx.ASGITransport(app=proxy)
    try:
        async with httpx.AsyncClient(transport=transport, timeout=30) as client:
            responses = await asyncio.gather(
                *(client.get("http://new-lp.localhost/hold?seconds=0.3") for _ in range(6))
            )
    finally:
        await proxy.aclose()
    assert [r.status_code for r in responses] == [200] * 6
    ports = {r.json()["client_port"] for r in responses}
    assert len(ports) <= 2, f"{len(ports)} upstream connections at once: {ports}"


# --- WebSockets --------------------------------------------------------------------------


async def test_a_websocket_passes_through_the_fork_with_its_token(
    service: Server, upstream: Server
) -> None:
    host = f"new-lp.localhost:{service.port}"
    theirs = signer().dumps({"Landing.is_new": False}, sub="ana")
    headers = {
        "Host": host,
        "Feature-Flag-Overrides": theirs,
        "Cookie": f"featureflag_overrides={theirs}; session=s1",
    }
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(service.url + "/ws", headers=headers, protocols=["hmr"]) as ws,
    ):
        hello = await ws.receive_json(timeout=10)
        token = hello["headers"]["feature-flag-overrides"]
        assert len(token) == 1
        verified = signer().loads(token[0])
        assert (verified.flags, verified.origin) == ({"Landing.is_new": True}, "fork:new-lp")
        assert hello["headers"]["cookie"] == ["session=s1"]
        assert hello["headers"]["x-forwarded-host"] == [host]
        assert hello["subprotocols"] == ["hmr"]
        assert ws.protocol == "hmr"
        await ws.send_str("hi")
        assert await ws.receive_str(timeout=10) == "echo:hi"
        await ws.send_bytes(b"\x00\x01\xff")
        assert await ws.receive_bytes(timeout=10) == b"\xff\x01\x00"
        await ws.send_str("close:4002")  # the upstream closes with 4002
        closing = await ws.receive(timeout=10)
        assert closing.type is aiohttp.WSMsgType.CLOSE
        assert ws.close_code == 4002


async def test_the_clients_close_code_reaches_the_upstream(
    service: Server, upstream: Server
) -> None:
    host = f"new-lp.localhost:{service.port}"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(service.url + "/ws", headers={"Host": host}) as ws,
    ):
        await ws.receive_json(timeout=10)
        await ws.send_str("ping")
        assert await ws.receive_str(timeout=10) == "echo:ping"
        await ws.close(code=4001)
    seen = "ws-closed:4001"
    deadline = time.monotonic() + 20
    while seen not in httpx.get(upstream.url + "/events").json():
        assert time.monotonic() < deadline, "the upstream never saw the client's close code"
        await asyncio.sleep(0.05)


async def test_a_websocket_to_an_unknown_fork_is_refused_with_the_404_page(
    service: Server,
) -> None:
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await session.ws_connect(
                service.url + "/ws", headers={"Host": f"gone.localhost:{service.port}"}
            )
    assert info.value.status == 404


# --- https upstreams ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_upstream(log_dir: Path) -> Iterator[tuple[Server, Path]]:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    key_file, cert_file, ca_file = (log_dir / n for n in ("key.pem", "cert.pem", "ca.pem"))
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    ca.cert_pem.write_to_path(str(ca_file))
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "tests.server.proxy_upstream:app", "--host"]
    argv += ["127.0.0.1", "--port", str(port), "--log-level", "warning"]
    argv += ["--ssl-keyfile", str(key_file), "--ssl-certfile", str(cert_file)]
    log = log_dir / "tls-upstream.log"
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    try:
        context = ssl.create_default_context(cafile=str(ca_file))
        with httpx.Client(verify=context) as trusting:
            wait_ready(f"https://localhost:{port}/", process, log, client=trusting)
        yield Server(url=f"https://localhost:{port}", port=port, process=process, log=log), ca_file
    finally:
        stop(process)


def test_an_https_upstream_is_verified_against_the_trust_store(
    log_dir: Path, tls_upstream: tuple[Server, Path], service: Server
) -> None:
    up, ca_file = tls_upstream
    upstream_url = f"https://localhost:{up.port}"
    # The service started without the test CA: the certificate is not trusted.
    with temporary_fork(service, "tls", upstream_url) as fork:
        refused = fork.get("/echo")
    assert refused.status_code == 502
    # A service that trusts the CA (SSL_CERT_FILE, as for any OpenSSL program) gets through.
    port = free_port()
    argv = [sys.executable, "-m", "featureflag_server", "--port", str(port)]
    argv += ["--db", str(log_dir / "ff-tls.db")]
    env = ENV | {"SSL_CERT_FILE": str(ca_file)}
    with (
        run_server(argv, port=port, ready_path="/healthz", env=env, log_dir=log_dir) as trusting,
        temporary_fork(trusting, "tls", upstream_url) as fork,
    ):
        response = fork.get("/echo")
    assert response.status_code == 200
    assert response.json()["headers"]["host"] == [f"localhost:{up.port}"]


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log: Path, *, client: httpx.Client
) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            client.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"server not ready at {url}:\n{log.read_text()}")


# --- issue 17, item 1: loops ------------------------------------------------------------


def test_a_fork_that_leads_back_to_the_service_is_stopped_at_the_first_return(
    tmp_path: Path,
) -> None:
    port = free_port()
    argv = [sys.executable, "-m", "featureflag_server", "--port", str(port)]
    argv += ["--db", str(tmp_path / "ff.db")]
    fork_host = f"loop.localhost:{port}"
    env = {"REFLECT_TO": f"http://127.0.0.1:{port}", "REFLECT_HOST": fork_host}
    with (
        run_server(argv, port=port, ready_path="/healthz", env=ENV, log_dir=tmp_path) as service,
        run_uvicorn(
            "tests.server.loop_reflector:app",
            log_dir=tmp_path,
            env=env,
            ready_path="/ready",
            name="reflector",
        ) as reflector,
    ):
        api = httpx.Client(base_url=service.url, headers={"Authorization": f"Bearer {API_TOKEN}"})
        # The attack as reported: the host spelled with Unicode dots is refused outright.
        for dot in ("\u3002", "\uff0e", "\uff61"):
            refused = api.post(
                "/api/forks",
                json={"name": "loop", "upstream": f"http://loop{dot}localhost:{port}", "flags": {}},
            )
            assert refused.status_code == 422, refused.text
        # And the service's own socket, however it is spelled.
        for own in (f"http://127.0.0.1:{port}", f"http://localhost:{port}/x"):
            refused = api.post("/api/forks", json={"name": "own", "upstream": own, "flags": {}})
            assert refused.status_code == 422, refused.text
        # A loop the rules cannot see (through another host) ends at its first return.
        created = api.post(
            "/api/forks", json={"name": "loop", "upstream": reflector.url, "flags": {}}
        )
        assert created.status_code == 201, created.text
        api.close()
        answer = httpx.get(f"{service.url}/deep", headers={"Host": fork_host}, timeout=60)
    assert answer.status_code == 508, answer.text
    assert "leads back to itself" in answer.text
    assert answer.headers["x-reflector-hops"] == "1"
    assert "came back through this service" in service.output()
