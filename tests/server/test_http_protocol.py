"""server/featureflag_server/http_protocol.py: a response's writes leave in one send."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from starlette.types import ASGIApp, Receive, Scope, Send
from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

from featureflag_server.http_protocol import (
    FLUSH_AT,
    CoalescingHttpToolsProtocol,
    CoalescingTransport,
)


class RecordingTransport(asyncio.Transport):
    """Plays the socket: records each write (one write is one send())."""

    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False
        self.aborted = False

    def write(self, data: Any) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": ("127.0.0.1", 50000), "sockname": ("127.0.0.1", 8000)}.get(
            name, default
        )

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


async def hello(scope: Scope, receive: Receive, send: Send) -> None:
    body = b"hello, " + scope["path"].encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def requested(
    protocol_class: type[HttpToolsProtocol], app: ASGIApp, transport: RecordingTransport
) -> HttpToolsProtocol:
    """A protocol on *transport* that has just received ``GET /a`` for *app*."""
    config = Config(app=app, access_log=False, log_config=None)
    protocol = protocol_class(config, ServerState(), {}, _loop=asyncio.get_running_loop())
    protocol.connection_made(transport)
    protocol.data_received(b"GET /a HTTP/1.1\r\nHost: example.test\r\n\r\n")
    return protocol


async def serve_one(protocol_class: type[HttpToolsProtocol]) -> RecordingTransport:
    transport = RecordingTransport()
    protocol = requested(protocol_class, hello, transport)
    for _ in range(10):  # the request's task, then the end-of-turn send
        await asyncio.sleep(0)
    protocol.connection_lost(None)
    return transport


async def test_a_response_head_and_body_leave_in_one_write() -> None:
    transport = await serve_one(CoalescingHttpToolsProtocol)
    assert len(transport.writes) == 1
    head, _, body = transport.writes[0].partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK")
    assert body == b"hello, /a"


async def test_uvicorns_own_protocol_writes_twice() -> None:
    # What the class is for: without it, the head and the body are two sends.
    transport = await serve_one(HttpToolsProtocol)
    assert len(transport.writes) == 2


async def test_a_streamed_response_is_not_held_back() -> None:
    # The second chunk is only produced once the first reached the socket: a transport
    # that held writes until a later one (or until the response ended) would stall here.
    transport = RecordingTransport()
    first_sent = asyncio.Event()

    async def stream(scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        await first_sent.wait()
        await send({"type": "http.response.body", "body": b"second"})

    protocol = requested(CoalescingHttpToolsProtocol, stream, transport)
    async with asyncio.timeout(5):  # a deadlock guard, not a timing assertion
        while not any(b"first" in w for w in transport.writes):
            await asyncio.sleep(0)
        first_sent.set()
        while not any(b"second" in w for w in transport.writes):
            await asyncio.sleep(0)
    protocol.connection_lost(None)
    assert b"".join(transport.writes).endswith(b"6\r\nsecond\r\n0\r\n\r\n")


async def test_writes_in_one_turn_are_joined_and_sent_at_its_end() -> None:
    raw = RecordingTransport()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"a")
    transport.write(bytearray(b"b"))
    transport.write(memoryview(b"c"))
    assert raw.writes == []
    await asyncio.sleep(0)
    assert raw.writes == [b"abc"]
    transport.write(b"d")
    await asyncio.sleep(0)
    assert raw.writes == [b"abc", b"d"]


async def test_past_flush_at_bytes_are_sent_at_once() -> None:
    raw = RecordingTransport()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"x" * (FLUSH_AT - 1))
    assert raw.writes == []
    transport.write(b"y")
    assert [len(w) for w in raw.writes] == [FLUSH_AT]
    await asyncio.sleep(0)  # the scheduled send finds nothing left
    assert len(raw.writes) == 1


async def test_close_sends_what_is_gathered_first_and_abort_drops_it() -> None:
    loop = asyncio.get_running_loop()
    raw = RecordingTransport()
    transport = CoalescingTransport(raw, loop)
    transport.write(b"last words")
    transport.close()
    assert raw.writes == [b"last words"] and raw.closed

    raw = RecordingTransport()
    transport = CoalescingTransport(raw, loop)
    transport.write(b"never sent")
    transport.abort()
    await asyncio.sleep(0)
    assert raw.writes == [] and raw.aborted


async def test_nothing_is_written_to_a_closing_transport() -> None:
    raw = RecordingTransport()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    transport.write(b"late")
    raw.closed = True
    await asyncio.sleep(0)
    assert raw.writes == []


@pytest.mark.parametrize("name", ["is_closing", "get_extra_info", "pause_reading"])
async def test_everything_else_is_the_wrapped_transports(name: str) -> None:
    raw = RecordingTransport()
    transport = CoalescingTransport(raw, asyncio.get_running_loop())
    assert getattr(transport, name) == getattr(raw, name)
