"""The slow path of an evaluation: an override is present for the flag."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._registry import Flag
from ._scope import Scope, _Rejected


def apply_override(
    scope: Scope, flag: Flag, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Any:
    """Return the override for *flag*, or ``fn(*args, **kwargs)`` when it doesn't fit."""

    def call_default() -> Any:
        return fn(*args, **kwargs)

    value = scope.overrides[flag.name]
    if flag.type is None:
        # No annotation: the type comes from what the default returns.
        result = call_default()
        flag.learn(result)
        reason = flag.problem(value)
        if reason is None:
            scope.use_override(flag.name, value)  # type: ignore[arg-type]
            return value
        scope.record(flag.name, _Rejected(result, reason))
        return result
    reason = flag.problem(value)
    if reason is None:
        scope.use_override(flag.name, value)  # type: ignore[arg-type]
        return value
    result = call_default()
    scope.record(flag.name, _Rejected(result, reason))
    return result


async def apply_override_async(
    scope: Scope, flag: Flag, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any
) -> Any:
    """:func:`apply_override` for a coroutine function."""

    def call_default() -> Awaitable[Any]:
        return fn(*args, **kwargs)

    value = scope.overrides[flag.name]
    if flag.type is None:
        result = await call_default()
        flag.learn(result)
        reason = flag.problem(value)
    else:
        reason = flag.problem(value)
        if reason is None:
            scope.use_override(flag.name, value)  # type: ignore[arg-type]
            return value
        result = await call_default()
    if reason is None:
        scope.use_override(flag.name, value)  # type: ignore[arg-type]
        return value
    scope.record(flag.name, _Rejected(result, reason))
    return result
