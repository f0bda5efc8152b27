"""The browser extension in a real Chromium, against the real demo stack.

The override service, the demo shop and its downstream service run as real processes on
127.0.0.1; Chromium loads the unpacked extension built by ``scripts/build-extension``. The
popup is opened as a tab (``popup.html?tab=N``) so the test can drive it.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from playwright.sync_api import (
    BrowserContext,
    Page,
    Playwright,
    Response,
    Worker,
    expect,
)

from featureflag import Evaluation, OverrideSigner
from featureflag.report import format_report, parse_report
from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS, LiveDemo
from tests.support.servers import ROOT, free_port

pytestmark = pytest.mark.browser

EXTENSION = ROOT / "browser-extension"
DIST = EXTENSION / "dist"
SCREENSHOT = ROOT / "docs" / "extension-popup.png"

# -- fixtures (the stack itself is ``live_demo`` from conftest.py) -------------------


@pytest.fixture(scope="session")
def extension_dir() -> Path:
    """The unpacked extension, (re)built once per session (the build takes about a second)."""
    subprocess.run([str(ROOT / "scripts" / "build-extension")], check=True, capture_output=True)
    assert (DIST / "manifest.json").exists()
    return DIST


@dataclass
class Extension:
    """A Chromium profile with the extension loaded, and helpers to drive it."""

    context: BrowserContext
    worker: Worker
    id: str
    api: Page  # an extension page to call chrome.* APIs from

    def call(self, script: str, arg: Any = None) -> Any:
        return self.api.evaluate(script, arg)

    def configure(self, service_url: str, api_token: str) -> None:
        config = {"serviceUrl": service_url, "apiToken": api_token, "ttlMinutes": 60}
        self.call("c => chrome.storage.local.set({config: c})", config)

    def open(self, url: str) -> Page:
        page = self.context.new_page()
        page.goto(url)
        return page

    def tab_id(self, page: Page) -> int:
        tabs = self.call("() => chrome.tabs.query({})")
        ids = [t["id"] for t in tabs if t.get("url") == page.url]
        assert len(ids) == 1, (page.url, tabs)
        return int(ids[0])

    def popup(self, page: Page) -> Page:
        popup = self.context.new_page()
        popup.set_viewport_size({"width": 484, "height": 560})
        popup.goto(f"chrome-extension://{self.id}/popup.html?tab={self.tab_id(page)}")
        return popup

    def expect_badge(self, page: Page, text: str) -> None:
        """Wait until the tab's badge reads *text* (the worker sets it after the popup renders)."""
        self.api.wait_for_function(
            "async ([id, text]) => (await chrome.action.getBadgeText({tabId: id})) === text",
            arg=[self.tab_id(page), text],
        )

    def badge_title(self, page: Page) -> str:
        """The toolbar button's tooltip on the tab."""
        return str(self.call("id => chrome.action.getTitle({tabId: id})", self.tab_id(page)))


def expected_id() -> str:
    """The id Chrome derives from the manifest's public key (so it is the same everywhere)."""
    key = json.loads((EXTENSION / "manifest.json").read_text())["key"]
    digest = hashlib.sha256(base64.b64decode(key)).hexdigest()[:32]
    return "".join(chr(ord("a") + int(c, 16)) for c in digest)


@contextmanager
def launch(
    playwright: Playwright, extension_dir: Path, profile: Path, *extra_args: str
) -> Iterator[Extension]:
    """Chromium with the unpacked extension in a fresh profile (see browser-testing.md)."""
    context = playwright.chromium.launch_persistent_context(
        str(profile),
        executable_path=CHROMIUM,
        headless=True,
        # Playwright turns extensions and the back/forward cache off; Chrome has both on.
        ignore_default_args=["--disable-extensions", "--disable-back-forward-cache"],
        args=[
            *CHROMIUM_ARGS,
            *extra_args,
            f"--disable-extensions-except={extension_dir}",
            f"--load-extension={extension_dir}",
        ],
    )
    try:
        worker = (
            context.service_workers[0]
            if context.service_workers
            else context.wait_for_event("serviceworker")
        )
        # A round trip into the worker: its listeners are live before the first navigation.
        worker.evaluate("async () => { await chrome.storage.session.get(null); }")
        ext_id = worker.url.split("/")[2]
        api = context.new_page()
        api.goto(f"chrome-extension://{ext_id}/options.html")
        yield Extension(context, worker, ext_id, api)
    finally:
        context.close()


@pytest.fixture
def ext(playwright_session: Playwright, extension_dir: Path, tmp_path: Path) -> Iterator[Extension]:
    with launch(playwright_session, extension_dir, tmp_path / "profile") as extension:
        yield extension


# -- helpers -----------------------------------------------------------------------------


def row(popup: Page, name: str) -> Any:
    return popup.locator(f'tr[data-flag="{name}"]')


def expect_flag(popup: Page, name: str, value: str, source: str, where: str) -> None:
    r = row(popup, name)
    expect(r.locator("td.value")).to_have_attribute("data-value", value)
    expect(r.locator("td.source")).to_have_text(source)
    expect(r.locator("td.where")).to_have_text(where)


def report_of(response: Response) -> dict[str, Any]:
    header = response.headers.get("feature-flags")
    assert header, f"no Feature-Flags header on {response.url}"
    return {e.name: e for e in parse_report(header)}


def carried_token(response: Response) -> bool:
    cookie = response.request.all_headers().get("cookie", "")
    return "featureflag_overrides=" in cookie


def reload_by(page: Page, button: Any) -> Response:
    """Click *button* (in the popup); return the app's response to the reload it triggers.

    Returns once the reloaded document has fired ``load``, so the next navigation in the
    test cannot collide with the reload.
    """
    with (
        page.expect_event("load"),
        page.expect_response(
            lambda r: r.url == page.url and r.request.is_navigation_request()
        ) as info,
    ):
        button.click()
    return info.value


def apply_and_reload(popup: Page, page: Page) -> Response:
    """Press Apply; return the app's response to the reload it triggers."""
    return reload_by(page, popup.locator("#apply"))


# -- tests -------------------------------------------------------------------------------


def test_id_is_stable_from_the_manifest_key(ext: Extension) -> None:
    assert ext.id == expected_id()


def test_popup_lists_the_pages_flags_with_defaults(ext: Extension, live_demo: LiveDemo) -> None:
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    expect_flag(popup, "new-lp", "a", "default", "server")
    expect_flag(popup, "Checkout.is_one_click", "false", "default", "server")
    expect_flag(popup, "promo-banner", "Free shipping over $50", "default", "server")
    # Nothing configured: the flags still show, and the popup says what to set.
    notice = popup.locator(".notice.info")
    expect(notice).to_contain_text("override service URL")
    expect(notice).to_contain_text("API token")
    expect(popup.locator("#apply")).to_be_disabled()
    ext.expect_badge(page, "")


def test_bool_override_changes_the_page(ext: Extension, live_demo: LiveDemo) -> None:
    ext.configure(live_demo.service_url, live_demo.api_token)
    page = ext.open(live_demo.app_url + "/")
    expect(page.get_by_test_id("checkout")).to_be_visible()
    popup = ext.popup(page)
    switch = row(popup, "Checkout.is_one_click").locator("input.switch")
    expect(switch).not_to_be_checked()
    switch.check()
    response = apply_and_reload(popup, page)

    assert carried_token(response)
    reported = report_of(response)["Checkout.is_one_click"]
    assert (reported.value, reported.source) == (True, "override")
    expect(page.get_by_test_id("one-click")).to_be_visible()
    expect_flag(popup, "Checkout.is_one_click", "true", "override", "server")
    expect_flag(popup, "new-lp", "a", "default", "server")
    ext.expect_badge(page, "1")
    cookies = [
        c for c in ext.context.cookies(live_demo.app_url) if c["name"] == "featureflag_overrides"
    ]
    assert len(cookies) == 1 and cookies[0]["httpOnly"]


def test_string_override_changes_the_page(ext: Extension, live_demo: LiveDemo) -> None:
    ext.configure(live_demo.service_url, live_demo.api_token)
    page = ext.open(live_demo.app_url + "/")
    expect(page.get_by_test_id("landing")).to_have_attribute("data-variant", "a")
    popup = ext.popup(page)
    # new-lp is declared -> Literal["a", "b"]: the catalog gives the popup its choices.
    row(popup, "new-lp").locator("select").select_option("b")
    row(popup, "promo-banner").locator("textarea").fill("Spring sale: 20% off")
    response = apply_and_reload(popup, page)

    reported = report_of(response)
    assert (reported["new-lp"].value, reported["new-lp"].source) == ("b", "override")
    assert reported["promo-banner"].value == "Spring sale: 20% off"
    expect(page.get_by_test_id("landing")).to_have_attribute("data-variant", "b")
    expect(page.get_by_test_id("banner")).to_have_text("Spring sale: 20% off")
    expect_flag(popup, "new-lp", "b", "override", "server")
    expect_flag(popup, "promo-banner", "Spring sale: 20% off", "override", "server")
    ext.expect_badge(page, "2")


def test_clear_restores_the_defaults(ext: Extension, live_demo: LiveDemo) -> None:
    ext.configure(live_demo.service_url, live_demo.api_token)
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    row(popup, "Checkout.is_one_click").locator("input.switch").check()
    apply_and_reload(popup, page)
    expect(page.get_by_test_id("one-click")).to_be_visible()

    response = reload_by(page, popup.locator("#clear"))
    assert not carried_token(response)
    assert report_of(response)["Checkout.is_one_click"].source == "default"
    expect(page.get_by_test_id("checkout")).to_be_visible()
    expect_flag(popup, "Checkout.is_one_click", "false", "default", "server")
    names = [c["name"] for c in ext.context.cookies(live_demo.app_url)]
    assert "featureflag_overrides" not in names
    ext.expect_badge(page, "")


def test_tampered_cookie_shows_the_apps_refusal(ext: Extension, live_demo: LiveDemo) -> None:
    ext.configure(live_demo.service_url, live_demo.api_token)
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    row(popup, "Checkout.is_one_click").locator("input.switch").check()
    apply_and_reload(popup, page)
    expect(page.get_by_test_id("one-click")).to_be_visible()

    # Someone edits the cookie: one character of the signature.
    [cookie] = [
        c for c in ext.context.cookies(live_demo.app_url) if c["name"] == "featureflag_overrides"
    ]
    signed, signature = cookie["value"].rsplit(".", 1)
    forged = ("B" if signature[0] != "B" else "C") + signature[1:]
    ext.context.add_cookies([{**cookie, "value": f"{signed}.{forged}"}])
    response = page.reload()
    assert response is not None
    reason = response.headers.get("feature-flag-override-error")
    assert reason == "bad-signature"
    expect(page.get_by_test_id("checkout")).to_be_visible()  # the app failed open

    warning = popup.locator(".notice.warn")
    expect(warning).to_contain_text(f"refused the override token ({reason})")
    ext.expect_badge(page, "!")
    # One click mints a fresh token with the same overrides.
    response = reload_by(page, warning.locator("#reapply"))
    assert "feature-flag-override-error" not in response.headers
    expect(page.get_by_test_id("one-click")).to_be_visible()
    expect(warning).to_have_count(0)
    ext.expect_badge(page, "1")


def test_downstream_and_front_end_flags_appear(
    ext: Extension, live_demo: LiveDemo, sdk_bundle: Path
) -> None:
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    expect_flag(popup, "Recommendations.strategy", "popular", "default", "downstream")
    popup.close()

    front = ext.open(live_demo.app_url + "/frontend")
    flag = front.get_by_test_id("frontend-flag")
    expect(flag).to_have_attribute("data-status", "ready")
    expect(flag).to_have_attribute("data-value", "false")
    popup = ext.popup(front)
    expect_flag(popup, "frontend.chat-widget", "false", "default", "front end")

    # Overriding it reaches the JS SDK (through the app's OFREP endpoint and the cookie).
    ext.configure(live_demo.service_url, live_demo.api_token)
    popup.reload()
    row(popup, "frontend.chat-widget").locator("input.switch").check()
    apply_and_reload(popup, front)
    expect(flag).to_have_attribute("data-value", "true")
    expect_flag(popup, "frontend.chat-widget", "true", "override", "front end")


def test_add_a_flag_the_page_did_not_report(
    ext: Extension, live_demo: LiveDemo, sdk_bundle: Path
) -> None:
    ext.configure(live_demo.service_url, live_demo.api_token)
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    popup.locator("#add-name").fill("frontend.chat-widget")
    popup.locator("#add-type").select_option("true")
    popup.locator("#add button").click()
    added = row(popup, "frontend.chat-widget")
    expect(added.locator("input.switch")).to_be_checked()
    expect(added.locator("td.source")).to_have_text("pending")
    apply_and_reload(popup, page)
    # Applied, but the shop's home page does not evaluate it (its /frontend page does).
    expect(added.locator("td.source")).to_have_text("not used")
    ext.expect_badge(page, "")

    page.goto(live_demo.app_url + "/frontend")
    expect(page.get_by_test_id("frontend-flag")).to_have_attribute("data-value", "true")


def test_downstream_override_and_popup_screenshot(ext: Extension, live_demo: LiveDemo) -> None:
    """Override a flag evaluated downstream; the popup then shows every kind of row."""
    ext.configure(live_demo.service_url, live_demo.api_token)
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    row(popup, "Recommendations.strategy").locator("select").select_option("personal")
    row(popup, "Checkout.is_one_click").locator("input.switch").check()
    response = apply_and_reload(popup, page)
    assert report_of(response)["Recommendations.strategy"].source == "override"
    expect(page.get_by_test_id("strategy")).to_have_text("personal")
    expect_flag(popup, "Recommendations.strategy", "personal", "override", "downstream")
    expect_flag(popup, "Checkout.is_one_click", "true", "override", "server")
    # A change not applied yet: the marked row, the legend, a long value wrapped.
    field = row(popup, "promo-banner").locator("textarea")
    field.fill("Free shipping over $50 this weekend only")
    field.blur()
    expect(popup.locator("#legend")).to_be_visible()
    path = SCREENSHOT if os.environ.get("FEATUREFLAG_SAVE_SCREENSHOT") else None
    image = popup.locator("body").screenshot(path=path)
    assert image[:8] == b"\x89PNG\r\n\x1a\n"


def test_fork_url_works_without_the_extension(page: Page, live_demo: LiveDemo) -> None:
    assert live_demo.fork_url.startswith("http://new-lp.localhost:")
    response = page.goto(live_demo.fork_url)  # a fresh profile, no extension
    assert response is not None and response.ok
    expect(page.get_by_test_id("landing")).to_have_attribute("data-variant", "b")
    expect(page.get_by_test_id("strategy")).to_have_text("personal")
    reported = parse_report(response.headers.get("feature-flags", ""))
    assert {(e.name, e.value, e.source) for e in reported} >= {
        ("new-lp", "b", "override"),
        ("Recommendations.strategy", "personal", "override"),
    }


def test_options_page_tests_the_connection(ext: Extension, live_demo: LiveDemo) -> None:
    options = ext.api
    options.locator("#service-url").fill(live_demo.service_url + "/")
    options.locator("#api-token").fill("not-the-token")
    options.locator("#test").click()
    expect(options.locator("#result")).to_contain_text("refused the API token")
    options.locator("#api-token").fill(live_demo.api_token)
    options.locator("#test").click()
    expect(options.locator("#result")).to_contain_text("Connected")
    options.locator("#save").click()
    expect(options.locator("#result")).to_have_text("Saved.")
    stored = ext.call("async () => (await chrome.storage.local.get('config')).config")
    assert stored == {
        "serviceUrl": live_demo.service_url,
        "apiToken": live_demo.api_token,
        "ttlMinutes": 480,
    }


def test_options_page_warns_before_sending_the_token_over_plain_http(ext: Extension) -> None:
    """Issue 17, item 14: an http:// service on another machine gets no token unasked."""
    options = ext.api
    options.locator("#service-url").fill("http://flags.qa.example.test:8000")
    options.locator("#api-token").fill("s3cret-token")
    options.locator("#save").click()
    expect(options.locator("#result")).to_contain_text("flags.qa.example.test:8000 is reached")
    expect(options.locator("#result")).to_contain_text("plain http://")
    expect(options.locator("#plain-http-anyway")).to_have_text("Save anyway")
    assert ext.call("async () => (await chrome.storage.local.get('config')).config") is None
    options.locator("#test").click()
    expect(options.locator("#plain-http-anyway")).to_have_text("Send anyway")
    # Loopback needs no warning: the token never leaves the machine.
    options.locator("#service-url").fill("http://127.0.0.1:9/")
    options.locator("#save").click()
    expect(options.locator("#result")).to_have_text("Saved.")
    stored = ext.call("async () => (await chrome.storage.local.get('config')).config")
    assert stored["apiToken"] == "s3cret-token"  # Chromium 140+: local storage is locked


def test_flags_from_sub_requests_are_merged(ext: Extension, live_demo: LiveDemo) -> None:
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    expect_flag(popup, "new-lp", "a", "default", "server")
    # A fetch() made by the page, carrying its own token: its report reaches the popup.
    token = OverrideSigner(live_demo.secret, environment=live_demo.environment).dumps(
        {"new-lp": "b"}, sub="e2e"
    )
    status = page.evaluate(
        "async (t) => (await fetch('/', {headers: {'Feature-Flag-Overrides': t}})).status", token
    )
    assert status == 200
    expect_flag(popup, "new-lp", "b", "override", "server")
    # So does a refusal on a sub-request.
    page.evaluate("() => fetch('/', {headers: {'Feature-Flag-Overrides': 'garbage'}})")
    expect(popup.locator(".notice.warn")).to_contain_text("refused the override token")
    # A new top-level navigation starts afresh.
    page.reload()
    expect_flag(popup, "new-lp", "a", "default", "server")
    expect(popup.locator(".notice.warn")).to_have_count(0)


def test_rejected_override_shows_the_apps_reason(ext: Extension, live_demo: LiveDemo) -> None:
    # A validly signed token with a value of the wrong type: the app rejects that one flag.
    signer = OverrideSigner(live_demo.secret, environment=live_demo.environment)
    token = signer.dumps({"Checkout.is_one_click": "yes", "new-lp": "b"}, sub="e2e")
    ext.context.add_cookies(
        [{"name": "featureflag_overrides", "value": token, "url": live_demo.app_url + "/"}]
    )
    page = ext.open(live_demo.app_url + "/")
    expect(page.get_by_test_id("landing")).to_have_attribute("data-variant", "b")
    popup = ext.popup(page)
    expect_flag(popup, "new-lp", "b", "override", "server")
    one_click = row(popup, "Checkout.is_one_click")
    expect(one_click.locator("td.source")).to_have_text("default")
    expect(one_click.locator(".rejected")).to_contain_text("override rejected:")
    expect(one_click.locator(".rejected")).to_contain_text("Checkout.is_one_click")
    # Issue 19: the badge says so too, with the reason in its tooltip.
    ext.expect_badge(page, "!")
    assert ext.badge_title(page) == (
        "Feature flags: the app rejected the override of Checkout.is_one_click; open for the reason"
    )
    expect(popup.locator(".notice.warn")).to_contain_text(
        "The app rejected the override of Checkout.is_one_click"
    )


def test_popup_lists_followed_and_refused_routes(ext: Extension, live_demo: LiveDemo) -> None:
    """A token that routes ``downstream``: the shop reports the route, the popup lists it."""
    signer = OverrideSigner(live_demo.secret, environment=live_demo.environment)

    def load_with_route(url: str) -> tuple[Page, Response]:
        token = signer.dumps({}, sub="e2e", routes={"downstream": url})
        ext.context.add_cookies(
            [{"name": "featureflag_overrides", "value": token, "url": live_demo.app_url + "/"}]
        )
        page = ext.context.new_page()
        response = page.goto(live_demo.app_url + "/")
        assert response is not None
        return page, response

    # Followed: the demo app allows 127.0.0.1:* for "downstream" (its own build stands in).
    page, response = load_with_route(live_demo.downstream_url)
    assert "route;" in (response.headers.get("feature-flags") or "")
    popup = ext.popup(page)
    route = popup.locator('#routes li[data-service="downstream"]')
    expect(popup.locator("#routes")).to_be_visible()
    expect(route).to_have_attribute("data-status", "followed")
    expect(route.locator(".url")).to_have_text(live_demo.downstream_url)
    expect(route.locator(".rejected")).to_have_count(0)
    # The flags are still listed beside it, downstream ones included.
    expect_flag(popup, "Recommendations.strategy", "popular", "default", "downstream")
    popup.close()
    page.close()  # one tab per URL: the popup finds its tab by URL

    # Refused: a host the app does not allow is never followed, and the popup says why.
    page, response = load_with_route("http://evil.example")
    assert response.status == 200
    popup = ext.popup(page)
    route = popup.locator('#routes li[data-service="downstream"]')
    expect(route).to_have_attribute("data-status", "refused")
    expect(route.locator(".url")).to_have_text("http://evil.example")
    expect(route.locator(".chip")).to_have_text("refused")
    expect(route.locator(".rejected")).to_contain_text("evil.example")
    expect(popup.locator("#routes li")).to_have_count(1)


def test_popup_shows_no_routes_section_without_routes(ext: Extension, live_demo: LiveDemo) -> None:
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    expect_flag(popup, "new-lp", "a", "default", "server")
    expect(popup.locator("#routes")).to_be_hidden()


def test_service_refusal_is_shown_in_the_popup(ext: Extension, live_demo: LiveDemo) -> None:
    ext.configure(live_demo.service_url, live_demo.api_token)
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    popup.locator("#add-name").fill("new-lp")
    popup.locator("#add-type").select_option("string")
    popup.locator("#add-value").fill("c")
    popup.locator("#add button").click()
    popup.locator("#apply").click()
    # The service checks overrides against the catalog and says what to send instead.
    error = popup.locator(".notice.error")
    expect(error).to_contain_text(
        "accepts only 'a', 'b' but the override is 'c'; send one of those"
    )
    expect(error.locator("a")).to_have_count(0)  # nothing to fix in Options
    assert "featureflag_overrides" not in [c["name"] for c in ext.context.cookies()]


def test_expired_overrides_offer_a_one_click_reapply(ext: Extension, live_demo: LiveDemo) -> None:
    ext.configure(live_demo.service_url, live_demo.api_token)
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    row(popup, "Checkout.is_one_click").locator("input.switch").check()
    apply_and_reload(popup, page)
    expect(page.get_by_test_id("one-click")).to_be_visible()

    # The token's time is up: the browser drops the cookie, the record says it expired.
    key = f"applied:{live_demo.app_url}"
    ext.call(
        """async (key) => {
            const record = (await chrome.storage.local.get(key))[key];
            await chrome.storage.local.set({[key]: {...record, expiresAt: Date.now() - 1000}});
        }""",
        key,
    )
    ext.context.clear_cookies(name="featureflag_overrides")
    page.reload()
    expect(page.get_by_test_id("checkout")).to_be_visible()
    warning = popup.locator(".notice.warn")
    expect(warning).to_contain_text("Your overrides expired")
    ext.expect_badge(page, "!")

    response = reload_by(page, warning.locator("#reapply"))
    assert carried_token(response)
    expect(page.get_by_test_id("one-click")).to_be_visible()
    expect(warning).to_have_count(0)
    ext.expect_badge(page, "1")


def test_extension_parser_reads_what_the_python_sdk_writes(
    extension_dir: Path, tmp_path: Path
) -> None:
    """Contract 2 across languages: format_report (Python) → parseReport (the extension)."""
    flags = [
        Evaluation("Checkout.is_one_click", True, "override"),
        Evaluation("Checkout.is_guest", False, "default"),
        Evaluation("new-lp", 'say "hi", \\ ok', "default"),
        Evaluation("café.crème", "déjà vu ✓", "override", service="prïcing"),
        Evaluation("Home.is_new", False, "default", rejected="declared -> bool; got 'on'"),
    ]
    many = [Evaluation(f"Flag.number_{i:03}", True, "default") for i in range(300)]
    headers = [format_report(flags), format_report(many, budget=1024)]
    bundle = tmp_path / "report.mjs"
    subprocess.run(
        ["npx", "esbuild", "src/report.ts", "--bundle", "--format=esm", f"--outfile={bundle}"],
        cwd=EXTENSION,
        check=True,
        capture_output=True,
    )
    runner = tmp_path / "run.mjs"
    runner.write_text(
        f"import {{ readFileSync }} from 'node:fs';\n"
        f"import {{ parseReport }} from {json.dumps(str(bundle))};\n"
        "const headers = JSON.parse(readFileSync(0, 'utf8'));\n"
        "console.log(JSON.stringify(headers.map(parseReport)));\n"
    )
    result = subprocess.run(
        ["node", str(runner)], input=json.dumps(headers), check=True, capture_output=True, text=True
    )
    first, cut = json.loads(result.stdout)
    assert [
        (e["name"], e["value"], e["source"], e["rejected"], e["where"])
        for e in first["evaluations"]
    ] == [
        ("Checkout.is_one_click", True, "override", None, {"kind": "server"}),
        ("Checkout.is_guest", False, "default", None, {"kind": "server"}),
        ("new-lp", 'say "hi", \\ ok', "default", None, {"kind": "server"}),
        (
            "café.crème",
            "déjà vu ✓",
            "override",
            None,
            {"kind": "downstream", "service": "prïcing"},
        ),
        ("Home.is_new", False, "default", "declared -> bool; got 'on'", {"kind": "server"}),
    ]
    assert first["omitted"] == 0
    assert cut["omitted"] > 0
    assert len(cut["evaluations"]) + cut["omitted"] == 300


def test_other_sites_stay_unread_until_enabled(
    playwright_session: Playwright, extension_dir: Path, tmp_path: Path, live_demo: LiveDemo
) -> None:
    """Only localhost is granted at install: a QA site's headers stay unread until enabled."""
    port = live_demo.app_url.rsplit(":", 1)[1]
    rules = "--host-resolver-rules=MAP qa.example.test 127.0.0.1"
    with launch(playwright_session, extension_dir, tmp_path / "profile", rules) as ext:
        before = {t["id"] for t in ext.call("() => chrome.tabs.query({})")}
        page = ext.open(f"http://qa.example.test:{port}/")
        expect(page.get_by_test_id("landing")).to_be_visible()
        tabs = ext.call("() => chrome.tabs.query({})")
        [tab] = [t for t in tabs if t["id"] not in before]
        assert "url" not in tab  # no host access, no "tabs" permission: not even the URL
        # The page sent Feature-Flags, but the extension did not read it.
        stored = ext.call("id => chrome.storage.session.get(`tab:${id}`)", tab["id"])
        assert stored == {}
        popup = ext.context.new_page()
        popup.goto(f"chrome-extension://{ext.id}/popup.html?tab={tab['id']}")
        expect(popup.locator("#empty")).to_contain_text("cannot see this tab's address")
        expect(popup.locator("tr[data-flag]")).to_have_count(0)
        # The same app on 127.0.0.1 (granted at install) is read.
        local = ext.open(live_demo.app_url + "/")
        expect_flag(ext.popup(local), "new-lp", "a", "default", "server")
        granted = ext.call("() => chrome.permissions.getAll()")
        assert sorted(granted["origins"]) == sorted(
            ["http://localhost/*", "http://127.0.0.1/*", "http://*.localhost/*"]
        )


def test_tab_state_survives_the_service_worker_being_stopped(
    ext: Extension, live_demo: LiveDemo, sdk_bundle: Path
) -> None:
    """MV3 stops an idle worker; the tab's state lives in chrome.storage.session."""
    front = ext.open(live_demo.app_url + "/frontend")
    expect(front.get_by_test_id("frontend-flag")).to_have_attribute("data-status", "ready")
    popup = ext.popup(front)
    expect_flag(popup, "frontend.chat-widget", "false", "default", "front end")
    expect(row(popup, "new-lp")).to_have_count(0)  # /frontend evaluates no server flag
    popup.close()

    cdp = ext.context.new_cdp_session(ext.api)

    def workers() -> list[str]:
        targets = cdp.send("Target.getTargets")["targetInfos"]
        return [t["targetId"] for t in targets if t["type"] == "service_worker"]

    [worker] = workers()
    cdp.send("Target.closeTarget", {"targetId": worker})
    for _ in range(200):  # wait (at most ~10 s) until Chrome has stopped it
        if not workers():
            break
        ext.api.wait_for_timeout(50)
    assert workers() == [], "the service worker did not stop"

    # A sub-request wakes a new worker, which adds to the state the old one left.
    front.evaluate("() => fetch('/')")
    popup = ext.popup(front)
    expect_flag(popup, "new-lp", "a", "default", "server")
    expect_flag(popup, "frontend.chat-widget", "false", "default", "front end")


def test_back_from_the_back_forward_cache_shows_that_pages_flags(
    ext: Extension, live_demo: LiveDemo, sdk_bundle: Path
) -> None:
    """Back and Forward may show a page again without a request, so without a report."""
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    expect_flag(popup, "new-lp", "a", "default", "server")
    page.evaluate("() => { window.stayed = true; }")  # gone if the page is loaded again

    page.click("a[href='/frontend']")
    expect(page.get_by_test_id("frontend-flag")).to_have_attribute("data-status", "ready")
    expect_flag(popup, "frontend.chat-widget", "false", "default", "front end")
    expect(row(popup, "new-lp")).to_have_count(0)

    page.go_back(wait_until="commit")  # a restored page fires pageshow, not load
    assert page.evaluate("() => window.stayed === true"), "not restored from the bfcache"
    expect_flag(popup, "new-lp", "a", "default", "server")
    expect_flag(popup, "Recommendations.strategy", "popular", "default", "downstream")
    expect(row(popup, "frontend.chat-widget")).to_have_count(0)

    page.go_forward(wait_until="commit")
    expect_flag(popup, "frontend.chat-widget", "false", "default", "front end")
    expect(row(popup, "new-lp")).to_have_count(0)


def test_content_script_cannot_read_the_api_token(ext: Extension, live_demo: LiveDemo) -> None:
    """The content script runs inside web pages; the API token stays out of its reach."""
    ext.configure(live_demo.service_url, live_demo.api_token)
    page = ext.context.new_page()
    cdp = ext.context.new_cdp_session(page)
    contexts: list[dict[str, Any]] = []
    cdp.on("Runtime.executionContextCreated", lambda event: contexts.append(event["context"]))
    cdp.send("Runtime.enable")
    page.goto(live_demo.app_url + "/")
    # The content script's isolated world is named after the extension.
    [world] = [c for c in contexts if c["name"] == "featureflag"]
    read = "chrome.storage.local.get(null).then(JSON.stringify, e => `denied: ${e}`)"
    result = cdp.send(
        "Runtime.evaluate",
        {
            "expression": read,
            "contextId": world["id"],
            "awaitPromise": True,
            "returnByValue": True,
        },
    )
    value = result["result"]["value"]
    assert value.startswith("denied: "), value
    assert live_demo.api_token not in value


def test_build_makes_the_unpacked_folder_and_a_store_zip(extension_dir: Path) -> None:
    zip_path = EXTENSION / "build" / "featureflag-extension.zip"
    first = zip_path.read_bytes()
    with zipfile.ZipFile(zip_path) as zf:
        names = sorted(zf.namelist())
        manifest = json.loads(zf.read("manifest.json"))
    unpacked = sorted(p.relative_to(DIST).as_posix() for p in DIST.rglob("*") if p.is_file())
    assert names == unpacked
    assert "key" not in manifest  # the store assigns the id and refuses a key
    assert "key" in json.loads((DIST / "manifest.json").read_text())  # stable id unpacked
    assert manifest["manifest_version"] == 3
    # Idempotent: building again gives the same zip, byte for byte.
    subprocess.run([str(ROOT / "scripts" / "build-extension")], check=True, capture_output=True)
    assert zip_path.read_bytes() == first


# -- issue 19: what a newcomer tripped on --------------------------------------------------


def test_options_page_refuses_a_pasted_name_token_entry(
    ext: Extension, live_demo: LiveDemo
) -> None:
    """``demo:<token>`` from FEATUREFLAG_API_TOKENS: not a 401, but "paste only the token"."""
    options = ext.api
    hint = options.locator("#api-token-hint")
    expect(hint).to_contain_text("the part after the colon")
    expect(hint).not_to_contain_text("name:token,")
    options.locator("#service-url").fill(live_demo.service_url)
    options.locator("#api-token").fill(f"demo:{live_demo.api_token}")
    options.locator("#test").click()
    result = options.locator("#result")
    expect(result).to_contain_text('paste only the token, the part after "demo:"')
    expect(result).not_to_contain_text("HTTP 401")
    expect(result).not_to_contain_text(live_demo.api_token)  # a password field's value
    # One click keeps only the token part, and tests again.
    options.locator("#token-part").click()
    expect(options.locator("#api-token")).to_have_value(live_demo.api_token)
    expect(result).to_contain_text("Connected")

    # A scoped entry is refused on Save too, and nothing is stored.
    options.locator("#api-token").fill(f"demo:{live_demo.api_token}:read+forks")
    options.locator("#save").click()
    expect(result).to_contain_text('without the ":read+forks" at its end')
    assert ext.call("async () => (await chrome.storage.local.get('config')).config") is None
    # A token that really has a colon in it can be kept as typed.
    options.locator("#token-as-typed").click()
    expect(result).to_have_text("Saved.")
    stored = ext.call("async () => (await chrome.storage.local.get('config')).config")
    assert stored["apiToken"] == f"demo:{live_demo.api_token}:read+forks"


def test_options_page_tells_the_connection_problems_apart(
    ext: Extension, live_demo: LiveDemo
) -> None:
    """The app's URL, nothing at all, a wrong token: each its own message, none "in Options"."""
    options = ext.api
    result = options.locator("#result")

    def test_with(url: str, token: str, expected: str) -> None:
        options.locator("#service-url").fill(url)
        options.locator("#api-token").fill(token)
        options.locator("#test").click()
        expect(result).to_contain_text(expected)
        expect(result).not_to_contain_text("Options")

    # The demo shop has a /healthz of its own, but no /api/tokens.
    test_with(
        live_demo.app_url,
        live_demo.api_token,
        f"{live_demo.app_url} answers, but is not a featureflag override service (no /api/tokens",
    )
    expect(result).to_contain_text("Is it your app's address?")
    expect(result.locator(".notice")).to_have_attribute("data-kind", "error")
    # Without a token the same app is told apart (the service answers 401, the app 404).
    test_with(live_demo.app_url, "", "is not a featureflag override service (no /api/tokens")
    # Nothing listens on this port.
    nowhere = f"http://127.0.0.1:{free_port()}"
    test_with(nowhere, live_demo.api_token, f"Cannot reach the override service at {nowhere}")
    # The service, with a token it does not know.
    test_with(live_demo.service_url, "x" * 32, "refused the API token (HTTP 401)")
    test_with(live_demo.service_url, live_demo.api_token, "Connected")


def test_apply_error_in_the_popup_links_to_options(ext: Extension, live_demo: LiveDemo) -> None:
    """Pointed at the app, Apply says what is wrong and links to Options (it is not Options)."""
    ext.configure(live_demo.app_url, live_demo.api_token)
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    row(popup, "Checkout.is_one_click").locator("input.switch").check()
    popup.locator("#apply").click()
    error = popup.locator(".notice.error")
    expect(error).to_contain_text("is not a featureflag override service (no /api/tokens")
    expect(error.locator("a[href='options.html']")).to_have_text("Open Options")


def test_popup_says_why_choices_are_missing_while_the_service_is_down(
    ext: Extension, live_demo: LiveDemo
) -> None:
    ext.configure(live_demo.service_url, live_demo.api_token)
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    expect(row(popup, "new-lp").locator("select")).to_be_visible()  # the catalog's choices
    expect(popup.locator("#catalog-problem")).to_have_count(0)
    popup.close()

    # Reopened while the service is down (nothing answers at its URL any more).
    ext.configure(f"http://127.0.0.1:{free_port()}", live_demo.api_token)
    popup = ext.popup(page)
    expect(popup.locator("#catalog-problem")).to_have_text(
        "Override service unreachable: choices unavailable "
        "(string flags show a text field instead of their choices)."
    )
    expect(row(popup, "new-lp").locator("textarea")).to_have_value("a")
    expect(row(popup, "new-lp").locator("select")).to_have_count(0)


def test_add_a_flag_by_name_takes_its_known_type(ext: Extension, live_demo: LiveDemo) -> None:
    ext.configure(live_demo.service_url, live_demo.api_token)
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    expect_flag(popup, "promo-banner", "Free shipping over $50", "default", "server")
    name, kind = popup.locator("#add-name"), popup.locator("#add-type")
    # The page reported promo-banner as a string: "text…" is preselected.
    name.fill("promo-banner")
    expect(kind).to_have_value("string")
    expect(popup.locator("#add-value")).to_be_visible()
    # Choosing "on" anyway is refused, and nothing is staged.
    kind.select_option("true")
    popup.locator("#add button").click()
    expect(popup.locator("#status")).to_have_text(
        "Not added: promo-banner is a text flag (the page reported a text value): "
        'choose "text…" and type the value.'
    )
    expect(row(popup, "promo-banner")).not_to_have_class("changed")
    expect(popup.locator("#apply")).to_be_disabled()
    # A switch the page reported off: "on" is preselected, and it is added.
    kind.select_option("string")
    name.fill("Checkout.is_one_click")
    expect(kind).to_have_value("true")
    popup.locator("#add button").click()
    expect(row(popup, "Checkout.is_one_click").locator("input.switch")).to_be_checked()
    expect(popup.locator("#status")).to_have_text("")


def test_text_fields_show_the_whole_value(ext: Extension, live_demo: LiveDemo) -> None:
    """ "Free shipping over $50" was cut to "…over $5": the field wraps and grows instead."""
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    field = row(popup, "promo-banner").locator("textarea")
    expect(field).to_have_value("Free shipping over $50")

    def overflows() -> bool:
        return bool(
            field.evaluate(
                "f => f.scrollWidth > f.clientWidth || f.scrollHeight > f.clientHeight + 1"
            )
        )

    assert not overflows()
    one_line = field.bounding_box()
    field.fill("Free shipping over $50 on every order this weekend, and a gift with each")
    assert not overflows()
    grown = field.bounding_box()
    assert one_line is not None and grown is not None and grown["height"] > one_line["height"]
    assert grown["width"] == one_line["width"]  # it wraps inside its column


def test_changed_mark_has_a_label_a_tooltip_and_a_legend(
    ext: Extension, live_demo: LiveDemo
) -> None:
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    legend = popup.locator("#legend")
    expect(legend).to_be_hidden()
    expect(popup.locator(".changed-mark:visible")).to_have_count(0)
    row(popup, "Checkout.is_one_click").locator("input.switch").check()
    label = "Changed here, not applied yet: press Apply"
    mark = row(popup, "Checkout.is_one_click").locator(".changed-mark")
    expect(mark).to_have_attribute("title", label)
    expect(popup.get_by_role("img", name=label)).to_have_count(1)
    expect(legend).to_be_visible()
    expect(legend).to_contain_text("changed here, not applied yet")
    # Typing in a text field marks its row too, without a re-render.
    row(popup, "promo-banner").locator("textarea").fill("Spring sale")
    expect(row(popup, "promo-banner").locator(".changed-mark")).to_have_attribute("title", label)
    expect(popup.get_by_role("img", name=label)).to_have_count(2)


def test_save_as_fork_opens_the_services_form_with_the_overrides(
    ext: Extension, live_demo: LiveDemo
) -> None:
    page = ext.open(live_demo.app_url + "/")
    popup = ext.popup(page)
    expect(popup.locator("#save-fork")).to_be_hidden()  # no service URL configured
    popup.close()

    ext.configure(live_demo.service_url, live_demo.api_token)
    popup = ext.popup(page)
    link = popup.locator("#save-fork")
    row(popup, "Checkout.is_one_click").locator("input.switch").check()
    apply_and_reload(popup, page)
    expect_flag(popup, "Checkout.is_one_click", "true", "override", "server")
    # A change not applied yet goes into the form too: it is what the popup shows.
    row(popup, "promo-banner").locator("textarea").fill("Spring sale: 20% off")
    expected = (
        f"{live_demo.service_url}/forks/new"
        "?flag.Checkout.is_one_click=true"
        "&flag.promo-banner=%22Spring%20sale%3A%2020%25%20off%22"
    )
    expect(link).to_be_visible()
    expect(link).to_have_attribute("href", expected)
    # What the service reads: each flag's value as JSON, so its type survives.
    query = dict(parse_qsl(urlsplit(expected).query))
    assert {k: json.loads(v) for k, v in query.items()} == {
        "flag.Checkout.is_one_click": True,
        "flag.promo-banner": "Spring sale: 20% off",
    }
    with (
        ext.context.expect_page() as tab,
        ext.context.expect_event(
            "request", lambda r: r.is_navigation_request() and "/forks/new" in r.url
        ) as opened,
    ):
        link.click()
    assert opened.value.url == expected
    assert tab.value != popup  # a tab of its own; the popup stays
    # The service's side of the contract: after signing in, the form is filled in, typed.
    form = tab.value
    expect(form).to_have_url(re.compile(r"/login\?next="))
    form.get_by_label("API token").fill(live_demo.api_token)
    form.get_by_role("button", name="Log in").click()
    expect(form).to_have_url(expected)
    expect(form.get_by_label("Value of promo-banner")).to_have_value("Spring sale: 20% off")
    expect(form.get_by_label("Type of promo-banner")).to_have_value("str")
    # The catalog's boolean flag fills its own row (a select whose chosen label is "true").
    hidden = form.locator('input[type=hidden][value="Checkout.is_one_click"]')
    select_id = "#" + (hidden.get_attribute("name") or "").replace("-name", "-value")
    expect(form.locator(f"{select_id} option:checked")).to_have_text("true")
