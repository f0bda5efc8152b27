"""The service's log lines: timestamped, through the stdlib's ``StreamHandler`` to stderr.

uvicorn (or granian) writes an access line per request; :data:`LOG_CONFIG` sends its
lines and ours through the stdlib's formatter (uvicorn's own access formatter, with
colours and a copy of every record, cost twice as much per line). :class:`Formatter`
formats the timestamp once a second instead of once per line.
"""

from __future__ import annotations

import logging
import time
from typing import Any

__all__ = ["LOG_CONFIG", "Formatter"]


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


# uvicorn's loggers and ours.
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
    },
    "loggers": {
        "uvicorn": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "uvicorn.error": {"level": "INFO"},
        "uvicorn.access": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "featureflag": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        # featureflag-server --server granian: _granian (its Rust side too) and granian.access.
        "_granian": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
        "granian": {"handlers": ["stderr"], "level": "INFO", "propagate": False},
    },
}
