"""A new fork's form prefilled from a link: ``/forks/new?flag.<flag name>=<JSON literal>``.

The extension's "save these overrides as a fork" opens such a link (docs/forks.md, "From
a link"). Each ``flag.<flag name>`` parameter gives one flag: ``true``/``false`` a
boolean row, a JSON string a string row (a quoted ``"true"`` is text on purpose, so its
"store the text" box comes ticked); ``name`` and ``upstream`` fill those fields; any
other parameter is ignored. What a link gets wrong becomes the form's errors, never an
exception: the page shows the form with every reason (the caller also has the forks
layer check the flags against the catalog, as for a POST).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from featureflag.tokens import MAX_FLAGS

from .web_forms import FlagRow, ForkForm, looks_boolean

FLAG_PREFIX = "flag."
FIELDS = ("name", "upstream")


def form_from_link(catalog: list[dict[str, Any]], params: Iterable[tuple[str, str]]) -> ForkForm:
    """The new fork form for a link's query *params* (in their order)."""
    form = ForkForm.blank(catalog)
    form.rows.pop()  # the empty "another flag" row comes back last
    by_name = {row.name: row for row in form.rows}
    seen: set[str] = set()
    for key, raw in params:
        if key in FIELDS:
            setattr(form, key, raw.strip())
            continue
        if not key.startswith(FLAG_PREFIX):
            continue
        name = key.removeprefix(FLAG_PREFIX)
        if not name:
            form.errors[key] = "names no flag: write flag.<flag name>=<JSON value>"
            continue
        if name in seen:
            form.errors[key] = "appears twice in the link; the first value is kept"
            continue
        if len(seen) >= MAX_FLAGS:
            form.errors["link"] = f"more than {MAX_FLAGS} flags; the rest were left out"
            break
        seen.add(name)
        row = by_name.get(name)
        if row is None:
            # Not in the catalog: an "another flag" row, its name editable.
            row = FlagRow(len(form.rows), name, None, known=False, added=True)
            form.rows.append(row)
        _link_value(row, raw)
    form.rows.append(FlagRow(len(form.rows), "", None, known=False, added=True))
    if any(row.error for row in form.rows):
        form.errors["flags"] = "; ".join(form.row_errors)
    return form


def _link_value(row: FlagRow, raw: str) -> None:
    """Set *row* from a link's JSON literal; a bad one is the row's error."""
    row.set = True
    try:
        value = json.loads(raw)
    except ValueError:
        row.value = raw
        row.error = (
            f"the link's value {raw[:60]!r} is not JSON: write true, false or a quoted "
            'string such as "b"'
        )
        return
    if isinstance(value, bool):
        row.value, row.type_choice = value, "bool"
    elif isinstance(value, str):
        # JSON says string: "true" in quotes is text on purpose (ticked, in view).
        row.value, row.type_choice = value, "str"
        row.as_text = looks_boolean(value)
    else:
        row.value = raw
        kinds = {int: "a number", float: "a number", list: "an array", dict: "an object"}
        kind = kinds.get(type(value), "null")
        row.error = (
            f"the link's value {raw[:60]} is {kind}; a flag is true, false or a string "
            f'(write "{raw[:60]}" for the text)'
        )
