"""The slow path of an evaluation: an override is present for the flag."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from ._registry import Flag
from ._scope import Scope

_NOT_RUN: Any = object()


def apply_override(
    scope: Scope, flag: Flag, fn: Callable[..., Any], /, *args: Any, **kwargs: Any
) -> Any:
    """Return the override for *flag*, or ``fn(*args, **kwargs)`` when it doesn't fit."""
    name = flag.name
    value = scope.overrides[name]
    result = _NOT_RUN
    if flag.type is None:
        # No annotation: the type comes from what the default returns.
        result = fn(*args, **kwargs)
        flag.learn(result)
    reason = flag.problem(value)
    if reason is None:
        scope.use_override(name, value)  # type: ignore[arg-type]
        return value
    if result is _NOT_RUN:
        result = fn(*args, **kwargs)
    scope.reject(name, result, reason)
    return result


async def apply_override_async(
    scope: Scope, flag: Flag, fn: Callable[..., Awaitable[Any]], /, *args: Any, **kwargs: Any
) -> Any:
    """:func:`apply_override` for a coroutine function."""
    name = flag.name
    value = scope.overrides[name]
    result = _NOT_RUN
    if flag.type is None:
        result = await fn(*args, **kwargs)
        flag.learn(result)
    reason = flag.problem(value)
    if reason is None:
        scope.use_override(name, value)  # type: ignore[arg-type]
        return value
    if result is _NOT_RUN:
        result = await fn(*args, **kwargs)
    scope.reject(name, result, reason)
    return result
