"""Per-request state: the overrides that apply and what was evaluated.

All of it lives in one :class:`contextvars.ContextVar`. A scope is opened per request
(by the middleware, or :func:`request_scope`) or by :func:`overrides`; concurrent
asyncio tasks and threads started with a copied context each see their own.
"""

from __future__ import annotations

import contextvars
import itertools
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

from ._names import check_name
from ._registry import FlagValue, lookup
from .exceptions import OverrideTypeError

DEFAULT_LIMIT = 500

Source = Literal["default", "override"]

Entry = tuple[str, Any, Source, str | None, str | None]
"""One evaluation as a plain tuple, in :class:`Evaluation`'s field order:
``(name, value, source, rejected, service)``. What :meth:`Scope.entries` yields."""

Mark = tuple[int, int]
"""Where a scope's record stood, from :meth:`Scope.mark`; opaque to callers."""


@dataclass(frozen=True, slots=True)
class Evaluation:
    """One flag as the current context evaluated it.

    ``value`` is the last value app code received; ``source`` says whether it came
    from an override; ``rejected`` says why an override was refused (its value never
    reached app code); ``service`` names the downstream service that evaluated it,
    or is None for this process.
    """

    name: str
    value: Any
    source: Source = "default"
    rejected: str | None = None
    service: str | None = None


class _Overridden:
    __slots__ = ("value",)

    def __init__(self, value: FlagValue) -> None:
        self.value = value


# One shared marker per override value (values are few: they come from tokens), so
# a request does not allocate one per evaluation and the report cache
# (``report.scope_report``) can compare markers by identity. Bounded: cleared when full.
_MARKERS_MAX = 1024
_markers: dict[object, _Overridden] = {}


def _overridden(value: FlagValue) -> _Overridden:
    """The shared ``_Overridden`` marker for *value* (same type, equal value)."""
    marker = _markers.get(value)
    # Same type too: True == 1 and a str subclass equals its str, but must keep its type.
    if marker is None or type(marker.value) is not type(value):
        marker = _Overridden(value)
        if len(_markers) >= _MARKERS_MAX:
            _markers.clear()
        _markers[value] = marker
    return marker


class _Rejected:
    __slots__ = ("reason", "value")

    def __init__(self, value: object, reason: str) -> None:
        self.value = value
        self.reason = reason


# The entry types a fingerprint may hold: equal means same report for these (and
# True == 1, an int, never gets in). A _Rejected is a fresh object per evaluation, and
# _Overridden markers are shared per value (see _overridden), so identity works.
_PLAIN = frozenset({bool, str, _Overridden})


class Scope:
    """The state of one request (or one ``overrides`` block outside a request).

    Other modules read it through its methods: :meth:`entries`, :meth:`count`,
    :meth:`evaluations`, :meth:`fingerprint`, :meth:`mark` and :meth:`since`,
    ``used_override`` and ``dropped``; they write through :meth:`observe`, :meth:`use_override`,
    :meth:`reject` and :meth:`add_remote`. The one exception is the hot path of an
    evaluation, which reads ``sink``, ``overrides`` and ``seen`` inline (the code
    ``trap`` generates, and ``intercept``): see ``_trap.py``.

    ``seen`` maps a flag name to the last value app code got: a plain value from the
    default, or an ``_Overridden``/``_Rejected`` marker; dict order is first-evaluation
    order. Nested ``overrides`` blocks share ``seen`` with their parent. The limit is
    applied when ``seen`` is read: the code ``trap`` generates stores without counting
    (a trapped flag is declared in code, so they are finitely many), and only the first
    ``limit`` names are reported; the methods here count before storing.
    """

    __slots__ = (
        "limit",
        "overflow",
        "overridden",
        "overrides",
        "remote",
        "root",
        "seen",
        "sink",
    )

    def __init__(
        self,
        overrides: Mapping[str, object],
        *,
        limit: int = DEFAULT_LIMIT,
        parent: Scope | None = None,
    ) -> None:
        # Never mutated, so a dict is shared, not copied (the middleware passes the
        # cached token's flags on every request).
        self.overrides: Mapping[str, object] = overrides
        # Set when app code receives an override; kept on the root so that nested
        # ``overrides`` blocks report into it (no scan of ``seen`` per response).
        self.overridden = False
        if parent is None:
            # None rather than ``self``: no reference cycle, so a request's scope is
            # freed as soon as the request ends instead of waiting for the collector.
            self.root: Scope | None = None
            self.limit = limit
            self.seen: dict[str, object] = {}
            self.overflow: set[str] = set()
            self.remote: dict[tuple[str, str], Evaluation] = {}
        else:
            self.root = parent if parent.root is None else parent.root
            self.limit = parent.limit
            self.seen = parent.seen
            self.overflow = parent.overflow
            self.remote = parent.remote
        # ``seen`` when nothing here can be overridden (the common scope, opened by
        # ``request_scope()`` or ``overrides({})``), else None: the hot path stores a
        # default's value into it with no other test.
        self.sink: dict[str, object] | None = None if overrides else self.seen

    def record(self, name: str, entry: object) -> None:
        """Store *entry* as the last evaluation of *name*, within the limit."""
        seen = self.seen
        if name in seen or len(seen) < self.limit:
            seen[name] = entry
        else:
            self.overflow.add(name)

    # A default evaluation is recorded like any entry; one method, two names, no extra
    # call for ``intercept`` (the code ``trap`` generates stores inline, see ``sink``).
    observe = record

    def use_override(self, name: str, value: FlagValue) -> None:
        """Record that app code received *value*, the override for flag *name*."""
        self.record(name, _overridden(value))
        root = self.root
        (self if root is None else root).overridden = True

    def reject(self, name: str, value: object, reason: str) -> None:
        """Record that the override for *name* was refused (*reason*); app code got *value*."""
        self.record(name, _Rejected(value, reason))

    def add_remote(self, evaluation: Evaluation) -> None:
        """Merge a flag another service evaluated for this request."""
        key = (evaluation.service or "", evaluation.name)
        if key in self.remote or len(self.seen) + len(self.remote) < self.limit:
            self.remote[key] = evaluation
        else:
            self.overflow.add(evaluation.name)

    @property
    def used_override(self) -> bool:
        """True when app code received at least one override in this scope."""
        root = self if self.root is None else self.root
        if root.overridden:
            return True
        remote = self.remote
        return bool(remote) and any(e.source == "override" for e in remote.values())

    @property
    def dropped(self) -> int:
        """How many distinct flags were evaluated past the limit and not reported."""
        past = self._past_limit()
        if not past:
            return len(self.overflow)
        return len(self.overflow.union(past))

    def _past_limit(self) -> list[str]:
        """Names in ``seen`` past the limit (stored by the trap's hot path, not reported)."""
        seen = self.seen
        return list(seen)[self.limit :] if len(seen) > self.limit else []

    def _stored(self) -> Iterable[tuple[str, object]]:
        """``seen``'s items within the limit."""
        seen = self.seen
        if len(seen) > self.limit:
            return itertools.islice(seen.items(), self.limit)
        return seen.items()

    def count(self) -> int:
        """How many entries :meth:`entries` yields, without building them."""
        return min(len(self.seen), self.limit) + len(self.remote)

    def entries(self) -> Iterator[Entry]:
        """Every evaluation as a plain tuple, cheaper than :meth:`evaluations`.

        This process's flags in first-evaluation order, then those other services
        reported; each once, with the last value app code received.
        """
        for name, entry in self._stored():
            kind = type(entry)
            if kind is _Overridden:
                yield name, entry.value, "override", None, None  # type: ignore[attr-defined]
            elif kind is _Rejected:
                yield name, entry.value, "default", entry.reason, None  # type: ignore[attr-defined]
            else:
                yield name, entry, "default", None, None
        for e in self.remote.values():
            yield e.name, e.value, e.source, e.rejected, e.service

    def evaluations(self) -> list[Evaluation]:
        """:meth:`entries` as :class:`Evaluation` objects."""
        return [Evaluation(*entry) for entry in self.entries()]

    def fingerprint(self, most: int | None = None) -> tuple[tuple[str, object], ...] | None:
        """A hashable record of what was evaluated, for caching what depends on it.

        Two scopes with equal fingerprints evaluated the same flags, in the same order,
        to the same values from the same sources. None when the scope holds what cannot
        be compared cheaply: a refused override, flags from other services, or flags
        past the limit; and when it holds more than *most* flags (what the caller
        would not cache).
        """
        seen = self.seen
        size = len(seen)
        if (
            self.remote
            or self.overflow
            or size > self.limit
            or (most is not None and size > most)
            or not _PLAIN.issuperset(map(type, seen.values()))
        ):
            return None
        return tuple(seen.items())

    def mark(self) -> Mark:
        """Where the record stands now; :meth:`since` lists what came after."""
        return (len(self.seen), len(self.remote))

    def since(self, mark: Mark) -> tuple[str, ...]:
        """Names of the flags first evaluated after *mark* (this process's first).

        Only flags within the limit: those past it are never reported, late or not.
        """
        seen = self.seen
        remote = self.remote
        if len(seen) == mark[0] and len(remote) == mark[1]:
            return ()
        limit = self.limit
        return (
            *list(seen)[min(mark[0], limit) : limit],
            *[e.name for e in list(remote.values())[mark[1] :]],
        )


_current: contextvars.ContextVar[Scope | None] = contextvars.ContextVar(
    "featureflag_scope", default=None
)
# Bound once: the hot path calls this directly.
current_scope = _current.get


class Evaluations(list[Evaluation]):
    """The list :func:`evaluations` returns, with ``dropped``: flags past the limit."""

    dropped: int = 0


def evaluations() -> Evaluations:
    """What the current context evaluated, in first-evaluation order, one entry per flag.

    Empty outside any scope: outside a request nothing is recorded.
    """
    result = Evaluations()
    scope = _current.get()
    if scope is not None:
        result.extend(scope.evaluations())
        result.dropped = scope.dropped
    return result


@contextmanager
def request_scope(
    overrides: Mapping[str, object] | None = None, *, limit: int = DEFAULT_LIMIT
) -> Iterator[Scope]:
    """Open a fresh recording scope with *overrides* (unchecked: they come from a token).

    Frameworks and the middleware open one per request. Overrides of the wrong type
    are not applied; the evaluation records why.
    """
    scope = Scope(dict(overrides or {}), limit=limit)
    token = _current.set(scope)
    try:
        yield scope
    finally:
        _current.reset(token)


class overrides:  # lower case: used like a function, ``with featureflag.overrides(...)``
    """Apply *values* in the current context; a sync and async context manager.

    Inside a scope the block adds to (and wins over) the overrides already there, and
    exit restores them. Outside any scope it opens one that records, so
    :func:`evaluations` inside the block reports what ran. A value that does not fit
    an already-declared flag raises :class:`OverrideTypeError` at once.
    """

    def __init__(self, values: Mapping[str, FlagValue] | None = None, /, **named: FlagValue):
        merged: dict[str, FlagValue] = {**(values or {}), **named}
        for name, value in merged.items():
            check_name(name)
            flag = lookup(name)
            if flag is not None:
                flag.check(value)
            elif not isinstance(value, bool | str):
                raise OverrideTypeError(
                    f"Override for flag {name!r} is {type(value).__name__} {value!r}; "
                    "a flag is bool or str",
                    flag=name,
                )
        self._values = merged
        self._tokens: list[contextvars.Token[Scope | None]] = []

    def __enter__(self) -> Scope:
        parent = _current.get()
        if parent is None:
            scope = Scope(self._values)
        else:
            scope = Scope({**parent.overrides, **self._values}, parent=parent)
        self._tokens.append(_current.set(scope))
        return scope

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _current.reset(self._tokens.pop())

    async def __aenter__(self) -> Scope:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)
