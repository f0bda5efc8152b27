"""The service's web page in real Chromium: log in, create a fork, open its URL, see the flag."""

from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.support.servers import ROOT

from .conftest import LiveDemo

pytestmark = [pytest.mark.browser, pytest.mark.integration]

SCREENSHOT = ROOT / "docs" / "web-page.png"
FORM_SCREENSHOT = ROOT / "docs" / "web-page-fork-form.png"


def log_in(page: Page, demo: LiveDemo) -> None:
    page.goto(demo.service_url + "/")
    expect(page).to_have_url(demo.service_url + "/login")
    page.get_by_label("API token").fill(demo.api_token)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_text("Signed in as")).to_contain_text("demo")


def row_value(page: Page, flag: str) -> str:
    """The id of the value input of *flag*'s row in the fork form."""
    hidden = page.locator(f'input[type=hidden][value="{flag}"]')
    name = hidden.get_attribute("name")
    assert name is not None
    return "#" + name.replace("-name", "-value")


def test_log_in_create_a_fork_open_it_edit_and_delete_it(live_demo: LiveDemo, page: Page) -> None:
    log_in(page, live_demo)
    expect(page.locator("tr[data-fork=new-lp]")).to_be_visible()
    expect(page.locator("#catalog")).to_contain_text("Recommendations.strategy")

    # A validation error re-renders the form with the message and the input kept.
    page.get_by_role("link", name="New fork").click()
    page.get_by_label("Name", exact=True).fill("www")  # passes the HTML pattern
    page.get_by_label("Upstream URL").fill(live_demo.app_url)
    page.locator(row_value(page, "new-lp")).select_option(label="b")
    page.get_by_role("button", name="Create fork").click()
    expect(page.get_by_role("alert")).to_contain_text("'www' is reserved")
    expect(page.get_by_label("Upstream URL")).to_have_value(live_demo.app_url)
    expect(page.locator(row_value(page, "new-lp"))).to_have_value("v:b")

    # Create: a Literal flag from a select, a bool flag, and a flag outside the catalog
    # (read in the browser by the JS SDK).
    page.get_by_label("Name", exact=True).fill("browser-lp")
    page.locator(row_value(page, "Checkout.is_one_click")).select_option(label="true")
    page.get_by_placeholder("another flag name").fill("frontend.chat-widget")
    page.get_by_label("Type of the new flag").select_option(label="boolean")
    page.get_by_label("Value of the new flag").fill("true")
    page.get_by_role("button", name="Create fork").click()
    expect(page.get_by_role("status")).to_have_text("Created fork 'browser-lp'.")
    row = page.locator("tr[data-fork=browser-lp]")
    fork_url = live_demo.fork_url_for("browser-lp")
    expect(row.get_by_role("link", name=fork_url)).to_be_visible()

    # FEATUREFLAG_SAVE_SCREENSHOT=1 refreshes docs/web-page.png (left alone otherwise).
    path = SCREENSHOT if os.environ.get("FEATUREFLAG_SAVE_SCREENSHOT") else None
    image = page.screenshot(path=path, full_page=True)
    assert image[:8] == b"\x89PNG\r\n\x1a\n"

    # The copy button puts the URL on the clipboard.
    row.get_by_role("button", name="Copy the URL of browser-lp").click()
    expect(row.get_by_role("button", name="Copy the URL of browser-lp")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == fork_url

    # The fork URL serves the demo shop with the baked-in flags, in a plain browser.
    page.goto(fork_url)
    landing = page.get_by_test_id("landing")
    expect(landing).to_have_attribute("data-variant", "b")
    expect(landing).to_have_text("Landing page B — the redesign")
    expect(page.get_by_test_id("one-click")).to_be_visible()
    expect(page.get_by_test_id("strategy")).to_have_text("popular")
    # The app on its own is unchanged.
    page.goto(live_demo.app_url + "/")
    expect(page.get_by_test_id("landing")).to_have_attribute("data-variant", "a")

    # Edit in the page: back to "a", one-click off.
    page.goto(live_demo.service_url + "/")
    page.locator("tr[data-fork=browser-lp]").get_by_role("link", name="Edit").click()
    expect(page.locator(row_value(page, "new-lp"))).to_have_value("v:b")
    if os.environ.get("FEATUREFLAG_SAVE_SCREENSHOT"):
        page.screenshot(path=str(FORM_SCREENSHOT), full_page=True)
    page.locator(row_value(page, "new-lp")).select_option(label="a")
    page.locator(row_value(page, "Checkout.is_one_click")).select_option(label="false")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("status")).to_have_text("Saved fork 'browser-lp'.")
    page.goto(fork_url)
    expect(page.get_by_test_id("landing")).to_have_attribute("data-variant", "a")
    expect(page.get_by_test_id("checkout")).to_be_visible()

    # Delete (after the confirmation dialog): the fork URL stops working.
    page.goto(live_demo.service_url + "/")
    page.once("dialog", lambda dialog: dialog.accept())
    page.locator("tr[data-fork=browser-lp]").get_by_role("button", name="Delete").click()
    expect(page.get_by_role("status")).to_have_text("Deleted fork 'browser-lp'.")
    expect(page.locator("tr[data-fork=browser-lp]")).to_have_count(0)
    response = page.goto(fork_url)
    assert response is not None and response.status == 404


def test_a_front_end_flag_from_a_fork_reaches_the_js_sdk(
    live_demo: LiveDemo, page: Page, sdk_bundle: Path
) -> None:
    auth = {"Authorization": f"Bearer {live_demo.api_token}"}
    body = {
        "name": "browser-fe",
        "upstream": live_demo.app_url,
        "flags": {"frontend.chat-widget": True},
    }
    created = httpx.post(f"{live_demo.service_url}/api/forks", json=body, headers=auth)
    assert created.status_code == 201, created.text
    try:
        page.goto(live_demo.fork_url_for("browser-fe") + "frontend")
        flag = page.get_by_test_id("frontend-flag")
        expect(flag).to_have_attribute("data-value", "true")
        expect(flag).to_have_attribute("data-status", "ready")
        page.goto(live_demo.app_url + "/frontend")
        expect(page.get_by_test_id("frontend-flag")).to_have_attribute("data-value", "false")
    finally:
        httpx.delete(f"{live_demo.service_url}/api/forks/browser-fe", headers=auth)


def test_logging_out_returns_to_the_login_form(live_demo: LiveDemo, page: Page) -> None:
    log_in(page, live_demo)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("status")).to_have_text("Logged out.")
    page.goto(live_demo.service_url + "/")
    expect(page).to_have_url(re.compile(r"/login$"))


def test_a_copied_session_cookie_is_signed_out_by_logging_out(
    live_demo: LiveDemo, page: Page
) -> None:
    # Issue 17 item 13: the cookie copied before logging out used to stay signed in.
    log_in(page, live_demo)
    [cookie] = [c for c in page.context.cookies() if c["name"].endswith("featureflag_session")]
    assert (
        httpx.get(
            live_demo.service_url + "/", cookies={cookie["name"]: cookie["value"]}
        ).status_code
        == 200
    )
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("status")).to_have_text("Logged out.")
    replayed = httpx.get(live_demo.service_url + "/", cookies={cookie["name"]: cookie["value"]})
    assert replayed.status_code == 303
    assert replayed.headers["location"] == "/login"
