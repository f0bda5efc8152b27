"""uvicorn's httptools protocol, with each response's writes joined into one send.

uvicorn writes a response's head when the app sends ``http.response.start`` and its body
at each ``http.response.body``: two ``send()`` system calls for a short response, and two
wake-ups of the client. :class:`CoalescingHttpToolsProtocol` hands uvicorn a transport
that gathers what is written during one turn of the event loop and sends it at the end of
that turn (or at once past :data:`FLUSH_AT` bytes), so a head and a body written together
leave together. Nothing waits on a timer: a write is out before the loop polls again.
On this 2-core VM a loopback ``send()`` costs 15-20 µs of CPU; see docs/benchmarks.md.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

__all__ = ["FLUSH_AT", "CoalescingHttpToolsProtocol", "CoalescingTransport"]

FLUSH_AT = 65536
"""Bytes gathered before they are sent without waiting for the end of the loop's turn."""


class CoalescingTransport:
    """Wraps a transport: ``write()`` gathers, the end of the loop's turn sends.

    Everything else (flow control, ``get_extra_info``, ``is_closing``) is the wrapped
    transport's; ``close()`` sends what is gathered first, ``abort()`` drops it.
    """

    __slots__ = ("_loop", "_pending", "_size", "transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self.transport = transport
        self._loop = loop
        self._pending: list[bytes] | None = None
        self._size = 0

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pending = self._pending
        if pending is None:
            self._pending = [bytes(data)]
            self._size = len(data)
            self._loop.call_soon(self.flush)
        else:
            pending.append(bytes(data))
            self._size += len(data)
            if self._size >= FLUSH_AT:
                self.flush()

    def flush(self) -> None:
        """Send what is gathered (the scheduled call finds nothing left to do)."""
        pending = self._pending
        if pending is None:
            return
        self._pending = None
        if not self.transport.is_closing():
            self.transport.write(pending[0] if len(pending) == 1 else b"".join(pending))

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def abort(self) -> None:
        self._pending = None
        self.transport.abort()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


class CoalescingHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's ``httptools`` protocol on a :class:`CoalescingTransport`; pass it as
    ``uvicorn.run(..., http=CoalescingHttpToolsProtocol)``."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # (uvloop's transports are not asyncio.Transport instances, hence the casts)
        wrapped = CoalescingTransport(cast(asyncio.Transport, transport), self.loop)
        super().connection_made(cast(asyncio.Transport, wrapped))
