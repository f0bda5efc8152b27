"""Bearer API tokens: parsing the header and finding the token's name."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from featureflag_server.auth import FailedLogins, authenticate, bearer_token, challenge
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


def test_failed_logins_remember_a_bounded_number_of_addresses() -> None:
    logins = FailedLogins(limit=1, window=60.0, max_clients=100, clock=Clock(0.0))
    for i in range(1000):
        logins.failed(f"10.0.{i // 256}.{i % 256}")
        assert len(logins._failures) <= 100
    assert logins.retry_after("10.0.3.231") is not None  # the last one is remembered
