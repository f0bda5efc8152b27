from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

import featureflag
from featureflag import Evaluation, OverrideTypeError
from featureflag._scope import Scope


@featureflag.trap(name="Scoped")
class Scoped:
    def is_on(self) -> bool:
        return False

    def variant(self) -> str:
        return "a"


def test_nothing_is_recorded_outside_a_scope() -> None:
    Scoped().is_on()
    assert featureflag.evaluations() == []


def test_overrides_outside_a_request_opens_a_recording_scope() -> None:
    with featureflag.overrides({"Scoped.is_on": True}):
        Scoped().variant()
        Scoped().is_on()
        Scoped().variant()
        assert [(e.name, e.value, e.source) for e in featureflag.evaluations()] == [
            ("Scoped.variant", "a", "default"),
            ("Scoped.is_on", True, "override"),
        ]
    assert featureflag.evaluations() == []


def test_nesting_inner_wins_and_exit_restores() -> None:
    s = Scoped()
    with featureflag.overrides({"Scoped.is_on": True, "Scoped.variant": "b"}):
        with featureflag.overrides({"Scoped.variant": "c"}):
            assert s.variant() == "c"
            assert s.is_on() is True
        assert s.variant() == "b"
        # the nested block recorded into the same report
        assert featureflag.evaluations()[0].value == "b"
    assert s.variant() == "a"


async def test_overrides_as_an_async_context_manager() -> None:
    async with featureflag.overrides({"Scoped.is_on": True}):
        assert Scoped().is_on() is True
    assert Scoped().is_on() is False


def test_request_scope_records_last_value_once_per_flag() -> None:
    with featureflag.request_scope({"Scoped.variant": "z"}) as scope:
        Scoped().variant()
        Scoped().is_on()
        Scoped().variant()
        evaluations = featureflag.evaluations()
        assert scope.used_override is True
    assert [e.name for e in evaluations] == ["Scoped.variant", "Scoped.is_on"]
    assert evaluations[0].source == "override"


def test_used_override_is_false_when_the_override_is_not_evaluated() -> None:
    with featureflag.request_scope({"Scoped.variant": "z"}) as scope:
        Scoped().is_on()
        assert scope.used_override is False


def test_wrong_type_in_overrides_raises_at_once_for_declared_flags() -> None:
    with pytest.raises(OverrideTypeError, match=r"'Scoped.is_on'.*send true or false"):
        featureflag.overrides({"Scoped.is_on": "yes"})
    with pytest.raises(OverrideTypeError, match="bool or str"):
        featureflag.overrides({"undeclared-yet": 3})  # type: ignore[dict-item]
    with pytest.raises(featureflag.FlagNameError):
        featureflag.overrides({"bad name": True})


def test_wrong_type_in_a_request_scope_never_reaches_app_code() -> None:
    with featureflag.request_scope({"Scoped.is_on": "yes", "Scoped.variant": True}):
        assert Scoped().is_on() is False
        assert Scoped().variant() == "a"
        reasons = [e.rejected for e in featureflag.evaluations()]
    assert all(r is not None for r in reasons)


def test_literal_choices_are_enforced() -> None:
    from typing import Literal

    @featureflag.trap(name="lp-choice")
    def lp() -> Literal["a", "b"]:
        return "a"

    with featureflag.request_scope({"lp-choice": "c"}):
        assert lp() == "a"
        assert "one of those" in (featureflag.evaluations()[0].rejected or "")
    with featureflag.overrides({"lp-choice": "b"}):
        assert lp() == "b"


def test_limit_counts_further_flags_instead_of_storing_them() -> None:
    names = [f"limit-{i}" for i in range(8)]
    with featureflag.request_scope(limit=5):
        for name in names:
            featureflag.intercept(name, True)
        for name in names:  # re-evaluating known flags still updates them
            featureflag.intercept(name, True)
        result = featureflag.evaluations()
    assert [e.name for e in result] == names[:5]
    assert result.dropped == 3


async def test_concurrent_tasks_are_isolated() -> None:
    async def one(i: int) -> list[tuple[str, object]]:
        value = "even" if i % 2 == 0 else "odd"
        with featureflag.request_scope({"Scoped.variant": value}):
            await asyncio.sleep(0.001 * (i % 3))
            assert Scoped().variant() == value
            await asyncio.sleep(0)
            return [(e.name, e.value) for e in featureflag.evaluations()]

    results = await asyncio.gather(*(one(i) for i in range(50)))
    for i, result in enumerate(results):
        assert result == [("Scoped.variant", "even" if i % 2 == 0 else "odd")]


async def test_threads_with_a_copied_context_see_and_report_into_the_request() -> None:
    with featureflag.request_scope({"Scoped.is_on": True}):
        # what starlette's threadpool (anyio.to_thread) does: run with a copied context
        loop = asyncio.get_running_loop()
        ctx = contextvars.copy_context()
        value = await loop.run_in_executor(None, ctx.run, Scoped().is_on)
        assert value is True
        assert featureflag.evaluations()[0].source == "override"


def test_plain_thread_pool_needs_copy_context() -> None:
    with featureflag.request_scope({"Scoped.is_on": True}), ThreadPoolExecutor(2) as pool:
        # a plain submit runs in the worker's own (empty) context
        assert pool.submit(Scoped().is_on).result() is False
        ctx = contextvars.copy_context()
        assert pool.submit(ctx.run, Scoped().is_on).result() is True


def test_threads_running_their_own_scopes_do_not_mix() -> None:
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def worker(i: int) -> None:
        with featureflag.request_scope({"Scoped.variant": f"v{i}"}):
            barrier.wait()
            for _ in range(200):
                if Scoped().variant() != f"v{i}":
                    errors.append(f"thread {i}")

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_an_override_used_in_a_nested_block_marks_the_request() -> None:
    with featureflag.request_scope() as scope:
        with featureflag.overrides({"Scoped.is_on": True}):
            assert Scoped().is_on() is True
        assert scope.used_override is True


def test_a_flag_seen_with_its_default_still_takes_a_nested_override() -> None:
    s = Scoped()
    with featureflag.request_scope():
        assert s.is_on() is False  # now known in the request scope
        with featureflag.overrides({"Scoped.is_on": True}):
            assert s.is_on() is True
        assert s.is_on() is False
        assert featureflag.evaluations()[0].value is False


def _trapped_flags(prefix: str, count: int) -> list[Callable[[], bool]]:
    """*count* trapped functions returning True, named ``<prefix>-0`` and on."""
    flags = []
    for i in range(count):

        @featureflag.trap(name=f"{prefix}-{i}")
        def flag() -> bool:
            return True

        flags.append(flag)
    return flags


def test_the_limit_holds_for_trapped_flags() -> None:
    flags = _trapped_flags("limit-trap", 4)
    with featureflag.request_scope(limit=2), featureflag.overrides({"Scoped.variant": "x"}):
        for _ in range(3):
            for flag in flags:
                assert flag() is True
        result = featureflag.evaluations()
    assert [e.name for e in result] == ["limit-trap-0", "limit-trap-1"]
    assert result.dropped == 2


def test_override_markers_are_shared_per_value_and_keep_the_value_type() -> None:
    from featureflag._scope import Scope, _overridden

    assert _overridden("b") is _overridden("b")
    assert _overridden(True) is not _overridden("b")

    class Label(str):
        pass

    # True == 1 and Label("b") == "b": each must still get a marker of its own type.
    for value in (True, 1, "b", Label("b")):
        scope = Scope({"a": value})
        scope.use_override("a", value)  # type: ignore[arg-type]
        (evaluation,) = scope.evaluations()
        assert type(evaluation.value) is type(value)
        assert (evaluation.value, evaluation.source) == (value, "override")


def test_override_markers_stay_bounded() -> None:
    from featureflag._scope import _MARKERS_MAX, _markers, _overridden

    for i in range(_MARKERS_MAX + 10):
        _overridden(str(i))
        assert len(_markers) <= _MARKERS_MAX


def test_a_request_scope_is_freed_without_the_garbage_collector() -> None:
    # No reference cycle (a root scope does not point at itself): its state goes when
    # the request ends, not at the next collection.
    import gc
    import weakref

    class Value:
        pass

    value = Value()
    alive = weakref.ref(value)
    gc.disable()
    try:
        with featureflag.request_scope({"Scoped.is_on": True}) as scope:
            with featureflag.overrides({"Scoped.variant": "b"}):
                Scoped().is_on()
                Scoped().variant()
            scope.record("x", value)
            assert scope.used_override
        del scope, value
        assert alive() is None
    finally:
        gc.enable()


def _scope_of_every_kind() -> Scope:
    scope = Scope({"b": "x", "c": "on"})
    scope.observe("a", True)
    scope.use_override("b", "x")
    scope.reject("c", False, "Flag 'c' is declared `-> bool`")
    scope.add_remote(Evaluation("d", "y", "override", service="billing"))
    return scope


def test_entries_are_the_evaluations_as_tuples_in_order() -> None:
    scope = _scope_of_every_kind()
    assert list(scope.entries()) == [
        ("a", True, "default", None, None),
        ("b", "x", "override", None, None),
        ("c", False, "default", "Flag 'c' is declared `-> bool`", None),
        ("d", "y", "override", None, "billing"),
    ]
    assert scope.evaluations() == [Evaluation(*entry) for entry in scope.entries()]


def test_mark_and_since_list_what_came_later() -> None:
    scope = Scope({})
    scope.observe("a", True)
    mark = scope.mark()
    assert scope.since(mark) == ()
    scope.observe("a", False)  # evaluated again: not new
    assert scope.since(mark) == ()
    scope.observe("b", True)
    scope.add_remote(Evaluation("c", True, service="billing"))
    assert scope.since(mark) == ("b", "c")
    assert scope.since(scope.mark()) == ()


def test_nested_blocks_mark_the_same_record() -> None:
    with featureflag.overrides({"Scoped.variant": "b"}) as outer:
        mark = outer.mark()
        with featureflag.overrides({"Scoped.is_on": True}) as inner:
            Scoped().is_on()
            assert inner.since(mark) == ("Scoped.is_on",)
        assert outer.since(mark) == ("Scoped.is_on",)


def test_fingerprint_is_equal_only_for_the_same_evaluations() -> None:
    def fingerprint(*values: object) -> object:
        scope = Scope({})
        for i, value in enumerate(values):
            scope.observe(f"f{i}", value)
        return scope.fingerprint()

    assert fingerprint(True, "a") == fingerprint(True, "a")
    assert fingerprint(True, "a") != fingerprint(True, "b")
    assert fingerprint(True) != fingerprint(False)
    assert fingerprint(1) is None  # not a flag value: never cached as if it were True
    overridden, default = Scope({"f": True}), Scope({})
    overridden.use_override("f", True)
    default.observe("f", True)
    assert overridden.fingerprint() != default.fingerprint()
    hash(overridden.fingerprint())


def test_no_fingerprint_for_what_cannot_be_compared_cheaply() -> None:
    rejected = Scope({"c": "on"})
    rejected.reject("c", False, "wrong type")
    remote = Scope({})
    remote.add_remote(Evaluation("d", True, service="billing"))
    dropped = Scope({}, limit=1)
    dropped.observe("a", True)
    dropped.observe("b", True)
    assert dropped.dropped == 1
    assert [s.fingerprint() for s in (rejected, remote, dropped)] == [None, None, None]


@pytest.mark.parametrize("opened_by", ["request_scope", "overrides"])
def test_the_limit_holds_for_trapped_flags_in_a_scope_without_overrides(opened_by: str) -> None:
    # In such a scope the trap stores with no test (Scope.sink): the limit is applied
    # when the record is read.
    flags = _trapped_flags("sink-limit", 4)
    block = featureflag.request_scope(limit=2) if opened_by == "request_scope" else None
    with block or featureflag.overrides({}) as scope:
        if block is None:
            scope.limit = 2  # overrides() has no limit argument: the same record, smaller
        assert scope.sink is scope.seen
        mark = scope.mark()
        for _ in range(3):
            for flag in flags:
                assert flag() is True
        result = featureflag.evaluations()
        assert [e.name for e in result] == ["sink-limit-0", "sink-limit-1"]
        assert result.dropped == 2
        assert scope.fingerprint() is None  # past the limit: never a cached report
        assert scope.since(mark) == ("sink-limit-0", "sink-limit-1")  # late: stored only
        assert scope.count() == 2


def test_past_the_limit_a_flag_is_counted_once_whoever_recorded_it() -> None:
    @featureflag.trap(name="once-a")
    def a() -> bool:
        return True

    @featureflag.trap(name="once-b")
    def b() -> bool:
        return True

    with featureflag.request_scope(limit=1) as scope:
        a()
        b()  # past the limit, stored by the trap's hot path
        scope.observe("once-b", False)  # and again through the API
        scope.observe("once-c", True)  # past the limit, counted by the API
        scope.add_remote(Evaluation("once-b", True, service="billing"))  # same name
        result = featureflag.evaluations()
    assert [e.name for e in result] == ["once-a"]
    assert result.dropped == 2  # once-b and once-c


def test_a_nested_empty_block_keeps_the_overrides_around_it() -> None:
    s = Scoped()
    with featureflag.request_scope({"Scoped.is_on": True}) as outer:
        assert outer.sink is None  # overrides apply: the hot path must look
        with featureflag.overrides({}) as inner:
            assert inner.sink is None
            assert s.is_on() is True
            assert s.variant() == "a"
        assert s.is_on() is True
    with featureflag.request_scope() as plain, featureflag.overrides({}) as inner:
        assert inner.sink is plain.seen  # nothing to override: both store straight in
        assert s.is_on() is False
        assert [e.name for e in featureflag.evaluations()] == ["Scoped.is_on"]


async def test_an_async_trapped_flag_in_a_scope_without_overrides_is_recorded() -> None:
    @featureflag.trap(name="sink-async")
    async def flag() -> str:
        return "a"

    with featureflag.request_scope(limit=1):
        assert await flag() == "a"
        assert await flag() == "a"
        assert [(e.name, e.value) for e in featureflag.evaluations()] == [("sink-async", "a")]
    with featureflag.request_scope({"sink-async": "b"}):
        assert await flag() == "b"
