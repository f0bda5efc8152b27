"""Strings that can be written out: lone surrogates refused on the way in, replaced on the
way out.

JSON may carry ``"\\ud800"`` (an escape of half a UTF-16 pair) and ``json.loads`` turns it
into a Python string that cannot be encoded as UTF-8; so can a form field decoded with
``surrogateescape``. Such a string stored in a fork or the catalog would break every
response that shows it. :func:`surrogate_problems` finds them in a request's input (a
422 names the field); :func:`scrub` is the defence in depth for data stored before this
check existed (it shows U+FFFD instead of failing the page).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from .errors import FieldProblem

_SURROGATE = re.compile("[\ud800-\udfff]")
SURROGATE_RULE = (
    "the text has a lone UTF-16 surrogate (such as \\ud800), which is not a character; "
    "send valid Unicode"
)


# In a JSON body's bytes, a surrogate is an escape \uD800-\uDFFF, or the bytes ED A0-BF
# (which json.loads decodes with surrogatepass). Without either there is none to find.
# (Two patterns: one alternation scans 8x slower.)
_JSON_SURROGATE = (re.compile(rb"\\u[dD][89a-fA-F]"), re.compile(rb"\xed[\xa0-\xbf]"))


def may_hold_surrogate(body: bytes) -> bool:
    """False when the JSON text *body* cannot decode to a string with a surrogate (a fast
    test on the bytes; True means :func:`surrogate_problems` must look)."""
    if json.detect_encoding(body) != "utf-8":
        return True  # UTF-16 or -32 (json.loads takes them): no shortcut
    return any(pattern.search(body) is not None for pattern in _JSON_SURROGATE)


def has_surrogate(text: str) -> bool:
    """Whether *text* holds a lone surrogate (cannot be encoded as UTF-8)."""
    return _SURROGATE.search(text) is not None


def surrogate_problems(value: Any, path: str = "") -> list[FieldProblem]:
    """Every field of a parsed JSON *value* (keys too) holding a lone surrogate, by dotted
    path (``flags.x``; a bad key is its object's problem)."""
    problems: list[FieldProblem] = []
    stack: list[tuple[Any, str]] = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if has_surrogate(item):
                problems.append(FieldProblem(where or "body", SURROGATE_RULE))
        elif isinstance(item, Mapping):
            for key, child in item.items():
                key_text = str(key)
                if has_surrogate(key_text):
                    problems.append(FieldProblem(where or "body", SURROGATE_RULE))
                    continue
                stack.append((child, f"{where}.{key_text}" if where else key_text))
        elif isinstance(item, list):
            for i, child in enumerate(item):
                stack.append((child, f"{where}.{i}" if where else str(i)))
    problems.sort(key=lambda p: p.field)
    return problems


def scrub(text: str) -> str:
    """*text* with each lone surrogate replaced by U+FFFD (so it can be encoded)."""
    return _SURROGATE.sub("\ufffd", text)


def scrub_json(value: Any) -> Any:
    """A JSON-like *value* with every string (keys too) scrubbed."""
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, Mapping):
        return {scrub(str(k)): scrub_json(v) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_json(v) for v in value]
    return value
