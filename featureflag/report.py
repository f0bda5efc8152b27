"""The ``Feature-Flags`` response header: which flags a response evaluated, and how.

An RFC 9651 List: one sf-string per flag (its name) with parameters ``value``
(sf-boolean or sf-string), ``source`` (token ``default`` | ``override``), ``rejected``
(why an override was refused, at most 200 characters) and ``service`` (where the flag
was evaluated, when not in this service)::

    Feature-Flags: "SomeNewFeature.is_released";value;source=override,
                   "new-lp";value="b";source=default

Names and strings that are not ASCII travel as RFC 9651 Display Strings (``%"..."``).
Past the byte budget the list is cut and its last item is ``"featureflag.truncated"``
with an integer ``omitted``. A routed service (docs/propagation.md) is an sf-token
item ``route`` with ``service`` and ``url``, plus ``rejected`` when the app refused to
follow it; parsers that predate it skip it, as they skip every item that is not a
string. See docs/middleware.md.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Any

import http_sf

from ._names import is_valid_name
from ._scope import Evaluation, Evaluations, Scope, Source
from .headers import ROUTE, TRUNCATED

DEFAULT_BUDGET = 4096
MAX_REASON = 200
_SEP = ", "


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


@functools.lru_cache(maxsize=4096)  # names and variants repeat on every request
def _string(text: str) -> str:
    """Serialize *text* as an sf-string, or a Display String when it is not ASCII."""
    if _printable_ascii(text):
        # RFC 9651 4.1.6, written out: this runs on every reported flag.
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return http_sf.ser(http_sf.DisplayString(text))


def _item(
    name: str,
    value: Any,
    source: Source,
    rejected: str | None = None,
    service: str | None = None,
) -> str | None:
    """One List member, or None when it cannot be written (a lone surrogate, say)."""
    try:
        text = _string(name)
        if value is True:
            text += ";value"
        elif value is False:
            text += ";value=?0"
        elif isinstance(value, str):
            text += ";value=" + _string(value)
        text += ";source=override" if source == "override" else ";source=default"
        if rejected is not None:
            text += ";rejected=" + _string(rejected[:MAX_REASON])
        if service is not None:
            text += ";service=" + _string(service)
    except (ValueError, TypeError):
        return None
    return text


def _route_item(service: str | None, url: object, rejected: str | None) -> str | None:
    """The ``route`` List member of a :data:`ROUTE` evaluation."""
    try:
        text = "route;service=" + _string(str(service))
        if isinstance(url, str):
            text += ";url=" + _string(url[:MAX_REASON])
        if rejected is not None:
            text += ";rejected=" + _string(rejected[:MAX_REASON])
    except (ValueError, TypeError):
        return None
    return text


def _entry_item(
    name: str, value: Any, source: Source, rejected: str | None, service: str | None
) -> str | None:
    """One List member for one :meth:`Scope.entries` tuple (a flag, or a route)."""
    if name == ROUTE:
        return _route_item(service, value, rejected)
    return _item(name, value, source, rejected, service)


def _marker(omitted: int) -> str:
    return f'"{TRUNCATED}";omitted={omitted}'


def format_report(
    evaluations: Iterable[Evaluation], *, dropped: int = 0, budget: int = DEFAULT_BUDGET
) -> str:
    """Serialize *evaluations* as a ``Feature-Flags`` value of at most *budget* bytes.

    *dropped* counts flags already left out upstream (the scope's limit); they are
    announced by the truncation marker too. Returns "" when there is nothing to say
    (an empty List is sent as no header at all).
    """
    listed = list(evaluations)
    items = (_entry_item(e.name, e.value, e.source, e.rejected, e.service) for e in listed)
    return _fit(items, len(listed) + dropped, dropped, budget)


def format_scope(scope: Scope, *, budget: int = DEFAULT_BUDGET) -> str:
    """:func:`format_report` of ``scope.evaluations()``, without building them.

    The middleware calls this on every reported response.
    """
    dropped = scope.dropped
    items = (_entry_item(*entry) for entry in scope.entries())
    return _fit(items, scope.count() + dropped, dropped, budget)


# The report of a scope, by what it evaluated: requests with the same token running
# the same code evaluate the same flags to the same values, so the header is the same.
_REPORTS_MAX = 256
_reports: dict[tuple[int, tuple[tuple[str, object], ...]], bytes] = {}
# In a report only as the truncation marker: inside an sf-string the quote is escaped.
_CUT = f'"{TRUNCATED}";omitted='
# The shortest item a report can hold: a route with an empty service name (a flag
# takes at least '"a";source=default').
_SHORTEST = len('route;service=""')


def scope_report(scope: Scope, *, budget: int = DEFAULT_BUDGET) -> bytes:
    """:func:`format_scope` as header bytes, from a small cache when possible.

    Cached only when the scope has a :meth:`~featureflag._scope.Scope.fingerprint`
    (plain bools and strings, overrides; nothing refused, remote or dropped); the key is
    the budget and that fingerprint. Only complete reports are kept, so a key holds no
    more text than its report: the cache stays within 256 budgets or so. A scope with
    too many entries for any report of them to fit is not looked up at all.
    """
    # Every item takes at least _SHORTEST characters and all but one a separator: past
    # this many the report is cut for sure, so it would not be cached; no key is built.
    fingerprint = scope.fingerprint((budget + len(_SEP)) // (_SHORTEST + len(_SEP)))
    if fingerprint is not None:
        key = (budget, fingerprint)
        cached = _reports.get(key)
        if cached is None:
            value = format_scope(scope, budget=budget)
            cached = value.encode("ascii")
            if _CUT not in value:
                if len(_reports) >= _REPORTS_MAX:
                    _reports.clear()
                _reports[key] = cached
        return cached
    return format_scope(scope, budget=budget).encode("ascii")


def _fit(items: Iterator[str | None], total: int, dropped: int, budget: int) -> str:
    """Join *items*; past *budget*, cut and end with the truncation marker.

    *total* counts the items and the *dropped* flags left out before them; an item that
    is None (it could not be written) is left out too. Items are formatted as they are
    drawn, and no further than the budget: past it, the marker's count comes from
    *total* (a request that evaluated 500 flags formats the ~90 that fit, not 500).
    """
    parts: list[str] = []
    size = -len(_SEP)  # of the parts joined; the output is ASCII: chars = bytes
    whole = not dropped
    for item in items:
        if item is None:
            whole = False
            continue
        parts.append(item)
        size += len(_SEP) + len(item)
        if size > budget:
            whole = False
            break
    if whole:
        return _SEP.join(parts)
    size = -len(_SEP)
    kept = 0
    for part in parts:
        grown = size + len(_SEP) + len(part)
        if grown + len(_SEP) + len(_marker(total - kept - 1)) > budget:
            break
        size = grown
        kept += 1
    return _SEP.join([*parts[:kept], _marker(total - kept)])


def parse_report(value: str, *, service: str | None = None) -> list[Evaluation]:
    """Read a ``Feature-Flags`` value, e.g. from a downstream response.

    Lenient: a garbled header gives ``[]``, unknown parameters are ignored, items that
    are not flags are skipped. Each evaluation gets *service* unless it names its own.
    The result's ``dropped`` counts what the sender's truncation marker said it omitted.
    """
    result = Evaluations()
    try:
        parsed = http_sf.parse(value.encode("latin-1"), tltype="list")
    except Exception:
        return result
    if not isinstance(parsed, list):  # http_sf honours tltype; lenient all the same
        return result
    for member in parsed:
        if not isinstance(member, tuple) or isinstance(member[0], list):
            continue
        bare, params = member
        if isinstance(bare, http_sf.Token) and str(bare) == "route":
            route = _parse_route(params)
            if route is not None:
                result.append(route)
            continue
        name = str(bare) if isinstance(bare, str | http_sf.DisplayString) else None
        omitted = params.get("omitted")
        if name == TRUNCATED and isinstance(omitted, int) and not isinstance(omitted, bool):
            result.dropped += max(0, omitted)
            continue
        if name is None or not is_valid_name(name):
            continue
        raw = params.get("value")
        flag_value: bool | str | None
        if isinstance(raw, bool):
            flag_value = raw
        elif isinstance(raw, str | http_sf.DisplayString):
            flag_value = str(raw)
        else:
            flag_value = None
        source: Source = "override" if str(params.get("source")) == "override" else "default"
        rejected = params.get("rejected")
        own = params.get("service")
        result.append(
            Evaluation(
                name,
                flag_value,
                source,
                str(rejected) if isinstance(rejected, str | http_sf.DisplayString) else None,
                str(own) if isinstance(own, str | http_sf.DisplayString) else service,
            )
        )
    return result


def _parse_route(params: dict[str, Any]) -> Evaluation | None:
    """A ``route`` item as a :data:`ROUTE` evaluation (None without a service)."""
    service, url, rejected = params.get("service"), params.get("url"), params.get("rejected")
    if not isinstance(service, str | http_sf.DisplayString) or not str(service):
        return None
    reason = (
        str(rejected)[:MAX_REASON] if isinstance(rejected, str | http_sf.DisplayString) else None
    )
    return Evaluation(
        ROUTE,
        str(url) if isinstance(url, str | http_sf.DisplayString) else None,
        "default" if reason is not None else "override",  # followed: the token's doing
        reason,
        str(service),
    )
