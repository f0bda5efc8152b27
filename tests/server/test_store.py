"""The shared Store suite: every implementation (the ``store`` fixture) must pass it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from featureflag_server.errors import CatalogConflict, ForkExists, ForkNotFound
from featureflag_server.store import Fork, Store

T0 = datetime(2026, 11, 26, 3, 15, 10, 123456, tzinfo=UTC)


def make(name: str = "new-lp", **changes: object) -> Fork:
    fields: dict[str, object] = {
        "name": name,
        "upstream": "http://127.0.0.1:9000",
        "flags": {"SomeNewFeature.is_released": True, "new-lp": "b"},
        "created_by": "alice",
        "created_at": T0,
        "updated_at": T0,
    }
    fields.update(changes)
    return Fork(**fields)  # type: ignore[arg-type]


async def test_create_then_get_returns_every_field(store: Store) -> None:
    fork = make()
    assert await store.create_fork(fork) == fork
    assert await store.get_fork("new-lp") == fork


async def test_get_missing_is_none(store: Store) -> None:
    assert await store.get_fork("nothing") is None


async def test_flag_values_keep_their_types(store: Store) -> None:
    await store.create_fork(make(flags={"a": True, "b": False, "c": "true", "d": ""}))
    got = await store.get_fork("new-lp")
    assert got is not None
    assert got.flags == {"a": True, "b": False, "c": "true", "d": ""}
    assert [type(v) for v in got.flags.values()] == [bool, bool, str, str]


async def test_timestamps_are_utc_aware(store: Store) -> None:
    await store.create_fork(make())
    got = await store.get_fork("new-lp")
    assert got is not None
    assert got.created_at.utcoffset() == timedelta(0)
    assert got.created_at == T0


async def test_duplicate_name_raises_and_keeps_the_first(store: Store) -> None:
    await store.create_fork(make())
    with pytest.raises(ForkExists) as info:
        await store.create_fork(make(upstream="http://other:1", created_by="bob"))
    assert info.value.name == "new-lp"
    got = await store.get_fork("new-lp")
    assert got is not None and got.upstream == "http://127.0.0.1:9000"


async def test_list_is_sorted_by_name(store: Store) -> None:
    for name in ["zeta", "alpha", "mid-1"]:
        await store.create_fork(make(name))
    assert [f.name for f in await store.list_forks()] == ["alpha", "mid-1", "zeta"]


async def test_list_empty(store: Store) -> None:
    assert await store.list_forks() == []


async def test_update_replaces_content_and_keeps_creation(store: Store) -> None:
    await store.create_fork(make())
    later = T0 + timedelta(hours=1)
    updated = await store.update_fork(
        make(
            upstream="https://app.internal",
            flags={"x": "y"},
            created_by="mallory",
            created_at=later,
            updated_at=later,
        )
    )
    expected = make(upstream="https://app.internal", flags={"x": "y"}, updated_at=later)
    assert updated == expected
    assert await store.get_fork("new-lp") == expected


async def test_update_missing_raises(store: Store) -> None:
    with pytest.raises(ForkNotFound) as info:
        await store.update_fork(make("ghost"))
    assert info.value.name == "ghost"
    assert await store.get_fork("ghost") is None


async def test_delete(store: Store) -> None:
    await store.create_fork(make())
    assert await store.delete_fork("new-lp") is True
    assert await store.get_fork("new-lp") is None
    assert await store.delete_fork("new-lp") is False
    await store.create_fork(make())  # the name is free again


async def test_returned_forks_do_not_share_state(store: Store) -> None:
    created = await store.create_fork(make())
    created.flags["sneaky"] = True
    got = await store.get_fork("new-lp")
    assert got is not None and "sneaky" not in got.flags
    got.flags["sneaky"] = True
    listed = await store.list_forks()
    assert "sneaky" not in listed[0].flags


async def test_concurrent_creates_all_land(store: Store) -> None:
    names = [f"fork-{i}" for i in range(40)]
    await asyncio.gather(*(store.create_fork(make(n)) for n in names))
    assert [f.name for f in await store.list_forks()] == sorted(names)


async def test_concurrent_creates_of_one_name_let_exactly_one_win(store: Store) -> None:
    results = await asyncio.gather(
        *(store.create_fork(make(created_by=f"user{i}")) for i in range(10)),
        return_exceptions=True,
    )
    winners = [r for r in results if isinstance(r, Fork)]
    assert len(winners) == 1
    assert all(isinstance(r, ForkExists) for r in results if not isinstance(r, Fork))
    assert await store.get_fork("new-lp") == winners[0]


CATALOG = [
    {
        "name": "b.flag",
        "type": "str",
        "choices": ["x", "y"],
        "default": "x",
        "kind": "trap",
        "module": "m",
        "path": "m.py",
        "line": 3,
        "description": None,
    },
    {
        "name": "a.flag",
        "type": "bool",
        "choices": None,
        "default": True,
        "kind": "intercept",
        "module": "m",
        "path": "m.py",
        "line": 1,
        "description": "Ünïcode ✓",
    },
]


async def test_catalog_starts_empty(store: Store) -> None:
    assert await store.get_catalog() == []


async def test_catalog_round_trips_sorted_by_name(store: Store) -> None:
    await store.put_catalog(CATALOG)
    assert await store.get_catalog() == [CATALOG[1], CATALOG[0]]


async def test_put_catalog_replaces_the_whole_catalog(store: Store) -> None:
    await store.put_catalog(CATALOG)
    await store.put_catalog([CATALOG[0]])
    assert await store.get_catalog() == [CATALOG[0]]
    await store.put_catalog([])
    assert await store.get_catalog() == []


async def test_catalog_with_a_repeated_name_keeps_the_last(store: Store) -> None:
    second = {**CATALOG[0], "line": 99}
    await store.put_catalog([CATALOG[0], second])
    assert await store.get_catalog() == [second]


def entry(name: str, service: str | None) -> dict[str, object]:
    return {"name": name, "type": "bool", "service": service}


async def test_a_service_push_replaces_only_that_services_entries(store: Store) -> None:
    await store.put_catalog([entry("shop.a", "shop"), entry("shop.b", "shop")], service="shop")
    await store.put_catalog([entry("recs.a", "recs")], service="recs")
    await store.put_catalog([entry("shop.c", "shop")], service="shop")  # shop.a, .b are gone
    names = [e["name"] for e in await store.get_catalog()]
    assert names == ["recs.a", "shop.c"]
    await store.put_catalog([], service="recs")
    assert await store.get_catalog() == [entry("shop.c", "shop")]


async def test_a_flag_of_another_service_is_a_conflict_and_nothing_changes(store: Store) -> None:
    await store.put_catalog([entry("shared", "shop")], service="shop")
    with pytest.raises(CatalogConflict) as caught:
        await store.put_catalog([entry("new", "recs"), entry("shared", "recs")], service="recs")
    assert (caught.value.name, caught.value.owner) == ("shared", "shop")
    assert await store.get_catalog() == [entry("shared", "shop")]


async def test_a_push_without_a_service_still_replaces_everything(store: Store) -> None:
    await store.put_catalog([entry("shop.a", "shop")], service="shop")
    await store.put_catalog([CATALOG[0]])
    assert await store.get_catalog() == [CATALOG[0]]
    # Its entries belong to no service: a service push may not take their names.
    with pytest.raises(CatalogConflict):
        await store.put_catalog([entry(str(CATALOG[0]["name"]), "shop")], service="shop")


async def test_returned_catalog_does_not_share_state(store: Store) -> None:
    await store.put_catalog(CATALOG)
    got = await store.get_catalog()
    got[0]["name"] = "changed"
    assert (await store.get_catalog())[0]["name"] == "a.flag"


async def test_close_twice_is_fine(store: Store) -> None:
    await store.close()
    await store.close()
