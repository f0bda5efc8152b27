"""The service's log lines: timestamped, access lines written to stderr in batches.

uvicorn writes an access line per request. Through the stdlib's ``StreamHandler`` each
line costs a ``strftime`` and a ``write()`` + flush of its own: 11-26 µs here, against
7-14 µs through :class:`BatchingHandler`, which gathers access lines and writes them
together at most :data:`FLUSH_AFTER` seconds later, like nginx's ``access_log ...
buffer= flush=``. :class:`Formatter` formats the timestamp once a second. Other lines
(start-up, shutdown, warnings) are written at once. :func:`flush` writes what waits; the
service calls it at shutdown, once the last request is answered. A process killed with
SIGKILL loses at most the last :data:`FLUSH_AFTER` seconds of access lines.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import weakref
from typing import IO, Any

__all__ = ["FLUSH_AFTER", "LOG_CONFIG", "BatchingHandler", "Formatter", "flush"]

FLUSH_AFTER = 0.5
"""Seconds a line may wait before it is written."""

FLUSH_AT = 65536
"""Characters gathered before they are written without waiting."""


class Formatter(logging.Formatter):
    """``logging.Formatter`` with the default timestamp (``2026-11-26 05:51:16,273``)
    formatted once per second instead of once per line."""

    def __init__(self, fmt: str | None = None) -> None:
        super().__init__(fmt)
        # (second, its text) in one tuple: replaced whole, so threads never mix two.
        self._stamp = (-1, "")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        if datefmt is not None:
            return super().formatTime(record, datefmt)
        second = int(record.created)
        stamp = self._stamp
        if stamp[0] != second:
            stamp = (second, time.strftime(self.default_time_format, self.converter(second)))
            self._stamp = stamp
        return f"{stamp[1]},{int(record.msecs):03d}"


class BatchingHandler(logging.Handler):
    """Writes formatted lines to *stream* (default: stderr) in batches.

    A line waits at most *flush_after* seconds (a thread wakes to write it); a record at
    *flush_level* or above, or *flush_at* characters gathered, writes everything at once.
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        flush_after: float = FLUSH_AFTER,
        flush_at: int = FLUSH_AT,
        flush_level: int = logging.WARNING,
    ) -> None:
        super().__init__()
        self.stream = stream if stream is not None else sys.stderr
        self.flush_after = flush_after
        self.flush_at = flush_at
        self.flush_level = flush_level
        self._lines: list[str] = []
        self._size = 0
        self._waiting = threading.Event()  # set when lines wait for the thread
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="log-flush", daemon=True)
        self._thread.start()
        _handlers.add(self)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        self._lines.append(line)
        self._size += len(line)
        if record.levelno >= self.flush_level or self._size >= self.flush_at:
            self.flush()
        elif not self._waiting.is_set():
            self._waiting.set()

    def flush(self) -> None:
        """Write every gathered line now."""
        with self.lock:  # type: ignore[union-attr]  # (created by Handler.__init__)
            lines, self._lines, self._size = self._lines, [], 0
            if not lines:
                return
            try:
                self.stream.write("".join(lines))
                self.stream.flush()
            except Exception:
                # Like StreamHandler: a log that cannot be written must not break a request.
                pass

    def close(self) -> None:
        self._closed = True
        self.flush()
        self._waiting.set()
        super().close()

    def _run(self) -> None:
        while not self._closed:
            self._waiting.wait()
            time.sleep(self.flush_after)
            self._waiting.clear()
            self.flush()


_handlers: weakref.WeakSet[BatchingHandler] = weakref.WeakSet()


def flush() -> None:
    """Write the lines every :class:`BatchingHandler` holds.

    uvicorn ends a process stopped by a signal by raising that signal again, so no
    ``atexit`` hook (nor ``logging.shutdown``) runs: the service calls this at shutdown.
    """
    for handler in list(_handlers):
        handler.flush()


# uvicorn's loggers and ours. uvicorn's own access formatter (colours, a copy of every
# record) cost twice as much per request as the stdlib's.
LOG_CONFIG: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "()": "featureflag_server.logs.Formatter",
            "fmt": "%(asctime)s %(levelname)s %(name)s: %(message)s",
        },
    },
    "handlers": {
        "stderr": {"class": "logging.StreamHandler", "formatter": "plain"},
        "access": {"class": "featureflag_server.logs.BatchingHandler", "formatter": "plain"},
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["access"], "level": "INFO", "propagate": False},
        "featureflag": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
