"""WebSockets through a fork: frames relayed both ways between the client and the upstream.

:class:`~featureflag_server.proxy.ForkProxy` makes the handshake (the upstream sees the
fork's token in ``Feature-Flag-Overrides``, as for HTTP) and hands the open upstream
socket to :func:`relay_websocket`, which accepts the client's socket with the
upstream's subprotocol, then passes text and binary messages each way until one side
closes, and closes the other with the same code. Codes that no close frame may carry
(1005 no status, 1006 abnormal, 1015 TLS failure) become 1000, 1001 or 1011.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.types import Receive, Send

from .upstream import UpstreamWebSocket

__all__ = ["relay_websocket"]

_NO_STATUS, _ABNORMAL, _TLS = 1005, 1006, 1015


def _to_client(code: int | None) -> int:
    """The close code for the client when the upstream closed with *code*."""
    if code is None or code == _NO_STATUS:
        return 1000
    if code in (_ABNORMAL, _TLS):
        return 1011  # the upstream went away without a word: an error on our side of it
    return code


def _to_upstream(code: int | None) -> int:
    """The close code for the upstream when the client closed with *code*."""
    if code is None or code == _NO_STATUS:
        return 1000
    if code in (_ABNORMAL, _TLS):
        return 1001  # the client is gone
    return code


async def relay_websocket(
    upstream: UpstreamWebSocket,
    receive: Receive,
    send: Send,
    *,
    logger: logging.Logger,
    fork: str,
) -> None:
    """Accept the client's socket and relay until either side closes; see the module doc."""
    await send({"type": "websocket.accept", "subprotocol": upstream.subprotocol})
    client_gone = asyncio.Event()

    async def down() -> None:
        code = 1011
        try:
            async for data in upstream:
                if isinstance(data, str):
                    await send({"type": "websocket.send", "text": data})
                else:
                    await send({"type": "websocket.send", "bytes": data})
            code = _to_client(upstream.close_code)
        except Exception as exc:  # the upstream broke the socket
            if client_gone.is_set():
                return
            logger.warning("fork %s: the upstream's WebSocket failed: %r", fork, exc)
        if not client_gone.is_set():
            await send({"type": "websocket.close", "code": code})

    async def up() -> None:
        while True:
            message = await receive()
            kind = message["type"]
            if kind == "websocket.receive":
                text = message.get("text")
                await upstream.send(text if text is not None else message.get("bytes") or b"")
            elif kind == "websocket.disconnect":
                client_gone.set()
                await upstream.close(_to_upstream(message.get("code")), message.get("reason") or "")
                return

    tasks = {asyncio.ensure_future(down()), asyncio.ensure_future(up())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        await upstream.close()
    for result in results:
        if isinstance(result, Exception) and not client_gone.is_set():
            logger.warning("fork %s: relaying a WebSocket failed: %r", fork, result)
