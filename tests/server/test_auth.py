"""Bearer API tokens: parsing the header and finding the token's name."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from featureflag_server.auth import FailedLogins, authenticate, bearer_token, challenge
from featureflag_server.errors import TooManyAttempts
from tests.support.clock import Clock

TOKENS = {"alice": SecretStr("alice-token-0123456789"), "bob": SecretStr("bob-token-012345678")}


@pytest.mark.parametrize(
    ("header", "token"),
    [
        ("Bearer abc", "abc"),
        ("bearer abc", "abc"),
        ("BEARER   abc  ", "abc"),
        ("Basic abc", None),
        ("Bearer", None),
        ("Bearer   ", None),
        ("abc", None),
        ("", None),
        (None, None),
    ],
)
def test_bearer_token(header: str | None, token: str | None) -> None:
    assert bearer_token(header) == token


def test_authenticate_finds_the_name() -> None:
    assert authenticate(TOKENS, "alice-token-0123456789") == "alice"
    assert authenticate(TOKENS, "bob-token-012345678") == "bob"


@pytest.mark.parametrize(
    "given",
    ["", "alice", "alice-token-012345678", "alice-token-01234567890", "ALICE-TOKEN-0123456789"],
)
def test_authenticate_refuses_near_misses(given: str) -> None:
    assert authenticate(TOKENS, given) is None


def test_authenticate_with_non_ascii_input() -> None:
    assert authenticate(TOKENS, "älice-token-0123456789") is None


def test_challenge() -> None:
    assert challenge() == 'Bearer realm="featureflag"'
    assert challenge("invalid_token", "unknown API token") == (
        'Bearer realm="featureflag", error="invalid_token", error_description="unknown API token"'
    )


def test_failed_logins_refuse_an_address_after_the_limit_until_the_window_passes() -> None:
    clock = Clock(1000.0)
    logins = FailedLogins(limit=3, window=60.0, clock=clock)
    for _ in range(2):
        logins.failed("203.0.113.7")
    assert logins.retry_after("203.0.113.7") is None  # two of three: still allowed
    clock.now += 10
    logins.failed("203.0.113.7")
    assert logins.retry_after("203.0.113.7") == 50  # the first failure is 60 s old at 1060
    assert logins.retry_after("198.51.100.1") is None  # another address is not affected
    clock.now += 50
    assert logins.retry_after("203.0.113.7") is None  # the two at 1000 left the window
    logins.failed("203.0.113.7")
    assert logins.retry_after("203.0.113.7") is None  # 1010 and 1060: two of three
    logins.failed("203.0.113.7")
    assert logins.retry_after("203.0.113.7") == 10  # the 1010 failure leads now


def test_failed_logins_remember_a_bounded_number_of_buckets_and_never_a_refusing_one() -> None:
    # Issue 17 item 10: past 10,000 addresses the whole record used to be wiped, so an
    # attacker could flush their own lock by failing from many addresses.
    clock = Clock(0.0)
    logins = FailedLogins(limit=3, window=60.0, max_keys=100, clock=clock)
    for _ in range(3):
        logins.failed("attacker")  # refusing now
    assert logins.retry_after("attacker") == 60
    for i in range(1000):
        clock.now += 0.01
        logins.failed(f"10.0.{i // 256}.{i % 256}")
        assert len(logins._failures) <= 100
    assert logins.retry_after("attacker") is not None  # the flood did not flush it
    assert logins._failures.get("10.0.3.231") is not None  # the last one is remembered
    assert "10.0.0.0" not in logins._failures  # the least recently failed one went


def test_failed_logins_forget_nothing_when_every_bucket_is_refusing() -> None:
    logins = FailedLogins(limit=1, window=60.0, max_keys=3, clock=Clock(0.0))
    for name in ("a", "b", "c"):
        logins.failed(name)
    logins.failed("d")  # no room: a, b and c refuse, so d is not remembered here
    assert [logins.retry_after(k) for k in "abc"] == [60, 60, 60]
    assert logins.retry_after("d") is None


def test_a_correct_token_is_never_refused_for_other_tokens_failures() -> None:
    logins = FailedLogins(limit=3, window=60.0, clock=Clock(0.0))

    def check(given: str) -> str | None:
        return authenticate(TOKENS, given)

    for i in range(50):
        assert logins.attempt("203.0.113.7", f"{i:06d}-wrong-guess", check) is None
    assert logins.attempt("203.0.113.7", "alice-token-0123456789", check) == "alice"
    # Guesses that start like a token are what the limit holds back, per address.
    for _ in range(3):
        assert logins.attempt("203.0.113.7", "alice-guess-0000000000", check) is None
    with pytest.raises(TooManyAttempts):
        logins.attempt("203.0.113.7", "alice-guess-0000000001", check)
    assert logins.attempt("198.51.100.1", "alice-guess-0000000001", check) is None


def test_one_prefix_from_many_addresses_is_limited_too() -> None:
    # A trusted proxy rotating X-Forwarded-For gives every guess a new address: the
    # prefix's own bucket (any address) still fills up.
    logins = FailedLogins(limit=3, prefix_limit=20, window=60.0, clock=Clock(0.0))
    for i in range(20):
        assert logins.attempt(f"10.1.0.{i}", f"alice-guess-{i:010d}", lambda g: None) is None
    with pytest.raises(TooManyAttempts):
        logins.attempt("10.1.0.200", "alice-guess-9999999999", lambda g: None)
    # Other prefixes from those addresses are not held back.
    assert logins.retry_after("10.1.0.200", "bob-token-012345678") is None


def test_the_record_keeps_no_token_characters() -> None:
    logins = FailedLogins(limit=3, window=60.0, clock=Clock(0.0), key="k" * 32)
    logins.attempt("203.0.113.7", "alice-guess-0000000000", lambda g: None)
    assert all("alice" not in bucket for bucket in logins._failures)
    other = FailedLogins(key="another-key-" * 3)
    assert logins.buckets("a", "alice-x") != other.buckets("a", "alice-x")
    assert logins.buckets("a", "alice-x") == logins.buckets("a", "alice-y")  # same prefix


def test_a_record_full_of_refusing_buckets_makes_room_when_the_first_stops() -> None:
    clock = Clock(0.0)
    logins = FailedLogins(limit=1, window=60.0, max_keys=3, clock=clock)
    for name in ("a", "b", "c"):
        logins.failed(name)
        clock.now += 1
    logins.failed("d")  # no room until "a" stops refusing at 60
    assert "d" not in logins._failures
    clock.now = 60.5
    logins.failed("e")
    assert "e" in logins._failures and "a" not in logins._failures
