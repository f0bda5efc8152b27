"""The new fork form prefilled from a link: what the link says is what the form stores."""

from __future__ import annotations

from featureflag_server.web_forms import parse_fork_form
from featureflag_server.web_links import form_from_link

from .test_web_forms import CATALOG, resubmit


def test_a_link_s_typed_values_are_what_the_form_stores() -> None:
    params = [
        ("flag.frontend.chat-widget", "true"),
        ("flag.frontend.label", '"false"'),
        ("flag.promo-banner", '"Free shipping over $50"'),
        ("flag.new-lp", '"b"'),
        ("flag.Checkout.is_one_click", "false"),
        ("flag.banner-text", '"Hi"'),
        ("flag.mystery", "true"),
        ("name", "from-popup"),
        ("upstream", "http://127.0.0.1:8001"),
    ]
    linked = form_from_link(CATALOG, params)
    assert linked.errors == {}
    parsed = parse_fork_form(resubmit(linked), CATALOG, name=None)
    assert parsed.errors == {}
    assert (parsed.name, parsed.upstream) == ("from-popup", "http://127.0.0.1:8001")
    assert parsed.flags() == {
        "frontend.chat-widget": True,
        "frontend.label": "false",  # quoted in the link: text, confirmed by the link
        "promo-banner": "Free shipping over $50",
        "new-lp": "b",
        "Checkout.is_one_click": False,
        "banner-text": "Hi",
        "mystery": True,
    }


def test_what_a_link_gets_wrong_is_an_error_and_the_rest_is_kept() -> None:
    linked = form_from_link(
        CATALOG,
        [
            ("flag.frontend.a", "true"),
            ("flag.frontend.a", "false"),
            ("flag.frontend.n", "42"),
            ("flag.frontend.t", "yes"),
            ("flag.", "true"),
            ("utm_source", "popup"),
            ("upstream", " http://127.0.0.1:8001 "),
        ],
    )
    assert linked.upstream == "http://127.0.0.1:8001"
    assert linked.errors["flag.frontend.a"].startswith("appears twice in the link")
    assert linked.errors["flag."].startswith("names no flag")
    rows = {row.name: row for row in linked.rows if row.name}
    assert rows["frontend.a"].value is True  # the first value is kept
    assert rows["frontend.n"].error is not None and "is a number" in rows["frontend.n"].error
    assert rows["frontend.t"].error is not None and "is not JSON" in rows["frontend.t"].error
    assert "frontend.n: the link's value 42 is a number" in linked.errors["flags"]
    # Every link row is an editable "another flag" row, and one empty row follows.
    assert all(row.added for row in rows.values() if not row.known)
    assert linked.rows[-1].name == "" and linked.rows[-1].added
