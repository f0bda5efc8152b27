from __future__ import annotations

import asyncio
import inspect
from typing import Literal

import pytest

import featureflag
from featureflag import DuplicateFlagError, FlagDeclarationError


@featureflag.trap(only=r"^is_", name="SomeNewFeature")
class SomeNewFeature:
    """A feature behind flags."""

    def __init__(self, user: str = "ann") -> None:
        self.user = user

    def is_released(self) -> bool:
        """Whether the new page is released."""
        return False

    def is_for(self, user: str, /, country: str = "FR", *rest: str, strict: bool = False) -> bool:
        return user == self.user and country == "FR" and not strict and not rest

    @classmethod
    def is_beta(cls) -> bool:
        return cls.__name__ == "SomeNewFeature"

    @staticmethod
    def is_static(x: int) -> bool:
        return x > 0

    async def is_async(self) -> bool:
        await asyncio.sleep(0)
        return False

    def variant(self) -> str:  # not matched by only=
        return "a"

    @property
    def is_prop(self) -> bool:
        return False

    def is_raising(self) -> bool:
        raise LookupError("boom")


@featureflag.trap
class Everything:
    def color(self) -> Literal["red", "blue"]:
        return "red"

    def enabled(self) -> bool:
        return True

    def _private(self) -> bool:
        return True

    @property
    def prop(self) -> bool:
        return True


def test_methods_run_unchanged_outside_a_scope() -> None:
    f = SomeNewFeature()
    assert f.is_released() is False
    assert f.is_for("ann") is True
    assert f.is_for("ann", "DE") is False
    assert f.is_for("ann", "FR", "x") is False
    assert f.is_for("ann", strict=True) is False
    assert SomeNewFeature.is_beta() is True
    assert f.is_beta() is True
    assert SomeNewFeature.is_static(1) is True
    assert asyncio.run(f.is_async()) is False


def test_override_reaches_every_method_kind() -> None:
    f = SomeNewFeature()
    with featureflag.overrides(
        {
            "SomeNewFeature.is_released": True,
            "SomeNewFeature.is_for": True,
            "SomeNewFeature.is_beta": False,
            "SomeNewFeature.is_static": False,
            "SomeNewFeature.is_async": True,
        }
    ):
        assert f.is_released() is True
        assert f.is_for("bob", "DE") is True
        assert SomeNewFeature.is_beta() is False
        assert SomeNewFeature.is_static(5) is False
        assert asyncio.run(f.is_async()) is True
    assert f.is_released() is False


def test_only_selects_methods_by_search_and_skips_properties() -> None:
    assert not hasattr(SomeNewFeature.variant, "__featureflag__")
    assert hasattr(SomeNewFeature.is_released, "__featureflag__")
    # `only` matches `is_prop`, so the property's getter is trapped.
    assert hasattr(SomeNewFeature.__dict__["is_prop"].fget, "__featureflag__")
    with featureflag.overrides({"SomeNewFeature.is_prop": True}):
        assert SomeNewFeature().is_prop is True


def test_without_only_every_public_method_but_no_property_or_private() -> None:
    assert hasattr(Everything.color, "__featureflag__")
    assert hasattr(Everything.enabled, "__featureflag__")
    assert not hasattr(Everything._private, "__featureflag__")
    assert not hasattr(Everything.__dict__["prop"].fget, "__featureflag__")
    assert {"Everything.color", "Everything.enabled"} <= {f.name for f in featureflag.catalog()}


def test_only_is_searched_anywhere_in_the_name() -> None:
    @featureflag.trap(only="released")
    class Search:
        def is_released(self) -> bool:
            return False

        def released_at(self) -> str:
            return "now"

        def other(self) -> bool:
            return False

    assert hasattr(Search.is_released, "__featureflag__")
    assert hasattr(Search.released_at, "__featureflag__")
    assert not hasattr(Search.other, "__featureflag__")


def test_exceptions_and_metadata_are_preserved() -> None:
    with pytest.raises(LookupError, match="boom"):
        SomeNewFeature().is_raising()
    with featureflag.overrides():
        with pytest.raises(LookupError, match="boom"):
            SomeNewFeature().is_raising()
    method = SomeNewFeature.is_for
    assert method.__name__ == "is_for"
    assert method.__qualname__ == "SomeNewFeature.is_for"
    assert method.__doc__ is None
    assert SomeNewFeature.is_released.__doc__ == "Whether the new page is released."
    assert str(inspect.signature(method)) == (
        "(self, user: 'str', /, country: 'str' = 'FR', *rest: 'str', strict: 'bool' = False)"
        " -> 'bool'"
    )
    assert inspect.iscoroutinefunction(SomeNewFeature.is_async)
    with pytest.raises(TypeError):
        SomeNewFeature().is_for(user="ann")  # type: ignore[call-arg]  # positional-only kept


def test_trap_on_a_function_with_and_without_name() -> None:
    @featureflag.trap
    def is_new_checkout() -> bool:
        return False

    @featureflag.trap(name="checkout-copy")
    def checkout_copy(user: str) -> str:
        return f"hello {user}"

    assert is_new_checkout() is False
    assert checkout_copy("ann") == "hello ann"
    qualname = is_new_checkout.__qualname__
    with featureflag.overrides({qualname: True, "checkout-copy": "yo"}):
        assert is_new_checkout() is True
        assert checkout_copy("ann") == "yo"
        assert [e.name for e in featureflag.evaluations()] == [qualname, "checkout-copy"]


def test_duplicate_name_in_two_places_names_both() -> None:
    @featureflag.trap(name="dup-flag")
    def first() -> bool:
        return True

    with pytest.raises(DuplicateFlagError) as info:

        @featureflag.trap(name="dup-flag")
        def second() -> bool:
            return True

    message = str(info.value)
    assert "dup-flag" in message
    assert f"{__file__}:{first.__code__.co_firstlineno}" in message
    assert info.value.first != info.value.second


def test_declaring_again_from_the_same_place_is_not_a_duplicate() -> None:
    for _ in range(2):

        @featureflag.trap(name="same-place")
        def flag() -> bool:
            return True

    assert flag() is True


def test_unsupported_return_annotation_is_a_declaration_error() -> None:
    with pytest.raises(FlagDeclarationError, match=r"-> int.*bool, str or a Literal"):

        @featureflag.trap
        class Counter:
            def count(self) -> int:
                return 1


def test_wrapper_keeps_defaults_as_the_same_objects() -> None:
    sentinel: list[int] = []

    @featureflag.trap(name="defaults-kept")
    def uses(x: list[int] = sentinel) -> bool:
        return x is sentinel

    assert uses() is True


def test_trap_rejects_what_is_not_a_class_or_function() -> None:
    with pytest.raises(TypeError, match="class or a function"):
        featureflag.trap(42)
