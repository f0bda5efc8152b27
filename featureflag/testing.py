"""Test helpers and a pytest plugin (registered through the ``pytest11`` entry point).

One line to override flags, one line to assert what a code path evaluated::

    def test_checkout(featureflags):
        featureflags.set({"Checkout.is_new": True})
        response = client.get("/checkout")
        featureflags.assert_evaluated("Checkout.is_new", value=True)

    @pytest.mark.featureflags({"new-lp": "b"})
    def test_landing_page_b(featureflags): ...
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from typing import Any

import pytest

from ._registry import FlagValue
from ._scope import Evaluation, evaluations, overrides, request_scope

_MISSING: Any = object()


class FlagRecorder:
    """A recording scope for one test, with overrides that last until the test ends."""

    def __init__(self) -> None:
        self._stack = ExitStack()
        self._stack.enter_context(request_scope())

    def set(self, values: Mapping[str, FlagValue] | None = None, /, **named: FlagValue) -> None:
        """Override flags for the rest of the test (later calls add and win)."""
        self._stack.enter_context(overrides(values, **named))

    @property
    def evaluations(self) -> list[Evaluation]:
        """What the test evaluated so far, in first-evaluation order."""
        return list(evaluations())

    def evaluated(self) -> dict[str, Any]:
        """Flag name → the last value app code received."""
        return {e.name: e.value for e in evaluations()}

    def assert_evaluated(
        self, name: str, *, value: Any = _MISSING, source: str | None = None
    ) -> None:
        """Fail unless *name* was evaluated (with *value* / from *source*, when given)."""
        found = {e.name: e for e in evaluations()}
        if name not in found:
            ran = ", ".join(found) or "no flags"
            raise AssertionError(f"Flag {name!r} was not evaluated; evaluated: {ran}")
        got = found[name]
        if value is not _MISSING and got.value != value:
            raise AssertionError(f"Flag {name!r} evaluated to {got.value!r}, expected {value!r}")
        if source is not None and got.source != source:
            raise AssertionError(f"Flag {name!r} came from {got.source!r}, expected {source!r}")

    def assert_not_evaluated(self, name: str) -> None:
        """Fail if *name* was evaluated."""
        if any(e.name == name for e in evaluations()):
            raise AssertionError(f"Flag {name!r} was evaluated, expected it not to be")

    def close(self) -> None:
        self._stack.close()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "featureflags(overrides): apply these flag overrides for the test "
        "(used with the `featureflags` fixture)",
    )


@pytest.fixture
def featureflags(request: pytest.FixtureRequest) -> Iterator[FlagRecorder]:
    """A :class:`FlagRecorder`; applies ``@pytest.mark.featureflags({...})`` overrides."""
    recorder = FlagRecorder()
    try:
        for marker in reversed(list(request.node.iter_markers("featureflags"))):
            recorder.set(*marker.args, **marker.kwargs)
        yield recorder
    finally:
        recorder.close()
