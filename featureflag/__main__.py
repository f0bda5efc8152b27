"""``python -m featureflag``: ``catalog`` (print or push the flag catalog) and ``sign``."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence

from ._registry import catalog


def catalog_main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m featureflag catalog",
        description="Import MODULEs and print every flag they declare as JSON.",
    )
    parser.add_argument("modules", nargs="+", metavar="MODULE")
    parser.add_argument(
        "--push",
        metavar="URL",
        help="PUT the catalog to the override service (e.g. http://127.0.0.1:8000/api/flags), "
        "authenticated with $FEATUREFLAG_API_TOKEN. A push REPLACES the catalog (with "
        "--service, that service's part): flags it does not list, including ones added "
        "by hand, are removed. Declare intercept flags with featureflag.declare() at "
        "import time so that the push lists them",
    )
    parser.add_argument(
        "--service",
        metavar="NAME",
        help="with --push: replace only this service's part of the catalog, so several "
        "services can each push their own",
    )
    args = parser.parse_args(argv)
    if args.service is not None and args.push is None:
        parser.error("--service goes with --push")
    sys.path.insert(0, os.getcwd())
    for module in args.modules:
        try:
            importlib.import_module(module)
        except ImportError as exc:
            print(f"featureflag: cannot import {module!r}: {exc}", file=sys.stderr)
            return 2
    document = {"flags": [f.to_json() for f in catalog()]}
    if args.push is None:
        print(json.dumps(document, indent=2))
        return 0
    api_token = os.environ.get("FEATUREFLAG_API_TOKEN")
    if not api_token:
        print("featureflag: set FEATUREFLAG_API_TOKEN to push the catalog", file=sys.stderr)
        return 2
    url = args.push
    if args.service is not None:
        separator = "&" if urllib.parse.urlsplit(url).query else "?"
        url += separator + urllib.parse.urlencode({"service": args.service})
    request = urllib.request.Request(
        url,
        data=json.dumps(document).encode(),
        method="PUT",
        headers={"Authorization": f"Bearer {api_token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            print(f"pushed {len(document['flags'])} flags to {args.push}: {response.status}")
    except urllib.error.HTTPError as exc:
        print(
            f"featureflag: {args.push} answered {exc.code}: {exc.read().decode()}", file=sys.stderr
        )
        return 1
    except (urllib.error.URLError, OSError) as exc:
        print(f"featureflag: cannot reach {args.push}: {exc}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    commands = "catalog, fork, sign"
    if not args or args[0] in {"-h", "--help"}:
        print(f"usage: python -m featureflag {{{commands}}} ...")
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command == "catalog":
        return catalog_main(rest)
    if command == "fork":
        from .fork_cli import main as fork_main

        return fork_main(rest)
    if command == "sign":
        from .tokens import sign_main

        return int(sign_main(rest))
    print(f"featureflag: unknown command {command!r}; expected one of: {commands}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
