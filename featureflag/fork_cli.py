"""``featureflag fork apply|get|list|delete``: drive the override service's forks from CI.

The service comes from ``--service URL`` or ``FEATUREFLAG_SERVICE_URL``, the API token
from ``FEATUREFLAG_API_TOKEN`` (never from the command line: CI logs and shell history).
Exit codes: 0 success; 1 the service refused (its message, naming each field and rule,
on stderr); 2 a usage or configuration error (one line saying what to set). See
docs/previews.md.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit

from .tokens import FlagValue, _parse_value, route_problem

if TYPE_CHECKING:
    import httpx

SERVICE_ENV = "FEATUREFLAG_SERVICE_URL"
TOKEN_ENV = "FEATUREFLAG_API_TOKEN"
TTL_RULE = "a TTL is a whole number above zero followed by s, m, h or d, e.g. 90m or 7d"
_TTL = re.compile(r"(-?\d+)([smhd])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
TIMEOUT = 30.0


class UsageError(Exception):
    """Exit 2: the command line or the environment is wrong; the message says what to set."""


class Refused(Exception):
    """Exit 1: the service answered with an error (``status``)."""

    def __init__(self, message: str, *, status: int) -> None:
        super().__init__(message)
        self.status = status


def parse_ttl(text: str) -> int:
    """``7d`` -> 604800 seconds; :class:`UsageError` naming :data:`TTL_RULE` otherwise."""
    match = _TTL.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"--ttl {text!r}: {TTL_RULE}")
    seconds = int(match[1]) * _UNITS[match[2]]
    if seconds <= 0:
        raise UsageError(f"--ttl {text!r} is not above zero: {TTL_RULE}")
    return seconds


def _pairs(option: str, items: Sequence[str] | None, example: str) -> list[tuple[str, str]]:
    pairs = []
    for item in items or ():
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{option} {item!r}: write KEY=VALUE, e.g. {option} {example}")
        pairs.append((key, value))
    return pairs


def parse_flags(items: Sequence[str] | None) -> dict[str, FlagValue]:
    """``--flag NAME=VALUE`` as ``python -m featureflag sign`` reads it (true/false: bool)."""
    return {k: _parse_value(v) for k, v in _pairs("--flag", items, "new-lp=b")}


def parse_routes(items: Sequence[str] | None) -> dict[str, str]:
    """``--route SERVICE=URL``; a malformed route is a :class:`UsageError` naming the rule."""
    routes = dict(_pairs("--route", items, "recommendations=http://recs-pr-12.internal"))
    for service, url in routes.items():
        problem = route_problem(service, url)
        if problem is not None:
            raise UsageError(f"--route {service}={url}: {problem}")
    return routes


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--service",
        metavar="URL",
        # Absent stays absent: before or after the command, the one given counts.
        default=argparse.SUPPRESS,
        help=f"the override service, e.g. https://ff.qa.example.com (default: ${SERVICE_ENV})",
    )
    parser = argparse.ArgumentParser(
        prog="featureflag fork",
        description=f"Create, read and delete forks of the override service (${TOKEN_ENV}).",
        parents=[common],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    apply = commands.add_parser(
        "apply",
        parents=[common],
        help="create or replace a fork (idempotent); print its URL",
        description="Create or replace fork NAME (PUT /api/forks/NAME) and print only its URL.",
    )
    apply.add_argument("name", metavar="NAME")
    apply.add_argument("--upstream", required=True, metavar="URL", help="the app to proxy")
    apply.add_argument(
        "--flag", action="append", metavar="NAME=VALUE", help="true/false become booleans"
    )
    apply.add_argument("--route", action="append", metavar="SERVICE=URL", help="route a service")
    apply.add_argument("--label", action="append", metavar="KEY=VALUE")
    apply.add_argument("--ttl", metavar="TTL", help="expire after e.g. 30m, 12h, 7d")
    get = commands.add_parser("get", parents=[common], help="show one fork")
    get.add_argument("name", metavar="NAME")
    get.add_argument("--json", action="store_true", help="print the fork as JSON")
    listing = commands.add_parser("list", parents=[common], help="list forks")
    listing.add_argument("--json", action="store_true", help="print the forks as JSON")
    listing.add_argument("--label", action="append", metavar="KEY=VALUE", help="only these")
    delete = commands.add_parser("delete", parents=[common], help="delete a fork")
    delete.add_argument("name", metavar="NAME")
    delete.add_argument(
        "--missing-ok", action="store_true", help="exit 0 when there is no such fork"
    )
    return parser


class _Client:
    """The service's fork API over one ``httpx.Client``."""

    def __init__(self, base: str, token: str | None, transport: httpx.BaseTransport | None):
        import httpx

        headers = {"Accept": "application/json", "User-Agent": "featureflag-fork"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.base = base
        self.http = httpx.Client(headers=headers, timeout=TIMEOUT, transport=transport)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        import httpx

        url = self.base + "/api/forks" + path
        try:
            response = self.http.request(method, url, json=body)
        except httpx.TransportError as exc:
            raise UsageError(
                f"cannot reach the service at {self.base} ({exc or type(exc).__name__}); "
                f"check --service or ${SERVICE_ENV}"
            ) from None
        if response.status_code == 204:
            return 204, None
        try:
            data = response.json()
        except ValueError:
            raise UsageError(
                f"{method} {url} answered {response.status_code} without JSON: is "
                f"{self.base} a featureflag-server? Check --service or ${SERVICE_ENV}"
            ) from None
        if response.status_code >= 400:
            raise Refused(_problem(response.status_code, data), status=response.status_code)
        return response.status_code, data

    def close(self) -> None:
        self.http.close()


def _problem(status: int, data: Any) -> str:
    """The service's error body as lines: its message, then each field and rule."""
    if not isinstance(data, Mapping):
        return f"the service answered {status}: {data!r:.300}"
    lines = [f"the service refused ({status} {data.get('error', 'error')}): {data.get('message')}"]
    for error in data.get("errors") or ():
        if isinstance(error, Mapping):
            lines.append(f"  {error.get('field')}: {error.get('rule')}")
    if status == 401:
        lines.append(f"  check ${TOKEN_ENV}: it must be one of the service's API tokens")
    return "\n".join(lines)


def _service_url(args: argparse.Namespace, environ: Mapping[str, str]) -> str:
    raw = getattr(args, "service", None) or environ.get(SERVICE_ENV, "")
    if not raw:
        raise UsageError(f"set {SERVICE_ENV} (or pass --service URL) to the override service")
    parts = urlsplit(raw.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query:
        raise UsageError(
            f"the service URL {raw!r} is not an http(s) URL; set {SERVICE_ENV} or --service "
            "to e.g. https://featureflag.qa.example.com"
        )
    return raw.strip().rstrip("/")


def _fork_path(name: str) -> str:
    return "/" + quote(name, safe="")


def _describe(fork: Mapping[str, Any]) -> str:
    lines = [f"{fork.get('name')}  {fork.get('url')}", f"  upstream: {fork.get('upstream')}"]
    for key in ("flags", "routes", "labels"):
        values = fork.get(key) or {}
        if values:
            shown = ", ".join(f"{k}={json.dumps(v)}" for k, v in values.items())
            lines.append(f"  {key}: {shown}")
    lines.append(f"  expires: {fork.get('expires_at') or 'never'}")
    who = fork.get("updated_by") or fork.get("created_by")
    lines.append(f"  updated: {fork.get('updated_at')} by {who}")
    return "\n".join(lines)


def run(
    argv: Sequence[str],
    environ: Mapping[str, str],
    transport: httpx.BaseTransport | None = None,
) -> int:
    """Run the command; raises :class:`UsageError` or :class:`Refused`."""
    args = _parser().parse_args(list(argv))
    # The command line first: a bad option is refused whatever the environment.
    body = _apply_body(args) if args.command == "apply" else None
    wanted = _pairs("--label", args.label, "team=checkout") if args.command == "list" else []
    base = _service_url(args, environ)
    token = environ.get(TOKEN_ENV) or None
    if args.command in ("apply", "delete") and token is None:
        raise UsageError(f"set {TOKEN_ENV} to an API token of the service (it writes forks)")
    client = _Client(base, token, transport)
    try:
        if args.command == "apply":
            _, fork = client.call("PUT", _fork_path(args.name), body)
            url = fork.get("url") if isinstance(fork, Mapping) else None
            if not isinstance(url, str):
                raise UsageError(f"{base} answered without a fork URL: is it a featureflag-server?")
            print(url)
        elif args.command == "get":
            _, fork = client.call("GET", _fork_path(args.name))
            print(json.dumps(fork, indent=2) if args.json else _describe(fork))
        elif args.command == "list":
            _, data = client.call("GET", "")
            forks = [
                f
                for f in (data.get("forks", []) if isinstance(data, Mapping) else [])
                if all((f.get("labels") or {}).get(k) == v for k, v in wanted)
            ]
            if args.json:
                print(json.dumps({"forks": forks}, indent=2))
            else:
                for fork in forks:
                    expires = fork.get("expires_at") or "never"
                    print(f"{fork.get('name')}\t{fork.get('url')}\texpires {expires}")
        else:
            try:
                client.call("DELETE", _fork_path(args.name))
            except Refused as exc:
                if not (args.missing_ok and exc.status == 404):
                    raise
                print(
                    f"featureflag fork: no fork {args.name!r}; nothing to delete", file=sys.stderr
                )
    finally:
        client.close()
    return 0


def _apply_body(args: argparse.Namespace) -> dict[str, Any]:
    """The ``PUT /api/forks/NAME`` body; the options the service does not need are left out."""
    body: dict[str, Any] = {"upstream": args.upstream, "flags": parse_flags(args.flag)}
    routes = parse_routes(args.route)
    if routes:
        body["routes"] = routes
    labels = dict(_pairs("--label", args.label, "team=checkout"))
    if labels:
        body["labels"] = labels
    if args.ttl is not None:
        body["ttl"] = parse_ttl(args.ttl)
    return body


def main(
    argv: Sequence[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
) -> int:
    """Entry point of ``featureflag fork``; returns the exit code."""
    try:
        import httpx  # noqa: F401
    except ImportError:
        return _fail(2, 'the fork command needs httpx: pip install "featureflag[httpx]"')
    args = sys.argv[1:] if argv is None else argv
    try:
        return run(args, os.environ if environ is None else environ, transport)
    except UsageError as exc:
        return _fail(2, str(exc))
    except Refused as exc:
        return _fail(1, str(exc))
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2, already printed)
        return exc.code if isinstance(exc.code, int) else 2


def _fail(code: int, message: str) -> int:
    print(f"featureflag fork: {message}", file=sys.stderr)
    return code
