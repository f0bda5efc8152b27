"""Keeping caches inside an app apart: overridden results never mix with default ones.

The middleware marks responses at the HTTP boundary (``Vary``, ``Cache-Control``), but a
cache *inside* the app (Flask-Caching, Django's low-level cache or ``cache_page``,
``functools.lru_cache``) stores results before any header exists. Put
:func:`cache_key` in those keys, or skip the cache when :func:`is_overridden`::

    @cache.cached(timeout=60, key_prefix=lambda: "page/" + request.path + cache_key())

See docs/django.md and docs/middleware.md ("Caches inside the app").
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping

from ._scope import current_scope

__all__ = ["cache_key", "is_overridden"]

_PREFIX = "featureflag-"


def _overrides() -> Mapping[str, object]:
    scope = current_scope()
    return {} if scope is None else scope.overrides


def is_overridden() -> bool:
    """True when overrides apply to the current request (a valid token with flags).

    Also true inside ``featureflag.overrides(...)`` (tests, jobs). Ask it *before* a
    cache is read: it does not depend on which flags the code goes on to evaluate.
    """
    return bool(_overrides())


def cache_key() -> str:
    """A cache-key part: ``""`` without overrides, else a stable digest of them.

    The same overrides give the same digest in every process (a shared cache works);
    different overrides give different digests. Append it to a key so a result
    computed with overrides is never served to anyone without them, and the other
    way round::

        key = f"sidebar:{user.id}:{featureflag.cache_key()}"
    """
    overrides = _overrides()
    if not overrides:
        return ""
    # Sorted JSON: the same flags in any order give the same key, in any process.
    canonical = json.dumps(dict(overrides), sort_keys=True, separators=(",", ":"))
    return _PREFIX + hashlib.blake2b(canonical.encode(), digest_size=12).hexdigest()
