"""The ``Feature-Flags`` response header: which flags a response evaluated, and how.

An RFC 9651 List: one sf-string per flag (its name) with parameters ``value``
(sf-boolean or sf-string), ``source`` (token ``default`` | ``override``), ``rejected``
(why an override was refused, at most 200 characters) and ``service`` (where the flag
was evaluated, when not in this service)::

    Feature-Flags: "SomeNewFeature.is_released";value;source=override,
                   "new-lp";value="b";source=default

Names and strings that are not ASCII travel as RFC 9651 Display Strings (``%"..."``).
Past the byte budget the list is cut and its last item is ``"featureflag.truncated"``
with an integer ``omitted``. See docs/middleware.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import http_sf

from ._names import is_valid_name
from ._scope import Evaluation, Evaluations, Scope, Source, _Overridden, _Rejected

HEADER = "Feature-Flags"
TRUNCATED = "featureflag.truncated"
DEFAULT_BUDGET = 4096
MAX_REASON = 200
_SEP = ", "


def _printable_ascii(text: str) -> bool:
    return text.isascii() and text.isprintable()


def _string(text: str) -> str:
    """Serialize *text* as an sf-string, or a Display String when it is not ASCII."""
    if _printable_ascii(text):
        # RFC 9651 4.1.6, written out: this runs on every reported flag.
        return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return http_sf.ser(http_sf.DisplayString(text))


# (name, value, overridden, rejected, service): one flag, however it was stored.
_Row = tuple[str, Any, bool, "str | None", "str | None"]


def _item(row: _Row) -> str:
    name, value, overridden, rejected, service = row
    parts = [_string(name)]
    if value is True:
        parts.append(";value")
    elif value is False:
        parts.append(";value=?0")
    elif isinstance(value, str):
        parts.append(";value=" + _string(value))
    parts.append(";source=override" if overridden else ";source=default")
    if rejected is not None:
        parts.append(";rejected=" + _string(rejected[:MAX_REASON]))
    if service is not None:
        parts.append(";service=" + _string(service))
    return "".join(parts)


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
    rows = ((e.name, e.value, e.source == "override", e.rejected, e.service) for e in evaluations)
    return _join(rows, dropped, budget)


def format_scope(scope: Scope, *, budget: int = DEFAULT_BUDGET) -> str:
    """:func:`format_report` of ``scope.evaluations()``, without building them.

    The middleware calls this on every reported response.
    """

    def rows() -> Iterator[_Row]:
        for name, entry in scope.seen.items():
            kind = type(entry)
            if kind is _Overridden:
                yield name, entry.value, True, None, None  # type: ignore[attr-defined]
            elif kind is _Rejected:
                yield name, entry.value, False, entry.reason, None  # type: ignore[attr-defined]
            else:
                yield name, entry, False, None, None
        for e in scope.remote.values():
            yield e.name, e.value, e.source == "override", e.rejected, e.service

    return _join(rows(), scope.dropped, budget)


def _join(rows: Iterable[_Row], dropped: int, budget: int) -> str:
    parts: list[str] = []
    sizes: list[int] = []
    size = 0
    total = 0
    for row in rows:
        total += 1
        if size > budget:
            continue  # only counting from here on
        try:
            text = _item(row)
        except (ValueError, TypeError):
            continue  # a name http-sf cannot carry (never a valid flag name)
        size += len(text) + (len(_SEP) if parts else 0)
        parts.append(text)
        sizes.append(size)
    if size <= budget and len(parts) == total and not dropped:
        return _SEP.join(parts)
    # Cut: drop items from the end until the marker fits (output is ASCII: chars = bytes).
    while parts and sizes[-1] > budget - len(_SEP) - len(_marker(total - len(parts) + dropped)):
        parts.pop()
        sizes.pop()
    parts.append(_marker(total - len(parts) + dropped))
    return _SEP.join(parts)


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
    assert isinstance(parsed, list)
    for member in parsed:
        if not isinstance(member, tuple) or isinstance(member[0], list):
            continue
        bare, params = member
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
