"""The flag name rule, shared by declarations, overrides and tokens."""

from __future__ import annotations

import re

from .exceptions import FlagNameError
from .headers import RESERVED_NAMES

MAX_NAME_LENGTH = 200
NAME_RULE = (
    "a flag name is a non-empty string of at most 200 characters "
    "with no whitespace, control characters or lone surrogates, "
    f"and not one of the report's own: {', '.join(sorted(RESERVED_NAMES))}"
)
# \s covers Unicode whitespace; the classes cover C0, DEL and C1 control characters,
# and surrogates: a Python string holds one only when a JSON "\ud800" escape lost its
# other half, and such a name cannot be encoded (no token, no header, no JSON reply).
_BAD = re.compile(r"[\s\x00-\x1f\x7f-\x9f\ud800-\udfff]")


def is_valid_name(name: object) -> bool:
    """Return True when *name* follows :data:`NAME_RULE`."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= MAX_NAME_LENGTH
        and _BAD.search(name) is None
        and name not in RESERVED_NAMES
    )


def check_name(name: object) -> str:
    """Return *name* unchanged, or raise :class:`FlagNameError` explaining the rule."""
    if not is_valid_name(name):
        raise FlagNameError(f"Invalid flag name {name!r}: {NAME_RULE}.")
    return name  # type: ignore[return-value]
