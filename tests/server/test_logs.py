"""server/featureflag_server/logs.py: the service's log lines, timestamped."""

from __future__ import annotations

import logging

import pytest

from featureflag_server import logs
from featureflag_server.logs import Formatter

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def record(
    message: str, created: float | None = None, level: int = logging.INFO
) -> logging.LogRecord:
    made = logging.LogRecord("uvicorn.access", level, __file__, 1, message, None, None)
    if created is not None:
        made.created = created
        made.msecs = (created - int(created)) * 1000
    return made


@pytest.mark.parametrize(
    "times",
    [
        [1_790_000_000.0, 1_790_000_000.5, 1_790_000_000.999],
        [1_790_000_000.999, 1_790_000_001.0, 1_790_000_061.25, 1_790_000_000.5],
    ],
)
def test_formatter_gives_the_stdlib_formatters_lines(times: list[float]) -> None:
    ours, stdlib = Formatter(FORMAT), logging.Formatter(FORMAT)
    for created in times:
        line = record("GET /", created)
        assert ours.format(line) == stdlib.format(line)


def test_formatter_honours_a_date_format() -> None:
    line = record("x", 1_790_000_000.25)
    assert Formatter().formatTime(line, "%Y") == logging.Formatter().formatTime(line, "%Y")


def test_access_lines_go_through_the_stdlib_handler_with_the_timestamped_formatter() -> None:
    # uvicorn's access lines and ours: plain StreamHandlers to stderr, each line written
    # as it comes (no batching of our own), formatted by Formatter.
    config = logs.LOG_CONFIG
    handler = config["handlers"][config["loggers"]["uvicorn.access"]["handlers"][0]]
    assert handler["class"] == "logging.StreamHandler"
    assert config["formatters"][handler["formatter"]]["()"] == "featureflag_server.logs.Formatter"
