"""The app behind the live gateways in tests/server/test_gateways_live.py.

Everything :mod:`tests.server.proxy_upstream` answers, plus:

- ``/ws``: a WebSocket that echoes each text message back, prefixed with ``echo:``;
- ``/stream``: sends ``first\\n`` at once, the rest only after ``/release`` was called
  (so a gateway that buffers the response would never show the first line);
- ``/release``: lets ``/stream`` finish.
"""

from __future__ import annotations

import asyncio

from starlette.types import Receive, Scope, Send

from tests.server import proxy_upstream

released = asyncio.Event()


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI entry point."""
    if scope["type"] == "websocket":
        await _echo(receive, send)
        return
    if scope["type"] == "http" and scope["path"] == "/stream":
        released.clear()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first\n", "more_body": True})
        await asyncio.wait_for(released.wait(), timeout=60)
        await send({"type": "http.response.body", "body": b"second\n"})
        return
    if scope["type"] == "http" and scope["path"] == "/release":
        released.set()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    await proxy_upstream.app(scope, receive, send)


async def _echo(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": "echo:" + (message.get("text") or "")})
        else:
            return
