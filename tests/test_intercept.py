from __future__ import annotations

import pytest

import featureflag
from featureflag import FeatureFlagError, FlagNameError
from featureflag.headers import RESERVED_NAMES


def landing_variant() -> str:
    return featureflag.intercept("test-new-lp", lambda: "a")


def test_returns_the_default_without_an_override() -> None:
    assert landing_variant() == "a"
    calls: list[int] = []
    assert featureflag.intercept("test-lazy", lambda: calls.append(1) or True) is True
    assert calls == [1]


def test_returns_the_override_and_does_not_call_the_default() -> None:
    landing_variant()  # learns the type: str
    calls: list[int] = []

    def default() -> bool:
        calls.append(1)
        return False

    featureflag.intercept("test-not-called", default)
    calls.clear()
    with featureflag.overrides({"test-new-lp": "b", "test-not-called": True}):
        assert landing_variant() == "b"
        assert featureflag.intercept("test-not-called", default) is True
    assert calls == []


def test_accepts_a_plain_value_default_and_records_it_in_the_catalog() -> None:
    assert featureflag.intercept("test-plain", True) is True
    with featureflag.overrides({"test-plain": False}):
        assert featureflag.intercept("test-plain", True) is False
    info = {f.name: f for f in featureflag.catalog()}["test-plain"]
    assert info.type == "bool"
    assert info.default is True
    assert info.kind == "intercept"
    assert info.path == __file__


async def test_intercept_async() -> None:
    async def load() -> str:
        return "slow"

    assert await featureflag.intercept_async("test-async", load) == "slow"
    async with featureflag.overrides({"test-async": "fast"}):
        assert await featureflag.intercept_async("test-async", load) == "fast"
        assert featureflag.evaluations()[0].source == "override"
    assert await featureflag.intercept_async("test-async-plain", "x") == "x"


@pytest.mark.parametrize("bad", ["", "a b", "tab\there", "x" * 201, "nl\n", "\x7f", 3, None])
def test_bad_names_show_the_rule(bad: object) -> None:
    with pytest.raises(FlagNameError, match="at most 200 characters") as info:
        featureflag.intercept(bad, True)  # type: ignore[arg-type]
    assert isinstance(info.value, FeatureFlagError)


def test_longest_allowed_name_and_unicode() -> None:
    assert featureflag.intercept("é" * 200, True) is True


def test_same_name_at_two_call_sites_is_a_duplicate() -> None:
    featureflag.intercept("test-two-sites", True)
    with pytest.raises(featureflag.DuplicateFlagError, match="test-two-sites"):
        other_site()


def other_site() -> bool:
    return featureflag.intercept("test-two-sites", True)


def test_intercept_and_trap_share_the_name_space() -> None:
    @featureflag.trap(name="test-shared-name")
    def flag() -> bool:
        return True

    with pytest.raises(featureflag.DuplicateFlagError):
        featureflag.intercept("test-shared-name", True)


def test_wrong_type_in_a_request_scope_is_rejected_and_recorded() -> None:
    featureflag.intercept("test-typed", lambda: False)
    with featureflag.request_scope({"test-typed": "yes"}):
        assert featureflag.intercept("test-typed", lambda: False) is False
        (evaluation,) = featureflag.evaluations()
    assert evaluation.source == "default"
    assert evaluation.value is False
    assert evaluation.rejected is not None
    assert "'test-typed'" in evaluation.rejected
    assert "send true or false" in evaluation.rejected


def test_unknown_type_is_learned_from_the_default_before_accepting_an_override() -> None:
    with featureflag.request_scope({"test-fresh": 1, "test-fresh-ok": "z"}):
        assert featureflag.intercept("test-fresh", lambda: "a") == "a"
        assert featureflag.intercept("test-fresh-ok", lambda: "a") == "z"
        first, second = featureflag.evaluations()
    assert first.rejected is not None and second.source == "override"


@pytest.mark.parametrize("name", sorted(RESERVED_NAMES))
def test_the_reports_own_item_names_are_no_flag_names(name: str) -> None:
    # A flag called "featureflag.route" would be written as a route item, and
    # "featureflag.truncated" as the truncation marker: the report could not say it.
    with pytest.raises(FlagNameError, match="report's own"):
        featureflag.intercept(name, lambda: True)
