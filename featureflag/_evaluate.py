"""The slow path of an evaluation: an override is present for the flag."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._registry import Flag
from ._scope import Scope, _Overridden, _Rejected


def apply_override(scope: Scope, flag: Flag, call_default: Callable[[], Any]) -> Any:
    """Return the override for *flag*, or the default when the override doesn't fit."""
    value = scope.overrides[flag.name]
    if flag.type is None:
        # No annotation: the type comes from what the default returns.
        result = call_default()
        flag.learn(result)
        reason = flag.problem(value)
        if reason is None:
            scope.record(flag.name, _Overridden(value))  # type: ignore[arg-type]
            return value
        scope.record(flag.name, _Rejected(result, reason))
        return result
    reason = flag.problem(value)
    if reason is None:
        scope.record(flag.name, _Overridden(value))  # type: ignore[arg-type]
        return value
    result = call_default()
    scope.record(flag.name, _Rejected(result, reason))
    return result


async def apply_override_async(
    scope: Scope, flag: Flag, call_default: Callable[[], Awaitable[Any]]
) -> Any:
    """:func:`apply_override` for an awaitable default."""
    value = scope.overrides[flag.name]
    if flag.type is None:
        result = await call_default()
        flag.learn(result)
        reason = flag.problem(value)
    else:
        reason = flag.problem(value)
        if reason is None:
            scope.record(flag.name, _Overridden(value))  # type: ignore[arg-type]
            return value
        result = await call_default()
    if reason is None:
        scope.record(flag.name, _Overridden(value))  # type: ignore[arg-type]
        return value
    scope.record(flag.name, _Rejected(result, reason))
    return result
