"""featureflag_server/logs.py: the service's log lines, timestamped and written in batches."""

from __future__ import annotations

import io
import logging
import time
from collections.abc import Iterator

import pytest

from featureflag_server import logs
from featureflag_server.logs import BatchingHandler, Formatter

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


@pytest.fixture
def stream() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def handler(stream: io.StringIO) -> Iterator[BatchingHandler]:
    handler = BatchingHandler(stream, flush_after=3600, flush_at=140)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    yield handler
    handler.close()


def test_lines_are_gathered_then_written_together(
    handler: BatchingHandler, stream: io.StringIO
) -> None:
    handler.handle(record("one"))
    handler.handle(record("two"))
    assert stream.getvalue() == ""
    handler.flush()
    assert stream.getvalue() == "INFO one\nINFO two\n"


def test_a_warning_writes_everything_at_once_in_order(
    handler: BatchingHandler, stream: io.StringIO
) -> None:
    handler.handle(record("before"))
    handler.handle(record("trouble", level=logging.WARNING))
    assert stream.getvalue() == "INFO before\nWARNING trouble\n"


def test_flush_at_characters_write_at_once(handler: BatchingHandler, stream: io.StringIO) -> None:
    for i in range(9):
        handler.handle(record(f"line {i:03d}"))  # 14 characters each
    assert stream.getvalue() == ""
    handler.handle(record("line 009"))
    assert stream.getvalue().count("\n") == 10


def test_close_writes_what_is_left(handler: BatchingHandler, stream: io.StringIO) -> None:
    handler.handle(record("last"))
    handler.close()
    assert stream.getvalue() == "INFO last\n"


def test_flush_writes_what_every_handler_holds(stream: io.StringIO) -> None:
    handlers = [BatchingHandler(stream, flush_after=3600) for _ in range(2)]
    try:
        for i, handler in enumerate(handlers):
            handler.setFormatter(logging.Formatter("%(message)s"))
            handler.handle(record(f"line {i}"))
        assert stream.getvalue() == ""
        logs.flush()
        assert sorted(stream.getvalue().splitlines()) == ["line 0", "line 1"]
    finally:
        for handler in handlers:
            handler.close()


def test_a_waiting_line_is_written_without_another_record(stream: io.StringIO) -> None:
    handler = BatchingHandler(stream, flush_after=0.01)
    handler.setFormatter(logging.Formatter("%(message)s"))
    try:
        handler.handle(record("alone"))
        deadline = time.monotonic() + 10  # a liveness guard, not a timing assertion
        while not stream.getvalue() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert stream.getvalue() == "alone\n"
        handler.handle(record("again"))  # the thread waits for the next line too
        deadline = time.monotonic() + 10
        while stream.getvalue() == "alone\n" and time.monotonic() < deadline:
            time.sleep(0.005)
        assert stream.getvalue() == "alone\nagain\n"
    finally:
        handler.close()


def test_a_stream_that_fails_does_not_break_the_caller(handler: BatchingHandler) -> None:
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    handler.stream = Broken()
    handler.handle(record("lost"))
    handler.flush()  # no exception
