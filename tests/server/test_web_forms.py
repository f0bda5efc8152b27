"""The fork form round trip: what the edit form renders is what a browser sends back."""

from __future__ import annotations

from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from featureflag.tokens import override_problem
from featureflag_server.errors import InvalidFork
from featureflag_server.forks import Forks
from featureflag_server.memory_store import MemoryStore
from featureflag_server.settings import Settings
from featureflag_server.store import Fork
from featureflag_server.web import WebPage
from featureflag_server.web_forms import ForkForm, parse_fork_form

from .conftest import ALICE, SECRET

CATALOG: list[dict[str, Any]] = [
    {"name": "Checkout.is_one_click", "type": "bool", "choices": None, "default": False},
    {"name": "banner-text", "type": "str", "choices": None, "default": "Hello"},
    {"name": "new-lp", "type": "str", "choices": ["a", "b"], "default": None},
    {"name": "odd", "type": "str", "choices": ["", "v:x", 'say "hi" <b>&', "a b"]},
    {"name": "mystery", "type": None, "choices": None, "default": None},
]
PAGE = WebPage(
    Settings(secret=SECRET, environment="test", api_tokens={"alice": ALICE}), MemoryStore()
)


class BrowserForm(HTMLParser):
    """The name/value pairs a browser submits for the page's fork form."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.inside = False
        self.fields: list[tuple[str, str]] = []
        self._select: list[Any] | None = None  # [name, first option, selected option]
        self._textarea: list[str] | None = None  # [name, text...]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form" and "fork" in (a.get("class") or ""):
            self.inside = True
        if not self.inside:
            return
        name = a.get("name")
        if tag == "input" and name and "disabled" not in a:
            if a.get("type") == "checkbox":
                if "checked" in a:
                    self.fields.append((name, a.get("value") or "on"))
            else:
                self.fields.append((name, a.get("value") or ""))
        elif tag == "select" and name:
            self._select = [name, None, None]
        elif tag == "textarea" and name:
            self._textarea = [name]
        elif tag == "option" and self._select is not None:
            value = a.get("value") or ""
            if self._select[1] is None:
                self._select[1] = value
            if "selected" in a:
                self._select[2] = value

    def handle_data(self, data: str) -> None:
        if self._textarea is not None:
            self._textarea.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "textarea" and self._textarea is not None:
            name, *text = self._textarea
            # A browser drops one newline right after <textarea>.
            self.fields.append((name, "".join(text).removeprefix("\n")))
            self._textarea = None
        elif tag == "select" and self._select is not None:
            name, first, chosen = self._select
            self.fields.append((name, chosen if chosen is not None else first))
            self._select = None
        elif tag == "form":
            self.inside = False


def submit(form: ForkForm, *, editing: bool = True) -> dict[str, str]:
    """The fields a browser sends back for *form* rendered as the edit (or new) page."""
    html = PAGE.templates.get_template("fork_form.html").render(
        csrf_field="csrf_token",
        csrf_token="x",
        user="alice",
        flash=None,
        form=form,
        editing=editing,
    )
    parser = BrowserForm()
    parser.feed(html)
    fields = dict(parser.fields)
    assert len(fields) == len(parser.fields), "two controls share a name"
    return fields


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)
EXTRA_NAMES = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda n: override_problem(n, "") is None and n not in {e["name"] for e in CATALOG}
)


@st.composite
def fork_flags(draw: st.DrawFn) -> dict[str, bool | str]:
    flags: dict[str, bool | str] = {}
    if draw(st.booleans()):
        flags["Checkout.is_one_click"] = draw(st.booleans())
    if draw(st.booleans()):
        flags["banner-text"] = draw(TEXT)
    if draw(st.booleans()):
        flags["new-lp"] = draw(st.sampled_from(["a", "b"]))
    if draw(st.booleans()):
        flags["odd"] = draw(st.sampled_from(CATALOG[3]["choices"]))
    if draw(st.booleans()):
        flags["mystery"] = draw(st.booleans() | TEXT)
    for name in draw(st.lists(EXTRA_NAMES, max_size=3, unique=True)):
        flags[name] = draw(st.booleans() | TEXT)
    return flags


@settings(max_examples=150, deadline=None)
@given(fork_flags())
def test_saving_the_edit_form_unchanged_keeps_every_flag(flags: dict[str, bool | str]) -> None:
    fork = Fork(name="new-lp", upstream="http://127.0.0.1:8001", flags=flags)
    parsed = parse_fork_form(submit(ForkForm.from_fork(fork, CATALOG)), CATALOG, name="new-lp")
    assert parsed.errors == {}
    assert parsed.flags() == flags
    assert parsed.upstream == fork.upstream


async def test_a_value_the_catalog_no_longer_allows_is_refused_not_dropped() -> None:
    fork = Fork(
        name="new-lp",
        upstream="http://127.0.0.1:8001",
        flags={"new-lp": "c", "Checkout.is_one_click": "yes"},
    )
    sent = submit(ForkForm.from_fork(fork, CATALOG))
    parsed = parse_fork_form(sent, CATALOG, name="new-lp")
    # The form reads the select (a boolean is true or false) ...
    assert "true or false" in parsed.errors["flags"]
    assert parsed.flags()["new-lp"] == "c"
    # ... and the forks layer refuses the stale choice, in the SDK's words.
    store = MemoryStore()
    await store.put_catalog(CATALOG)
    forks = Forks(store, PAGE.forks.signer, fork_domain="localhost")
    with pytest.raises(InvalidFork) as caught:
        await forks.build("new-lp", parsed.spec(), user="alice")
    rules = {problem.field: problem.rule for problem in caught.value.problems}
    assert "accepts only 'a', 'b'" in rules["flags.new-lp"]


def test_labels_and_expiry_round_trip_through_the_edit_form() -> None:
    fork = Fork(
        name="new-lp",
        upstream="http://127.0.0.1:8001",
        labels={"team": "checkout", "pr": "1234"},
        expires_at=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
    )
    parsed = parse_fork_form(submit(ForkForm.from_fork(fork, CATALOG)), CATALOG, name="new-lp")
    assert parsed.errors == {}
    assert parsed.labels == fork.labels
    assert parsed.expires_at == "2030-01-02T03:04:05Z"
    assert parsed.ttl is None


@pytest.mark.parametrize(
    ("expires", "ttl", "expires_at", "error"),
    [
        ("", None, None, None),
        ("90m", 5400.0, None, None),
        ("8H", 28800.0, None, None),
        ("1.5d", 129600.0, None, None),
        ("2030-01-02T03:04Z", None, "2030-01-02T03:04Z", None),
        ("8", None, None, "a duration such as 90m"),
        ("soon", None, None, "a duration such as 90m"),
    ],
)
def test_the_expiry_field_is_a_duration_or_a_time(
    expires: str, ttl: float | None, expires_at: str | None, error: str | None
) -> None:
    sent = {"name": "x", "upstream": "http://h", "expires": expires}
    parsed = parse_fork_form(sent, [], name=None)
    assert (parsed.ttl, parsed.expires_at) == (ttl, expires_at)
    if error is None:
        assert "expires" not in parsed.errors
    else:
        assert error in parsed.errors["expires"]


@pytest.mark.parametrize(
    ("text", "labels", "error"),
    [
        ("team=checkout\n\npr = 12\n", {"team": "checkout", "pr": "12"}, None),
        ("a=b=c", {"a": "b=c"}, None),
        ("no-equals", {}, "line 1: write one key=value per line"),
        ("a=1\na=2", {"a": "1"}, "line 2: the key 'a' appears twice"),
    ],
)
def test_labels_are_key_value_lines(text: str, labels: dict[str, str], error: str | None) -> None:
    parsed = parse_fork_form({"labels": text}, [], name="x")
    assert parsed.labels == labels
    assert parsed.errors.get("labels") == error


def test_a_blank_form_sends_no_flags() -> None:
    sent = submit(ForkForm.blank(CATALOG))
    sent.update(name="blank", upstream="http://127.0.0.1:8001")
    parsed = parse_fork_form(sent, CATALOG, name=None)
    assert parsed.errors == {}
    assert parsed.flags() == {}


# -- issue 19: a re-rendered form keeps every choice; links prefill typed rows --------------


def resubmit(form: ForkForm) -> dict[str, str]:
    """The fields a browser sends back for a re-rendered *new* fork form."""
    return submit(form, editing=False)


def chosen(form: ForkForm) -> list[tuple[object, ...]]:
    """What the user chose, row by row, in the form's own terms."""
    return [
        (row.name, row.type_choice if row.type is None else row.type, row.set, row.value,
         row.as_text if row.type is None else None, row.error)
        for row in form.rows
        if row.name or row.set
    ]  # fmt: skip


VALUES = st.sampled_from(["true", "FALSE", "yes", "", " 1 ", "Free", "v:x"]) | TEXT


@st.composite
def posted_forms(draw: st.DrawFn) -> dict[str, str]:
    """A new-fork form as a browser may post it, right or wrong, with added rows."""
    sent = {
        "name": draw(st.sampled_from(["new-lp", "www", "Bad_Name", ""])),
        "upstream": draw(st.sampled_from(["http://127.0.0.1:8001", "ftp://x", ""])),
        "labels": draw(st.sampled_from(["", "team=checkout", "no-equals"])),
        "expires": draw(st.sampled_from(["", "8h", "soon"])),
        "flag-0-name": "Checkout.is_one_click",
        "flag-0-value": draw(st.sampled_from(["", "v:true", "v:false", "v:maybe"])),
        "flag-1-name": "banner-text",
        "flag-1-value": draw(VALUES),
        "flag-4-name": "mystery",
        "flag-4-value": draw(VALUES),
        "flag-4-type": draw(st.sampled_from(["auto", "str", "bool"])),
    }
    if draw(st.booleans()):
        sent["flag-1-set"] = "1"
    if draw(st.booleans()):
        sent["flag-4-set"] = "1"
    if draw(st.booleans()):
        sent["flag-4-text"] = "1"
    for index in range(5, 5 + draw(st.integers(0, 3))):
        sent[f"flag-{index}-added"] = "1"
        sent[f"flag-{index}-set"] = "1"
        sent[f"flag-{index}-name"] = draw(st.sampled_from(["", "frontend.a", "frontend.b", "x y"]))
        sent[f"flag-{index}-value"] = draw(VALUES)
        sent[f"flag-{index}-type"] = draw(st.sampled_from(["auto", "str", "bool"]))
        if draw(st.booleans()):
            sent[f"flag-{index}-text"] = "1"
    return sent


@settings(max_examples=150, deadline=None)
@given(posted_forms())
def test_a_rerendered_form_sends_back_every_choice(sent: dict[str, str]) -> None:
    # Issue 19 item 1: whatever was posted, right or wrong, the re-rendered form sends
    # the same choices back (the type select used to fall back to "string").
    first = parse_fork_form(sent, CATALOG, name=None)
    again = parse_fork_form(resubmit(first), CATALOG, name=None)
    assert chosen(again) == chosen(first)
    assert (again.name, again.upstream, again.labels_text, again.expires) == (
        first.name,
        first.upstream,
        first.labels_text,
        first.expires,
    )
    assert again.errors == first.errors


def test_the_edit_form_keeps_text_that_reads_as_a_boolean() -> None:
    flags: dict[str, bool | str] = {"frontend.a": "true", "frontend.b": "False", "mystery": "true"}
    fork = Fork(name="new-lp", upstream="http://127.0.0.1:8001", flags=flags)
    parsed = parse_fork_form(submit(ForkForm.from_fork(fork, CATALOG)), CATALOG, name="new-lp")
    assert parsed.errors == {}
    assert parsed.flags() == flags
