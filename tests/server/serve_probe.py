"""``python -m tests.server.serve_probe SERVER PORT RECORD [--fail-startup]``: a small app
served by ``featureflag_server.__main__.serve`` as the service is, recording its lifespan
(with --fail-startup, its startup fails).

Each lifespan event, and the start of each ``GET /slow`` (which answers after 1 s),
appends a line to the file RECORD, so a test can send a signal mid-request and then
read what the server did.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from starlette.types import ASGIApp, Receive, Scope, Send

from featureflag_server.__main__ import serve
from featureflag_server.settings import Settings


def probe(record: Path, fail_startup: bool = False) -> ASGIApp:
    def note(line: str) -> None:
        with record.open("a") as out:
            out.write(line + "\n")

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                event = message["type"].removeprefix("lifespan.")
                note(event)
                if fail_startup:
                    message = "the probe refuses to start"
                    await send({"type": "lifespan.startup.failed", "message": message})
                    return
                await send({"type": f"lifespan.{event}.complete"})
                if event == "shutdown":
                    return
        body = b"ok"
        if scope["path"] == "/slow":
            note("slow request")
            await asyncio.sleep(1)
            body = b"finished"
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


if __name__ == "__main__":
    server, port, record = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3])
    settings = Settings(secret="k" * 40, port=port, server=server, access_log=False)
    serve(probe(record, fail_startup="--fail-startup" in sys.argv[4:]), settings)
