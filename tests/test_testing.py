from __future__ import annotations

import pytest

import featureflag
from featureflag.testing import FlagRecorder


@featureflag.trap(name="Tested")
class Tested:
    def is_on(self) -> bool:
        return False


def test_fixture_sets_overrides_and_asserts_evaluations(featureflags: FlagRecorder) -> None:
    featureflags.set({"Tested.is_on": True})
    assert Tested().is_on() is True
    featureflags.assert_evaluated("Tested.is_on", value=True, source="override")
    featureflags.assert_not_evaluated("never-evaluated")
    with pytest.raises(AssertionError, match="expected False"):
        featureflags.assert_evaluated("Tested.is_on", value=False)
    with pytest.raises(AssertionError, match="was not evaluated"):
        featureflags.assert_evaluated("never-evaluated")
    with pytest.raises(AssertionError, match="expected it not to be"):
        featureflags.assert_not_evaluated("Tested.is_on")
    assert featureflags.evaluated() == {"Tested.is_on": True}


@pytest.mark.featureflags({"Tested.is_on": True})
def test_marker_applies_overrides(featureflags: FlagRecorder) -> None:
    assert Tested().is_on() is True


def test_overrides_end_with_the_test() -> None:
    assert Tested().is_on() is False
    assert featureflag.evaluations() == []


def test_plugin_is_registered_through_the_entry_point(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        import featureflag, pytest

        @featureflag.trap(name="Plug")
        class Plug:
            def is_on(self) -> bool:
                return False

        @pytest.mark.featureflags({"Plug.is_on": True})
        def test_marked(featureflags):
            assert Plug().is_on() is True
            featureflags.assert_evaluated("Plug.is_on", source="override")

        def test_unmarked(featureflags):
            assert Plug().is_on() is False
            featureflags.assert_evaluated("Plug.is_on", value=False, source="default")
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers")
    result.assert_outcomes(passed=2)
