"""The one exception tree of featureflag.

::

    FeatureFlagError
     ├── FlagNameError              a name breaks the name rule
     ├── FlagDeclarationError       a flag cannot be declared as written
     │    └── DuplicateFlagError    the same name declared in two places
     ├── OverrideTypeError          an override does not fit the flag's type
     ├── ConfigurationError         missing or weak secret, bad setting (start-up)
     └── TokenError                 an override token was refused (``reason``)
          ├── TokenExpired          ``expired``
          ├── BadSignature          ``bad-signature``
          ├── WrongEnvironment      ``wrong-environment``
          └── MalformedToken        ``malformed``
               ├── TokenTooLarge    ``too-large``
               ├── TooManyFlags     ``too-many-flags``
               └── InvalidOverride  ``invalid-override``

Context travels as attributes (``flag``, ``reason``), and every message says what
to do about it.
"""

from __future__ import annotations


class FeatureFlagError(Exception):
    """Root of every error raised by featureflag."""


class FlagNameError(FeatureFlagError, ValueError):
    """A flag name breaks the name rule (see :data:`featureflag.NAME_RULE`)."""


class FlagDeclarationError(FeatureFlagError, TypeError):
    """A flag cannot be declared as written (for example ``-> int``)."""

    def __init__(self, message: str, *, flag: str) -> None:
        super().__init__(message)
        self.flag = flag


class DuplicateFlagError(FlagDeclarationError):
    """The same flag name is declared in two places."""

    def __init__(self, message: str, *, flag: str, first: str, second: str) -> None:
        super().__init__(message, flag=flag)
        self.first = first
        self.second = second


class OverrideTypeError(FeatureFlagError, TypeError):
    """An override value does not fit the declared type of its flag."""

    def __init__(self, message: str, *, flag: str) -> None:
        super().__init__(message)
        self.flag = flag


class ConfigurationError(FeatureFlagError):
    """featureflag is misconfigured (a missing or short secret, a bad setting)."""


class TokenError(FeatureFlagError):
    """An override token was refused; ``reason`` is the sf-token sent back to clients."""

    reason = "malformed"


class TokenExpired(TokenError):
    """The token's own expiry has passed."""

    reason = "expired"


class BadSignature(TokenError):
    """The token was not signed by any of the configured secrets."""

    reason = "bad-signature"


class WrongEnvironment(TokenError):
    """The token was signed for another environment (a QA token in production)."""

    reason = "wrong-environment"


class MalformedToken(TokenError):
    """The token is not a featureflag override token."""

    reason = "malformed"


class TokenTooLarge(MalformedToken):
    """The token is longer than the limit (4 KiB)."""

    reason = "too-large"


class TooManyFlags(MalformedToken):
    """The token carries more flags than the limit (200)."""

    reason = "too-many-flags"


class InvalidOverride(MalformedToken):
    """A flag name or value in the token breaks the rules."""

    reason = "invalid-override"
