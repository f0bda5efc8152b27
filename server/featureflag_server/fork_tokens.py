"""Override tokens for forks: minted by the service, reused until close to expiry.

Every proxied request carries a ``Feature-Flag-Overrides`` token with the fork's flags
(``sub`` and ``origin`` both ``fork:<name>``). Signing costs tens of microseconds, so
:class:`TokenCache` keeps one token per fork and mints a new one when less than 10% of
its lifetime is left, or as soon as the fork's flags or ``updated_at`` change.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from .store import Fork

DEFAULT_TOKEN_TTL = 3600.0
# Re-mint a cached token when less than this share of its lifetime is left.
REMINT_FRACTION = 0.1


class Signer(Protocol):
    """What the proxy needs from :class:`featureflag.OverrideSigner`."""

    def dumps_with_expiry(
        self, flags: Mapping[str, bool | str], *, sub: str, origin: str, ttl: float
    ) -> tuple[str, float]: ...


@dataclass(frozen=True, slots=True)
class _CachedToken:
    flags: dict[str, bool | str]
    updated_at: datetime
    token: str
    minted_at: float
    expires_at: float


class TokenCache:
    """One override token per fork, reused until less than 10% of its lifetime is left.

    Keyed by the fork's name, flags and ``updated_at``: an edited fork gets a new token
    on its next request.
    """

    def __init__(self, signer: Signer, *, ttl: float, clock: Callable[[], float]) -> None:
        self.signer = signer
        self.ttl = ttl
        self.clock = clock
        self._tokens: dict[str, _CachedToken] = {}

    def token_for(self, fork: Fork) -> str:
        """A valid token for *fork*; raises TokenError when its flags cannot be signed."""
        now = self.clock()
        cached = self._tokens.get(fork.name)
        if (
            cached is not None
            and cached.updated_at == fork.updated_at
            and cached.flags == fork.flags
        ):
            left = cached.expires_at - now
            if left > REMINT_FRACTION * (cached.expires_at - cached.minted_at):
                return cached.token
        subject = f"fork:{fork.name}"
        # The signer may cap the lifetime: it says when the token really expires.
        token, expires_at = self.signer.dumps_with_expiry(
            fork.flags, sub=subject, origin=subject, ttl=self.ttl
        )
        flags = dict(fork.flags)
        self._tokens[fork.name] = _CachedToken(flags, fork.updated_at, token, now, expires_at)
        return token

    def forget(self, name: str) -> None:
        """Drop the token of a fork that no longer exists."""
        self._tokens.pop(name, None)
