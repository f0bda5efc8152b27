"""Cost of one flag evaluation: featureflag against the plain method and peer SDKs.

Interleaved rounds in one process: every case runs once per round, in turn, so a noisy
neighbour slows every case alike. Each round times a loop of BATCH unrolled calls;
we report ns per call (min and median over rounds) and the ratio to the same
undecorated instance method measured in the same run.

    ./scripts/bench evaluation
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import featureflag

ROUNDS = 300
INNER = 500  # loop iterations per round; each iteration makes 10 calls
TARGET_RATIO = 4.0  # a trapped call in a recording scope against the plain method (issue 18)
PEER_RATIO = 20.0  # every peer at least this much slower than that trapped call


class Plain:
    def is_released(self) -> bool:
        return False


@featureflag.trap(name="Bench")
class Trapped:
    def is_released(self) -> bool:
        return False


def loop(call: Callable[[], Any]) -> Callable[[], int]:
    def run() -> int:
        c = call
        r = range(INNER)
        t0 = time.perf_counter_ns()
        for _ in r:
            c()
            c()
            c()
            c()
            c()
            c()
            c()
            c()
            c()
            c()
        return time.perf_counter_ns() - t0

    return run


def in_scope(call: Callable[[], Any], overrides: dict[str, Any] | None) -> Callable[[], int]:
    inner = loop(call)

    def run() -> int:
        with featureflag.request_scope(overrides):
            return inner()

    return run


def in_overrides(call: Callable[[], Any]) -> Callable[[], int]:
    """*call* in a scope opened by ``featureflag.overrides({})``, as tests and jobs do."""
    inner = loop(call)

    def run() -> int:
        with featureflag.overrides({}):
            return inner()

    return run


def peers() -> dict[str, Callable[[], Any]]:
    out: dict[str, Callable[[], Any]] = {}
    try:
        from openfeature import api
        from openfeature.provider.in_memory_provider import InMemoryFlag, InMemoryProvider

        api.set_provider(InMemoryProvider({"flag": InMemoryFlag("on", {"on": True, "off": False})}))
        of_client = api.get_client()
        out["OpenFeature InMemoryProvider"] = lambda: of_client.get_boolean_value("flag", False)
    except ImportError as exc:
        print(f"(skipping OpenFeature: {exc})", file=sys.stderr)
    try:
        from growthbook import GrowthBook

        gb = GrowthBook(features={"flag": {"defaultValue": True}})
        out["GrowthBook is_on"] = lambda: gb.is_on("flag")
    except ImportError as exc:
        print(f"(skipping GrowthBook: {exc})", file=sys.stderr)
    try:
        import ldclient
        from ldclient import Context
        from ldclient.config import Config
        from ldclient.integrations.test_data import TestData

        td = TestData.data_source()
        td.update(td.flag("flag").variation_for_all(True))
        ld = ldclient.LDClient(Config("bench-key", update_processor_class=td, send_events=False))
        ctx = Context.create("bench-user")
        out["LaunchDarkly TestData"] = lambda: ld.variation("flag", ctx, False)
    except ImportError as exc:
        print(f"(skipping LaunchDarkly: {exc})", file=sys.stderr)
    return out


def main() -> None:
    plain = Plain()
    trapped = Trapped()
    cases: dict[str, Callable[[], int]] = {
        "undecorated method (baseline)": loop(plain.is_released),
        "trapped, outside any scope": loop(trapped.is_released),
        "trapped, in a request scope, no override": in_scope(trapped.is_released, None),
        "trapped, in an overrides({}) scope": in_overrides(trapped.is_released),
        "trapped, with an override": in_scope(trapped.is_released, {"Bench.is_released": True}),
        "intercept, no override": in_scope(intercepted, None),
        "intercept, with an override": in_scope(intercepted, {"bench-intercept": True}),
    }
    peer_cases = {name: loop(call) for name, call in peers().items()}
    cases.update(peer_cases)
    rounds = ROUNDS if len(sys.argv) < 2 else int(sys.argv[1])
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for run in cases.values():  # warm up
        run()
    gc.disable()
    try:
        for _ in range(rounds):
            for name, run in cases.items():
                samples[name].append(run() / (INNER * 10))
    finally:
        gc.enable()
    base_min = min(samples["undecorated method (baseline)"])
    base_med = statistics.median(samples["undecorated method (baseline)"])
    width = max(len(n) for n in cases)
    print(f"{'case':<{width}}  {'min ns':>8}  {'median ns':>9}  {'min ratio':>9}  {'med ratio':>9}")
    for name, values in samples.items():
        lo, med = min(values), statistics.median(values)
        print(
            f"{name:<{width}}  {lo:8.1f}  {med:9.1f}  {lo / base_min:8.2f}x  {med / base_med:8.2f}x"
        )
    scoped = min(samples["trapped, in a request scope, no override"])
    in_block = min(samples["trapped, in an overrides({}) scope"])
    print()
    for label, value in (("request_scope()", scoped), ("overrides({})", in_block)):
        verdict = "ok" if value / base_min <= TARGET_RATIO else "MISSED"
        print(
            f"trapped in a recording scope ({label}), no override: "
            f"{value / base_min:.2f}x the plain method ({verdict}: <= {TARGET_RATIO:g}x)"
        )
    slowest_scope = max(scoped, in_block)
    for name in peer_cases:
        ratio = min(samples[name]) / slowest_scope
        verdict = "ok" if ratio >= PEER_RATIO else "MISSED"
        print(
            f"{name} is {ratio:.1f}x slower than a trapped call in a scope "
            f"({verdict}: >= {PEER_RATIO:g}x)"
        )


def _false() -> bool:
    return False


def intercepted() -> bool:
    return featureflag.intercept("bench-intercept", _false)


if __name__ == "__main__":
    main()
