"""server/featureflag_server/proxy_errors.py: the pages, and refusing a WebSocket with one."""

from __future__ import annotations

from starlette.types import Message

from featureflag_server import proxy_errors


def test_the_expired_fork_page_says_how_to_renew_it() -> None:
    page = proxy_errors.fork_expired("new-lp", service_url="http://localhost:8000/")
    html = page.html().decode()
    assert page.status == 410
    assert "<code>new-lp</code> has expired" in html
    assert "featureflag fork apply new-lp --upstream URL --ttl 7d" in html
    assert 'href="http://localhost:8000/"' in html


def test_the_expired_fork_page_escapes_the_name() -> None:
    html = proxy_errors.fork_expired("<b>", service_url=None).html().decode()
    assert "<b>" not in html
    assert "&lt;b&gt;" in html


async def test_a_websocket_is_refused_with_the_page_where_the_server_allows() -> None:
    sent: list[Message] = []

    async def send(message: Message) -> None:
        sent.append(message)

    page = proxy_errors.unknown_fork("gone", service_url=None)
    await page.deny(send, {"type": "websocket", "extensions": {"websocket.http.response": {}}})
    assert sent[0]["type"] == "websocket.http.response.start"
    assert sent[0]["status"] == 404
    assert (b"x-robots-tag", b"noindex") in sent[0]["headers"]
    assert b"<code>gone</code>" in sent[1]["body"]

    sent.clear()
    await page.deny(send, {"type": "websocket"})  # no extension: close before accepting
    assert sent == [{"type": "websocket.close", "code": 1008}]
