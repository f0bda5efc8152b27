"""``@trap``: methods (or a function) whose return value becomes an overridable flag."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable
from typing import Any, TypeVar, overload

from ._evaluate import apply_override, apply_override_async
from ._names import check_name
from ._registry import Flag, declare, first_doc_line, type_of
from ._scope import current_scope

_T = TypeVar("_T")

# The generated wrapper keeps the hot path to one ContextVar lookup, one attribute read
# and one dict store, and passes arguments without packing them into *args.
# It is the one exception to Scope's API: every other module goes through Scope's
# methods, but a method call here would cost a third of an evaluation, so the wrapper
# reads ``sink``, ``overrides`` and ``seen`` inline (``intercept`` repeats the
# ``name in overrides`` test, for the same reason).
# In a scope with no overrides (``Scope.sink`` is its ``seen``) the default's value is
# stored with no test at all; in a scope with overrides, after one membership test.
# Either way it stores without counting against the scope's limit: trapped flags are
# declared in code, so finitely many, and the limit is applied when ``seen`` is read.
# The override path gets the function and its arguments rather than a closure: a
# closure would turn every parameter into a cell, slowing the common path too.
_SYNC = """\
def __ff_wrapper({params}):
    __ff_s = __ff_get()
    if __ff_s is None:
        return __ff_fn({call})
    __ff_seen = __ff_s.sink
    if __ff_seen is None:
        if __ff_name in __ff_s.overrides:
            return __ff_override(__ff_s, __ff_flag, __ff_fn, {call})
        __ff_seen = __ff_s.seen
    __ff_v = __ff_fn({call})
    __ff_seen[__ff_name] = __ff_v
    return __ff_v
"""

_ASYNC = """\
async def __ff_wrapper({params}):
    __ff_s = __ff_get()
    if __ff_s is None:
        return await __ff_fn({call})
    __ff_seen = __ff_s.sink
    if __ff_seen is None:
        if __ff_name in __ff_s.overrides:
            return await __ff_override(__ff_s, __ff_flag, __ff_fn, {call})
        __ff_seen = __ff_s.seen
    __ff_v = await __ff_fn({call})
    __ff_seen[__ff_name] = __ff_v
    return __ff_v
"""


def _signature_source(fn: Callable[..., Any]) -> tuple[str, str, dict[str, Any]]:
    """Parameter list, call arguments and default values that mirror *fn* exactly."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return "*args, **kwargs", "*args, **kwargs", {}
    params: list[str] = []
    call: list[str] = []
    defaults: dict[str, Any] = {}
    star_done = False
    last_kind = None
    for i, p in enumerate(sig.parameters.values()):
        if last_kind is inspect.Parameter.POSITIONAL_ONLY and p.kind is not last_kind:
            params.append("/")
        text = p.name
        if p.default is not inspect.Parameter.empty:
            defaults[f"__ff_d{i}"] = p.default
            text += f"=__ff_d{i}"
        if p.kind is inspect.Parameter.VAR_POSITIONAL:
            params.append("*" + p.name)
            call.append("*" + p.name)
            star_done = True
        elif p.kind is inspect.Parameter.VAR_KEYWORD:
            params.append("**" + p.name)
            call.append("**" + p.name)
        elif p.kind is inspect.Parameter.KEYWORD_ONLY:
            if not star_done:
                params.append("*")
                star_done = True
            params.append(text)
            call.append(f"{p.name}={p.name}")
        else:
            params.append(text)
            call.append(p.name)
        last_kind = p.kind
    if last_kind is inspect.Parameter.POSITIONAL_ONLY:
        params.append("/")
    return ", ".join(params), ", ".join(call), defaults


def wrap(fn: Callable[..., Any], flag: Flag) -> Callable[..., Any]:
    """Return a wrapper of *fn* that evaluates *flag*; same signature and metadata."""
    is_async = inspect.iscoroutinefunction(fn)
    params, call, defaults = _signature_source(fn)
    source = (_ASYNC if is_async else _SYNC).format(params=params, call=call)
    namespace: dict[str, Any] = {
        "__ff_fn": fn,
        "__ff_get": current_scope,
        "__ff_name": flag.name,
        "__ff_flag": flag,
        "__ff_override": apply_override_async if is_async else apply_override,
        **defaults,
    }
    code = compile(source, f"<featureflag trap {flag.name}>", "exec")
    exec(code, namespace)
    wrapper = functools.update_wrapper(namespace["__ff_wrapper"], fn)
    wrapper.__featureflag__ = flag  # type: ignore[attr-defined]
    return wrapper


def _declare(fn: Callable[..., Any], name: str) -> Flag:
    code = getattr(fn, "__code__", None)
    flag_type, choices = type_of(fn, name)
    return declare(
        Flag(
            name,
            kind="trap",
            type=flag_type,
            choices=choices,
            module=getattr(fn, "__module__", "") or "",
            path=code.co_filename if code else "",
            line=code.co_firstlineno if code else 0,
            doc=first_doc_line(fn),
        )
    )


def _trap_class(cls: type, only: re.Pattern[str] | None, name: str | None) -> None:
    prefix = name or cls.__qualname__
    for attr, member in list(vars(cls).items()):
        if attr.startswith("_"):
            continue
        if only is not None and only.search(attr) is None:
            continue
        flag_name = f"{prefix}.{attr}"
        if isinstance(member, staticmethod | classmethod):
            fn = member.__func__
            setattr(cls, attr, type(member)(wrap(fn, _declare(fn, flag_name))))
        elif isinstance(member, property):
            # Properties are trapped only when `only` names them explicitly.
            if only is None or member.fget is None:
                continue
            fget = wrap(member.fget, _declare(member.fget, flag_name))
            setattr(cls, attr, member.getter(fget))
        elif inspect.isfunction(member):
            setattr(cls, attr, wrap(member, _declare(member, flag_name)))


@overload
def trap(target: _T, /) -> _T: ...
@overload
def trap(
    *, only: str | re.Pattern[str] | None = None, name: str | None = None
) -> Callable[[_T], _T]: ...
def trap(
    target: Any = None,
    /,
    *,
    only: str | re.Pattern[str] | None = None,
    name: str | None = None,
) -> Any:
    """Make methods of a class (or one function) overridable flags.

    On a class, every public method defined in its body whose name matches *only*
    (``re.search``; every public method when *only* is None) becomes the flag
    ``<name or __qualname__>.<method>``: instance, class, static and async methods.
    Properties are trapped only when *only* is given and matches them. On a function,
    the function becomes the flag ``name`` (default: its ``__qualname__``).

    Example::

        @featureflag.trap(only=r"^is_", name="SomeNewFeature")
        class SomeNewFeature:
            def is_released(self) -> bool:
                return False
    """
    pattern = re.compile(only) if isinstance(only, str) else only
    if name is not None:
        check_name(name)

    def decorate(obj: Any) -> Any:
        if isinstance(obj, type):
            _trap_class(obj, pattern, name)
            return obj
        if isinstance(obj, staticmethod | classmethod):
            fn = obj.__func__
            return type(obj)(wrap(fn, _declare(fn, name or fn.__qualname__)))
        if callable(obj) and hasattr(obj, "__code__"):
            return wrap(obj, _declare(obj, name or obj.__qualname__))
        raise TypeError(f"trap() takes a class or a function, not {type(obj).__name__}")

    if target is not None:
        return decorate(target)
    return decorate
