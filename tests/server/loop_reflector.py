"""An app that sends every request back to a fork URL (issue 17: a fork loop).

It stands for whatever leads a fork's upstream back to the service (a name that resolves
to it, a gateway, a CDN): each request goes to ``REFLECT_TO`` with ``Host: REFLECT_HOST``
and the headers it came with. It counts its hops in ``X-Reflector-Hops`` and gives up
with a 599 after ten, so a loop the service does not stop ends instead of running on.
"""

from __future__ import annotations

import os

import httpx
from starlette.types import Receive, Scope, Send

MAX_HOPS = 10
_DROP = {b"host", b"content-length", b"transfer-encoding", b"connection", b"x-reflector-hops"}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return
    hops = int(dict(scope["headers"]).get(b"x-reflector-hops", b"0")) + 1
    if scope["path"] == "/ready":
        status, body, seen = 200, b"ready", b"0"
    elif hops > MAX_HOPS:
        status, body, seen = 599, b"gave up: the request kept coming back", str(hops).encode()
    else:
        headers = [(k, v) for k, v in scope["headers"] if k not in _DROP]
        headers += [
            (b"host", os.environ["REFLECT_HOST"].encode()),
            (b"x-reflector-hops", b"%d" % hops),
        ]
        async with httpx.AsyncClient(timeout=60) as client:
            answer = await client.get(os.environ["REFLECT_TO"] + scope["path"], headers=headers)
        status, body = answer.status_code, answer.content
        seen = answer.headers.get("x-reflector-hops", str(hops)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-length", b"%d" % len(body)), (b"x-reflector-hops", seen)],
        }
    )
    await send({"type": "http.response.body", "body": body})
