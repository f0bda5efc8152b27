"""The forks layer: every fork rule, and create / replace / delete over a MemoryStore."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from featureflag.tokens import OverrideSigner
from featureflag_server.errors import ForkExists, ForkNotFound, InvalidFork
from featureflag_server.forks import (
    MAX_FORK_TTL,
    MAX_LABELS,
    TTL_RULE,
    Forks,
    ForkSpec,
    fork_name_problem,
)
from featureflag_server.memory_store import MemoryStore
from featureflag_server.store import Fork

from .conftest import SECRET

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SPEC = ForkSpec(upstream="http://127.0.0.1:9000", flags={"a.b": True})
CATALOG: list[dict[str, Any]] = [
    {"name": "Page.is_new", "type": "bool"},
    {"name": "layout", "type": "str", "choices": ["a", "b"]},
]


@pytest.fixture
async def forks() -> Forks:
    store = MemoryStore()
    await store.put_catalog(CATALOG)
    signer = OverrideSigner(SECRET, environment="test")
    return Forks(store, signer, fork_domain="qa.example.com", clock=lambda: NOW)


async def problems(forks: Forks, spec: ForkSpec, name: str = "new-lp") -> dict[str, str]:
    with pytest.raises(InvalidFork) as caught:
        await forks.build(name, spec, user="ana")
    return {p.field: p.rule for p in caught.value.problems}


def test_the_name_rule_is_still_importable_from_store() -> None:
    from featureflag_server.store import fork_name_problem as from_store

    assert from_store is fork_name_problem
    assert fork_name_problem("new-lp") is None
    assert "reserved" in str(fork_name_problem("www"))


# -- create, replace, delete ------------------------------------------------------------


async def test_create_stores_the_fork_with_who_and_when(forks: Forks) -> None:
    fork = await forks.create("new-lp", SPEC, user="ana")
    assert fork == Fork(
        "new-lp", "http://127.0.0.1:9000", {"a.b": True}, "ana", NOW, NOW, updated_by="ana"
    )
    assert await forks.get("new-lp") == fork
    with pytest.raises(ForkExists):
        await forks.create("new-lp", SPEC, user="bo")


async def test_replace_creates_then_replaces_keeping_the_creator(forks: Forks) -> None:
    created, is_new = await forks.replace("new-lp", SPEC, user="ana")
    assert is_new and created.created_by == "ana"
    spec = ForkSpec(upstream="https://elsewhere", labels={"team": "web"})
    replaced, is_new = await forks.replace("new-lp", spec, user="bo")
    assert not is_new
    assert (replaced.upstream, replaced.flags, replaced.labels) == (
        "https://elsewhere",
        {},
        {"team": "web"},
    )
    assert (replaced.created_by, replaced.updated_by) == ("ana", "bo")


async def test_replace_that_loses_a_race_to_create_replaces_the_winner(forks: Forks) -> None:
    store = forks.store
    assert isinstance(store, MemoryStore)
    real_update = store.update_fork
    calls: list[str] = []

    async def update_after_someone_created(fork: Fork) -> Fork:
        calls.append("update")
        if len(calls) == 1:  # not there yet; someone creates it before our create
            await store.create_fork(Fork(fork.name, "http://theirs", created_by="bo"))
            raise ForkNotFound(fork.name)
        return await real_update(fork)

    store.update_fork = update_after_someone_created  # type: ignore[method-assign]
    fork, is_new = await forks.replace("new-lp", SPEC, user="ana")
    assert not is_new
    assert fork.upstream == SPEC.upstream and fork.created_by == "bo"
    assert calls == ["update", "update"]


async def test_update_and_delete_need_an_existing_fork(forks: Forks) -> None:
    with pytest.raises(ForkNotFound):
        await forks.update("ghost", SPEC, user="ana")
    with pytest.raises(ForkNotFound):
        await forks.delete("ghost", user="ana")
    with pytest.raises(ForkNotFound):
        await forks.get("ghost")
    await forks.create("new-lp", SPEC, user="ana")
    await forks.delete("new-lp", user="ana")
    assert await forks.all() == []


async def test_nothing_is_stored_when_a_rule_is_broken(forks: Forks) -> None:
    with pytest.raises(InvalidFork):
        await forks.create("new-lp", ForkSpec(upstream="ftp://x"), user="ana")
    with pytest.raises(InvalidFork):
        await forks.replace("WWW", SPEC, user="ana")
    assert await forks.all() == []


# -- the rules ------------------------------------------------------------------------


async def test_every_broken_rule_is_named_at_once(forks: Forks) -> None:
    spec = ForkSpec(
        upstream="http://other.qa.example.com",
        flags={"layout": "c", "has space": True},
        labels={"-bad": "x"},
        routes={"recs": "ftp://x"},
        ttl=-1,
    )
    found = await problems(forks, spec, name="Bad_Name")
    assert set(found) == {
        "name",
        "upstream",
        "flags.layout",
        "flags",
        "labels",
        "routes.recs",
        "ttl",
    }
    assert "loop" in found["upstream"]
    assert "accepts only 'a', 'b'" in found["flags.layout"]
    assert "Invalid flag name" in found["flags"]


@pytest.mark.parametrize(
    ("flags", "field", "words"),
    [
        ({"Page.is_new": "yes"}, "flags.Page.is_new", "is declared `-> bool`"),
        ({"x": 3}, "flags.x", "send true, false or a string"),
        ({"x": "y" * 1025}, "flags.x", "1024 bytes"),
        ({f"f{i}": True for i in range(201)}, "flags", "the limit is 200"),
        ({f"f{i}": os.urandom(24).hex() for i in range(120)}, "flags", "limit is 4096"),
    ],
)
async def test_flags_are_checked_by_the_sdk_and_must_fit_in_a_token(
    forks: Forks, flags: dict[str, object], field: str, words: str
) -> None:
    found = await problems(forks, ForkSpec(upstream="http://h", flags=flags))
    assert words in found[field]


@pytest.mark.parametrize(
    ("labels", "field", "words"),
    [
        ({f"k{i}": "v" for i in range(MAX_LABELS + 1)}, "labels", f"at most {MAX_LABELS}"),
        ({"": "v"}, "labels", "a label key is 1 to 63"),
        ({"has space": "v"}, "labels", "a label key"),
        ({"k" * 64: "v"}, "labels", "a label key"),
        ({"team": "x" * 257}, "labels.team", "at most 256 characters"),
        ({"team": "a\nb"}, "labels.team", "without control characters"),
        ({"team": 3}, "labels.team", "a label value is a string"),
    ],
)
async def test_label_rules(forks: Forks, labels: dict[str, object], field: str, words: str) -> None:
    found = await problems(forks, ForkSpec(upstream="http://h", labels=labels))
    assert words in found[field]


async def test_good_labels_and_routes_are_stored(forks: Forks) -> None:
    spec = ForkSpec(
        upstream="http://h",
        labels={"team": "checkout", "github.com/pr": "1234", "empty": ""},
        routes={"recs": "http://127.0.0.1:7001", "search.v2": "https://search.internal/base/"},
    )
    fork = await forks.create("new-lp", spec, user="ana")
    assert fork.labels == spec.labels
    assert fork.routes == spec.routes


@pytest.mark.parametrize(
    ("routes", "field", "words"),
    [
        ({"has space": "http://h"}, "routes", "a service name"),
        ({"recs": "ftp://h"}, "routes.recs", "an http:// or https:// base URL"),
        ({"recs": "http://u:p@h"}, "routes.recs", "no user, password"),
        ({"recs": 7}, "routes.recs", "a route is"),
        ({f"s{i}": "http://h" for i in range(51)}, "routes", "at most 50"),
    ],
)
async def test_route_rules(forks: Forks, routes: dict[str, object], field: str, words: str) -> None:
    found = await problems(forks, ForkSpec(upstream="http://h", routes=routes))
    assert words in found[field]


@pytest.mark.parametrize(
    ("expires_at", "ttl", "expected"),
    [
        (None, None, None),
        (None, 3600, NOW + timedelta(hours=1)),
        (None, 0.5, NOW + timedelta(seconds=0.5)),
        ("2026-12-08T12:00:00Z", None, NOW + timedelta(days=1)),
        ("2026-12-08T13:00:00+01:00", None, NOW + timedelta(days=1)),
        (NOW + timedelta(minutes=5), None, NOW + timedelta(minutes=5)),
    ],
)
async def test_expiry_from_a_time_or_a_ttl(
    forks: Forks, expires_at: object, ttl: object, expected: datetime | None
) -> None:
    fork = await forks.create(
        "new-lp", ForkSpec("http://h", expires_at=expires_at, ttl=ttl), user="a"
    )
    assert fork.expires_at == expected


@pytest.mark.parametrize(
    ("expires_at", "ttl", "field", "words"),
    [
        (None, 0, "ttl", TTL_RULE),
        (None, -5, "ttl", TTL_RULE),
        (None, True, "ttl", TTL_RULE),
        (None, "3600", "ttl", TTL_RULE),
        (None, float("nan"), "ttl", TTL_RULE),
        (None, float("inf"), "ttl", TTL_RULE),
        (None, MAX_FORK_TTL + 1, "ttl", "never expires"),
        (None, 1e300, "ttl", "never expires"),
        (None, 10**400, "ttl", "never expires"),
        ("9999-12-31T23:00:00-05:00", None, "expires_at", "ISO 8601"),
        ("2026-12-08T12:00:00Z", 60, "ttl", "not both"),
        ("2026-12-07T11:59:59Z", None, "expires_at", "must be in the future"),
        ("2026-12-08T12:00:00", None, "expires_at", "with a timezone"),
        ("tomorrow", None, "expires_at", "ISO 8601"),
        (1_900_000_000, None, "expires_at", "ISO 8601"),
    ],
)
async def test_expiry_rules(
    forks: Forks, expires_at: object, ttl: object, field: str, words: str
) -> None:
    found = await problems(forks, ForkSpec("http://h", expires_at=expires_at, ttl=ttl))
    assert words in found[field]


async def test_check_flags_for_a_token_uses_the_catalog(forks: Forks) -> None:
    clean = await forks.check_flags({"Page.is_new": True}, sub="ana", origin="cli", ttl=60)
    assert clean == {"Page.is_new": True}
    with pytest.raises(InvalidFork) as caught:
        await forks.check_flags({"Page.is_new": "on"}, sub="ana", origin="cli", ttl=60)
    assert caught.value.problems[0].field == "flags.Page.is_new"


# -- the audit log (issue 17 item 11) -------------------------------------------------------


async def test_every_write_is_logged_with_its_actor(
    forks: Forks, caplog: pytest.LogCaptureFixture
) -> None:
    # Nobody knew who changed a fork: one line per write, naming the fork and who wrote it.
    caplog.set_level("INFO", logger="featureflag.server.forks")
    await forks.create("new-lp", SPEC, user="ana")
    await forks.update("new-lp", SPEC, user="bob")
    await forks.replace("new-lp", SPEC, user="cy")
    await forks.replace("pr-12", ForkSpec(upstream="http://h:1", ttl=60), user="ci")
    await forks.delete("new-lp", user="dee")
    # (the expiry sweep logs its deletions too: tests/server/test_expiry.py)
    lines = [r.getMessage() for r in caplog.records if r.name == "featureflag.server.forks"]
    assert [line.split(" (")[0] for line in lines] == [
        "fork created: new-lp by ana",
        "fork updated: new-lp by bob",
        "fork replaced: new-lp by cy",
        "fork created: pr-12 by ci",
        "fork deleted: new-lp by dee",
    ]
    assert "upstream http://127.0.0.1:9000" in lines[0]
    assert "expires 2026-12-07T12:01:00Z" in lines[3]


async def test_a_refused_write_logs_nothing(forks: Forks, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="featureflag.server.forks")
    with pytest.raises(InvalidFork):
        await forks.create("new-lp", ForkSpec(upstream="ftp://x"), user="ana")
    with pytest.raises(ForkNotFound):
        await forks.delete("ghost", user="ana")
    assert [r for r in caplog.records if r.name == "featureflag.server.forks"] == []
