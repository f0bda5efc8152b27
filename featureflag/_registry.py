"""Flags declared in code: their types, where they live, and the catalog."""

from __future__ import annotations

import ast
import inspect
import sys
import threading
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ._names import check_name
from .exceptions import DuplicateFlagError, FlagDeclarationError, OverrideTypeError

FlagType = Literal["bool", "str"]
FlagValue = bool | str


class Flag:
    """One declared flag. Mutable only to learn its type from a first evaluation."""

    __slots__ = (
        "choices",
        "default",
        "doc",
        "kind",
        "line",
        "module",
        "name",
        "path",
        "type",
        "upfront",
    )

    def __init__(
        self,
        name: str,
        *,
        kind: str,
        type: FlagType | None,
        choices: tuple[str, ...] | None = None,
        default: FlagValue | None = None,
        module: str = "",
        path: str = "",
        line: int = 0,
        doc: str | None = None,
        upfront: bool = False,
    ) -> None:
        self.name = name
        # Declared with featureflag.declare(): its intercept call sites use this entry.
        self.upfront = upfront
        self.kind = kind
        self.type = type
        self.choices = choices
        self.default = default
        self.module = module
        self.path = path
        self.line = line
        self.doc = doc

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"

    def learn(self, value: object) -> None:
        """Take the type from the value a default returned, when no annotation gave it."""
        if self.type is None:
            if isinstance(value, bool):
                self.type = "bool"
            elif isinstance(value, str):
                self.type = "str"

    def problem(self, value: object) -> str | None:
        """Why *value* cannot override this flag, or None when it can."""
        if self.type == "bool":
            if isinstance(value, bool):
                return None
            return (
                f"Flag {self.name!r} is declared `-> bool` but the override is "
                f"{_describe(value)}; send true or false"
            )
        if self.type == "str":
            if not isinstance(value, str):
                return (
                    f"Flag {self.name!r} is declared `-> str` but the override is "
                    f"{_describe(value)}; send a string"
                )
            if self.choices is not None and value not in self.choices:
                allowed = ", ".join(repr(c) for c in self.choices)
                return (
                    f"Flag {self.name!r} accepts only {allowed} but the override is "
                    f"{value!r}; send one of those"
                )
            return None
        if isinstance(value, bool | str):
            return None
        return f"Flag {self.name!r} is bool or str but the override is {_describe(value)}"

    def check(self, value: object) -> None:
        """Raise :class:`OverrideTypeError` when *value* cannot override this flag."""
        reason = self.problem(value)
        if reason is not None:
            raise OverrideTypeError(reason, flag=self.name)


def _describe(value: object) -> str:
    if isinstance(value, str):
        return f"the string {value!r}"
    return f"{type(value).__name__} {value!r}"


@dataclass(frozen=True, slots=True)
class FlagInfo:
    """A catalog entry: what :func:`featureflag.catalog` returns for one flag."""

    name: str
    type: FlagType | None
    choices: tuple[str, ...] | None
    default: FlagValue | None
    kind: str
    module: str
    path: str
    line: int
    description: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "choices": list(self.choices) if self.choices is not None else None,
            "default": self.default,
            "kind": self.kind,
            "module": self.module,
            "path": self.path,
            "line": self.line,
            "description": self.description,
        }


_flags: dict[str, Flag] = {}
_lock = threading.Lock()


def lookup(name: str) -> Flag | None:
    """The declared flag called *name*, if any."""
    return _flags.get(name)


def declare(flag: Flag) -> Flag:
    """Add *flag* to the registry; the same name from another place is an error.

    Declaring again from the same place (a module imported twice, a test run twice)
    replaces the earlier declaration.
    """
    check_name(flag.name)
    with _lock:
        known = _flags.get(flag.name)
        if (
            known is not None
            and known.upfront != flag.upfront
            and known.kind == flag.kind == "intercept"
        ):
            # One declared up front, the other an intercept call site: the same flag.
            return _join(known, flag)
        if known is not None and known.where != flag.where:
            raise DuplicateFlagError(
                f"Flag {flag.name!r} is declared twice: at {known.where} and at "
                f"{flag.where}. Give one of them another name (trap(name=...)).",
                flag=flag.name,
                first=known.where,
                second=flag.where,
            )
        _flags[flag.name] = flag
    return flag


def _join(known: Flag, flag: Flag) -> Flag:
    """The up-front declaration of a flag that an ``intercept`` call site also names."""
    upfront, site = (known, flag) if known.upfront else (flag, known)
    if site.type is not None and upfront.type is not None and site.type != upfront.type:
        raise FlagDeclarationError(
            f"Flag {flag.name!r} is declared as {upfront.type} at {upfront.where} but its "
            f"intercept at {site.where} has a {site.type} default. Make them agree.",
            flag=flag.name,
        )
    if upfront.type is None:
        upfront.type = site.type
    _flags[flag.name] = upfront
    return upfront


def declare_flag(
    name: str,
    default: FlagValue,
    *,
    choices: Sequence[str] | None = None,
    description: str | None = None,
) -> str:
    """Declare an :func:`intercept` flag up front, so the catalog lists it before any
    request reaches its call site; returns *name*.

    Call it at import time (module level). ``python -m featureflag catalog`` imports
    your modules: a flag declared there is in the pushed catalog even when no code
    path has run it. Its ``intercept`` call sites (any number) use this declaration::

        NEW_LP = featureflag.declare("new-lp", "a", choices=["a", "b"])
        ...
        variant = featureflag.intercept(NEW_LP, lambda: "a")
    """
    if not isinstance(default, bool | str):
        raise FlagDeclarationError(
            f"Flag {name!r}: the default {default!r} is {type(default).__name__}; a flag is "
            "bool or str.",
            flag=name,
        )
    kept: tuple[str, ...] | None = None
    if choices is not None:
        kept = tuple(choices)
        if not isinstance(default, str) or default not in kept:
            raise FlagDeclarationError(
                f"Flag {name!r}: the default {default!r} is not one of the choices {kept!r}.",
                flag=name,
            )
    frame = sys._getframe(1)
    declare(
        Flag(
            name,
            kind="intercept",
            type="bool" if isinstance(default, bool) else "str",
            choices=kept,
            default=default,
            module=frame.f_globals.get("__name__", ""),
            path=frame.f_code.co_filename,
            line=frame.f_lineno,
            doc=description,
            upfront=True,
        )
    )
    return name


def catalog() -> list[FlagInfo]:
    """Every flag declared so far, sorted by name."""
    with _lock:
        flags = sorted(_flags.values(), key=lambda f: f.name)
    return [
        FlagInfo(
            name=f.name,
            type=f.type,
            choices=f.choices,
            default=f.default,
            kind=f.kind,
            module=f.module,
            path=f.path,
            line=f.line,
            description=f.doc,
        )
        for f in flags
    ]


def type_of(fn: Callable[..., Any], name: str) -> tuple[FlagType | None, tuple[str, ...] | None]:
    """The flag type given by *fn*'s return annotation: (type, Literal choices)."""
    raw = getattr(fn, "__annotations__", {}).get("return", inspect.Signature.empty)
    if raw is inspect.Signature.empty:
        return None, None
    try:
        hint = typing.get_type_hints(fn)["return"]
    except Exception:
        # A name the function's module can't resolve (a local import, a forward
        # reference elsewhere): read the annotation's words instead.
        hint = _parse_annotation(raw) if isinstance(raw, str) else raw
    if hint is bool:
        return "bool", None
    if hint is str:
        return "str", None
    if typing.get_origin(hint) is Literal:
        args = typing.get_args(hint)
        if args and all(isinstance(a, str) for a in args):
            return "str", tuple(args)
    raise FlagDeclarationError(
        f"Flag {name!r} is declared `-> {getattr(hint, '__name__', hint)}`, but a flag "
        "returns bool, str or a Literal of strings. Change the annotation, or leave the "
        "method out of the trap with only=.",
        flag=name,
    )


def _parse_annotation(text: str) -> Any:
    """``"bool"``, ``"str"`` or ``"Literal['a', 'b']"`` (any prefix) to a type; else *text*."""
    try:
        node = ast.parse(text, mode="eval").body
    except SyntaxError:
        return text
    if isinstance(node, ast.Name) and node.id in {"bool", "str"}:
        return bool if node.id == "bool" else str
    if isinstance(node, ast.Subscript):
        base = node.value
        base_name = base.attr if isinstance(base, ast.Attribute) else getattr(base, "id", None)
        if base_name == "Literal":
            items = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if all(isinstance(i, ast.Constant) and isinstance(i.value, str) for i in items):
                values = tuple(i.value for i in items)  # type: ignore[attr-defined]
                return Literal.__getitem__(values)
    return text


def first_doc_line(fn: object) -> str | None:
    doc = inspect.getdoc(fn)
    if not doc:
        return None
    return doc.strip().splitlines()[0]
