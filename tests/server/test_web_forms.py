"""The fork form round trip: what the edit form renders is what a browser sends back."""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from featureflag._names import is_valid_name
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
        elif tag == "option" and self._select is not None:
            value = a.get("value") or ""
            if self._select[1] is None:
                self._select[1] = value
            if "selected" in a:
                self._select[2] = value

    def handle_endtag(self, tag: str) -> None:
        if tag == "select" and self._select is not None:
            name, first, chosen = self._select
            self.fields.append((name, chosen if chosen is not None else first))
            self._select = None
        elif tag == "form":
            self.inside = False


def submit(form: ForkForm) -> dict[str, str]:
    html = PAGE.templates.get_template("fork_form.html").render(
        csrf_field="csrf_token", csrf_token="x", user="alice", flash=None, form=form, editing=True
    )
    parser = BrowserForm()
    parser.feed(html)
    fields = dict(parser.fields)
    assert len(fields) == len(parser.fields), "two controls share a name"
    return fields


TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=20)
EXTRA_NAMES = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda n: is_valid_name(n) and n not in {e["name"] for e in CATALOG}
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


def test_a_value_the_catalog_no_longer_allows_is_refused_not_dropped() -> None:
    fork = Fork(
        name="new-lp",
        upstream="http://127.0.0.1:8001",
        flags={"new-lp": "c", "Checkout.is_one_click": "yes"},
    )
    sent = submit(ForkForm.from_fork(fork, CATALOG))
    parsed = parse_fork_form(sent, CATALOG, name="new-lp")
    assert "accepts only 'a', 'b'" in parsed.errors["flags"]
    assert "true or false" in parsed.errors["flags"]


def test_a_blank_form_sends_no_flags() -> None:
    sent = submit(ForkForm.blank(CATALOG))
    sent.update(name="blank", upstream="http://127.0.0.1:8001")
    parsed = parse_fork_form(sent, CATALOG, name=None)
    assert parsed.errors == {}
    assert parsed.flags() == {}
