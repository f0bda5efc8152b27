"""The fork form of the web page: rows with type-aware inputs, parsed back into flags.

Each flag is one row. A boolean is a select (default / true / false), a string with
``Literal`` choices a select of those choices, any other string a checkbox ("override")
and a text field. A flag the catalog does not know (set through the API, or an
``intercept`` flag whose type is not known yet) keeps its row with a type select, and
one empty row adds a flag by name. Select values carry a ``v:`` prefix so that "not
set" (the empty value) can never collide with a choice.

A type select offers ``auto`` (``true``/``false`` store a boolean, anything else a
string: the default for a new row), ``string`` and ``boolean``. Choosing ``string`` for
the text ``true`` or ``false`` is refused until the row's "store the text" box is ticked
(front-end flags are never in the catalog, and the string ``"true"`` is falsy to nobody
but reads as "off" to ``useBoolFlag``). A re-rendered form keeps every choice: each
row's name, type, value and boxes, and the fields above the rows.

``/forks/new`` can also be prefilled from a link: :mod:`featureflag_server.web_links`.

Labels are a text area of ``key=value`` lines, and the expiry one text field: a
duration (``90m``, ``8h``, ``3d``) or an ISO 8601 time; empty for never.

This module reads the form's own syntax only; what a fork may be (its name, upstream,
flag values, labels, expiry) is :mod:`featureflag_server.forks`'s to say, as for the API.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .forks import ForkSpec
from .store import FlagValue, Fork

_ROW = re.compile(r"^flag-(\d{1,4})-name$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
EXPIRES_HINT = "a duration such as 90m, 8h or 3d, or a time such as 2026-12-31T18:00Z"
# The type select of a row the catalog gives no type: (value, label), the first the default.
TYPE_OPTIONS = (
    ("auto", "auto: true/false → boolean, else string"),
    ("str", "string"),
    ("bool", "boolean"),
)
_TYPES = {value for value, _ in TYPE_OPTIONS}
TYPE_LABELS = {"bool": "boolean", "str": "string"}


def looks_boolean(text: str) -> bool:
    """Whether *text* reads as a boolean (what ``auto`` stores as one)."""
    return text.strip().lower() in ("true", "false")


@dataclass
class FlagRow:
    """One flag in the form: what the catalog says about it and what the user chose."""

    index: int
    name: str
    type: str | None  # "bool", "str" or None (unknown: the row offers a type select)
    choices: list[str] | None = None
    default: FlagValue | None = None
    description: str | None = None
    where: str = ""
    known: bool = True  # in the catalog
    set: bool = False
    value: FlagValue | None = None
    error: str | None = None
    # For rows without a catalog type: the type select's choice ("auto", "str", "bool"),
    # and whether the user confirmed storing the text "true"/"false" as a string.
    type_choice: str = "auto"
    as_text: bool = False
    added: bool = False  # the "another flag" row: its name stays editable

    @property
    def select_value(self) -> str:
        """The selected option of a bool/choices select (``""`` when not set)."""
        if not self.set or self.value is None:
            return ""
        if isinstance(self.value, bool):
            return "v:true" if self.value else "v:false"
        return "v:" + self.value

    @property
    def stale(self) -> bool:
        """The fork's value is not among the select's options (the catalog changed since).

        The form then shows it as an extra, selected option, so saving without a choice
        is refused with the reason instead of silently dropping the override.
        """
        if not self.set or self.value is None:
            return False
        if self.type == "bool":
            return not isinstance(self.value, bool)
        if self.type == "str" and self.choices is not None:
            return self.value not in self.choices
        return False

    @property
    def text_value(self) -> str:
        """The text field's value: what the user typed, ticked or not."""
        if self.value is None:
            return ""
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return self.value

    @property
    def asks_text(self) -> bool:
        """Whether the row shows "store the text": a string chosen for true/false."""
        return self.type is None and self.type_choice == "str" and looks_boolean(self.text_value)

    @property
    def type_label(self) -> str:
        """The catalog's type in words (rows without one show the type select)."""
        if self.type == "str" and self.choices is not None:
            return "string, one of the choices"
        return TYPE_LABELS.get(self.type or "", "")


@dataclass
class ForkForm:
    """The fork form's fields, its rows and its errors (field name → message)."""

    name: str = ""
    upstream: str = ""
    rows: list[FlagRow] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    labels_text: str = ""
    expires: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    ttl: float | None = None
    expires_at: str | None = None

    @classmethod
    def blank(cls, catalog: list[dict[str, Any]]) -> ForkForm:
        return cls(rows=[*_catalog_rows(catalog, {}), _new_row(len(catalog))])

    @classmethod
    def from_fork(cls, fork: Fork, catalog: list[dict[str, Any]]) -> ForkForm:
        rows = _catalog_rows(catalog, fork.flags)
        known = {row.name for row in rows}
        for name, value in sorted(fork.flags.items()):
            if name not in known:
                row = FlagRow(len(rows), name, None, known=False)
                _stored(row, value)
                rows.append(row)
        rows.append(_new_row(len(rows)))
        labels = "\n".join(f"{key}={value}" for key, value in sorted(fork.labels.items()))
        expires = fork.expires_at.strftime("%Y-%m-%dT%H:%M:%SZ") if fork.expires_at else ""
        return cls(
            name=fork.name, upstream=fork.upstream, rows=rows, labels_text=labels, expires=expires
        )

    def flags(self) -> dict[str, FlagValue]:
        return {r.name: r.value for r in self.rows if r.set and r.value is not None and r.name}

    def spec(self, routes: Mapping[str, str] | None = None) -> ForkSpec:
        """What the form asks for; *routes* (not on the form) are the fork's own."""
        return ForkSpec(
            upstream=self.upstream,
            flags=self.flags(),
            labels=self.labels,
            routes=dict(routes or {}),
            expires_at=self.expires_at,
            ttl=self.ttl,
        )

    def add_problem(self, field_name: str, rule: str) -> None:
        """Show a rule the forks layer says was broken: beside its flag row, if any."""
        if field_name in ("ttl", "expires_at"):
            field_name = "expires"
        elif field_name.startswith("labels."):
            rule = f"{field_name.removeprefix('labels.')}: {rule}"
            field_name = "labels"
        if field_name.startswith("flags."):
            flag = field_name.removeprefix("flags.")
            for row in self.rows:
                if row.name == flag and not row.error:
                    row.error = rule
        self.errors.setdefault(field_name, rule)

    @property
    def row_errors(self) -> list[str]:
        return [f"{row.name or 'New flag'}: {row.error}" for row in self.rows if row.error]


def _new_row(index: int) -> FlagRow:
    return FlagRow(index, "", None, known=False, added=True)


def _stored(row: FlagRow, value: FlagValue) -> None:
    """Set *row* to a fork's stored *value*; a row without a catalog type says the stored
    type explicitly, and text that reads as a boolean was stored as text on purpose (it
    shows ticked, for a second look)."""
    row.set, row.value = True, value
    row.type_choice = "bool" if isinstance(value, bool) else "str"
    row.as_text = isinstance(value, str) and looks_boolean(value)


def catalog_rows(catalog: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Catalog entries as the index page shows them."""
    shown = []
    for entry in catalog:
        where = entry.get("path") or ""
        if where and entry.get("line"):
            where = f"{where}:{entry['line']}"
        shown.append(
            {
                **entry,
                "where": entry.get("module") or where,
                "file": where,
                "service": entry.get("service"),
            }
        )
    return shown


def _catalog_rows(catalog: list[dict[str, Any]], values: Mapping[str, FlagValue]) -> list[FlagRow]:
    rows: list[FlagRow] = []
    for entry in catalog:
        name = str(entry.get("name", ""))
        flag_type = entry.get("type")
        choices = entry.get("choices")
        row = FlagRow(
            len(rows),
            name,
            flag_type if flag_type in ("bool", "str") else None,
            choices=list(choices) if isinstance(choices, list) else None,
            default=entry.get("default"),
            description=entry.get("description"),
            where=str(entry.get("module") or ""),
        )
        if name in values:
            _stored(row, values[name])
        rows.append(row)
    return rows


def parse_fork_form(
    form: Mapping[str, Any],
    catalog: list[dict[str, Any]],
    *,
    name: str | None,
) -> ForkForm:
    """Read a POSTed fork form; *name* is the fork being edited (None: a new fork)."""

    def text(key: str) -> str:
        value = form.get(key)
        return value.strip() if isinstance(value, str) else ""

    by_name = {str(e.get("name")): e for e in catalog}
    result = ForkForm(
        name=name if name is not None else text("name"),
        upstream=text("upstream"),
        labels_text=text("labels"),
        expires=text("expires"),
    )
    _read_labels(result)
    _read_expiry(result)

    indexes = sorted({int(m.group(1)) for key in form if (m := _ROW.match(key))})
    seen: set[str] = set()
    for index in indexes:
        prefix = f"flag-{index}-"
        flag_name = text(prefix + "name")
        entry = by_name.get(flag_name)
        flag_type = entry.get("type") if entry else None
        if flag_type not in ("bool", "str"):
            flag_type = None
        choices = entry.get("choices") if entry else None
        row = FlagRow(
            len(result.rows),
            flag_name,
            flag_type,
            choices=list(choices) if isinstance(choices, list) else None,
            default=entry.get("default") if entry else None,
            description=entry.get("description") if entry else None,
            where=str(entry.get("module") or "") if entry else "",
            known=entry is not None,
        )
        row.added = form.get(prefix + "added") is not None
        result.rows.append(row)
        _read_row(row, form, prefix)
        if not row.name:
            row.set = False  # the empty "add a flag" row
            continue
        if row.name in seen:
            row.error = "this flag appears twice in the form"
        seen.add(row.name)
    if not any(not row.known and not row.name for row in result.rows):
        result.rows.append(_new_row(len(result.rows)))
    if any(row.error for row in result.rows):
        result.errors["flags"] = "; ".join(result.row_errors)
    return result


def _read_labels(result: ForkForm) -> None:
    for number, line in enumerate(result.labels_text.splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip()
        if not sep or not key:
            result.errors["labels"] = f"line {number}: write one key=value per line"
            return
        if key in result.labels:
            result.errors["labels"] = f"line {number}: the key {key!r} appears twice"
            return
        result.labels[key] = value.strip()


def _read_expiry(result: ForkForm) -> None:
    text = result.expires
    if not text:
        return
    duration = _DURATION.fullmatch(text.lower())
    if duration is not None:
        result.ttl = float(duration.group(1)) * _UNIT[duration.group(2)]
    elif text[:1].isdigit() and ("-" in text or "T" in text):
        result.expires_at = text  # the forks layer reads and checks the time
    else:
        result.errors["expires"] = f"write {EXPIRES_HINT}; leave it empty for never"


def _read_row(row: FlagRow, form: Mapping[str, Any], prefix: str) -> None:
    raw = form.get(prefix + "value")
    raw = raw if isinstance(raw, str) else ""
    if row.type == "bool" or (row.type == "str" and row.choices is not None):
        # A select: "" is "not set", anything else is "v:<value>".
        if raw == "":
            return
        if not raw.startswith("v:"):
            row.error = "choose a value from the list"
            return
        chosen = raw[2:]
        row.set = True
        if row.type == "bool":
            if chosen not in ("true", "false"):
                row.value, row.error = chosen, "a boolean flag is true or false"
                return
            row.value = chosen == "true"
        else:
            row.value = chosen  # the forks layer checks it is one of the choices
        return
    row.set = form.get(prefix + "set") is not None
    if row.type is None:
        # Not in the catalog (or its type is unknown): the row's own type select
        # decides; kept as chosen whatever else happens to the row.
        choice = form.get(prefix + "type")
        row.type_choice = choice if isinstance(choice, str) and choice in _TYPES else "auto"
        # (the box only shows, and so only counts, for a string that reads as a boolean)
        ticked = form.get(prefix + "text") is not None
        row.as_text = ticked and row.type_choice == "str" and looks_boolean(raw)
        if isinstance(choice, str) and choice not in _TYPES and row.set:
            row.value, row.error = raw, "choose a type from the list"
            return
    if not row.set:
        row.value = raw or None
        return
    if row.type == "str":
        row.value = raw
        return
    kind = row.type_choice
    if kind == "auto":
        kind = "bool" if looks_boolean(raw) else "str"
    if kind == "bool":
        if not looks_boolean(raw):
            row.value, row.error = raw, "a boolean flag is true or false"
            return
        row.value = raw.strip().lower() == "true"
        return
    row.value = raw
    if row.type_choice == "str" and looks_boolean(raw) and not row.as_text:
        text = raw.strip()
        row.error = (
            f'"string" is chosen, so this stores the text "{text}", not the boolean '
            f'{text.lower()}: tick "store the text" to confirm, or choose boolean or auto'
        )
