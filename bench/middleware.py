"""What FeatureFlagMiddleware adds to a request, measured against the bare app.

Calls the ASGI apps directly (no HTTP client, no server): a tiny app that evaluates one
flag and answers 200, as a bare ASGI function and as a Starlette app (with an async
endpoint, and with a sync one that Starlette runs in its thread pool), each bare and
wrapped in the middleware. Each repeat runs every variant once, in rotating order, so
drift hits them all alike; the table shows the per-request median and min over the
repeats and what the middleware adds to the same app's median and min.

Variants: ``no token``; ``repeated token, header`` and ``repeated token, cookie`` (the
same token on every request, a cache hit after the first; the cookie among six others);
``fresh token`` (a new token each request: full HMAC verify). Then the same repeated
cookie token with the app evaluating 1, 50 and 500 flags: the cost per flag.

    .venv/bin/python bench/middleware.py [--repeats 150] [--requests 200]
    .venv/bin/python bench/middleware.py --flags        # only the flag-count table
    .venv/bin/python bench/middleware.py --profile "Starlette: repeated token, cookie"
    .venv/bin/python bench/middleware.py --breakdown
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import featureflag
from featureflag.asgi import FeatureFlagMiddleware
from featureflag.tokens import OverrideSigner

Scope = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Any, Any], Awaitable[None]]

SECRET = "bench-secret-" + "x" * 40
FLAG = "Bench.new_checkout"
TARGETS = {"no token": 5.0, "repeated token": 10.0}


def flag() -> bool:
    return featureflag.intercept(FLAG, lambda: False)


async def bare_app(scope: Scope, receive: Any, send: Any) -> None:
    body = b"on" if flag() else b"off"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/plain"), (b"content-length", b"3")],
        }
    )
    await send({"type": "http.response.body", "body": body})


class MinimalWrapper:
    """The floor for any pure ASGI middleware that adds a header: wrap ``send``, copy
    the start message, append one header. Not featureflag; shown for scale."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        async def send_with_header(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                message = dict(message)
                message["headers"] = [*message.get("headers", ()), (b"vary", b"Cookie")]
            await send(message)

        await self.app(scope, receive, send_with_header)


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: MutableMapping[str, Any]) -> None:
    pass


def http_scope(headers: list[tuple[bytes, bytes]]) -> Scope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"app.example.com"), (b"accept", b"*/*"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


def cookie(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"cookie", b"session=abc; featureflag_overrides=" + token.encode())]


class Variant:
    def __init__(
        self, name: str, app: ASGIApp, scopes: Callable[[int], list[Scope]], base: str = "bare app"
    ) -> None:
        self.name = name
        self.app = app
        self.scopes = scopes
        self.base = base  # the variant whose time this one is compared with
        self.per_request: list[float] = []  # µs, one per repeat


async def run_once(app: ASGIApp, scopes: list[Scope]) -> float:
    """Microseconds per request for one pass over *scopes*."""
    gc.collect()
    start = time.perf_counter_ns()
    for scope in scopes:
        await app(scope, receive, send)
    return (time.perf_counter_ns() - start) / len(scopes) / 1000


def starlette_app(sync: bool = False) -> ASGIApp:
    """A small Starlette app: one route that evaluates the flag (no middleware of ours).

    With *sync*, the endpoint is a plain function, which Starlette runs in its thread
    pool: each request crosses to a worker thread and back.
    """
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("on" if flag() else "off")

    def sync_home(request: Request) -> PlainTextResponse:
        return PlainTextResponse("on" if flag() else "off")

    return Starlette(routes=[Route("/", sync_home if sync else home)])


def same(scope_headers: list[tuple[bytes, bytes]]) -> Callable[[int], list[Scope]]:
    return lambda n: [http_scope(scope_headers) for _ in range(n)]


def variants(requests: int) -> list[Variant]:
    signer = OverrideSigner(SECRET, environment="bench")
    repeated = signer.dumps({FLAG: True}, sub="bench")
    counter = iter(range(10**9))

    def fresh(n: int) -> list[Scope]:
        # Signing happens here, outside the timed loop.
        return [
            http_scope(cookie(signer.dumps({FLAG: True}, sub=f"bench-{next(counter)}")))
            for _ in range(n)
        ]

    out = [
        Variant("bare app", bare_app, same([])),
        Variant("minimal wrapper*", MinimalWrapper(bare_app), same([])),
    ]
    apps = (
        ("", bare_app, "bare app"),
        ("Starlette: ", starlette_app(), "Starlette app"),
        ("Starlette sync: ", starlette_app(sync=True), "Starlette app, sync endpoint"),
    )
    for label, app, base in apps:
        wrapped = FeatureFlagMiddleware(app, signer=signer)
        if base != "bare app":
            # The control: what any pure-ASGI middleware costs around this app.
            out.append(Variant(base, app, same([])))
            out.append(Variant(label + "minimal wrapper*", MinimalWrapper(app), same([]), base))
        out += [
            Variant(label + "no token", wrapped, same([]), base),
            Variant(label + "repeated token, header", wrapped, same(header(repeated)), base),
            Variant(label + "repeated token, cookie", wrapped, same(cookies(repeated)), base),
        ]
    out.append(Variant("fresh token", FeatureFlagMiddleware(bare_app, signer=signer), fresh))
    return out


def header(token: str) -> list[tuple[bytes, bytes]]:
    return [(b"feature-flag-overrides", token.encode())]


def cookies(token: str) -> list[tuple[bytes, bytes]]:
    """The token among other cookies, as a browser with analytics and a session sends."""
    return [
        (
            b"cookie",
            b"_ga=GA1.1.1234567890.1733600000; _gid=GA1.1.987654321.1733600000; "
            b"csrftoken=Yq3VhZ0rJ8kLmN2pQ4sT6uW8xA1cE3gI; "
            b"sessionid=8f2c1e0b9a7d6c5b4a39281706f5e4d3; "
            b"featureflag_overrides=" + token.encode() + b"; theme=dark; lang=en-GB",
        )
    ]


async def check(all_variants: list[Variant]) -> None:
    """Make sure the wrapped app really applies the override (a bench of a no-op lies)."""
    seen: list[MutableMapping[str, Any]] = []

    async def keep(message: MutableMapping[str, Any]) -> None:
        seen.append(message)

    for v in all_variants:
        if "token" not in v.name or "no token" in v.name:
            continue
        seen.clear()
        await v.app(v.scopes(1)[0], receive, keep)
        assert seen[-1]["body"] == b"on", f"{v.name}: override not applied"


async def bench(repeats: int, requests: int) -> list[Variant]:
    all_variants = variants(requests)
    await check(all_variants)
    for v in all_variants:  # warm up: caches, the flag's declaration
        await run_once(v.app, v.scopes(200))
    for i in range(repeats):
        k = i % len(all_variants)
        order = all_variants[k:] + all_variants[:k]
        for v in order:
            scopes = v.scopes(requests)
            v.per_request.append(await run_once(v.app, scopes))
    return all_variants


def table(all_variants: list[Variant]) -> str:
    by_name = {v.name: v for v in all_variants}
    lines = [
        "| variant | median µs/req | min µs/req | added (median) | added (min) | target |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for v in all_variants:
        median, low = statistics.median(v.per_request), min(v.per_request)
        base = by_name[v.base]
        if v is base:
            added = ("", "")
            median_added = low_added = 0.0
        else:
            median_added = median - statistics.median(base.per_request)
            low_added = low - min(base.per_request)
            added = (f"{median_added:+.2f}", f"{low_added:+.2f}")
        target = TARGETS.get(v.name.split(": ")[-1].split(",")[0])
        verdict = ""
        if target is not None:
            by_median = "ok" if median_added <= target else "MISSED"
            by_min = "ok" if low_added <= target else "MISSED"
            verdict = f"≤ {target:g} µs: median {by_median}, min {by_min}"
        lines.append(
            f"| {v.name} | {median:.2f} | {low:.2f} | {added[0]} | {added[1]} | {verdict} |"
        )
    return "\n".join(lines)


FLAG_COUNTS = (1, 50, 500)
PER_FLAG_TARGET = 0.4  # µs per evaluated flag at 500 flags, with a token


def many_flags_app(count: int) -> ASGIApp:
    """The bare app, evaluating *count* trapped flags (all defaults) besides its own."""
    methods: dict[str, Any] = {}
    for i in range(count):
        exec(f"def is_on_{i:03d}(self) -> bool:\n    return False", methods)
    cls = featureflag.trap(name=f"Bench{count}")(type(f"Bench{count}", (), methods))
    calls = [getattr(cls(), f"is_on_{i:03d}") for i in range(count)]

    async def app(scope: Scope, receive: Any, send: Any) -> None:
        for call in calls:
            call()
        await bare_app(scope, receive, send)

    return app


def flag_counts(repeats: int, requests: int) -> str:
    """What the middleware adds with a repeated cookie token as the app evaluates more flags."""
    signer = OverrideSigner(SECRET, environment="bench")
    token = signer.dumps({FLAG: True}, sub="bench")
    runs: list[Variant] = []
    sizes: dict[str, int] = {}  # requests per pass: fewer as each request does more
    for count in FLAG_COUNTS:
        app = many_flags_app(count)
        runs.append(Variant(f"{count} bare", app, same([])))
        wrapped = FeatureFlagMiddleware(app, signer=signer)
        runs.append(Variant(f"{count}", wrapped, same(cookies(token)), f"{count} bare"))
        sizes[f"{count} bare"] = sizes[f"{count}"] = max(5, requests * 11 // (count + 10))
    report_sizes: dict[str, bytes] = {}

    captured: list[MutableMapping[str, Any]] = []

    async def keep(message: MutableMapping[str, Any]) -> None:
        captured.append(message)

    async def measure() -> None:
        for v in runs:
            if v.name != v.base:
                captured.clear()
                await v.app(v.scopes(1)[0], receive, keep)
                start = dict(captured[0]["headers"])
                report_sizes[v.name] = start.get(b"feature-flags", b"")
            await run_once(v.app, v.scopes(sizes[v.name]))
        for i in range(repeats):
            k = i % len(runs)
            for v in runs[k:] + runs[:k]:
                v.per_request.append(await run_once(v.app, v.scopes(sizes[v.name])))

    asyncio.run(measure())
    by_name = {v.name: v for v in runs}
    lines = [
        "| flags evaluated | added (min) | added (median) | per flag (min) | report |",
        "|---:|---:|---:|---:|---|",
    ]
    for count in FLAG_COUNTS:
        v, base = by_name[str(count)], by_name[f"{count} bare"]
        low = min(v.per_request) - min(base.per_request)
        med = statistics.median(v.per_request) - statistics.median(base.per_request)
        report = report_sizes[str(count)]
        listed = report.count(b";source=")
        omitted = report.rsplit(b"omitted=", 1)[1].decode() if b"omitted=" in report else "0"
        per_flag = ""
        if count > 1:
            verdict = "ok" if low / count <= PER_FLAG_TARGET else "MISSED"
            per_flag = f"{low / count:.3f} µs ({verdict}: ≤ {PER_FLAG_TARGET})"
        lines.append(
            f"| {count} (+1) | {low:+.1f} µs | {med:+.1f} µs | {per_flag} | "
            f"{len(report):,} bytes, {listed} listed, {omitted} omitted |"
        )
    return "\n".join(lines)


def breakdown(repeats: int, requests: int) -> None:
    """What each part of the repeated-token path costs, measured by taking it out.

    Swaps internals of ``featureflag.asgi`` for trivial stand-ins (so this follows the
    code: update it when those names change) and reports each variant's min against
    the full middleware, interleaved like the main table.
    """
    from featureflag import asgi

    signer = OverrideSigner(SECRET, environment="bench")
    token = signer.dumps({FLAG: True}, sub="bench")
    verified = signer.loads(token)
    originals = (asgi.response_headers, asgi.token_from_headers, signer.loads)

    def plain_headers(config: Any, request: Any, headers: Any) -> list[tuple[bytes, bytes]]:
        return [*headers, (b"vary", b"Cookie, Feature-Flag-Overrides")]

    parts = {
        "response_headers (report, no-store, Vary)": "report",
        "reading the token from the cookie": "cookie",
        "signer.loads (cache hit)": "loads",
    }

    def configure(removed: set[str]) -> None:
        asgi.response_headers, asgi.token_from_headers, signer.loads = originals
        if "report" in removed:
            asgi.response_headers = plain_headers
        if "cookie" in removed:
            asgi.token_from_headers = lambda headers: token
        if "loads" in removed:
            signer.loads = lambda raw: verified

    wrapped = FeatureFlagMiddleware(bare_app, signer=signer)
    runs: dict[str, set[str] | None] = {"bare app": None, "full middleware": set()}
    runs.update({f"without {label}": {key} for label, key in parts.items()})
    runs["without all three"] = set(parts.values())
    times: dict[str, list[float]] = {name: [] for name in runs}

    async def measure() -> None:
        names = list(runs)
        for i in range(repeats):
            k = i % len(names)
            for name in names[k:] + names[:k]:
                removed = runs[name]
                configure(removed or set())
                app = bare_app if removed is None else wrapped
                scopes = [http_scope(cookie(token)) for _ in range(requests)]
                times[name].append(await run_once(app, scopes))

    try:
        asyncio.run(measure())
    finally:
        configure(set())
    bare, full = min(times["bare app"]), min(times["full middleware"])
    print("Repeated token, min µs/request; a part costs what taking it out saves")
    print("| variant | min µs/req | added to bare | saved vs full |")
    print("|---|---:|---:|---:|")
    for name, values in times.items():
        low = min(values)
        saved = "" if runs[name] is None or name == "full middleware" else f"{full - low:.2f}"
        print(f"| {name} | {low:.2f} | {low - bare:+.2f} | {saved} |")


def profile(name: str, requests: int) -> None:
    if name.isdigit():  # a flag count: the app evaluating that many flags, cookie token
        signer = OverrideSigner(SECRET, environment="bench")
        wrapped = FeatureFlagMiddleware(many_flags_app(int(name)), signer=signer)
        token = signer.dumps({FLAG: True}, sub="bench")
        chosen = Variant(name, wrapped, same(cookies(token)))
    else:
        chosen = {v.name: v for v in variants(requests)}[name]
    asyncio.run(run_once(chosen.app, chosen.scopes(200)))
    scopes = chosen.scopes(requests)
    profiler = cProfile.Profile()
    profiler.enable()
    asyncio.run(run_once(chosen.app, scopes))
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # Many short passes: on a busy machine the min of short passes is the run least
    # disturbed by other processes, and every variant gets as many chances at it.
    parser.add_argument("--repeats", type=int, default=150)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--profile", metavar="VARIANT", help="cProfile one variant instead")
    parser.add_argument(
        "--breakdown", action="store_true", help="cost of each part of the repeated-token path"
    )
    parser.add_argument(
        "--flags",
        action="store_true",
        help=f"only the cost as the app evaluates {', '.join(map(str, FLAG_COUNTS))} flags",
    )
    args = parser.parse_args()
    if args.breakdown:
        breakdown(args.repeats, args.requests)
        return
    if args.profile:
        profile(args.profile, args.requests)
        return
    if not args.flags:
        all_variants = asyncio.run(bench(args.repeats, args.requests))
        print(
            f"FeatureFlagMiddleware, {args.repeats} interleaved repeats x {args.requests} "
            f"requests, Python {sys.version.split()[0]}"
        )
        print(table(all_variants))
        print("* not featureflag: a pure ASGI middleware that only wraps send and adds a header")
        print()
    # A request with 500 flags costs ~100x one with one flag: fewer repeats, and fewer
    # requests per pass as the flags grow (200 requests at 1 flag, 5 at 500 by default).
    repeats = max(10, args.repeats // 3)
    print(
        f"Repeated cookie token, the app evaluating N trapped flags (+1: its own), "
        f"{repeats} interleaved repeats"
    )
    print(flag_counts(repeats, args.requests))


if __name__ == "__main__":
    main()
