"""The web page: login, CSRF, and the fork forms, through httpx.ASGITransport."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx
import itsdangerous
import pytest

from featureflag.tokens import MAX_FLAGS
from featureflag_server.memory_store import MemoryStore
from featureflag_server.schemas import FlagEntry
from featureflag_server.settings import Settings
from featureflag_server.store import Fork
from featureflag_server.web import (
    FORM_CONTENT_TYPE,
    FORM_LIMIT,
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    create_web_app,
    session_key,
)

from .conftest import ALICE, BOB, SECRET

BASE = "http://127.0.0.1:8000"
CATALOG: list[dict[str, Any]] = [
    {"name": "Checkout.is_one_click", "type": "bool", "choices": None, "default": None,
     "kind": "trap", "module": "shop", "path": "shop.py", "line": 3,
     "description": "One-click checkout."},
    {"name": "banner-text", "type": "str", "choices": None, "default": "Hello",
     "kind": "intercept", "module": "shop", "path": "shop.py", "line": 9, "description": None},
    {"name": "new-lp", "type": "str", "choices": ["a", "b"], "default": None,
     "kind": "trap", "module": "shop", "path": "shop.py", "line": 12,
     "description": "Landing page variant."},
]  # fmt: skip
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
async def memory() -> AsyncIterator[MemoryStore]:
    store = MemoryStore()
    await store.put_catalog(CATALOG)
    yield store
    await store.close()


@pytest.fixture
async def client(settings: Settings, memory: MemoryStore) -> AsyncIterator[httpx.AsyncClient]:
    app = create_web_app(settings, memory)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as c:
        yield c


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, "the page has no CSRF field"
    return match.group(1)


async def login(client: httpx.AsyncClient, token: str = ALICE) -> str:
    """Log in; return the CSRF token of the logged-in session."""
    page = await client.get("/login")
    response = await client.post(
        "/login", data={"api_token": token, "csrf_token": csrf_of(page.text)}
    )
    assert response.status_code == 303, response.text
    index = await client.get("/")
    assert index.status_code == 200
    return csrf_of(index.text)


def new_fork_form(csrf: str, **extra: str) -> dict[str, str]:
    form = {
        "csrf_token": csrf,
        "name": "new-lp",
        "upstream": "http://127.0.0.1:8001",
        "flag-0-name": "Checkout.is_one_click",
        "flag-0-value": "v:true",
        "flag-1-name": "banner-text",
        "flag-1-set": "1",
        "flag-1-value": "Sale <today>",
        "flag-2-name": "new-lp",
        "flag-2-value": "v:b",
        "flag-3-name": "",
        "flag-3-set": "1",
        "flag-3-value": "",
        "flag-3-type": "str",
    }
    form.update(extra)
    return form


# -- login and the session ---------------------------------------------------------------


async def test_logged_out_pages_redirect_to_login(client: httpx.AsyncClient) -> None:
    for path, location in [
        ("/", "/login"),
        ("/forks/new", "/login?next=%2Fforks%2Fnew"),
        ("/forks/x/edit", "/login?next=%2Fforks%2Fx%2Fedit"),
    ]:
        response = await client.get(path)
        assert response.status_code == 303
        assert response.headers["location"] == location


async def test_login_with_a_known_token_shows_the_forks(client: httpx.AsyncClient) -> None:
    await login(client, BOB)
    page = await client.get("/")
    assert "Signed in as <strong>bob</strong>" in page.text
    assert "Forks" in page.text


async def test_login_with_an_unknown_token_is_refused(client: httpx.AsyncClient) -> None:
    page = await client.get("/login")
    response = await client.post(
        "/login", data={"api_token": "not-a-token-at-all", "csrf_token": csrf_of(page.text)}
    )
    assert response.status_code == 401
    assert "not known to this service" in response.text
    assert (await client.get("/")).status_code == 303


async def test_too_many_unknown_tokens_lock_the_login_form_for_that_prefix_and_address(
    settings: Settings, memory: MemoryStore
) -> None:
    app = create_web_app(settings, memory)
    transport = httpx.ASGITransport(app, client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
        csrf = csrf_of((await client.get("/login")).text)
        for i in range(10):
            guess = {"api_token": f"guess-{i:04d}-0123456789", "csrf_token": csrf}
            assert (await client.post("/login", data=guess)).status_code == 401
        again = {"api_token": "guess-9999-0123456789", "csrf_token": csrf}
        refused = await client.post("/login", data=again)
        assert refused.status_code == 429
        assert "Too many unknown API tokens" in refused.text
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert (await client.get("/")).headers["location"] == "/login"  # not logged in
        await login(client)  # the correct token, same address (a NAT): logged in
    other = httpx.ASGITransport(app, client=("198.51.100.1", 5000))
    async with httpx.AsyncClient(transport=other, base_url=BASE) as client:
        await login(client)  # another address logs in as usual


@pytest.mark.parametrize("csrf", [None, "", "forged-token"])
async def test_login_without_the_right_csrf_token_is_refused(
    client: httpx.AsyncClient, csrf: str | None
) -> None:
    await client.get("/login")
    data = {"api_token": ALICE} if csrf is None else {"api_token": ALICE, "csrf_token": csrf}
    response = await client.post("/login", data=data)
    assert response.status_code == 403
    assert "nothing was changed" in response.text
    assert (await client.get("/")).status_code == 303


async def test_the_session_cookie_is_lax_httponly_and_holds_no_api_token(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    page = await client.get("/login")
    response = await client.post(
        "/login", data={"api_token": ALICE, "csrf_token": csrf_of(page.text)}
    )
    set_cookie = response.headers["set-cookie"].lower()
    assert "httponly" in set_cookie
    assert "samesite=lax" in set_cookie
    assert "secure" not in set_cookie  # settings.secure_cookies is False
    cookie = client.cookies[SESSION_COOKIE]
    payload = base64.b64decode(cookie.split(".")[0])
    session = json.loads(payload)
    assert session["user"] == "alice"
    assert ALICE not in payload.decode()
    assert SECRET not in payload.decode()
    # Signed with a key derived for the web session, not with the raw secret.
    derived = itsdangerous.TimestampSigner(session_key(SECRET, settings.environment))
    assert derived.unsign(cookie)
    with pytest.raises(itsdangerous.BadSignature):
        itsdangerous.TimestampSigner(SECRET).unsign(cookie)


def test_session_keys_differ_by_secret_and_environment() -> None:
    keys = {
        session_key(SECRET, "test"),
        session_key(SECRET, "production"),
        session_key("t" * 40, "test"),
    }
    assert len(keys) == 3
    assert SECRET not in keys


async def test_secure_cookies_setting_marks_the_cookie_secure(
    settings: Settings, memory: MemoryStore
) -> None:
    app = create_web_app(settings.model_copy(update={"secure_cookies": True}), memory)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="https://127.0.0.1") as c:
        response = await c.get("/login")
        assert "secure" in response.headers["set-cookie"].lower()


async def test_removing_the_api_token_ends_the_session(
    client: httpx.AsyncClient, settings: Settings, memory: MemoryStore
) -> None:
    await login(client)
    revoked = settings.model_copy(update={"api_tokens": {"bob": settings.api_tokens["bob"]}})
    app = create_web_app(revoked, memory)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as other:
        other.cookies = client.cookies
        response = await other.get("/")
        assert response.status_code == 303


async def test_logout_ends_the_session(client: httpx.AsyncClient) -> None:
    csrf = await login(client)
    response = await client.post("/logout", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert (await client.get("/")).status_code == 303


async def test_pages_carry_security_headers(client: httpx.AsyncClient) -> None:
    response = await client.get("/login")
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["cache-control"] == "no-store"


async def test_the_static_script_is_served(client: httpx.AsyncClient) -> None:
    response = await client.get("/static/app.js")
    assert response.status_code == 200
    assert "data-copy" in response.text or "dataset.copy" in response.text


# -- forks -------------------------------------------------------------------------------


async def test_the_new_fork_form_has_type_aware_inputs(client: httpx.AsyncClient) -> None:
    await login(client)
    html = (await client.get("/forks/new")).text
    # bool: a select true/false; Literal choices: a select of them; free str: a text field.
    assert re.search(r'<select id="flag-0-value".*?v:true.*?v:false.*?</select>', html, re.S)
    assert re.search(r'<select id="flag-2-value".*?value="v:a".*?value="v:b"', html, re.S)
    assert 'type="checkbox" name="flag-1-set"' in html
    assert '<input id="flag-1-value" name="flag-1-value"' in html
    assert 'placeholder="another flag name"' in html


async def test_create_a_fork_from_the_form(client: httpx.AsyncClient, memory: MemoryStore) -> None:
    csrf = await login(client)
    response = await client.post("/forks/new", data=new_fork_form(csrf))
    assert response.status_code == 303, response.text
    fork = await memory.get_fork("new-lp")
    assert fork is not None
    assert fork.upstream == "http://127.0.0.1:8001"
    assert fork.flags == {
        "Checkout.is_one_click": True,
        "banner-text": "Sale <today>",
        "new-lp": "b",
    }
    assert fork.created_by == "alice"
    index = (await client.get("/")).text
    assert "Created fork &#39;new-lp&#39;." in index
    assert 'data-copy="http://new-lp.localhost:8000/"' in index
    assert "Sale &lt;today&gt;" in index  # autoescaped
    assert "<today>" not in index


async def test_a_flag_outside_the_catalog_can_be_added(
    client: httpx.AsyncClient, memory: MemoryStore
) -> None:
    csrf = await login(client)
    form = new_fork_form(
        csrf, **{"flag-3-name": "Other.enabled", "flag-3-type": "bool", "flag-3-value": "TRUE"}
    )
    assert (await client.post("/forks/new", data=form)).status_code == 303
    fork = await memory.get_fork("new-lp")
    assert fork is not None
    assert fork.flags["Other.enabled"] is True


async def test_unset_flags_are_left_out(client: httpx.AsyncClient, memory: MemoryStore) -> None:
    csrf = await login(client)
    form = new_fork_form(csrf, **{"flag-0-value": "", "flag-2-value": ""})
    del form["flag-1-set"]
    assert (await client.post("/forks/new", data=form)).status_code == 303
    fork = await memory.get_fork("new-lp")
    assert fork is not None
    assert fork.flags == {}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"name": "New_LP"}, "DNS label"),
        ({"name": "www"}, "reserved"),
        ({"name": ""}, "DNS label"),
        ({"upstream": "ftp://example.com"}, "absolute http:// or https:// URL"),
        ({"upstream": "not a url"}, "absolute http:// or https:// URL"),
        ({"flag-0-value": "v:maybe"}, "true or false"),
        ({"flag-0-value": "true"}, "choose a value from the list"),
        ({"flag-2-value": "v:c"}, "accepts only &#39;a&#39;, &#39;b&#39;"),
        ({"flag-3-name": "bad name", "flag-3-value": "x"}, "no whitespace"),
        ({"flag-3-name": "X.on", "flag-3-type": "bool", "flag-3-value": "yes"}, "true or false"),
        ({"flag-3-name": "new-lp", "flag-3-value": "a"}, "appears twice"),
    ],
)
async def test_validation_errors_rerender_the_form_and_store_nothing(
    client: httpx.AsyncClient, memory: MemoryStore, changes: dict[str, str], message: str
) -> None:
    csrf = await login(client)
    response = await client.post("/forks/new", data=new_fork_form(csrf, **changes))
    assert response.status_code == 422
    assert "The fork was not saved" in response.text
    assert message in response.text
    # The user's input is kept.
    assert 'value="http://127.0.0.1:8001"' in response.text or "upstream" in changes
    assert await memory.list_forks() == []


async def test_a_taken_name_is_a_validation_error(
    client: httpx.AsyncClient, memory: MemoryStore
) -> None:
    await memory.create_fork(Fork(name="new-lp", upstream="http://127.0.0.1:9", created_by="bob"))
    csrf = await login(client)
    response = await client.post("/forks/new", data=new_fork_form(csrf))
    assert response.status_code == 422
    assert "already exists" in response.text
    fork = await memory.get_fork("new-lp")
    assert fork is not None and fork.upstream == "http://127.0.0.1:9"


async def test_edit_a_fork(client: httpx.AsyncClient, memory: MemoryStore) -> None:
    original = await memory.create_fork(
        Fork(
            name="new-lp",
            upstream="http://127.0.0.1:9",
            flags={"new-lp": "a", "Legacy.flag": "kept", "Gone.flag": True},
            created_by="bob",
        )
    )
    csrf = await login(client)
    html = (await client.get("/forks/new-lp/edit")).text
    assert '<option value="v:a" selected>' in html
    assert "Legacy.flag" in html and "not in the catalog" in html
    # Find the rows the page gave the two flags outside the catalog.
    legacy = re.search(r'name="flag-(\d+)-name" value="Legacy.flag"', html)
    gone = re.search(r'name="flag-(\d+)-name" value="Gone.flag"', html)
    assert legacy and gone
    form = {
        "csrf_token": csrf,
        "upstream": "http://127.0.0.1:8001",
        "flag-0-name": "Checkout.is_one_click",
        "flag-0-value": "v:false",
        "flag-2-name": "new-lp",
        "flag-2-value": "v:b",
        f"flag-{legacy.group(1)}-name": "Legacy.flag",
        f"flag-{legacy.group(1)}-set": "1",
        f"flag-{legacy.group(1)}-value": "kept",
        f"flag-{legacy.group(1)}-type": "str",
        f"flag-{gone.group(1)}-name": "Gone.flag",  # unchecked: removed
        f"flag-{gone.group(1)}-value": "true",
        f"flag-{gone.group(1)}-type": "bool",
    }
    response = await client.post("/forks/new-lp/edit", data=form)
    assert response.status_code == 303, response.text
    fork = await memory.get_fork("new-lp")
    assert fork is not None
    assert fork.upstream == "http://127.0.0.1:8001"
    assert fork.flags == {"Checkout.is_one_click": False, "new-lp": "b", "Legacy.flag": "kept"}
    assert fork.created_by == "bob"
    assert fork.created_at == original.created_at
    assert fork.updated_at >= original.updated_at


async def test_an_invalid_edit_keeps_the_fork(
    client: httpx.AsyncClient, memory: MemoryStore
) -> None:
    await memory.create_fork(Fork(name="new-lp", upstream="http://127.0.0.1:9"))
    csrf = await login(client)
    form = {"csrf_token": csrf, "upstream": "javascript:alert(1)"}
    response = await client.post("/forks/new-lp/edit", data=form)
    assert response.status_code == 422
    assert "absolute http:// or https:// URL" in response.text
    fork = await memory.get_fork("new-lp")
    assert fork is not None and fork.upstream == "http://127.0.0.1:9"


async def test_editing_a_missing_fork_is_404(client: httpx.AsyncClient) -> None:
    await login(client)
    response = await client.get("/forks/nope/edit")
    assert response.status_code == 404
    assert "No fork named “nope”" in response.text


async def test_delete_a_fork(client: httpx.AsyncClient, memory: MemoryStore) -> None:
    await memory.create_fork(Fork(name="new-lp", upstream="http://127.0.0.1:9"))
    csrf = await login(client)
    response = await client.post("/forks/new-lp/delete", data={"csrf_token": csrf})
    assert response.status_code == 303
    assert await memory.get_fork("new-lp") is None
    assert "Deleted fork" in (await client.get("/")).text


@pytest.mark.parametrize("csrf", [None, "forged-token"])
@pytest.mark.parametrize(
    "path", ["/forks/new", "/forks/new-lp/edit", "/forks/new-lp/delete", "/logout"]
)
async def test_every_form_refuses_a_missing_or_wrong_csrf_token(
    client: httpx.AsyncClient, memory: MemoryStore, path: str, csrf: str | None
) -> None:
    before = await memory.create_fork(Fork(name="new-lp", upstream="http://127.0.0.1:9"))
    await login(client)
    form = new_fork_form(csrf or "", name="other")
    if csrf is None:
        del form["csrf_token"]
    response = await client.post(path, data=form)
    assert response.status_code == 403
    assert await memory.list_forks() == [before]
    assert (await client.get("/")).status_code == 200  # still logged in


async def test_a_csrf_token_from_another_session_is_refused(
    settings: Settings, memory: MemoryStore, client: httpx.AsyncClient
) -> None:
    await login(client)
    app = create_web_app(settings, memory)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as attacker:
        theirs = await login(attacker, BOB)
    response = await client.post("/forks/new", data=new_fork_form(theirs))
    assert response.status_code == 403
    assert await memory.list_forks() == []


async def test_the_catalog_is_listed(client: httpx.AsyncClient) -> None:
    await login(client)
    html = (await client.get("/")).text
    assert "Flag catalog" in html
    assert "<code>Checkout.is_one_click</code>" in html
    assert "Landing page variant." in html
    assert "<code>&#34;a&#34;</code> | <code>&#34;b&#34;</code>" in html
    assert 'class="service"' not in html  # pushed without a service
    # Types in the words the fork list and the form use, not the API's "bool"/"str".
    catalog = html[html.index("Flag catalog") :]
    types = re.findall(r"</code></td>\s*<td>([a-z]+)</td>", catalog)
    assert types == ["boolean", "string"]


async def test_the_catalog_names_the_service_that_pushed_a_flag(
    client: httpx.AsyncClient, memory: MemoryStore
) -> None:
    entry = FlagEntry(name="recs.personal", type="bool", module="recs.flags", service="recs")
    await memory.put_catalog([entry.model_dump(mode="json")], service="recs")
    await login(client)
    html = (await client.get("/")).text
    assert '<span class="service">recs</span> recs.flags' in html


async def test_a_large_catalog_fits_in_the_form(
    client: httpx.AsyncClient, memory: MemoryStore
) -> None:
    flags = [
        {"name": f"Big.flag_{i:04}", "type": "bool", "choices": None, "default": None,
         "kind": "trap", "module": "big", "path": "big.py", "line": i, "description": None}
        for i in range(600)
    ]  # fmt: skip
    await memory.put_catalog(flags)
    csrf = await login(client)
    form = {"csrf_token": csrf, "name": "big", "upstream": "http://127.0.0.1:8001"}
    for i in range(600):
        form[f"flag-{i}-name"] = f"Big.flag_{i:04}"
        form[f"flag-{i}-value"] = "v:true" if i == 599 else ""
    response = await client.post("/forks/new", data=form)
    assert response.status_code == 303, response.text[:500]
    fork = await memory.get_fork("big")
    assert fork is not None and fork.flags == {"Big.flag_0599": True}


async def test_an_upstream_under_the_fork_domain_is_refused_like_the_api_does(
    client: httpx.AsyncClient, memory: MemoryStore
) -> None:
    csrf = await login(client)
    form = new_fork_form(csrf, upstream="http://other.localhost:8000/")
    response = await client.post("/forks/new", data=form)
    assert response.status_code == 422
    assert "would loop through this service" in response.text
    assert await memory.list_forks() == []


async def test_logging_in_starts_a_fresh_session(client: httpx.AsyncClient) -> None:
    before = csrf_of((await client.get("/login")).text)
    after = await login(client)
    assert after != before  # a CSRF token planted before login is worthless after it


async def test_the_service_serves_the_page_on_its_own_host_only(
    settings: Settings, memory: MemoryStore
) -> None:
    from featureflag_server.app import create_app

    upstream = httpx.MockTransport(lambda request: httpx.Response(200, text="upstream page"))
    app = create_app(settings, store=memory, proxy_transport=upstream)
    await memory.create_fork(Fork(name="new-lp", upstream="http://127.0.0.1:9"))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as c:
        assert (await c.get("/")).headers["location"] == "/login"
        assert "API token" in (await c.get("/login")).text
        assert (await c.get("/healthz")).json() == {"status": "ok"}
        fork = await c.get("/login", headers={"Host": "new-lp.localhost:8000"})
        assert fork.text == "upstream page"
        assert SESSION_COOKIE not in fork.headers.get("set-cookie", "")


# -- labels and expiry ---------------------------------------------------------------------


async def test_labels_and_an_expiry_from_the_form_are_stored_and_listed(
    client: httpx.AsyncClient, memory: MemoryStore
) -> None:
    csrf = await login(client)
    form = new_fork_form(csrf, labels="team=checkout\npr=1234", expires="8h")
    before = datetime.now(UTC)
    assert (await client.post("/forks/new", data=form)).status_code == 303
    fork = await memory.get_fork("new-lp")
    assert fork is not None and fork.expires_at is not None
    assert fork.labels == {"team": "checkout", "pr": "1234"}
    assert before + timedelta(hours=8) <= fork.expires_at <= datetime.now(UTC) + timedelta(hours=8)
    assert fork.updated_by == "alice"
    index = (await client.get("/")).text
    assert "<code>pr</code>=<code>1234</code>" in index
    assert fork.expires_at.strftime("%Y-%m-%d") in index
    assert 'class="expired"' not in index


async def test_the_list_marks_an_expired_fork_and_one_that_never_expires(
    client: httpx.AsyncClient, memory: MemoryStore
) -> None:
    past = datetime(2020, 1, 1, tzinfo=UTC)
    await memory.create_fork(Fork(name="old", upstream="http://h", expires_at=past))
    await memory.create_fork(Fork(name="forever", upstream="http://h"))
    await login(client)
    index = (await client.get("/")).text
    assert '<strong class="expired">expired</strong>' in index
    assert '<span class="muted">never</span>' in index


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"expires": "soon"}, "a duration such as 90m"),
        ({"expires": "2000-01-01T00:00Z"}, "must be in the future"),
        ({"expires": "2099-01-01T00:00"}, "with a timezone"),
        ({"labels": "no equals sign"}, "write one key=value per line"),
        ({"labels": "bad key=x"}, "a label key"),
    ],
)
async def test_bad_labels_or_expiry_rerender_the_form(
    client: httpx.AsyncClient, memory: MemoryStore, changes: dict[str, str], message: str
) -> None:
    csrf = await login(client)
    response = await client.post("/forks/new", data=new_fork_form(csrf, **changes))
    assert response.status_code == 422
    assert message in response.text
    assert await memory.list_forks() == []


async def test_editing_keeps_the_routes_the_form_does_not_show(
    client: httpx.AsyncClient, memory: MemoryStore
) -> None:
    routes = {"recs": "http://127.0.0.1:7001"}
    await memory.create_fork(Fork(name="new-lp", upstream="http://127.0.0.1:9", routes=routes))
    csrf = await login(client)
    html = (await client.get("/forks/new-lp/edit")).text
    assert 'name="expires" value=""' in html
    form = {"csrf_token": csrf, "upstream": "http://127.0.0.1:8001", "labels": "a=b"}
    assert (await client.post("/forks/new-lp/edit", data=form)).status_code == 303
    fork = await memory.get_fork("new-lp")
    assert fork is not None
    assert (fork.routes, fork.labels, fork.updated_by) == (routes, {"a": "b"}, "alice")


async def test_every_problem_shows_at_once(client: httpx.AsyncClient, memory: MemoryStore) -> None:
    # A form-syntax problem (the select) and rule problems (name, catalog choice) together.
    csrf = await login(client)
    form = new_fork_form(csrf, name="www", **{"flag-0-value": "true", "flag-2-value": "v:c"})
    response = await client.post("/forks/new", data=form)
    assert response.status_code == 422
    assert "choose a value from the list" in response.text
    assert "reserved" in response.text
    assert "accepts only &#39;a&#39;, &#39;b&#39;" in response.text


# -- issue 17: sessions end at logout, __Host- cookie, bounded forms, scopes, surrogates ---


async def test_a_copy_of_the_cookie_is_signed_out_by_logout(
    settings: Settings, memory: MemoryStore
) -> None:
    # Issue 17 item 13: a replayed cookie stayed "Signed in" for 12 h after logging out.
    app = create_web_app(settings, memory)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client:
        csrf = await login(client)
        copied = client.cookies[SESSION_COOKIE]
        assert (await client.post("/logout", data={"csrf_token": csrf})).status_code == 303
    # Another replica (another app over the same store) refuses the copy too.
    replica = create_web_app(settings, memory)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(replica), base_url=BASE) as c:
        c.cookies.set(SESSION_COOKIE, copied, domain="127.0.0.1")
        response = await c.get("/")
        assert response.status_code == 303
        assert response.headers["location"] == "/login"
        assert "Signed in" not in (await c.get("/login")).text
        await login(c)  # logging in again gives a new session id, which works


async def test_a_cookie_without_a_session_id_is_not_signed_in(
    client: httpx.AsyncClient, settings: Settings
) -> None:
    # A cookie signed before sessions had ids (or forged without one) cannot be revoked.
    await login(client)
    signer = itsdangerous.TimestampSigner(session_key(SECRET, settings.environment))
    session = json.loads(base64.b64decode(client.cookies[SESSION_COOKIE].split(".")[0]))
    del session["sid"]
    data = base64.b64encode(json.dumps(session).encode())
    client.cookies.set(SESSION_COOKIE, signer.sign(data).decode(), domain="127.0.0.1")
    assert (await client.get("/")).status_code == 303


async def test_secure_cookies_use_the_host_prefix(settings: Settings, memory: MemoryStore) -> None:
    # Issue 17 item 7: a fork's upstream (a subdomain) could plant a session cookie.
    app = create_web_app(settings.model_copy(update={"secure_cookies": True}), memory)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="https://127.0.0.1") as c:
        page = await c.get("/login")
        set_cookie = page.headers["set-cookie"]
        assert set_cookie.startswith(SECURE_SESSION_COOKIE + "=")
        assert "secure" in set_cookie.lower() and "path=/" in set_cookie.lower()
        assert "domain" not in set_cookie.lower()
        response = await c.post(
            "/login", data={"api_token": ALICE, "csrf_token": csrf_of(page.text)}
        )
        assert response.status_code == 303
        assert (await c.get("/")).status_code == 200
        # The unprefixed name is not read: a planted featureflag_session means nothing.
        c.cookies.clear()
        c.cookies.set(SESSION_COOKIE, "planted")
        assert (await c.get("/")).status_code == 303


class Upload:
    """A raw ASGI POST whose body is produced lazily; counts the bytes the app read."""

    def __init__(self, chunks: int, chunk_size: int = 64 * 1024) -> None:
        self.chunks = chunks
        self.chunk = b"x" * chunk_size
        self.read = 0
        self.status = 0

    async def send_to(self, app: Any, path: str, headers: list[tuple[bytes, bytes]]) -> int:
        left = self.chunks

        async def receive() -> dict[str, Any]:
            nonlocal left
            if left == 0:
                return {"type": "http.disconnect"}
            left -= 1
            self.read += len(self.chunk)
            return {"type": "http.request", "body": self.chunk, "more_body": left > 0}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status = message["status"]

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "headers": [(b"host", b"127.0.0.1:8000"), *headers],
            "client": ("203.0.113.7", 5000), "server": ("127.0.0.1", 8000),
        }  # fmt: skip
        await app(scope, receive, send)
        return self.status


MB300 = 300 * 1024 * 1024


@pytest.mark.parametrize("path", ["/login", "/logout", "/forks/x/delete"])
async def test_an_anonymous_multipart_upload_is_refused_unread(
    settings: Settings, memory: MemoryStore, path: str
) -> None:
    # Issue 17 item 12: a 300 MB multipart POST /login was spooled to disk before the
    # CSRF check. Now nothing of it is read.
    app = create_web_app(settings, memory)
    upload = Upload(chunks=MB300 // (64 * 1024))
    content_type = b"multipart/form-data; boundary=xyz"
    headers = [(b"content-type", content_type), (b"content-length", str(MB300).encode())]
    assert await upload.send_to(app, path, headers) == 415
    assert upload.read == 0


async def test_a_form_past_the_limit_is_refused_by_its_length_unread(
    settings: Settings, memory: MemoryStore
) -> None:
    app = create_web_app(settings, memory)
    upload = Upload(chunks=MB300 // (64 * 1024))
    headers = [(b"content-type", FORM_CONTENT_TYPE.encode()), (b"content-length", b"%d" % MB300)]
    assert await upload.send_to(app, "/login", headers) == 413
    assert upload.read == 0


async def test_a_form_without_a_length_is_read_only_up_to_the_limit(
    settings: Settings, memory: MemoryStore
) -> None:
    app = create_web_app(settings, memory)
    upload = Upload(chunks=MB300 // 4096, chunk_size=4096)
    headers = [(b"content-type", FORM_CONTENT_TYPE.encode())]  # chunked
    assert await upload.send_to(app, "/login", headers) == 413
    assert upload.read <= FORM_LIMIT + 4096


async def test_an_anonymous_post_of_the_fork_form_is_redirected_unread(
    settings: Settings, memory: MemoryStore
) -> None:
    # The fork form's larger limit is for signed-in users only.
    app = create_web_app(settings, memory)
    upload = Upload(chunks=MB300 // (64 * 1024))
    headers = [(b"content-type", FORM_CONTENT_TYPE.encode())]
    assert await upload.send_to(app, "/forks/new", headers) == 303
    assert upload.read == 0


async def test_a_field_that_is_not_utf8_is_a_422_naming_it(client: httpx.AsyncClient) -> None:
    # Issue 17 item 2 (forms): a lone surrogate (CESU bytes) or a broken byte sequence.
    csrf = await login(client)
    headers = {"content-type": FORM_CONTENT_TYPE}
    for bad in ("%ED%A0%80", "%ED%B0%80", "%FF"):
        body = f"csrf_token={csrf}&name=x&upstream=http://h:1/{bad}"
        response = await client.post("/forks/new", content=body, headers=headers)
        assert response.status_code == 422, bad
        assert "'upstream'" in response.text and "not valid UTF-8" in response.text
    assert (await client.get("/")).status_code == 200
    login_page = await client.post(
        "/login", content=f"csrf_token={csrf}&api_token=%ED%B0%80", headers=headers
    )
    assert login_page.status_code == 422


async def test_pages_with_a_lone_surrogate_stored_in_the_catalog_still_render(
    client: httpx.AsyncClient, memory: MemoryStore
) -> None:
    # Issue 17 item 2: a catalog entry with "\udc00" made / and /forks/new 500 for everyone.
    entry = FlagEntry(name="a.b", type="str", description="bad").model_dump(mode="json")
    await memory.put_catalog([entry | {"description": "bad \udc00"}])
    await memory.create_fork(Fork(name="old", upstream="http://h:1", labels={"k": "\ud800"}))
    await login(client)
    for path in ("/", "/forks/new", "/forks/old/edit"):
        response = await client.get(path)
        assert response.status_code == 200, path
    assert "bad \ufffd" in (await client.get("/forks/new")).text


SCOPED_TOKENS = {"reader": "reader-token-0123456789", "gate": "gateway-token-012345678"}


@pytest.fixture
def scoped() -> Settings:
    tokens = (
        f"alice:{ALICE},reader:{SCOPED_TOKENS['reader']}:read,gate:{SCOPED_TOKENS['gate']}:gateway"
    )
    return Settings(secret=SECRET, environment="test", api_tokens=tokens)


async def test_the_page_needs_read_to_log_in_and_forks_to_change_forks(
    scoped: Settings, memory: MemoryStore
) -> None:
    app = create_web_app(scoped, memory)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=BASE) as client:
        page = await client.get("/login")
        refused = await client.post(
            "/login", data={"api_token": SCOPED_TOKENS["gate"], "csrf_token": csrf_of(page.text)}
        )
        assert refused.status_code == 403
        assert "lacks the &#39;read&#39; scope" in refused.text
        csrf = await login(client, SCOPED_TOKENS["reader"])
        await memory.create_fork(Fork(name="shown", upstream="http://h:1"))
        index = (await client.get("/")).text
        assert "shown" in index and "New fork" not in index and "Delete" not in index
        assert (await client.get("/forks/new")).status_code == 200  # reading is fine
        response = await client.post("/forks/new", data=new_fork_form(csrf))
        assert response.status_code == 403
        assert "lacks the &#39;forks&#39; scope" in response.text
        await memory.create_fork(Fork(name="kept", upstream="http://h:1"))
        deleted = await client.post("/forks/kept/delete", data={"csrf_token": csrf})
        assert deleted.status_code == 403
    assert await memory.get_fork("new-lp") is None
    assert await memory.get_fork("kept") is not None


async def test_of_two_session_cookies_the_first_wins(
    settings: Settings, memory: MemoryStore
) -> None:
    # Issue 17 item 7: a cookie planted for a parent domain (through a fork's upstream,
    # say) comes after the browser's own; Starlette alone would take the last one and log
    # the visitor in as the attacker.
    app = create_web_app(settings, memory)
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as alice:
        await login(alice, ALICE)
        mine = alice.cookies[SESSION_COOKIE]
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as attacker:
        await login(attacker, BOB)
        planted = attacker.cookies[SESSION_COOKIE]
    async with httpx.AsyncClient(transport=transport, base_url=BASE) as browser:
        cookie = f"{SESSION_COOKIE}={mine}; other=1; {SESSION_COOKIE}={planted}"
        page = await browser.get("/", headers={"Cookie": cookie})
    assert "Signed in as <strong>alice</strong>" in page.text


# -- issue 19: the form keeps every choice, infers types, asks before "true" as text -----


def another_flag(name: str, value: str, kind: str | None, **extra: str) -> dict[str, str]:
    """The "another flag" row (index 3 after the three catalog rows) as a browser sends it."""
    row = {"flag-3-added": "1", "flag-3-name": name, "flag-3-set": "1", "flag-3-value": value}
    if kind is not None:
        row["flag-3-type"] = kind
    return {**row, **extra}


def selected_type(html: str, index: int) -> str:
    select = re.search(rf'<select name="flag-{index}-type".*?</select>', html, re.S)
    assert select, f"row {index} has no type select"
    chosen = re.findall(r'<option value="(\w+)" selected>', select.group(0))
    assert len(chosen) == 1, select.group(0)
    return chosen[0]


async def test_a_rerendered_form_keeps_every_choice(
    client: httpx.AsyncClient, memory: MemoryStore
) -> None:
    # Issue 19 item 1: boolean chosen, "yes" typed: the form came back with "string".
    csrf = await login(client)
    form = new_fork_form(
        csrf,
        labels="team=checkout",
        expires="8h",
        **another_flag("frontend.chat-widget", "yes", "bool"),
    )
    del form["flag-1-set"]  # an unticked text row keeps what was typed in it
    response = await client.post("/forks/new", data=form)
    assert response.status_code == 422
    html = response.text
    assert "a boolean flag is true or false" in html
    assert selected_type(html, 3) == "bool"
    # The typed row keeps its name (still editable) and value; a fresh row follows it.
    assert 'name="flag-3-name" value="frontend.chat-widget" placeholder="another flag name"' in html
    assert 'name="flag-3-value" value="yes"' in html
    assert selected_type(html, 4) == "auto"
    assert 'name="flag-4-name" value=""' in html
    # Everything else as chosen.
    assert 'name="name" value="new-lp"' in html
    assert 'name="upstream" value="http://127.0.0.1:8001"' in html
    assert 'name="expires" value="8h"' in html
    assert ">team=checkout</textarea>" in html
    assert '<option value="v:true" selected>' in html  # Checkout.is_one_click
    assert '<option value="v:b" selected>' in html  # new-lp
    assert 'name="flag-1-set" value="1" >' in html  # unticked, and ...
    assert 'name="flag-1-value" value="Sale &lt;today&gt;"' in html  # ... its text kept
    assert await memory.list_forks() == []

    # Corrected to "true": stored as the boolean true.
    form["flag-3-value"] = "true"
    assert (await client.post("/forks/new", data=form)).status_code == 303
    fork = await memory.get_fork("new-lp")
    assert fork is not None and fork.flags["frontend.chat-widget"] is True


@pytest.mark.parametrize(
    ("value", "stored"),
    [("true", True), ("FALSE", False), (" true ", True), ("Free", "Free"), ("1", "1"), ("", "")],
)
async def test_another_flag_infers_its_type_from_the_value_by_default(
    client: httpx.AsyncClient, memory: MemoryStore, value: str, stored: bool | str
) -> None:
    # Issue 19 item 2: the row defaulted to string, so "true" was stored as text.
    csrf = await login(client)
    html = (await client.get("/forks/new")).text
    assert selected_type(html, 3) == "auto"
    assert "auto: true/false → boolean, else string" in html
    for kind in (None, "auto"):  # a form without the select infers too
        await memory.delete_fork("new-lp")
        form = new_fork_form(csrf, **another_flag("frontend.chat-widget", value, kind))
        if kind is None:
            del form["flag-3-type"]
        response = await client.post("/forks/new", data=form)
        assert response.status_code == 303, response.text
        fork = await memory.get_fork("new-lp")
        assert fork is not None
        assert fork.flags["frontend.chat-widget"] == stored
        assert type(fork.flags["frontend.chat-widget"]) is type(stored)


async def test_text_that_reads_as_a_boolean_is_stored_as_a_string_only_once_confirmed(
    client: httpx.AsyncClient, memory: MemoryStore
) -> None:
    csrf = await login(client)
    form = new_fork_form(csrf, **another_flag("frontend.chat-widget", "true", "str"))
    response = await client.post("/forks/new", data=form)
    assert response.status_code == 422
    assert "this stores the text &#34;true&#34;, not the boolean true" in response.text
    box = '<input type="checkbox" name="flag-3-text" value="1" >'
    assert box + " store the text “true”, not the boolean" in response.text
    assert selected_type(response.text, 3) == "str"
    assert await memory.list_forks() == []

    form["flag-3-text"] = "1"
    assert (await client.post("/forks/new", data=form)).status_code == 303
    fork = await memory.get_fork("new-lp")
    assert fork is not None and fork.flags["frontend.chat-widget"] == "true"
    # Other text needs no confirmation; a bad type choice is named, not guessed.
    await memory.delete_fork("new-lp")
    form = new_fork_form(csrf, **another_flag("frontend.greeting", "Hello", "str"))
    assert (await client.post("/forks/new", data=form)).status_code == 303
    await memory.delete_fork("new-lp")
    form = new_fork_form(csrf, **another_flag("frontend.greeting", "1", "int"))
    response = await client.post("/forks/new", data=form)
    assert response.status_code == 422
    assert "choose a type from the list" in response.text


async def test_the_list_and_the_edit_form_show_each_flag_s_stored_type(
    client: httpx.AsyncClient, memory: MemoryStore
) -> None:
    flags: dict[str, bool | str] = {"frontend.on": True, "frontend.text": "true", "new-lp": "b"}
    await memory.create_fork(Fork(name="typed", upstream="http://127.0.0.1:9", flags=flags))
    csrf = await login(client)
    index = (await client.get("/")).text
    assert (
        '<code>frontend.on</code> = <code class="value">true</code> <span class="type">boolean'
    ) in index
    assert (
        '<code>frontend.text</code> = <code class="value">&#34;true&#34;</code> '
        '<span class="type">string'
    ) in index
    assert '<code class="value">&#34;b&#34;</code> <span class="type">string' in index
    edit = (await client.get("/forks/typed/edit")).text
    rows = dict(re.findall(r'name="flag-(\d+)-name" value="([^"]*)"', edit))
    by_name = {name: int(index) for index, name in rows.items()}
    assert selected_type(edit, by_name["frontend.on"]) == "bool"
    assert selected_type(edit, by_name["frontend.text"]) == "str"
    # Text stored on purpose shows as such, ticked, so saving unchanged keeps it.
    text = by_name["frontend.text"]
    assert f'name="flag-{text}-text" value="1" checked> store the text “true”' in edit
    assert '<td class="type">\n            boolean' in edit or "boolean</td>" in edit
    form = {
        "csrf_token": csrf,
        "upstream": "http://127.0.0.1:9",
        f"flag-{text}-name": "frontend.text",
        f"flag-{text}-set": "1",
        f"flag-{text}-value": "true",
        f"flag-{text}-type": "str",
        f"flag-{text}-text": "1",
    }
    assert (await client.post("/forks/typed/edit", data=form)).status_code == 303
    fork = await memory.get_fork("typed")
    assert fork is not None and fork.flags == {"frontend.text": "true"}


# -- issue 19: /forks/new prefilled from a link (the extension's "save as a fork") ---------


async def test_a_link_prefills_the_new_fork_form_with_typed_values(
    client: httpx.AsyncClient,
) -> None:
    await login(client)
    query = (
        "flag.frontend.chat-widget=true&flag.promo-banner=%22Free%20shipping%22"
        "&flag.frontend.label=%22false%22&flag.new-lp=%22b%22"
        "&flag.Checkout.is_one_click=false&name=from-popup&upstream=http%3A%2F%2F127.0.0.1%3A8001"
        "&utm_source=ignored"
    )
    response = await client.get("/forks/new?" + query)
    assert response.status_code == 200, response.text
    html = response.text
    assert "The fork was not saved" not in html
    assert 'name="name" value="from-popup"' in html
    assert 'name="upstream" value="http://127.0.0.1:8001"' in html
    assert '<option value="v:b" selected>' in html
    assert '<option value="v:false" selected>' in html
    rows = {name: int(i) for i, name in re.findall(r'name="flag-(\d+)-name" value="([^"]*)"', html)}
    assert selected_type(html, rows["frontend.chat-widget"]) == "bool"
    assert selected_type(html, rows["promo-banner"]) == "str"
    assert f'name="flag-{rows["promo-banner"]}-value" value="Free shipping"' in html
    label = rows["frontend.label"]
    assert selected_type(html, label) == "str"
    assert f'name="flag-{label}-text" value="1" checked>' in html  # quoted: text on purpose


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("flag.frontend.on=yes", "the link&#39;s value &#39;yes&#39; is not JSON"),
        ("flag.frontend.on=%7B", "is not JSON"),
        ("flag.frontend.n=42", "the link&#39;s value 42 is a number; a flag is true, false"),
        ("flag.frontend.n=null", "is null"),
        ("flag.frontend.n=%5B1%5D", "is an array"),
        ("flag.bad%20name=true", "Invalid flag name &#39;bad name&#39;"),
        ("flag.=true", "names no flag: write flag.&lt;flag name&gt;=&lt;JSON value&gt;"),
        ("flag.x=true&flag.x=false", "appears twice in the link"),
        ("flag.Checkout.is_one_click=%22yes%22", "Checkout.is_one_click"),
        ("flag.new-lp=%22c%22", "accepts only &#39;a&#39;, &#39;b&#39;"),
        ("flag.frontend.on=%ff", "is not JSON"),
    ],
)
async def test_a_bad_link_is_a_form_with_the_reason_not_a_500(
    client: httpx.AsyncClient, query: str, message: str
) -> None:
    await login(client)
    response = await client.get("/forks/new?" + query)
    assert response.status_code == 400
    assert "The fork was not saved" in response.text
    assert message in response.text


async def test_a_link_with_too_many_flags_keeps_the_first_ones(client: httpx.AsyncClient) -> None:
    await login(client)
    query = "&".join(f"flag.f{i}=true" for i in range(MAX_FLAGS + 5))
    response = await client.get("/forks/new?" + query)
    assert response.status_code == 400
    assert f"more than {MAX_FLAGS} flags; the rest were left out" in response.text
    assert f'value="f{MAX_FLAGS - 1}"' in response.text
    assert f'value="f{MAX_FLAGS}"' not in response.text


async def test_a_link_opened_logged_out_comes_back_after_logging_in(
    client: httpx.AsyncClient,
) -> None:
    link = "/forks/new?flag.frontend.chat-widget=true&name=saved"
    response = await client.get(link)
    assert response.status_code == 303
    assert response.headers["location"] == "/login?" + urlencode({"next": link})
    page = await client.get(response.headers["location"])
    assert f'name="next" value="{link.replace("&", "&amp;")}"' in page.text
    response = await client.post(
        "/login", data={"api_token": ALICE, "csrf_token": csrf_of(page.text), "next": link}
    )
    assert response.status_code == 303
    assert response.headers["location"] == link
    form = await client.get(link)
    assert 'name="name" value="saved"' in form.text
    # Signed in already: /login?next= goes straight there.
    again = await client.get("/login?" + urlencode({"next": link}))
    assert again.headers["location"] == link


@pytest.mark.parametrize(
    "target",
    [
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "evil",
        "/x\r\nSet-Cookie: a=b",
    ],
)
async def test_logging_in_never_sends_the_user_to_another_site(
    client: httpx.AsyncClient, target: str
) -> None:
    page = await client.get("/login?" + urlencode({"next": target}))
    assert 'name="next"' not in page.text
    response = await client.post(
        "/login", data={"api_token": ALICE, "csrf_token": csrf_of(page.text), "next": target}
    )
    assert response.status_code == 303
    assert response.headers["location"] == "/"
