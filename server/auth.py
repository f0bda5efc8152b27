"""API authentication: ``Authorization: Bearer <token>`` against FEATUREFLAG_API_TOKENS."""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from pydantic import SecretStr

REALM = "featureflag"


def authenticate(tokens: Mapping[str, SecretStr], given: str) -> str | None:
    """The name whose token is *given*, or None.

    Every configured token is compared, in constant time, whatever matches first, so
    the response time says nothing about which token (or which prefix) was close.
    """
    found: str | None = None
    candidate = given.encode()
    for name, token in tokens.items():
        if hmac.compare_digest(candidate, token.get_secret_value().encode()) and found is None:
            found = name
    return found if given else None


def bearer_token(authorization: str | None) -> str | None:
    """The token in an ``Authorization: Bearer <token>`` header value, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def challenge(error: str | None = None, description: str | None = None) -> str:
    """A ``WWW-Authenticate`` value (RFC 6750 section 3)."""
    value = f'Bearer realm="{REALM}"'
    if error:
        value += f', error="{error}"'
    if description:
        value += f', error_description="{description}"'
    return value
