from __future__ import annotations

import http_sf
import pytest
from hypothesis import given
from hypothesis import strategies as st

from featureflag import Evaluation
from featureflag._names import is_valid_name
from featureflag._scope import Scope, _overridden, _Rejected
from featureflag.report import (
    _REPORTS_MAX,
    TRUNCATED,
    _reports,
    format_report,
    format_scope,
    parse_report,
    scope_report,
)


def test_format() -> None:
    value = format_report(
        [
            Evaluation("SomeNewFeature.is_released", True, "override"),
            Evaluation("new-lp", "b"),
            Evaluation("off", False),
            Evaluation("typed", "a", "default", rejected="Flag 'typed' is declared `-> bool`"),
            Evaluation("remote", True, "override", service="billing"),
        ]
    )
    assert value == (
        '"SomeNewFeature.is_released";value;source=override, '
        '"new-lp";value="b";source=default, '
        '"off";value=?0;source=default, '
        '"typed";value="a";source=default;rejected="Flag \'typed\' is declared `-> bool`", '
        '"remote";value;source=override;service="billing"'
    )


def test_format_is_a_valid_structured_list() -> None:
    value = format_report([Evaluation('q"uo\\te', 'say "hi"\\'), Evaluation("x", True)])
    parsed = http_sf.parse(value.encode(), tltype="list")
    assert parsed == [
        ('q"uo\\te', {"value": 'say "hi"\\', "source": http_sf.Token("default")}),
        ("x", {"value": True, "source": http_sf.Token("default")}),
    ]


def test_non_ascii_travels_as_display_strings() -> None:
    value = format_report([Evaluation("café.open", "ünïcode", rejected="naïve")])
    assert value.isascii()
    assert value.startswith('%"caf%c3%a9.open"')
    assert parse_report(value) == [Evaluation("café.open", "ünïcode", rejected="naïve")]


def test_reason_is_cut_to_200_characters() -> None:
    value = format_report([Evaluation("a", "x", rejected="r" * 500)])
    assert parse_report(value)[0].rejected == "r" * 200


def test_values_that_are_not_flags_are_left_out() -> None:
    # A default that returned None (untyped flag): the name is still reported.
    assert format_report([Evaluation("a", None)]) == '"a";source=default'


def test_nothing_evaluated_is_no_header() -> None:
    assert format_report([]) == ""


def _items(value: str) -> list[tuple[object, dict[str, object]]]:
    parsed = http_sf.parse(value.encode(), tltype="list")
    assert isinstance(parsed, list)
    return parsed  # type: ignore[return-value]


@pytest.mark.parametrize("budget", [64, 100, 500, 1000, 4096])
def test_budget_cuts_the_list_and_says_how_many(budget: int) -> None:
    evaluations = [Evaluation(f"flag.number{i}", "v" * 20) for i in range(300)]
    value = format_report(evaluations, budget=budget)
    assert len(value.encode()) <= budget
    items = _items(value)
    last_name, last_params = items[-1]
    assert last_name == TRUNCATED
    kept = len(items) - 1
    assert last_params == {"omitted": 300 - kept}
    assert [name for name, _ in items[:-1]] == [f"flag.number{i}" for i in range(kept)]
    assert parse_report(value).dropped == 300 - kept  # type: ignore[attr-defined]


def test_everything_that_fits_has_no_marker() -> None:
    evaluations = [Evaluation(f"f{i}", True) for i in range(10)]
    value = format_report(evaluations, budget=4096)
    assert TRUNCATED not in value
    exact = len(value)
    assert format_report(evaluations, budget=exact) == value
    assert TRUNCATED in format_report(evaluations, budget=exact - 1)


def test_dropped_upstream_is_announced() -> None:
    value = format_report([Evaluation("a", True)], dropped=7)
    assert value == '"a";value;source=default, "featureflag.truncated";omitted=7'


def test_parse_is_lenient() -> None:
    assert parse_report("not a ;; list ((") == []
    assert parse_report("") == []
    assert parse_report("\u2603") == []  # not latin-1: garbled, not an exception
    value = '"a";value;source=override;future=1, ("inner" "list"), 42, "has space";value, "b"'
    assert parse_report(value, service="down") == [
        Evaluation("a", True, "override", service="down"),
        Evaluation("b", None, "default", service="down"),
    ]


def test_parse_keeps_a_deeper_service_name() -> None:
    value = format_report([Evaluation("a", "x", service="tax"), Evaluation("b", "y")])
    assert [e.service for e in parse_report(value, service="billing")] == ["tax", "billing"]


names = st.text(min_size=1, max_size=40).filter(is_valid_name)
values = st.one_of(st.booleans(), st.text(max_size=50))
evaluations = st.lists(
    st.builds(
        Evaluation,
        names,
        values,
        st.sampled_from(["default", "override"]),
        st.one_of(st.none(), st.text(max_size=60)),
        st.one_of(st.none(), st.text(min_size=1, max_size=20)),
    ),
    max_size=8,
)


@given(evaluations)
def test_round_trip(items: list[Evaluation]) -> None:
    value = format_report(items, budget=100_000)
    assert parse_report(value) == items


@given(st.binary(max_size=300))
def test_parse_never_raises(data: bytes) -> None:
    for evaluation in parse_report(data.decode("latin-1")):
        assert is_valid_name(evaluation.name)


def test_format_scope_matches_format_report() -> None:
    scope = Scope({}, limit=3)
    scope.observe("a", True)
    scope.use_override("b", "x")
    scope.reject("c", False, "Flag 'c' is declared `-> bool`")
    scope.observe("d", True)  # past the limit: dropped
    scope.add_remote(Evaluation("e", "y", "override", service="billing"))
    expected = format_report(scope.evaluations(), dropped=scope.dropped)
    assert format_scope(scope) == expected
    assert expected.endswith('"featureflag.truncated";omitted=2')
    assert format_scope(scope, budget=64) == format_report(
        scope.evaluations(), dropped=scope.dropped, budget=64
    )


@given(evaluations, st.integers(min_value=64, max_value=600), st.integers(0, 600))
def test_the_budget_always_holds_and_the_count_adds_up(
    items: list[Evaluation], budget: int, dropped: int
) -> None:
    value = format_report(items, dropped=dropped, budget=budget)
    assert len(value.encode()) <= budget
    parsed = parse_report(value)
    omitted = parsed.dropped  # type: ignore[attr-defined]
    assert len(parsed) + omitted == len(items) + dropped
    assert parsed == items[: len(parsed)]


def _scope_with(*entries: tuple[str, object]) -> Scope:
    scope = Scope({})
    for name, entry in entries:
        scope.record(name, entry)
    return scope


def test_cached_report_is_never_served_for_other_values() -> None:
    # Equal keys must mean the same report: True == 1 and hash(True) == hash(1), but a
    # default of 1 is not reported with a value. Each pair below shares names and order.
    pairs = [
        (("a", True), ("a", 1)),
        (("a", True), ("a", False)),
        (("a", "x"), ("a", "y")),
        (("a", True), ("a", _overridden(True))),
        (("a", _overridden("x")), ("a", _overridden("y"))),
        (("a", _overridden(True)), ("a", _Rejected(True, "Flag 'a' is declared `-> str`"))),
    ]
    for first, second in pairs:
        for entries in ((first,), (second,), (first,)):
            scope = _scope_with(*entries)
            assert scope_report(scope) == format_scope(scope).encode(), entries
    assert scope_report(_scope_with(("a", 1))) == b'"a";source=default'


def test_cached_report_depends_on_order_budget_remote_and_dropped() -> None:
    a, b = ("a", "x" * 40), ("b", "y" * 40)
    assert scope_report(_scope_with(a, b)) != scope_report(_scope_with(b, a))
    scope = _scope_with(a, b)
    assert scope_report(scope, budget=64) == format_scope(scope, budget=64).encode()
    assert scope_report(scope, budget=64) != scope_report(scope)
    remote = _scope_with(a, b)
    remote.add_remote(Evaluation("c", True, "override", service="billing"))
    assert scope_report(remote) == format_scope(remote).encode()
    assert b"billing" in scope_report(remote)
    dropped = Scope({}, limit=2)
    for entry in (a, b, ("c", True)):
        dropped.record(*entry)
    assert b"omitted=1" in scope_report(dropped)


def test_report_cache_stays_bounded() -> None:
    for i in range(_REPORTS_MAX + 10):
        scope_report(_scope_with(("a", str(i))))
        assert len(_reports) <= _REPORTS_MAX


_entries = st.lists(
    st.tuples(
        st.sampled_from(["a", "b", "c"]),
        st.one_of(
            st.booleans(),
            st.integers(0, 2),
            st.sampled_from(["x", "y", "1", "True"]),
            st.none(),
            st.sampled_from([True, False, "x", "y"]).map(_overridden),
        ),
    ),
    max_size=4,
)


@given(st.lists(_entries, min_size=1, max_size=8))
def test_scope_report_always_equals_a_fresh_format(scopes: list[list[tuple[str, object]]]) -> None:
    # Requests one after another, as the middleware sees them: the cache never changes
    # what a fresh format_scope would have said.
    for entries in scopes:
        scope = _scope_with(*entries)
        assert scope_report(scope) == format_scope(scope).encode()


def test_a_cut_report_is_not_cached() -> None:
    # A key holds every value of its scope: kept only when the report shows them all,
    # so the cache holds no more text than its reports.
    _reports.clear()
    scope = _scope_with(*((f"flag-{i}", "v" * 100) for i in range(40)))
    assert b'"featureflag.truncated";omitted=' in scope_report(scope, budget=512)
    assert scope_report(scope, budget=512) == format_scope(scope, budget=512).encode()
    assert _reports == {}
    assert scope_report(scope, budget=8192) == format_scope(scope, budget=8192).encode()
    assert len(_reports) == 1


# Issue 17, item 2: app code can hand the report a lone surrogate (a name, a value, a
# reason or a service computed from bad input); the header must still be written.
_lone = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
_maybe_lone = st.one_of(st.text(max_size=10), st.tuples(st.text(max_size=5), _lone).map("".join))
_wild = st.lists(
    st.builds(
        Evaluation,
        st.one_of(names, st.tuples(names, _lone).map("".join)),
        st.one_of(st.booleans(), _maybe_lone),
        st.sampled_from(["default", "override"]),
        st.one_of(st.none(), _maybe_lone),
        st.one_of(st.none(), _maybe_lone.filter(bool)),
    ),
    max_size=6,
)


def _writable(e: Evaluation) -> bool:
    texts = [t for t in (e.name, e.value, e.rejected, e.service) if isinstance(t, str)]
    return not any(0xD800 <= ord(c) <= 0xDFFF for t in texts for c in t)


@given(_wild, st.integers(min_value=64, max_value=2000))
def test_a_lone_surrogate_never_breaks_the_report(items: list[Evaluation], budget: int) -> None:
    value = format_report(items, budget=budget)
    value.encode("ascii")  # a header value, whatever app code evaluated
    parsed = parse_report(value)
    assert len(parsed) + parsed.dropped == len(items)  # type: ignore[attr-defined]
    # What is written is exactly the writable evaluations, in order; the rest counted.
    assert all(_writable(e) for e in parsed)


def test_a_lone_surrogate_value_is_counted_as_omitted() -> None:
    scope = Scope({})
    scope.observe("ok", True)
    scope.observe("bad", "x\ud800")
    value = scope_report(scope).decode("ascii")
    assert value == f'"ok";value;source=default, "{TRUNCATED}";omitted=1'


# Issue 18: the report formats no further than its budget. The answer must be what
# formatting everything and then cutting gave (the code before), written out here.
def _format_all_then_cut(items: list[Evaluation], dropped: int, budget: int) -> str:
    from featureflag.report import _entry_item, _marker

    formatted = [_entry_item(e.name, e.value, e.source, e.rejected, e.service) for e in items]
    parts = [i for i in formatted if i is not None]
    dropped += len(formatted) - len(parts)
    value = ", ".join(parts)
    if not dropped and len(value) <= budget:
        return value
    total = len(parts) + dropped
    size, kept = -2, 0
    for part in parts:
        grown = size + 2 + len(part)
        if grown + 2 + len(_marker(total - kept - 1)) > budget:
            break
        size, kept = grown, kept + 1
    return ", ".join([*parts[:kept], _marker(total - kept)])


@given(
    st.one_of(_wild, st.lists(st.builds(Evaluation, names, values), max_size=40)),
    st.integers(min_value=64, max_value=700),
    st.integers(0, 3),
)
def test_formatting_up_to_the_budget_gives_what_formatting_everything_gave(
    items: list[Evaluation], budget: int, dropped: int
) -> None:
    assert format_report(items, dropped=dropped, budget=budget) == _format_all_then_cut(
        items, dropped, budget
    )


def test_a_cut_report_formats_only_what_fits(monkeypatch: pytest.MonkeyPatch) -> None:
    from featureflag import report

    formatted: list[str] = []
    item = report._item

    def counting(name: str, *args: object) -> str | None:
        formatted.append(name)
        return item(name, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(report, "_item", counting)
    scope = Scope({}, limit=500)
    for i in range(600):  # 100 past the limit too
        scope.observe(f"Many.flag_{i:03d}", i % 2 == 0)
    value = scope_report(scope, budget=1024).decode()
    listed = parse_report(value)
    assert len(listed) + listed.dropped == 600  # type: ignore[attr-defined]
    assert value.endswith(f'"{TRUNCATED}";omitted={600 - len(listed)}')
    # What was listed, the one that overflowed the budget, at most one more: not 500.
    assert len(listed) < len(formatted) <= len(listed) + 2


def test_a_scope_too_large_for_any_report_to_fit_skips_the_cache(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built: list[object] = []
    fingerprint = Scope.fingerprint

    def spy(self: Scope, most: int | None = None) -> object:
        built.append(result := fingerprint(self, most))
        return result

    monkeypatch.setattr(Scope, "fingerprint", spy)
    small, large = Scope({}), Scope({})
    for i in range(3):
        small.observe(f"s{i}", True)
    for i in range(300):  # 300 x 18 characters at the very least: past 4096
        large.observe(f"l{i}", True)
    assert large.fingerprint() is not None  # within the limit: it has one
    built.clear()
    _reports.clear()
    assert scope_report(large) == format_scope(large).encode()
    assert built == [None] and not _reports  # no key built, nothing cached
    assert scope_report(small) == format_scope(small).encode()
    assert len(_reports) == 1  # below the bound, a complete report is still cached
