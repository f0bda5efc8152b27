"""A tiny raw-ASGI app to stand behind the fork proxy in integration tests and bench/proxy.py.

Run it with ``uvicorn tests.server.proxy_upstream:app``. Endpoints:

- ``/`` a short text answer (what the benchmark asks for);
- ``/echo`` the request as JSON: method, path, query, headers (lists per name), the
  body's size and the client's port (the same port again means a reused connection);
- ``/big?size=N`` N bytes, streamed in 64 KiB chunks with a Content-Length;
- ``/upload`` reads the body and answers its length;
- ``/reject`` answers 413 at once, without reading the body;
- ``/redirect`` 302 to this app's own absolute ``/echo`` URL, with a cookie for its host;
- ``/slow`` never answers; when the client goes away it records
  ``slow-disconnected:<query>``;
- ``/hold?seconds=S`` answers the client's port after S seconds;
- ``/headers?count=N&size=M`` answers with N headers of M bytes each;
- ``/events`` the records so far, as JSON;
- the WebSocket ``/ws`` (a Starlette endpoint): sends the handshake's headers as JSON,
  then echoes text (``echo:`` + it) and binary (reversed); the text ``close:CODE`` makes
  it close with CODE; it records ``ws-closed:<code>`` when the client closes.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any
from urllib.parse import parse_qs

from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

CHUNK = b"x" * 65536
events: list[str] = []


async def _reply(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", str(len(body)).encode()), *(headers or [])],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Receive) -> int:
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return size
        size += len(message.get("body", b""))
        if not message.get("more_body", False):
            return size


async def _websocket(websocket: WebSocket) -> None:
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=offered[0] if offered else None)
    grouped: dict[str, list[str]] = {}
    for key, value in websocket.headers.items():
        grouped.setdefault(key, []).append(value)
    await websocket.send_json({"headers": grouped, "subprotocols": offered})
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                events.append(f"ws-closed:{message.get('code')}")
                return
            text = message.get("text")
            if text is not None and text.startswith("close:"):
                await websocket.close(int(text.removeprefix("close:")))
                return
            if text is not None:
                await websocket.send_text("echo:" + text)
            else:
                await websocket.send_bytes(bytes(reversed(message.get("bytes") or b"")))
    except WebSocketDisconnect as exc:
        events.append(f"ws-closed:{exc.code}")


websockets = Starlette(routes=[WebSocketRoute("/ws", _websocket)])


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """The ASGI entry point."""
    if scope["type"] == "websocket":
        await websockets(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    path = scope["path"]
    headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
    if path == "/":
        await _reply(send, 200, b"hello", [(b"content-type", b"text/plain")])
    elif path == "/echo":
        grouped: dict[str, list[str]] = {}
        for key, value in headers:
            grouped.setdefault(key, []).append(value)
        body: dict[str, Any] = {
            "method": scope["method"],
            "path": path,
            "query": scope["query_string"].decode("latin-1"),
            "headers": grouped,
            "body_size": await _read_body(receive),
            "client_port": (scope.get("client") or ("", 0))[1],
        }
        await _reply(send, 200, json.dumps(body).encode(), [(b"content-type", b"application/json")])
    elif path == "/big":
        query = parse_qs(scope["query_string"].decode())
        size = int(query.get("size", ["1048576"])[0])
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", str(size).encode()),
                    (b"content-type", b"application/octet-stream"),
                ],
            }
        )
        left = size
        while left > 0:
            chunk = CHUNK if left >= len(CHUNK) else CHUNK[:left]
            left -= len(chunk)
            await send({"type": "http.response.body", "body": chunk, "more_body": left > 0})
        if size == 0:
            await send({"type": "http.response.body", "body": b""})
    elif path == "/upload":
        size = await _read_body(receive)
        await _reply(send, 200, json.dumps({"size": size}).encode())
    elif path == "/reject":
        await _reply(send, 413, b"too big for this upstream")
    elif path == "/redirect":
        host = dict(headers).get("host", "")
        hostname = host.rsplit(":", 1)[0]
        await _reply(
            send,
            302,
            b"",
            [
                (b"location", f"http://{host}/echo?from=redirect".encode()),
                (b"set-cookie", f"session=abc; Domain={hostname}; Path=/".encode()),
            ],
        )
    elif path == "/slow":
        while (await receive())["type"] != "http.disconnect":
            pass
        events.append("slow-disconnected:" + scope["query_string"].decode("latin-1"))
    elif path == "/hold":
        query = parse_qs(scope["query_string"].decode())
        await asyncio.sleep(float(query.get("seconds", ["0.2"])[0]))
        port = (scope.get("client") or ("", 0))[1]
        await _reply(send, 200, json.dumps({"client_port": port}).encode())
    elif path == "/headers":
        query = parse_qs(scope["query_string"].decode())
        count, size = int(query["count"][0]), int(query["size"][0])
        many = [(f"x-big-{i}".encode(), b"v" * size) for i in range(count)]
        await _reply(send, 200, b"big head", many)
    elif path == "/events":
        await _reply(send, 200, json.dumps(events).encode())
    else:
        await _reply(send, 404, b"not found")
