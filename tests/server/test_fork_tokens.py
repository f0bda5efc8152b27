"""TokenCache: one token per fork, reused until less than 10% of its lifetime is left."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from featureflag.exceptions import InvalidOverride
from featureflag.tokens import OverrideSigner
from featureflag_server.fork_tokens import TokenCache
from featureflag_server.store import Fork
from tests.support.clock import Clock


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def signer(clock: Clock) -> OverrideSigner:
    return OverrideSigner("t" * 40, environment="test", clock=clock)


@pytest.fixture
def cache(signer: OverrideSigner, clock: Clock) -> TokenCache:
    return TokenCache(signer, ttl=1000, clock=clock)


FORK = Fork(name="new-lp", upstream="http://app", flags={"hero": "b", "Landing.is_new": True})


def test_the_token_carries_the_forks_flags_and_origin(
    cache: TokenCache, signer: OverrideSigner
) -> None:
    verified = signer.loads(cache.token_for(FORK))
    assert verified.flags == {"hero": "b", "Landing.is_new": True}
    assert verified.origin == "fork:new-lp"
    assert verified.sub == "fork:new-lp"


def test_reused_until_ten_percent_is_left(cache: TokenCache, clock: Clock) -> None:
    first = cache.token_for(FORK)
    clock.now += 899
    assert cache.token_for(FORK) == first
    clock.now += 2  # 901 s of 1000: less than 10% left
    assert cache.token_for(FORK) != first


def test_new_flags_or_timestamp_mint_a_new_token(cache: TokenCache, clock: Clock) -> None:
    first = cache.token_for(FORK)
    clock.now += 1  # so that a new token differs from the old one byte for byte
    assert cache.token_for(FORK) == first
    assert cache.token_for(replace(FORK, flags={"hero": "c"})) != first
    second = cache.token_for(FORK)
    clock.now += 1
    assert cache.token_for(replace(FORK, updated_at=FORK.updated_at + timedelta(1))) != second


def test_flag_order_does_not_matter(cache: TokenCache) -> None:
    first = cache.token_for(FORK)
    reordered = replace(FORK, flags={"Landing.is_new": True, "hero": "b"})
    assert cache.token_for(reordered) == first


def test_forget_drops_the_token(signer: OverrideSigner, clock: Clock) -> None:
    minted: list[str] = []

    class Counting:
        def dumps(self, flags: dict[str, bool | str], *, sub: str, origin: str, ttl: float) -> str:
            minted.append(sub)
            return signer.dumps(flags, sub=sub, origin=origin, ttl=ttl)

        def loads(self, token: str | bytes) -> object:
            return signer.loads(token)

    cache = TokenCache(Counting(), ttl=1000, clock=clock)  # type: ignore[arg-type]
    cache.token_for(FORK)
    cache.token_for(FORK)
    cache.forget("new-lp")
    cache.forget("never-existed")
    cache.token_for(FORK)
    assert minted == ["fork:new-lp", "fork:new-lp"]


def test_flags_that_cannot_be_signed_raise(cache: TokenCache) -> None:
    with pytest.raises(InvalidOverride):
        cache.token_for(replace(FORK, flags={"bad name!": True}))
