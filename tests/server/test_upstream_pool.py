"""KeepAlivePool against a real uvicorn upstream on 127.0.0.1, and against a scripted raw
TCP server that answers with exact bytes (HEAD, chunked, close-delimited, 1xx, malformed,
cut-short and stale-connection cases)."""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import trustme

from featureflag_server.upstream import HttpxUpstream, Timeouts, UpstreamResponse
from featureflag_server.upstream_pool import KeepAlivePool
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


@pytest.fixture
def unanswered_port() -> Iterator[int]:
    """A port whose listener never accepts and whose accept queue is full: a connect's
    SYN is dropped, so connecting hangs until the client gives up (Linux)."""
    with contextlib.ExitStack() as stack:
        listener = stack.enter_context(socket.socket())
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        port: int = listener.getsockname()[1]
        filler = stack.enter_context(socket.socket())
        filler.connect(("127.0.0.1", port))  # takes the one place in the queue
        yield port


@pytest.mark.parametrize("via", ["send", "httpx"])
async def test_a_connect_that_does_not_complete_is_a_connect_timeout(
    pool: KeepAlivePool, unanswered_port: int, via: str
) -> None:
    origin = ("http", "127.0.0.1", unanswered_port)
    with anyio.fail_after(10), pytest.raises(httpx.ConnectTimeout):  # (a deadlock guard)
        if via == "send":
            timeouts = Timeouts(connect=0.2, read=2.0, write=2.0)
            await pool.send("GET", origin, b"/", [(b"host", b"x")], None, timeouts)
        else:
            async with httpx.AsyncClient(transport=pool, timeout=0.2) as client:
                await client.get(f"http://127.0.0.1:{unanswered_port}/")
    assert pool.idle_count() == 0


async def test_a_closed_pool_refuses_requests(upstream: Server) -> None:
    pool = KeepAlivePool()
    async with httpx.AsyncClient(transport=pool) as client:
        await client.get(upstream.url + "/")
    assert pool.idle_count() == 0
    with pytest.raises(RuntimeError):
        await pool.handle_async_request(httpx.Request("GET", upstream.url))


# -- Against a scripted raw TCP server -------------------------------------------------------
#
# The server below runs in the test's own event loop on 127.0.0.1 and answers with exactly
# the bytes each test chooses, so the pool meets responses uvicorn would never send.

SHORT = Timeouts(connect=2.0, read=2.0, write=2.0)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
VIAS = ["send", "httpx"]


def reply(body: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class Peer:
    """One accepted connection, seen from the scripted server."""

    def __init__(self, index: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.index = index
        self.reader = reader
        self.writer = writer
        self.requests: list[bytes] = []  # each whole request as received: head and body
        self.gone = asyncio.Event()  # the client closed its end
        self.closed = asyncio.Event()  # the script closed this end

    async def request(self) -> bytes | None:
        """The next whole request's bytes, or None when the client closed the connection."""
        try:
            head = await self.reader.readuntil(b"\r\n\r\n")
            lower = head.lower()
            length = re.search(rb"\r\ncontent-length: *(\d+)\r\n", lower)
            if length is not None:
                body = await self.reader.readexactly(int(length[1]))
            elif b"\r\ntransfer-encoding: chunked\r\n" in lower:
                body = await self._chunked()
            else:
                body = b""
        except (asyncio.IncompleteReadError, ConnectionError):
            self.gone.set()
            return None
        self.requests.append(head + body)
        return head + body

    async def _chunked(self) -> bytes:
        raw = b""
        while True:
            line = await self.reader.readuntil(b"\r\n")
            raw += line
            size = int(line.split(b";")[0], 16)
            if size == 0:
                break
            raw += await self.reader.readexactly(size + 2)
        while True:  # trailer fields, then the empty line
            line = await self.reader.readuntil(b"\r\n")
            raw += line
            if line == b"\r\n":
                return raw

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()
        self.closed.set()


Script = Callable[[Peer], Coroutine[Any, Any, None]]


class ScriptedServer:
    """``asyncio.start_server`` on 127.0.0.1, port 0; *script* plays each connection."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.peers: list[Peer] = []
        self.errors: list[Exception] = []
        self._handlers: list[asyncio.Task[Any]] = []
        self._scripts: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> ScriptedServer:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port: int = self._server.sockets[0].getsockname()[1]
        self.origin = ("http", "127.0.0.1", self.port)
        self.url = f"http://127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._server.close()
        for task in self._scripts:
            task.cancel()
        await asyncio.gather(*self._scripts, *self._handlers, return_exceptions=True)
        await self._server.wait_closed()
        if self.errors and exc_info[0] is None:
            raise self.errors[0]  # a broken script must not pass silently

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.append(handler)
        peer = Peer(len(self.peers), reader, writer)
        self.peers.append(peer)
        # The script runs in a task of its own: stopping the server cancels that one, and
        # this handler ends normally (asyncio logs an error for a cancelled handler).
        script = asyncio.create_task(self.script(peer))
        self._scripts.append(script)
        try:
            await script
        except asyncio.CancelledError:
            if not script.cancelled():
                raise
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        except Exception as exc:
            self.errors.append(exc)
        finally:
            writer.close()

    def all_requests(self) -> list[bytes]:
        return [request for peer in self.peers for request in peer.requests]


def answering(response: bytes | Callable[[bytes], bytes]) -> Script:
    """Answer every request on every connection with *response* until the client leaves."""

    async def script(peer: Peer) -> None:
        while (request := await peer.request()) is not None:
            await peer.send(response(request) if callable(response) else response)

    return script


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Script], Awaitable[ScriptedServer]]]:
    async with contextlib.AsyncExitStack() as stack:

        async def start(script: Script) -> ScriptedServer:
            return await stack.enter_async_context(ScriptedServer(script))

        yield start


Serve = Callable[[Script], Awaitable[ScriptedServer]]


@dataclass
class Got:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes


async def fetch(
    via: str,
    pool: KeepAlivePool,
    client: httpx.AsyncClient | None,
    server: ScriptedServer,
    method: str = "GET",
    target: str = "/",
    content: bytes | None = None,
) -> Got:
    """One request through ``pool.send`` or through an ``httpx.AsyncClient`` on the pool."""
    if via == "send":
        headers = [(b"Host", b"127.0.0.1:%d" % server.port)]
        if content is not None:
            headers.append((b"Content-Length", b"%d" % len(content)))
        response = await pool.send(
            method, server.origin, target.encode(), headers, _once(content), SHORT
        )
        try:
            body = b"".join([chunk async for chunk in response])
        finally:
            await response.aclose()
        return Got(response.status, response.headers, body)
    assert client is not None
    got = await client.request(method, server.url + target, content=content, timeout=2.0)
    return Got(got.status_code, got.headers.raw, got.content)


def _once(content: bytes | None) -> AsyncIterator[bytes] | None:
    if content is None:
        return None

    async def body() -> AsyncIterator[bytes]:
        yield content

    return body()


def header_values(request: bytes, name: bytes) -> list[bytes]:
    head = request.split(b"\r\n\r\n", 1)[0]
    pairs = [line.split(b":", 1) for line in head.split(b"\r\n")[1:]]
    return [value.strip() for key, value in pairs if key.strip().lower() == name]


def body_of(request: bytes) -> bytes:
    return request.split(b"\r\n\r\n", 1)[1]


async def test_the_request_head_goes_out_as_given_and_the_response_head_comes_back_as_sent(
    pool: KeepAlivePool, serve: Serve
) -> None:
    response_bytes = (
        b"HTTP/1.1 201 Created\r\nSet-Cookie: a=1\r\nX-Thing: one\r\n"
        b"set-cookie: b=2\r\nContent-Length: 3\r\n\r\nnew"
    )
    server = await serve(answering(response_bytes))
    headers = [(b"Host", b"example.test"), (b"X-A", b"1"), (b"x-a", b"2")]
    response = await pool.send("GET", server.origin, b"/p/a%20b?q=1", headers, None, SHORT)
    body = b"".join([chunk async for chunk in response])
    await response.aclose()
    assert server.all_requests() == [
        b"GET /p/a%20b?q=1 HTTP/1.1\r\nHost: example.test\r\nX-A: 1\r\nx-a: 2\r\n\r\n"
    ]
    assert response.status == 201
    assert response.headers == [
        (b"Set-Cookie", b"a=1"),
        (b"X-Thing", b"one"),
        (b"set-cookie", b"b=2"),
        (b"Content-Length", b"3"),
    ]
    assert body == b"new"


@pytest.mark.parametrize("via", VIAS)
async def test_a_head_response_has_no_body_whatever_its_content_length_and_retires_its_connection(
    pool: KeepAlivePool, client: httpx.AsyncClient, serve: Serve, via: str
) -> None:
    def respond(request: bytes) -> bytes:
        if request.startswith(b"HEAD "):
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"  # and no body
        return OK

    server = await serve(answering(respond))
    got = await fetch(via, pool, client, server, "HEAD")
    assert (got.status, got.body) == (200, b"")
    assert (b"Content-Length", b"1000") in got.headers
    assert pool.idle_count() == 0
    assert (await fetch(via, pool, client, server)).body == b"ok"
    assert len(server.peers) == 2
    assert len(server.peers[0].requests) == 1  # the HEAD's connection got nothing more


CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Checksum: abc\r\n\r\n"
)


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("piece", [len(CHUNKED), 1])
async def test_a_chunked_response_with_a_trailer_is_decoded_and_its_connection_reused(
    pool: KeepAlivePool, client: httpx.AsyncClient, serve: Serve, via: str, piece: int
) -> None:
    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            for start in range(0, len(CHUNKED), piece):  # whole, or one byte at a time
                await peer.send(CHUNKED[start : start + piece])

    server = await serve(script)
    for _ in range(2):
        got = await fetch(via, pool, client, server)
        assert (got.status, got.body) == (200, b"hello world")
    assert len(server.peers) == 1
    assert len(server.peers[0].requests) == 2
    assert pool.idle_count() == 1


async def test_a_trailer_does_not_change_the_response_headers(
    pool: KeepAlivePool, serve: Serve
) -> None:
    server = await serve(answering(CHUNKED))
    response = await pool.send("GET", server.origin, b"/", [(b"Host", b"h")], None, SHORT)
    body = b"".join([chunk async for chunk in response])
    await response.aclose()
    assert body == b"hello world"
    assert response.headers == [(b"Transfer-Encoding", b"chunked")]


@pytest.mark.parametrize("via", VIAS)
async def test_a_close_delimited_body_is_read_whole_and_its_connection_not_reused(
    pool: KeepAlivePool, client: httpx.AsyncClient, serve: Serve, via: str
) -> None:
    # Bigger than the pool's 256 KiB read-ahead, so reading pauses and resumes on the way.
    pieces = [bytes([letter]) * 300_000 for letter in b"abcd"]

    async def script(peer: Peer) -> None:
        if peer.index > 0:
            return await answering(OK)(peer)
        await peer.request()
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        for piece in pieces:
            await peer.send(piece)
        await peer.close()

    server = await serve(script)
    got = await fetch(via, pool, client, server)
    assert got.status == 200
    assert got.body == b"".join(pieces)
    assert pool.idle_count() == 0
    assert (await fetch(via, pool, client, server)).body == b"ok"
    assert len(server.peers) == 2


EARLY_HINTS = b"HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("apart", [False, True])
async def test_an_interim_103_is_skipped_for_the_final_response(
    pool: KeepAlivePool, client: httpx.AsyncClient, serve: Serve, via: str, apart: bool
) -> None:
    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            if apart:
                await peer.send(EARLY_HINTS)
                await asyncio.sleep(0.01)  # let the client see the 103 on its own
                await peer.send(OK)
            else:
                await peer.send(EARLY_HINTS + OK)

    server = await serve(script)
    got = await fetch(via, pool, client, server)
    assert (got.status, got.headers, got.body) == (200, [(b"Content-Length", b"2")], b"ok")
    assert (await fetch(via, pool, client, server)).body == b"ok"
    assert len(server.peers) == 1  # and the connection stays usable


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 abc OK\r\n\r\n",
        b"garbage\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nNo colon here\r\nContent-Length: 2\r\n\r\nok",
    ],
)
async def test_a_malformed_response_is_a_remote_protocol_error(
    pool: KeepAlivePool, client: httpx.AsyncClient, serve: Serve, via: str, response: bytes
) -> None:
    server = await serve(answering(response))
    with pytest.raises(httpx.RemoteProtocolError):
        await fetch(via, pool, client, server)
    assert pool.idle_count() == 0
    await asyncio.wait_for(server.peers[0].gone.wait(), 5)  # the pool hung up


async def test_bytes_after_a_complete_response_do_not_change_it_and_retire_the_connection(
    pool: KeepAlivePool, serve: Serve
) -> None:
    extra = b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\nstale"
    server = await serve(answering(OK + extra))  # one write: the client reads both at once
    response = await pool.send("GET", server.origin, b"/", [(b"Host", b"h")], None, SHORT)
    body = b"".join([chunk async for chunk in response])
    await response.aclose()
    assert (response.status, response.headers, body) == (200, [(b"Content-Length", b"2")], b"ok")
    assert pool.idle_count() == 0


def answered_then_closed(response: bytes) -> Script:
    """Take one request, send *response* (cut short), close the connection."""

    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(response)
        await peer.close()

    return script


CUT_SHORT = [
    b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10,
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n" + b"x" * 10 + b"\r\n",
]


@pytest.mark.parametrize("response", CUT_SHORT)
async def test_the_upstream_closing_mid_body_is_a_read_error_while_iterating(
    pool: KeepAlivePool, serve: Serve, response: bytes
) -> None:
    server = await serve(answered_then_closed(response))
    upstream_response = await pool.send("GET", server.origin, b"/", [(b"Host", b"h")], None, SHORT)
    assert upstream_response.status == 200
    received = b""
    with pytest.raises(httpx.ReadError):
        async for chunk in upstream_response:
            received += chunk
    await upstream_response.aclose()
    assert received == b"x" * 10
    assert pool.idle_count() == 0


@pytest.mark.parametrize("response", CUT_SHORT)
async def test_the_upstream_closing_mid_body_is_a_read_error_through_httpx(
    client: httpx.AsyncClient, serve: Serve, response: bytes
) -> None:
    server = await serve(answered_then_closed(response))
    with pytest.raises(httpx.ReadError):
        await client.get(server.url, timeout=2.0)


@pytest.mark.parametrize("via", VIAS)
async def test_a_stalled_body_is_a_read_timeout(
    pool: KeepAlivePool, client: httpx.AsyncClient, serve: Serve, via: str
) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.send(CUT_SHORT[0])
        await peer.request()  # then nothing more, until the client hangs up

    server = await serve(script)
    async with asyncio.timeout(10):  # a guard: without a read timeout this would hang
        await read_until_timeout(via, pool, client, server)
    assert pool.idle_count() == 0
    await asyncio.wait_for(server.peers[0].gone.wait(), 5)


async def read_until_timeout(
    via: str, pool: KeepAlivePool, client: httpx.AsyncClient, server: ScriptedServer
) -> None:
    if via == "send":
        timeouts = Timeouts(connect=2.0, read=0.2, write=2.0)
        response = await pool.send("GET", server.origin, b"/", [(b"Host", b"h")], None, timeouts)
        with pytest.raises(httpx.ReadTimeout):
            async for _ in response:
                pass
        await response.aclose()
    else:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url, timeout=httpx.Timeout(2.0, read=0.2))


def first_answered_then_dropped(first: bytes, later: bytes) -> Script:
    """Connection 0 answers one request, then takes the next and closes without answering
    (an upstream closing an idle connection just as a request arrives); later connections
    answer every request with *later*."""

    async def script(peer: Peer) -> None:
        if peer.index > 0:
            return await answering(later)(peer)
        await peer.request()
        await peer.send(first)
        await peer.request()
        await peer.close()

    return script


@pytest.mark.parametrize("via", VIAS)
async def test_a_request_without_body_is_retried_once_when_a_reused_connection_was_stale(
    pool: KeepAlivePool, client: httpx.AsyncClient, serve: Serve, via: str
) -> None:
    server = await serve(first_answered_then_dropped(reply(b"first"), reply(b"fresh")))
    assert (await fetch(via, pool, client, server)).body == b"first"
    assert (await fetch(via, pool, client, server, target="/again")).body == b"fresh"
    assert len(server.peers) == 2
    # The retry followed a real attempt on the reused connection.
    assert [r.split(b" ")[1] for r in server.peers[0].requests] == [b"/", b"/again"]
    assert [r.split(b" ")[1] for r in server.peers[1].requests] == [b"/again"]


@pytest.mark.parametrize("via", VIAS)
async def test_a_request_with_a_body_is_not_retried_on_a_stale_connection(
    pool: KeepAlivePool, client: httpx.AsyncClient, serve: Serve, via: str
) -> None:
    server = await serve(first_answered_then_dropped(reply(b"first"), reply(b"fresh")))
    assert (await fetch(via, pool, client, server)).body == b"first"
    with pytest.raises(httpx.RemoteProtocolError):
        await fetch(via, pool, client, server, "POST", content=b"payload")
    assert len(server.peers) == 1
    assert body_of(server.peers[0].requests[1]) == b"payload"


@pytest.mark.parametrize("via", VIAS)
async def test_a_new_connection_closed_without_an_answer_is_not_retried(
    pool: KeepAlivePool, client: httpx.AsyncClient, serve: Serve, via: str
) -> None:
    async def script(peer: Peer) -> None:
        await peer.request()
        await peer.close()

    server = await serve(script)
    with pytest.raises(httpx.RemoteProtocolError):
        await fetch(via, pool, client, server)
    assert len(server.peers) == 1


@pytest.mark.parametrize("via", VIAS)
async def test_an_idle_connection_the_upstream_closed_is_replaced(
    pool: KeepAlivePool, client: httpx.AsyncClient, serve: Serve, via: str
) -> None:
    async def script(peer: Peer) -> None:
        if peer.index > 0:
            return await answering(reply(b"fresh"))(peer)
        await peer.request()
        await peer.send(reply(b"first"))
        await peer.close()

    server = await serve(script)
    assert (await fetch(via, pool, client, server)).body == b"first"
    assert pool.idle_count() == 1
    await asyncio.wait_for(server.peers[0].closed.wait(), 5)
    assert (await fetch(via, pool, client, server)).body == b"fresh"
    assert len(server.peers) == 2


async def test_a_body_without_content_length_is_sent_chunked(
    pool: KeepAlivePool, serve: Serve
) -> None:
    server = await serve(answering(OK))

    async def body() -> AsyncIterator[bytes]:
        yield b"hello"
        yield b""  # nothing to send: must not end the body early ("0\r\n")
        yield b" world"

    response = await pool.send("POST", server.origin, b"/up", [(b"Host", b"h")], body(), SHORT)
    await response.aclose()
    assert response.status == 200
    assert server.all_requests() == [
        b"POST /up HTTP/1.1\r\nHost: h\r\ntransfer-encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    ]


async def test_a_body_with_content_length_is_sent_as_is(pool: KeepAlivePool, serve: Serve) -> None:
    server = await serve(answering(OK))
    headers = [(b"Host", b"h"), (b"Content-Length", b"11")]
    body = _once(b"hello world")
    response = await pool.send("PUT", server.origin, b"/up", headers, body, SHORT)
    await response.aclose()
    assert server.all_requests() == [
        b"PUT /up HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\nhello world"
    ]


async def test_httpx_request_bodies_are_framed_once(
    client: httpx.AsyncClient, serve: Serve
) -> None:
    server = await serve(answering(OK))

    async def streamed() -> AsyncIterator[bytes]:
        yield b"hello"
        yield b" world"

    await client.post(server.url + "/stream", content=streamed(), timeout=2.0)
    await client.post(server.url + "/bytes", content=b"hello world", timeout=2.0)
    stream, whole = server.all_requests()
    assert header_values(stream, b"transfer-encoding") == [b"chunked"]
    assert header_values(stream, b"content-length") == []
    assert body_of(stream) == b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    assert header_values(whole, b"transfer-encoding") == []
    assert header_values(whole, b"content-length") == [b"11"]
    assert body_of(whole) == b"hello world"


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize(
    ("name", "value"),
    [
        (b"x-evil", b"a\r\nInjected: yes"),
        (b"x-evil", b"a\nb"),
        (b"x-evil", b"a\rb"),
        (b"x-evil\r\nInjected", b"yes"),
        (b"x:evil", b"yes"),
        (b"x evil", b"yes"),
    ],
)
async def test_a_header_with_cr_lf_is_a_local_protocol_error_and_nothing_is_sent(
    pool: KeepAlivePool,
    client: httpx.AsyncClient,
    serve: Serve,
    via: str,
    name: bytes,
    value: bytes,
) -> None:
    server = await serve(answering(OK))
    await fetch(via, pool, client, server, target="/before")  # an idle connection to misuse
    with pytest.raises(httpx.LocalProtocolError):
        if via == "send":
            headers = [(b"Host", b"h"), (name, value)]
            await pool.send("GET", server.origin, b"/bad", headers, None, SHORT)
        else:
            request = httpx.Request("GET", server.url + "/bad", headers=[(name, value)])
            await client.send(request)
    await fetch(via, pool, client, server, target="/after")
    assert [r.split(b" ")[1] for r in server.all_requests()] == [b"/before", b"/after"]
    assert not any(b"Injected" in r or b"/bad" in r for r in server.all_requests())


@pytest.mark.parametrize(
    ("method", "target"),
    [
        ("GET", b"/bad\r\nInjected: yes"),
        ("GET", b"/bad\n"),
        ("GE T", b"/bad"),
        ("GET\r\n", b"/bad"),
    ],
)
async def test_a_bad_request_line_is_a_local_protocol_error_and_nothing_is_sent(
    pool: KeepAlivePool, serve: Serve, method: str, target: bytes
) -> None:
    server = await serve(answering(OK))
    await fetch("send", pool, None, server, target="/before")
    with pytest.raises(httpx.LocalProtocolError):
        await pool.send(method, server.origin, target, [(b"Host", b"h")], None, SHORT)
    await fetch("send", pool, None, server, target="/after")
    assert [r.split(b" ")[1] for r in server.all_requests()] == [b"/before", b"/after"]


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize(
    "response",
    [
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
    ],
)
async def test_a_response_that_ends_keep_alive_retires_its_connection(
    pool: KeepAlivePool, client: httpx.AsyncClient, serve: Serve, via: str, response: bytes
) -> None:
    server = await serve(answering(response))  # the server itself keeps the socket open
    assert (await fetch(via, pool, client, server)).body == b"ok"
    assert pool.idle_count() == 0
    assert (await fetch(via, pool, client, server)).body == b"ok"
    assert [len(peer.requests) for peer in server.peers] == [1, 1]


async def test_idle_connections_past_max_idle_are_closed_longest_idle_first(
    serve: Serve,
) -> None:
    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(reply(b"%d" % peer.index))  # which connection answered

    server = await serve(script)
    pool = KeepAlivePool(max_idle=2)

    async def hold() -> tuple[UpstreamResponse, bytes]:
        response = await pool.send("GET", server.origin, b"/", [(b"Host", b"h")], None, SHORT)
        return response, b"".join([chunk async for chunk in response])

    try:
        held = [await hold() for _ in range(4)]  # four at once: four connections
        assert [body for _, body in held] == [b"0", b"1", b"2", b"3"]
        for response, _ in held:  # back to the pool in this order: 0 and 1 idle longest
            await response.aclose()
        assert pool.idle_count() == 2
        await asyncio.wait_for(server.peers[0].gone.wait(), 5)
        await asyncio.wait_for(server.peers[1].gone.wait(), 5)
        # Most recently used first: two requests at once get connections 3 then 2.
        again = [await hold() for _ in range(2)]
        assert [body for _, body in again] == [b"3", b"2"]
        for response, _ in again:
            await response.aclose()
        assert len(server.peers) == 4
    finally:
        await pool.aclose()


async def test_reading_pauses_while_much_of_the_body_waits_unread(
    pool: KeepAlivePool, serve: Serve
) -> None:
    size = 4 * 1024 * 1024

    async def script(peer: Peer) -> None:
        while await peer.request() is not None:
            await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
            for _ in range(size // 65536):
                await peer.send(b"y" * 65536)

    server = await serve(script)
    response = await pool.send("GET", server.origin, b"/", [(b"Host", b"h")], None, SHORT)
    connection: Any = response._connection  # type: ignore[attr-defined]
    async with asyncio.timeout(10):
        while connection._buffered <= 256 * 1024:
            await asyncio.sleep(0.005)
    assert not connection._transport.is_reading()  # the upstream now waits for us
    received = 0
    async for chunk in response:
        received += len(chunk)
    await response.aclose()
    assert received == size
    assert connection._transport.is_reading()
    assert pool.idle_count() == 1


async def test_an_unsupported_scheme_is_refused_by_send(pool: KeepAlivePool) -> None:
    with pytest.raises(httpx.UnsupportedProtocol):
        await pool.send("GET", ("ftp", "127.0.0.1", 21), b"/", [(b"Host", b"h")], None, SHORT)


# -- HttpxUpstream: any httpx transport behind the Upstream interface -------------------------


async def test_httpx_upstream_builds_the_request_and_streams_both_bodies() -> None:
    seen: list[httpx.Request] = []
    seen_body: list[bytes] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        seen_body.append(await request.aread())
        return httpx.Response(202, headers=[(b"X-Up", b"1")], content=b"answer")

    upstream = HttpxUpstream(httpx.MockTransport(handler))
    timeouts = Timeouts(connect=1.0, read=2.0, write=3.0)
    response = await upstream.send(
        "PATCH",
        ("http", "upstream.test", 8080),
        b"/a%2Fb?x=1",
        [(b"Host", b"upstream.test:8080"), (b"Content-Length", b"5")],
        _once(b"hello"),
        timeouts,
    )
    body = b"".join([chunk async for chunk in response])
    await response.aclose()
    await upstream.aclose()
    (request,) = seen
    assert request.method == "PATCH"
    assert request.url.raw_path == b"/a%2Fb?x=1"
    assert (request.url.host, request.url.port) == ("upstream.test", 8080)
    assert request.extensions["timeout"] == {"connect": 1.0, "read": 2.0, "write": 3.0, "pool": 1.0}
    assert seen_body == [b"hello"]
    assert response.status == 202
    assert (b"X-Up", b"1") in response.headers
    assert body == b"answer"


async def big_body(produced: list[int] | None = None) -> AsyncIterator[bytes]:
    """64 MiB in 1 MiB chunks, far more than the socket buffers hold; each chunk produced
    is counted in *produced*."""
    for _ in range(64):
        if produced is not None:
            produced.append(1)
        yield b"w" * (1024 * 1024)


@pytest.mark.parametrize("via", VIAS)
async def test_an_upstream_that_does_not_take_the_body_is_a_write_timeout(
    pool: KeepAlivePool, client: httpx.AsyncClient, serve: Serve, via: str
) -> None:
    async def script(peer: Peer) -> None:
        await peer.reader.readuntil(b"\r\n\r\n")
        await peer.closed.wait()  # and never read the body (until the server stops)

    server = await serve(script)
    async with asyncio.timeout(10):  # a guard: without a write timeout this would hang
        with pytest.raises(httpx.WriteTimeout):
            if via == "send":
                timeouts = Timeouts(connect=2.0, read=2.0, write=0.2)
                await pool.send(
                    "POST", server.origin, b"/", [(b"Host", b"h")], big_body(), timeouts
                )
            else:
                timeout = httpx.Timeout(2.0, write=0.2)
                await client.post(server.url, content=big_body(), timeout=timeout)
    assert pool.idle_count() == 0


@pytest.mark.parametrize("via", VIAS)
async def test_an_early_error_stops_the_body_and_is_the_answer(
    pool: KeepAlivePool, client: httpx.AsyncClient, serve: Serve, via: str
) -> None:
    async def script(peer: Peer) -> None:
        await peer.reader.readuntil(b"\r\n\r\n")
        await peer.send(b"HTTP/1.1 413 Content Too Large\r\nContent-Length: 8\r\n\r\ntoo big!")
        await peer.closed.wait()  # and never read the body (until the server stops)

    server = await serve(script)
    sent: list[int] = []
    async with asyncio.timeout(10):  # a guard; the write timeout (5 s) would end it too
        if via == "send":
            timeouts = Timeouts(connect=5.0, read=5.0, write=5.0)
            response = await pool.send(
                "POST", server.origin, b"/", [(b"Host", b"h")], big_body(sent), timeouts
            )
            body = b"".join([chunk async for chunk in response])
            await response.aclose()
            status = response.status
        else:
            got = await client.post(server.url, content=big_body(sent), timeout=5.0)
            status, body = got.status_code, got.content
    assert (status, body) == (413, b"too big!")
    assert len(sent) < 64  # the rest of the body was never produced
    assert pool.idle_count() == 0  # left mid-request: retired


async def test_an_early_success_does_not_stop_the_body(pool: KeepAlivePool, serve: Serve) -> None:
    # A 2xx before the body ends may be a full-duplex answer: the body still goes up.
    async def script(peer: Peer) -> None:
        head = await peer.reader.readuntil(b"\r\n\r\n")
        await peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        length = int(re.search(rb"content-length: *(\d+)", head.lower())[1])  # type: ignore[index]
        received = len(await peer.reader.readexactly(length))
        peer.requests.append(b"%d" % received)

    server = await serve(script)
    timeouts = Timeouts(connect=5.0, read=5.0, write=5.0)
    size = 64 * 1024 * 1024
    headers = [(b"Host", b"h"), (b"Content-Length", b"%d" % size)]
    async with asyncio.timeout(10):
        response = await pool.send("POST", server.origin, b"/", headers, big_body(), timeouts)
        assert b"".join([chunk async for chunk in response]) == b"ok"
        await response.aclose()
        while not server.peers[0].requests:
            await asyncio.sleep(0.01)
    assert server.peers[0].requests == [b"%d" % size]


async def test_closing_the_pool_closes_its_idle_connections(serve: Serve) -> None:
    server = await serve(answering(OK))
    pool = KeepAlivePool()
    held = [
        await pool.send("GET", server.origin, b"/", [(b"Host", b"h")], None, SHORT)
        for _ in range(2)
    ]
    for response in held:
        assert b"".join([chunk async for chunk in response]) == b"ok"
        await response.aclose()
    assert pool.idle_count() == 2
    await pool.aclose()
    assert pool.idle_count() == 0
    for peer in server.peers:
        await asyncio.wait_for(peer.gone.wait(), 5)


# --- TLS upstreams (a certificate from a throwaway CA made by trustme) -------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@contextlib.asynccontextmanager
async def tls_server(ca: trustme.CA, *names: str) -> AsyncIterator[int]:
    """An HTTPS server on 127.0.0.1 whose certificate names *names*; yields its port."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = f"tls {head.split(b' ')[1].decode()}".encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        await server.wait_closed()


async def get_text(pool: KeepAlivePool, origin: tuple[str, str, int]) -> str:
    response = await pool.send("GET", origin, b"/x", [(b"host", b"h")], None, SHORT)
    try:
        return b"".join([chunk async for chunk in response]).decode()
    finally:
        await response.aclose()


async def test_an_https_upstream_is_verified_and_its_connection_reused(ca: trustme.CA) -> None:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    pool = KeepAlivePool(ssl_context=context)
    try:
        async with tls_server(ca, "localhost") as port:
            origin = ("https", "localhost", port)
            assert await get_text(pool, origin) == "tls /x"
            assert await get_text(pool, origin) == "tls /x"
            assert pool.idle_count() == 1
    finally:
        await pool.aclose()


async def test_an_https_upstream_with_an_untrusted_or_wrong_certificate_is_a_connect_error(
    ca: trustme.CA,
) -> None:
    default = KeepAlivePool()  # certifi's roots: our throwaway CA is not among them
    context = ssl.create_default_context()
    ca.configure_trust(context)
    trusting = KeepAlivePool(ssl_context=context)
    try:
        async with tls_server(ca, "localhost") as port:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await get_text(default, ("https", "localhost", port))
            # Trusted CA, but the certificate does not name 127.0.0.1.
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await get_text(trusting, ("https", "127.0.0.1", port))
    finally:
        await default.aclose()
        await trusting.aclose()
