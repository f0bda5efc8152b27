"""``intercept``: an overridable expression, named at its one call site."""

from __future__ import annotations

import sys
from collections.abc import Awaitable, Callable
from types import CodeType, FrameType
from typing import Any, TypeVar, overload

from ._evaluate import apply_override, apply_override_async
from ._names import check_name
from ._registry import Flag, declare
from ._scope import current_scope

_V = TypeVar("_V")

# name -> (flag, code object of its call site): a cheap identity check per call.
_sites: dict[str, tuple[Flag, CodeType]] = {}


def _declare_site(name: str, default: object, frame: FrameType) -> Flag:
    """Declare the intercept flag *name* at the call site *frame* (its first call)."""
    check_name(name)
    static = default if isinstance(default, bool | str) else None
    flag = declare(
        Flag(
            name,
            kind="intercept",
            type=None if static is None else ("bool" if isinstance(static, bool) else "str"),
            default=static,
            module=frame.f_globals.get("__name__", ""),
            path=frame.f_code.co_filename,
            line=frame.f_lineno,
            doc=None,
        )
    )
    _sites[name] = (flag, frame.f_code)
    return flag


def _same(value: Any) -> Any:
    return value


@overload
def intercept(name: str, default: Callable[[], _V]) -> _V: ...
@overload
def intercept(name: str, default: _V) -> _V: ...
def intercept(name: str, default: Any) -> Any:
    """Return the override for flag *name* when one applies, else the default.

    *default* is a zero-argument callable (called only when needed) or a plain value.
    The flag's type is the type of the default's value.

    Example::

        variant = featureflag.intercept("new-lp", lambda: "a")
    """
    frame = sys._getframe(1)
    site = _sites.get(name)
    if site is not None and site[1] is frame.f_code:
        flag = site[0]
    else:
        flag = _declare_site(name, default, frame)
    scope = current_scope()
    # The trap wrapper's inlined test (see _trap.py): the one read of Scope's fields.
    if scope is not None and name in scope.overrides:
        if callable(default):
            return apply_override(scope, flag, default)
        return apply_override(scope, flag, _same, default)
    value = default() if callable(default) else default
    if flag.type is None:
        flag.learn(value)
    if scope is not None:
        scope.observe(name, value)
    return value


@overload
async def intercept_async(name: str, default: Callable[[], Awaitable[_V]]) -> _V: ...
@overload
async def intercept_async(name: str, default: _V) -> _V: ...
async def intercept_async(name: str, default: Any) -> Any:
    """:func:`intercept` for a default that must be awaited.

    Example::

        enabled = await featureflag.intercept_async("fast-search", load_setting)
    """
    frame = sys._getframe(1)
    site = _sites.get(name)
    if site is not None and site[1] is frame.f_code:
        flag = site[0]
    else:
        flag = _declare_site(name, default, frame)

    async def call() -> Any:
        if callable(default):
            return await default()
        return default

    scope = current_scope()
    if scope is not None and name in scope.overrides:
        return await apply_override_async(scope, flag, call)
    value = await call()
    if flag.type is None:
        flag.learn(value)
    if scope is not None:
        scope.observe(name, value)
    return value
