"""A clock tests set by hand: inject it where tokens read the time (``clock=``)."""

from __future__ import annotations


class Clock:
    """Returns ``now`` (epoch seconds); tests move time with ``clock.now += 3600``."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
