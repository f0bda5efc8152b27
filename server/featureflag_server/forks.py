"""The fork rules, and create / replace / delete over a :class:`~featureflag_server.store.Store`.

One home for what makes a fork valid (its name, upstream, flags, labels, routes and
expiry), so the API (:mod:`featureflag_server.api`) and the web page
(:mod:`featureflag_server.web`) accept exactly the same forks and say why in the same
words. Flag values are checked by the SDK's own check
(:func:`featureflag.tokens.override_problem`) against the catalog, and a fork's flags
must fit in the override token the proxy will sign for it (checked without signing).

Every refusal is an :class:`~featureflag_server.errors.InvalidFork` listing each field
at fault; the callers turn it into a 422 or a re-rendered form. Every write (create,
replace, update, delete) is logged, one line naming the fork and who wrote it, on the
logger ``featureflag.server.forks``, where :mod:`featureflag_server.expiry` logs the forks
its sweep deletes.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from featureflag.exceptions import TokenError, TooManyFlags
from featureflag.tokens import (
    MAX_ROUTES,
    OverrideSigner,
    check_flags,
    override_problem,
    route_problem,
)

from .errors import FieldProblem, ForkExists, ForkNotFound, InvalidFork
from .fork_tokens import DEFAULT_TOKEN_TTL
from .store import FlagValue, Fork, Store, iso, utcnow
from .upstream_policy import UpstreamPolicy

FORK_NAME_RULE = (
    "a fork name is a DNS label: 1 to 63 lowercase letters, digits or '-', "
    "not starting or ending with '-'"
)
# Names that would shadow the service's own host or common infrastructure hosts.
RESERVED_FORK_NAMES = frozenset(
    {"www", "api", "admin", "localhost", "mail", "static", "assets", "app", "server", "status"}
)
UPSTREAM_RULE = (
    "upstream is an absolute http:// or https:// URL with a host, "
    "no user:password@, query or fragment"
)
SERVICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
SERVICE_RULE = "a service name is 1 to 64 letters, digits, '.', '_' or '-'"
MAX_LABELS = 32
MAX_LABEL_VALUE = 256
LABEL_KEY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?")
LABEL_KEY_RULE = (
    "a label key is 1 to 63 letters, digits, '.', '_', '/' or '-', "
    "starting and ending with a letter or digit"
)
LABEL_VALUE_RULE = (
    f"a label value is a string of at most {MAX_LABEL_VALUE} characters without control characters"
)
MAX_FORK_TTL = 10 * 365 * 86400
TTL_RULE = "ttl must be a positive number of seconds"
EXPIRES_RULE = "expires_at is an ISO 8601 time with a timezone, e.g. 2026-12-31T18:00:00Z"

_LABEL = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
logger = logging.getLogger("featureflag.server.forks")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def fork_name_problem(name: object) -> str | None:
    """Why *name* cannot name a fork, or None when it can."""
    if not isinstance(name, str) or _LABEL.fullmatch(name) is None:
        return FORK_NAME_RULE
    if name in RESERVED_FORK_NAMES:
        reserved = ", ".join(sorted(RESERVED_FORK_NAMES))
        return f"{name!r} is reserved; a fork name must not be one of: {reserved}"
    return None


def _bad_url(url: object) -> bool:
    if not isinstance(url, str) or len(url) > 2048 or any(c.isspace() for c in url):
        return True
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        return True
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return True
    return parts.username is not None or bool(parts.query) or bool(parts.fragment)


def upstream_problem(url: object) -> str | None:
    """Why *url* cannot be a fork's upstream (its form only), or None."""
    return UPSTREAM_RULE if _bad_url(url) else None


@dataclass(frozen=True, slots=True)
class ForkSpec:
    """What a client sets on a fork: the body of ``PUT /api/forks/{name}`` or the form.

    *expires_at* (an ISO 8601 string or an aware datetime) and *ttl* (seconds from now)
    are two ways to say when the fork expires; give one or neither (never expires).
    """

    upstream: object
    flags: Mapping[str, object] = field(default_factory=dict)
    labels: Mapping[str, object] = field(default_factory=dict)
    routes: Mapping[str, object] = field(default_factory=dict)
    expires_at: object = None
    ttl: object = None


def _labels(labels: Mapping[str, object]) -> list[FieldProblem]:
    problems = []
    if len(labels) > MAX_LABELS:
        problems.append(FieldProblem("labels", f"a fork has at most {MAX_LABELS} labels"))
    for key, value in labels.items():
        if not isinstance(key, str) or LABEL_KEY.fullmatch(key) is None:
            problems.append(FieldProblem("labels", f"{str(key)[:60]!r}: {LABEL_KEY_RULE}"))
        elif (
            not isinstance(value, str)
            or len(value) > MAX_LABEL_VALUE
            or _CONTROL.search(value) is not None
        ):
            problems.append(FieldProblem(f"labels.{key}", LABEL_VALUE_RULE))
    return problems


def route_problems(routes: Mapping[str, object]) -> list[FieldProblem]:
    """What is wrong with *routes* (service name -> base URL), field by field."""
    # The SDK's rule (featureflag.tokens.route_problem): the one the fork's token is
    # signed and verified with, so a route stored here never breaks the fork's token.
    problems = []
    if len(routes) > MAX_ROUTES:
        problems.append(FieldProblem("routes", f"a fork has at most {MAX_ROUTES} routes"))
    for service, url in routes.items():
        problem = route_problem(service, url)
        if problem is None:
            continue
        if isinstance(service, str) and SERVICE_NAME.fullmatch(service) is not None:
            problems.append(FieldProblem(f"routes.{service}", problem))
        else:
            problems.append(FieldProblem("routes", problem))
    return problems


def expiry(
    expires_at: object, ttl: object, now: datetime
) -> tuple[datetime | None, list[FieldProblem]]:
    """When a fork given *expires_at* or *ttl* expires (None: never), and what is wrong."""
    if expires_at is not None and ttl is not None:
        return None, [FieldProblem("ttl", "send expires_at or ttl, not both")]
    if ttl is not None:
        if isinstance(ttl, bool) or not isinstance(ttl, int | float):
            return None, [FieldProblem("ttl", TTL_RULE)]
        # (an int is never converted to a float here: JSON may carry 10**400)
        if (isinstance(ttl, float) and not math.isfinite(ttl)) or ttl <= 0:
            return None, [FieldProblem("ttl", TTL_RULE)]
        if ttl > MAX_FORK_TTL:
            rule = (
                f"ttl is at most {MAX_FORK_TTL} seconds (10 years); "
                "leave it out for a fork that never expires"
            )
            return None, [FieldProblem("ttl", rule)]
        return now + timedelta(seconds=ttl), []
    if expires_at is None:
        return None, []
    moment = expires_at
    if isinstance(moment, str):
        try:
            moment = datetime.fromisoformat(moment.strip())
        except ValueError:
            return None, [FieldProblem("expires_at", EXPIRES_RULE)]
    if not isinstance(moment, datetime) or moment.utcoffset() is None:
        return None, [FieldProblem("expires_at", EXPIRES_RULE)]
    try:
        moment = moment.astimezone(UTC)
    except OverflowError:  # 9999-12-31T23:00-05:00 is past year 9999 in UTC
        return None, [FieldProblem("expires_at", EXPIRES_RULE)]
    if moment <= now:
        rule = f"expires_at must be in the future: {iso(moment)} is past (now {iso(now)})"
        return None, [FieldProblem("expires_at", rule)]
    return moment, []


def is_expired(fork: Fork, now: datetime | None = None) -> bool:
    """Whether *fork* has an expiry and it has passed (its URL answers 410)."""
    return fork.expires_at is not None and fork.expires_at <= (now or utcnow())


class Forks:
    """Forks over a store, with the rules checked before anything is written.

    *fork_domain* is where forks are served (an upstream under it would loop); the
    *signer* checks that a fork's flags fit in the token the proxy signs for it.
    """

    def __init__(
        self,
        store: Store,
        signer: OverrideSigner,
        *,
        fork_domain: str,
        policy: UpstreamPolicy | None = None,
        token_ttl: float = DEFAULT_TOKEN_TTL,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.store = store
        self.signer = signer
        self.fork_domain = fork_domain
        # Where upstreams may point (IDNA, SSRF, loops); default: the rules that always apply.
        self.policy = policy if policy is not None else UpstreamPolicy()
        self.token_ttl = token_ttl
        self.clock = clock

    # -- the rules -----------------------------------------------------------------
    def upstream_problems(self, upstream: object) -> list[FieldProblem]:
        """The upstream's form, and that it is not itself a fork host (a loop)."""
        problem = upstream_problem(upstream)
        problem = problem or self.policy.url_problem(str(upstream), self.fork_domain)
        if problem is not None:
            return [FieldProblem("upstream", problem)]
        host = (urlsplit(str(upstream)).hostname or "").rstrip(".").lower()
        if host.endswith("." + self.fork_domain):
            rule = (
                f"upstream {host!r} is under the fork domain {self.fork_domain!r}, so "
                "requests would loop through this service; point it at the app itself "
                "(e.g. http://127.0.0.1:5000)"
            )
            return [FieldProblem("upstream", rule)]
        return []

    async def flag_problems(self, flags: Mapping[str, object]) -> list[FieldProblem]:
        """Each override the SDK's check refuses, knowing the catalog's declared types."""
        try:
            check_flags(flags)
        except TooManyFlags as exc:
            return [FieldProblem("flags", str(exc))]
        except TokenError:
            pass  # named flag by flag below, with the catalog's types
        known = {entry.get("name"): entry for entry in await self.store.get_catalog()}
        problems = []
        for name, value in flags.items():
            entry: Mapping[str, Any] = known.get(name) or {}
            kind = entry.get("type")
            choices = entry.get("choices")
            problem = override_problem(
                name,
                value,
                type=kind if kind in ("bool", "str") else None,
                choices=choices if isinstance(choices, list) else None,
            )
            if problem is not None:
                # A bad name is no path into the body: the problem is the whole object's.
                bad_name = override_problem(name, "") is not None
                problems.append(FieldProblem("flags" if bad_name else f"flags.{name}", problem))
        return problems

    async def check_flags(
        self, flags: Mapping[str, object], *, sub: str, origin: str, ttl: float
    ) -> dict[str, FlagValue]:
        """*flags*, when the catalog allows them and they fit in a token signed with these
        arguments; otherwise raise :class:`InvalidFork`."""
        problems = await self.flag_problems(flags)
        if problems:
            raise InvalidFork(problems)
        clean: dict[str, FlagValue] = {k: v for k, v in flags.items() if isinstance(v, bool | str)}
        try:
            self.signer.check(clean, sub=sub, origin=origin, ttl=ttl)
        except TokenError as exc:
            raise InvalidFork([FieldProblem("flags", str(exc))]) from None
        return clean

    async def build(self, name: object, spec: ForkSpec, *, user: str) -> Fork:
        """The fork *user* asks for, checked against every rule (nothing is stored)."""
        problems: list[FieldProblem] = []
        name_problem = fork_name_problem(name)
        if name_problem is not None:
            problems.append(FieldProblem("name", name_problem))
        problems += self.upstream_problems(spec.upstream)
        problems += _labels(spec.labels)
        problems += route_problems(spec.routes)
        now = self.clock()
        expires_at, when = expiry(spec.expires_at, spec.ttl, now)
        problems += when
        flags: dict[str, FlagValue] = {}
        try:
            subject = f"fork:{name}"
            flags = await self.check_flags(
                spec.flags, sub=subject, origin=subject, ttl=self.token_ttl
            )
        except InvalidFork as exc:
            problems += exc.problems
        if problems:
            raise InvalidFork(problems)
        return Fork(
            name=str(name),
            upstream=str(spec.upstream),
            flags=flags,
            created_by=user,
            created_at=now,
            updated_at=now,
            labels={str(k): str(v) for k, v in spec.labels.items()},
            routes={str(k): str(v) for k, v in spec.routes.items()},
            expires_at=expires_at,
            updated_by=user,
        )

    # -- reads ---------------------------------------------------------------------
    async def get(self, name: str) -> Fork:
        """The fork called *name*; :class:`ForkNotFound` when there is none."""
        fork = await self.store.get_fork(name)
        if fork is None:
            raise ForkNotFound(name)
        return fork

    async def all(self) -> list[Fork]:
        """Every fork, sorted by name."""
        return await self.store.list_forks()

    # -- writes --------------------------------------------------------------------
    async def create(self, name: object, spec: ForkSpec, *, user: str) -> Fork:
        """Store a new fork; :class:`ForkExists` when the name is taken."""
        fork = await self.store.create_fork(await self.build(name, spec, user=user))
        _audit("created", fork, user)
        return fork

    async def update(self, name: str, spec: ForkSpec, *, user: str) -> Fork:
        """Replace an existing fork (who created it and when are kept);
        :class:`ForkNotFound` when there is none."""
        fork = await self.store.update_fork(await self.build(name, spec, user=user))
        _audit("updated", fork, user)
        return fork

    async def replace(self, name: str, spec: ForkSpec, *, user: str) -> tuple[Fork, bool]:
        """Create or replace (``PUT``): the stored fork, and True when it is new."""
        fork = await self.build(name, spec, user=user)
        try:
            stored, created = await self.store.update_fork(fork), False
        except ForkNotFound:
            try:
                stored, created = await self.store.create_fork(fork), True
            except ForkExists:  # created by someone else in between: replace theirs
                stored, created = await self.store.update_fork(fork), False
        _audit("created" if created else "replaced", stored, user)
        return stored, created

    async def delete(self, name: str, *, user: str) -> None:
        """Delete a fork; :class:`ForkNotFound` when there is none."""
        if not await self.store.delete_fork(name):
            raise ForkNotFound(name)
        logger.info("fork deleted: %s by %s", name, user)


def _audit(verb: str, fork: Fork, user: str) -> None:
    # One line per write: which fork, who, and where it now points.
    logger.info(
        "fork %s: %s by %s (upstream %s, %d flags, expires %s)",
        verb,
        fork.name,
        user,
        fork.upstream,
        len(fork.flags),
        iso(fork.expires_at) if fork.expires_at else "never",
    )
