"""featureflag: feature flags declared in code, with signed per-request overrides.

Declare flags with :func:`trap` (methods, functions) or :func:`intercept` (any
expression; :func:`declare` lists it in the catalog up front); apply overrides with
:func:`overrides` (tests, jobs) or per request with the ASGI/WSGI/Django middleware;
read what ran with :func:`evaluations`; keep caches apart with :func:`cache_key`.
"""

from __future__ import annotations

from ._intercept import intercept as intercept
from ._intercept import intercept_async as intercept_async
from ._names import NAME_RULE as NAME_RULE
from ._registry import FlagInfo as FlagInfo
from ._registry import catalog as catalog
from ._registry import declare_flag as declare
from ._scope import Evaluation as Evaluation
from ._scope import Evaluations as Evaluations
from ._scope import evaluations as evaluations
from ._scope import overrides as overrides
from ._scope import request_scope as request_scope
from ._trap import trap as trap
from .caching import cache_key as cache_key
from .caching import is_overridden as is_overridden
from .exceptions import BadSignature as BadSignature
from .exceptions import ConfigurationError as ConfigurationError
from .exceptions import DuplicateFlagError as DuplicateFlagError
from .exceptions import FeatureFlagError as FeatureFlagError
from .exceptions import FlagDeclarationError as FlagDeclarationError
from .exceptions import FlagNameError as FlagNameError
from .exceptions import InvalidOverride as InvalidOverride
from .exceptions import MalformedToken as MalformedToken
from .exceptions import OverrideTypeError as OverrideTypeError
from .exceptions import TokenError as TokenError
from .exceptions import TokenExpired as TokenExpired
from .exceptions import TokenTooLarge as TokenTooLarge
from .exceptions import TooManyFlags as TooManyFlags
from .exceptions import WrongEnvironment as WrongEnvironment
from .tokens import OverrideSigner as OverrideSigner
from .tokens import VerifiedOverrides as VerifiedOverrides

__all__ = [
    "NAME_RULE",
    "BadSignature",
    "ConfigurationError",
    "DuplicateFlagError",
    "Evaluation",
    "Evaluations",
    "FeatureFlagError",
    "FlagDeclarationError",
    "FlagInfo",
    "FlagNameError",
    "InvalidOverride",
    "MalformedToken",
    "OverrideSigner",
    "OverrideTypeError",
    "TokenError",
    "TokenExpired",
    "TokenTooLarge",
    "TooManyFlags",
    "VerifiedOverrides",
    "WrongEnvironment",
    "cache_key",
    "catalog",
    "declare",
    "evaluations",
    "intercept",
    "intercept_async",
    "is_overridden",
    "overrides",
    "request_scope",
    "trap",
]
__version__ = "0.1.0"
