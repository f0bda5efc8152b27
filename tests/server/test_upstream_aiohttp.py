"""server/featureflag_server/upstream_aiohttp.py against small raw upstreams in the test's loop.

Each upstream is an ``asyncio`` server that writes exactly the bytes a test gives it, so
the limits, the error translation and what goes on the wire are checked byte for byte.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from featureflag_server.upstream import HeadersTooLarge, Timeouts, WebSocketRefused
from featureflag_server.upstream_aiohttp import AiohttpUpstream

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
SHORT = Timeouts(connect=5.0, read=5.0)


@asynccontextmanager
async def serve(handler: Handler) -> AsyncIterator[tuple[str, str, int]]:
    """Run *handler* for each connection; every connection is closed on the way out."""
    writers: list[asyncio.StreamWriter] = []

    async def each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)
        try:
            await handler(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(each, "127.0.0.1", 0)
    try:
        yield ("http", "127.0.0.1", server.sockets[0].getsockname()[1])
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


def answering(
    head: bytes, body: bytes = b"", seen: list[bytes] | None = None, *, hang_up: bool = False
) -> Handler:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(request)
        writer.write(head + body)
        await writer.drain()
        if not hang_up:
            await reader.read()  # until the client hangs up

    return handler


@pytest.fixture
async def upstream() -> AsyncIterator[AiohttpUpstream]:
    client = AiohttpUpstream()
    yield client
    await client.aclose()


async def get(upstream: AiohttpUpstream, handler: Handler, target: bytes = b"/") -> bytes:
    async with serve(handler) as origin:
        response = await upstream.send("GET", origin, target, [(b"host", b"up")], None, SHORT)
        body = b""
        try:
            async for chunk in response:
                body += chunk
        finally:
            await response.aclose()
        return body


async def test_the_request_goes_as_given_and_the_body_comes_back(
    upstream: AiohttpUpstream,
) -> None:
    seen: list[bytes] = []
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"
    body = await get(upstream, answering(head, b"hello", seen), b"/a%2Fb/../c?q=%20x")
    assert body == b"hello"
    request_line, *lines = seen[0].decode().split("\r\n")
    # Not re-quoted, not normalised: the proxy already made the target what it must be.
    assert request_line == "GET /a%2Fb/../c?q=%20x HTTP/1.1"
    names = {line.split(":")[0].lower() for line in lines if line}
    assert names == {"host"}, "the client added headers of its own"


async def test_a_body_goes_with_its_length_and_no_invented_content_type(
    upstream: AiohttpUpstream,
) -> None:
    seen: list[bytes] = []

    async def chunks() -> AsyncIterator[bytes]:
        yield b"ab"
        yield b"c"

    async with serve(answering(b"HTTP/1.1 204 No Content\r\n\r\n", seen=seen)) as origin:
        headers = [(b"host", b"up"), (b"content-length", b"3")]
        response = await upstream.send("POST", origin, b"/", headers, chunks(), SHORT)
        await response.aclose()
    assert response.status == 204
    assert b"content-type" not in seen[0].lower()
    assert b"transfer-encoding" not in seen[0].lower()


async def test_an_early_error_stops_the_upload_and_is_the_answer(
    upstream: AiohttpUpstream,
) -> None:
    # The upstream answers 413 without reading the body: the answer comes back although
    # the body is far larger than the socket buffers, and the rest is never sent.
    sent = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal sent
        for _ in range(1024):
            sent += 65536
            yield b"z" * 65536

    head = b"HTTP/1.1 413 Payload Too Large\r\nContent-Length: 7\r\n\r\n"
    async with serve(answering(head, b"too big")) as origin:
        headers = [(b"host", b"up"), (b"content-length", str(64 * 1024 * 1024).encode())]
        response = await upstream.send("POST", origin, b"/", headers, body(), SHORT)
        answer = b""
        async for chunk in response:
            answer += chunk
        await response.aclose()
    assert (response.status, answer) == (413, b"too big")
    assert sent < 64 * 1024 * 1024


async def test_response_heads_past_the_byte_limit_are_refused(upstream: AiohttpUpstream) -> None:
    fields = b"".join(b"X-F%d: %s\r\n" % (i, b"v" * 4000) for i in range(20))
    head = b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n"
    with pytest.raises(HeadersTooLarge, match="past the limit of 65536"):
        await get(upstream, answering(head))


@pytest.mark.parametrize(
    "fields",
    [b"X-Long: " + b"v" * 9000 + b"\r\n", b"".join(b"X-%d: 1\r\n" % i for i in range(200))],
    ids=["a long field", "too many fields"],
)
async def test_heads_past_the_parsers_limits_are_refused(
    upstream: AiohttpUpstream, fields: bytes
) -> None:
    head = b"HTTP/1.1 200 OK\r\n" + fields + b"Content-Length: 0\r\n\r\n"
    with pytest.raises(HeadersTooLarge):
        await get(upstream, answering(head))


async def test_a_refused_connection_is_a_connect_error(upstream: AiohttpUpstream) -> None:
    async with serve(answering(b"")) as origin:
        pass  # closed: nothing listens on the port any more
    with pytest.raises(httpx.ConnectError):
        await upstream.send("GET", origin, b"/", [(b"host", b"up")], None, SHORT)


async def test_an_upstream_that_never_answers_is_a_read_timeout(
    upstream: AiohttpUpstream,
) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers; returns when the client hangs up

    async with serve(silent) as origin:
        with pytest.raises(httpx.ReadTimeout):
            await upstream.send(
                "GET", origin, b"/", [(b"host", b"up")], None, Timeouts(connect=5, read=0.2)
            )


async def test_an_upstream_that_hangs_up_is_a_protocol_error(upstream: AiohttpUpstream) -> None:
    async def rude(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.close()

    async with serve(rude) as origin:
        with pytest.raises(httpx.RemoteProtocolError):
            await upstream.send("POST", origin, b"/", [(b"host", b"up")], None, SHORT)


async def test_a_body_cut_short_is_a_read_error(upstream: AiohttpUpstream) -> None:
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"
    with pytest.raises(httpx.ReadError):
        await get(upstream, answering(head, b"only part", hang_up=True))


def test_at_least_one_connection() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AiohttpUpstream(connections=0)


async def test_a_websocket_handshake_answered_otherwise_is_refused(
    upstream: AiohttpUpstream,
) -> None:
    head = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
    async with serve(answering(head)) as origin:
        with pytest.raises(WebSocketRefused) as info:
            await upstream.websocket(origin, b"/ws", [(b"host", b"up")], [], SHORT)
    assert info.value.status == 404


async def test_a_websocket_handshake_nobody_answers_times_out(upstream: AiohttpUpstream) -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async with serve(silent) as origin:
        with pytest.raises(httpx.ReadTimeout):
            await upstream.websocket(
                origin, b"/ws", [(b"host", b"up")], [], Timeouts(connect=5, read=0.2)
            )
