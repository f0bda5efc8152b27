"""The fork form of the web page: rows with type-aware inputs, parsed back into flags.

Each flag is one row. A boolean is a select (default / true / false), a string with
``Literal`` choices a select of those choices, any other string a checkbox ("override")
and a text field. A flag the catalog does not know (set through the API, or an
``intercept`` flag whose type is not known yet) keeps its row with a type select, and
one empty row adds a flag by name. Select values carry a ``v:`` prefix so that "not
set" (the empty value) can never collide with a choice.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from featureflag._names import NAME_RULE, is_valid_name

from .schemas import MAX_FLAGS, upstream_problem
from .store import FlagValue, Fork, fork_name_problem

_ROW = re.compile(r"^flag-(\d{1,4})-name$")


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
        if not self.set or self.value is None:
            return ""
        if isinstance(self.value, bool):
            return "true" if self.value else "false"
        return self.value

    @property
    def value_type(self) -> str:
        """For rows without a catalog type: the type select's current choice."""
        return "bool" if isinstance(self.value, bool) else "str"


@dataclass
class ForkForm:
    """The fork form's fields, its rows and its errors (field name → message)."""

    name: str = ""
    upstream: str = ""
    rows: list[FlagRow] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def blank(cls, catalog: list[dict[str, Any]]) -> ForkForm:
        return cls(rows=[*_catalog_rows(catalog, {}), _new_row(len(catalog))])

    @classmethod
    def from_fork(cls, fork: Fork, catalog: list[dict[str, Any]]) -> ForkForm:
        rows = _catalog_rows(catalog, fork.flags)
        known = {row.name for row in rows}
        for name, value in sorted(fork.flags.items()):
            if name not in known:
                rows.append(FlagRow(len(rows), name, None, known=False, set=True, value=value))
        rows.append(_new_row(len(rows)))
        return cls(name=fork.name, upstream=fork.upstream, rows=rows)

    def flags(self) -> dict[str, FlagValue]:
        return {r.name: r.value for r in self.rows if r.set and r.value is not None and r.name}

    @property
    def row_errors(self) -> list[str]:
        return [f"{row.name or 'New flag'}: {row.error}" for row in self.rows if row.error]


def _new_row(index: int) -> FlagRow:
    return FlagRow(index, "", None, known=False)


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
            row.set, row.value = True, values[name]
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
    result = ForkForm(name=name if name is not None else text("name"), upstream=text("upstream"))
    if name is None:
        problem = fork_name_problem(result.name)
        if problem is not None:
            result.errors["name"] = problem
    problem = upstream_problem(result.upstream)
    if problem is not None:
        result.errors["upstream"] = problem

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
        result.rows.append(row)
        _read_row(row, form, prefix)
        if not row.name:
            row.set = False  # the empty "add a flag" row
            continue
        if not is_valid_name(row.name):
            row.error = f"{NAME_RULE}"
        elif row.name in seen:
            row.error = "this flag appears twice in the form"
        seen.add(row.name)
    if not any(not row.known and not row.name for row in result.rows):
        result.rows.append(_new_row(len(result.rows)))
    if len(result.flags()) > MAX_FLAGS:
        result.errors["flags"] = f"a fork overrides at most {MAX_FLAGS} flags"
    if any(row.error for row in result.rows):
        result.errors["flags"] = "; ".join(result.row_errors)
    return result


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
            row.value = chosen
            if row.choices is not None and chosen not in row.choices:
                allowed = ", ".join(repr(c) for c in row.choices)
                row.error = f"this flag accepts only {allowed}"
        return
    row.set = form.get(prefix + "set") is not None
    if not row.set:
        row.value = raw or None
        return
    if row.type == "str":
        row.value = raw
        return
    # Not in the catalog (or its type is unknown): the row's own type select decides.
    value_type = form.get(prefix + "type")
    if value_type == "bool":
        if raw.lower() not in ("true", "false"):
            row.value, row.error = raw, "a boolean flag is true or false"
            return
        row.value = raw.lower() == "true"
    else:
        row.value = raw
