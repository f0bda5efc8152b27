"""server/featureflag_server/proxy_websocket.py: relaying frames and close codes, with a
stand-in for the upstream's socket (tests/server/test_proxy_integration.py runs it
against a real Starlette WebSocket app behind the real service)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator

import pytest
from starlette.types import Message

from featureflag_server.proxy_websocket import relay_websocket

logger = logging.getLogger("test")
END = object()


class FakeSocket:
    """The upstream's socket: a queue of what it sends; it records what it is sent."""

    def __init__(self, subprotocol: str | None = None) -> None:
        self.subprotocol = subprotocol
        self.close_code: int | None = None
        self.incoming: asyncio.Queue[object] = asyncio.Queue()
        self.sent: list[str | bytes] = []
        self.closed_with: list[tuple[int, str]] = []

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        while True:
            item = await self.incoming.get()
            if item is END:
                return
            assert isinstance(item, str | bytes)
            yield item

    async def send(self, data: str | bytes) -> None:
        self.sent.append(data)
        if data == "bye":
            self.close_code = 4002
            self.incoming.put_nowait(END)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed_with.append((code, reason))
        self.incoming.put_nowait(END)


async def relay(socket: FakeSocket, inbox: list[Message]) -> list[Message]:
    pending: asyncio.Queue[Message] = asyncio.Queue()
    for message in inbox:
        pending.put_nowait(message)
    out: list[Message] = []

    async def receive() -> Message:
        return await pending.get()

    async def send(message: Message) -> None:
        out.append(message)

    await asyncio.wait_for(relay_websocket(socket, receive, send, logger=logger, fork="f"), 10)
    return out


async def test_frames_pass_both_ways_and_the_upstreams_close_code_reaches_the_client() -> None:
    socket = FakeSocket(subprotocol="hmr")
    socket.incoming.put_nowait("from upstream")
    socket.incoming.put_nowait(b"\x00\x01")
    out = await relay(
        socket,
        [
            {"type": "websocket.receive", "text": "hi"},
            {"type": "websocket.receive", "bytes": b"\xff"},
            {"type": "websocket.receive", "text": "bye"},  # the upstream closes with 4002
        ],
    )
    assert out[0] == {"type": "websocket.accept", "subprotocol": "hmr"}
    assert {"type": "websocket.send", "text": "from upstream"} in out
    assert {"type": "websocket.send", "bytes": b"\x00\x01"} in out
    assert out[-1] == {"type": "websocket.close", "code": 4002}
    assert socket.sent == ["hi", b"\xff", "bye"]


@pytest.mark.parametrize(("client", "upstream"), [(4001, 4001), (1006, 1001), (1005, 1000)])
async def test_the_clients_close_code_reaches_the_upstream(client: int, upstream: int) -> None:
    socket = FakeSocket()
    out = await relay(socket, [{"type": "websocket.disconnect", "code": client}])
    assert socket.closed_with[0] == (upstream, "")
    assert [m["type"] for m in out] == ["websocket.accept"]  # nothing sent to a gone client


@pytest.mark.parametrize(("upstream", "client"), [(None, 1000), (1006, 1011), (1001, 1001)])
async def test_codes_no_close_frame_may_carry_are_mapped(upstream: int | None, client: int) -> None:
    socket = FakeSocket()
    socket.close_code = upstream
    socket.incoming.put_nowait(END)
    out = await relay(socket, [])
    assert out[-1] == {"type": "websocket.close", "code": client}
