"""Bearer API tokens: parsing the header and finding the token's name."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from server.auth import authenticate, bearer_token, challenge

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
