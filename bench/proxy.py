"""Benchmark the fork proxy: direct to the upstream vs through ``http://<fork>.localhost:P/``.

Starts the real service (``python -m featureflag_server``, SQLite store) and real uvicorn upstreams
on 127.0.0.1, each behind its own fork, all logging as uvicorn does by default (an
access line per request): ``page`` (``bench/proxy_app.py``: a Starlette page behind
``FeatureFlagMiddleware`` evaluating two flags, the smallest app a fork is useful for)
and ``hello`` (``tests/server/proxy_upstream.py``: a raw ASGI callable answering
``hello``, the cheapest upstream there is, so the proxy's share is as large as it gets).
A load generator in its own process keeps N keep-alive connections busy (closed loop:
each sends its next request when the previous answer is in) for a few seconds,
alternating direct and fork rounds so drift hits both alike, with a third kind of round
between them: straight to the upstream with the fork's own request headers (its token
and ``X-Forwarded-*``), which shows how much of the fork's cost is the app honouring the
token rather than the proxy. Then the same connections
paced at half the rate the fork sustained, both ways (latency under load without a
queue), and one connection alone. Last, 100 MB are streamed through the fork (down,
then up) while the service's peak RSS is read from /proc.

    .venv/bin/python bench/proxy.py [--seconds 3] [--rounds 3] [--connections 16]
                                    [--upstream page|hello|both] [--loop asyncio|uvloop]
                                    [--client aiohttp|httpx] [--http h11|httptools]
                                    [--server uvicorn|granian|both]

``--client httpx`` runs the same service with httpx's own transport (httpcore) as the
proxy's upstream client instead of aiohttp's, to compare the two. ``--server both`` runs
the service twice, on uvicorn and on granian (``featureflag-server --server``), each
with its own fork of the same upstream, and alternates their rounds with the direct ones.

Targets (issue 12): on ``page`` at 16 connections the fork reaches >= 30% of direct
throughput and adds <= 1.5 ms at p50; RSS stays flat (< 30 MB growth) while 100 MB
stream through. All processes share this machine's cores; the report says how many.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.servers import Server, free_port, run_server, run_uvicorn  # noqa: E402

SECRET = "bench-secret-" + "x" * 40
API_TOKEN = "bench-token-0123456789"
ENV = {
    "FEATUREFLAG_SECRET": SECRET,
    "FEATUREFLAG_ENVIRONMENT": "bench",
    "FEATUREFLAG_API_TOKENS": f"bench:{API_TOKEN}",
}
MB = 1024 * 1024


# --- the load generator (runs in a child process: python bench/proxy.py --load ...) ------


class _Client(asyncio.Protocol):
    """One keep-alive connection of the load generator: an asyncio Protocol, not streams,
    so the generator costs little of the CPU it shares with what it measures.

    Closed loop (*interval* 0: the next request when the answer is in), or paced: one
    request every *interval* seconds, latency counted from when it was due (so a late
    answer also delays, and is charged to, the ones after it). Answers must carry a
    Content-Length (both upstreams' do).
    """

    def __init__(
        self,
        request: bytes,
        stop_at: float,
        latencies: list[float],
        errors: list[str],
        interval: float,
        offset: float,
    ) -> None:
        self.request, self.stop_at, self.interval = request, stop_at, interval
        self.latencies, self.errors = latencies, errors
        self.due = time.perf_counter() + offset
        self.start = 0.0
        self.buffer = b""
        self.done = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self._next()

    def _next(self) -> None:
        now = time.perf_counter()
        if now >= self.stop_at:
            self.transport.close()
            return
        if self.interval:
            if self.due > now:
                asyncio.get_running_loop().call_later(self.due - now, self._send, self.due)
            else:
                self._send(self.due)
            self.due += self.interval
        else:
            self._send(now)

    def _send(self, start: float) -> None:
        self.start = start
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return
        head = self.buffer[:end].lower()
        length = 0
        at = head.find(b"\r\ncontent-length:")
        if at >= 0:
            line_end = head.find(b"\r\n", at + 2)
            length = int(head[at + 17 : line_end if line_end >= 0 else None])
        if len(self.buffer) < end + 4 + length:
            return
        self.latencies.append(time.perf_counter() - self.start)
        if not head.startswith(b"http/1.1 200"):
            self.errors.append(self.buffer.split(b"\r\n", 1)[0].decode())
        self.buffer = self.buffer[end + 4 + length :]
        self._next()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def _connection(
    port: int,
    request: bytes,
    stop_at: float,
    latencies: list[float],
    errors: list[str],
    interval: float = 0.0,
    offset: float = 0.0,
) -> None:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(
        lambda: _Client(request, stop_at, latencies, errors, interval, offset), "127.0.0.1", port
    )
    await client.done


async def _load(
    port: int, host: str, connections: int, seconds: float, rate: float, extra: str = ""
) -> dict[str, object]:
    request = f"GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n{extra}\r\n".encode()
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    stop_at = started + seconds
    interval = connections / rate if rate else 0.0
    await asyncio.gather(
        *(
            _connection(
                port, request, stop_at, latencies, errors, interval, i * interval / connections
            )
            for i in range(connections)
        )
    )
    elapsed = time.perf_counter() - started
    return {"elapsed": elapsed, "latencies": latencies, "errors": errors[:5]}


def load_main(argv: list[str]) -> None:
    port, host, connections = int(argv[0]), argv[1], int(argv[2])
    seconds, rate = float(argv[3]), float(argv[4])
    extra = "".join(f"{line}\r\n" for line in argv[5:])  # more header lines
    before = os.times()
    result = asyncio.run(_load(port, host, connections, seconds, rate, extra))
    after = os.times()
    result["cpu_load"] = (after.user - before.user) + (after.system - before.system)
    print(json.dumps(result))


def cpu_seconds(pid: int) -> float:
    """User + system CPU time *pid* has used so far (from /proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_load(
    port: int,
    host: str,
    connections: int,
    seconds: float,
    watch: dict[str, int],
    rate: float = 0.0,
    headers: list[str] | None = None,
) -> dict[str, object]:
    """One round of load from a separate process (so it does not share our interpreter).

    *watch* names processes whose CPU time the round's result reports (``cpu_<name>``);
    *headers* are more ``Name: value`` lines for every request.
    """
    before = {name: cpu_seconds(pid) for name, pid in watch.items()}
    argv = [sys.executable, __file__, "--load", str(port), host, str(connections)]
    out = subprocess.run(
        [*argv, str(seconds), str(rate), *(headers or [])],
        check=True,
        capture_output=True,
        text=True,
    )
    result: dict[str, object] = json.loads(out.stdout)
    for name, pid in watch.items():
        result[f"cpu_{name}"] = cpu_seconds(pid) - before[name]
    if result["errors"]:
        raise SystemExit(f"non-200 answers while benchmarking {host}: {result['errors']}")
    return result


# --- measuring ------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


def summary(rounds: list[dict[str, object]]) -> dict[str, float]:
    latencies = [x for r in rounds for x in r["latencies"]]  # type: ignore[attr-defined]
    elapsed = sum(float(r["elapsed"]) for r in rounds)  # type: ignore[arg-type]
    per_round = [len(r["latencies"]) / float(r["elapsed"]) for r in rounds]  # type: ignore[arg-type]
    cpu = {
        key: sum(float(r[key]) for r in rounds) / len(latencies) * 1e6  # type: ignore[arg-type]
        for key in rounds[0]
        if key.startswith("cpu_")
    }
    return {
        **cpu,
        "rps": len(latencies) / elapsed,
        "rps_stdev": statistics.pstdev(per_round),
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "requests": len(latencies),
    }


def rss_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/{pid}/status")


def stream_memory(service: Server, host: str) -> dict[str, float]:
    """Service RSS growth (MB) while 100 MB go through the fork, down then up."""
    pid = service.process.pid
    with httpx.Client(base_url=service.url, headers={"Host": host}, timeout=60) as client:
        client.get("/big?size=1048576").read()
        before = rss_kib(pid, "VmRSS")
        started = time.perf_counter()
        received = 0
        with client.stream("GET", f"/big?size={100 * MB}") as response:
            for chunk in response.iter_raw():
                received += len(chunk)
        down_s = time.perf_counter() - started
        down_peak = rss_kib(pid, "VmHWM")
        assert received == 100 * MB, received

        chunk = b"y" * 65536

        def body() -> Iterator[bytes]:
            for _ in range(100 * MB // len(chunk)):
                yield chunk

        started = time.perf_counter()
        answer = client.post("/upload", content=body()).json()
        up_s = time.perf_counter() - started
        up_peak = rss_kib(pid, "VmHWM")
        assert answer == {"size": 100 * MB}, answer
    return {
        "rss_before_mb": before / 1024,
        "download_growth_mb": (down_peak - before) / 1024,
        "upload_growth_mb": (up_peak - before) / 1024,
        "download_mb_s": 100 / down_s,
        "upload_mb_s": 100 / up_s,
    }


def client_cost(url: str, requests: int = 1000) -> dict[str, float]:
    """CPU µs per sequential GET in this process, for each candidate upstream client:
    ``httpx.AsyncClient``, and the proxy's own call (``Upstream.send``) on httpx's
    transport and on aiohttp's client."""
    from featureflag_server.upstream import HttpxUpstream, Timeouts, Upstream
    from featureflag_server.upstream_aiohttp import AiohttpUpstream

    parsed = httpx.URL(url)
    origin = (parsed.scheme, parsed.host, parsed.port or 80)
    host = parsed.netloc

    def used(before: os.times_result, after: os.times_result) -> float:
        return ((after.user - before.user) + (after.system - before.system)) / requests * 1e6

    async def measure_client() -> float:
        async with httpx.AsyncClient() as client:
            for _ in range(100):
                await client.get(url)
            before = os.times()
            for _ in range(requests):
                await client.get(url)
            after = os.times()
        return used(before, after)

    async def measure_send(upstream: Upstream) -> float:
        timeouts = Timeouts()

        async def get() -> None:
            response = await upstream.send("GET", origin, b"/", [(b"host", host)], None, timeouts)
            async for _ in response:
                pass
            await response.aclose()

        for _ in range(100):
            await get()
        before = os.times()
        for _ in range(requests):
            await get()
        after = os.times()
        await upstream.aclose()
        return used(before, after)

    httpx_transport = HttpxUpstream(httpx.AsyncHTTPTransport())
    return {
        "httpx.AsyncClient": asyncio.run(measure_client()),
        "HttpxUpstream.send (httpcore)": asyncio.run(measure_send(httpx_transport)),
        "AiohttpUpstream.send (the proxy's)": asyncio.run(measure_send(AiohttpUpstream())),
    }


def serve_with_httpx(argv: list[str]) -> None:
    """``featureflag-server ARGV`` with httpx's transport as the fork proxy's client
    (``--client httpx``), served as ``featureflag_server.__main__`` serves it."""
    from featureflag_server.__main__ import serve
    from featureflag_server.app import create_app
    from featureflag_server.settings import load_settings
    from featureflag_server.sqlite_store import SQLiteStore

    settings = load_settings(argv, os.environ)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100, keepalive_expiry=4)
    transport = httpx.AsyncHTTPTransport(limits=limits)
    serve(create_app(settings, store=SQLiteStore(settings.db), proxy_transport=transport), settings)


# --- the benchmark --------------------------------------------------------------------


UPSTREAMS = {
    # name: (uvicorn import string, extra uvicorn arguments)
    "page": ("proxy_app:app", ["--app-dir", str(ROOT / "bench")]),
    "hello": ("tests.server.proxy_upstream:app", []),
}
FLAGS = {"page": {"bench.new_layout": True}, "hello": {"a.b": True}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per side, interleaved")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--upstream", choices=[*UPSTREAMS, "both"], default="both")
    parser.add_argument(
        "--no-access-log",
        action="store_true",
        help="run the service and the upstreams without their line per request",
    )
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop of the service and the upstreams (asyncio, as plain uvicorn)",
    )
    parser.add_argument(
        "--http",
        choices=["h11", "httptools"],
        default="h11",
        help="the service's HTTP parser (featureflag-server --http; h11, its default)",
    )
    parser.add_argument(
        "--server",
        choices=["uvicorn", "granian", "both"],
        default="uvicorn",
        help="the service's HTTP server (featureflag-server --server; both: one service "
        "on each, measured in the same rounds)",
    )
    parser.add_argument(
        "--client",
        choices=["aiohttp", "httpx"],
        default="aiohttp",
        help="the fork proxy's upstream client (aiohttp, the service's own)",
    )
    args = parser.parse_args()
    args.load_before = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    kinds = list(UPSTREAMS) if args.upstream == "both" else [args.upstream]

    print(f"fork proxy benchmark: {platform.python_implementation()} {platform.python_version()}")
    print(f"cores: {os.cpu_count()} (load generator, upstream and service all share them)")
    print(f"load average before the run: {args.load_before}")
    n, rounds, seconds = args.connections, args.rounds, args.seconds
    print(f"{n} keep-alive connections, {rounds} x {seconds:g} s per side, interleaved")
    print("access logs: " + ("off everywhere" if args.no_access_log else "on everywhere"))
    print(f"event loop of the service and the upstreams: {args.loop}")
    print(f"the service's HTTP parser: {args.http}")
    print(f"the fork proxy's upstream client: {args.client}")
    servers = ["uvicorn", "granian"] if args.server == "both" else [args.server]
    print(f"the service's HTTP server: {' and '.join(servers)}")
    if "granian" in servers and args.http != "h11":
        raise SystemExit("--server granian parses with hyper: leave --http out")
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        log_dir = Path(tmp)
        services: dict[str, Server] = {}
        for server in servers:
            port = free_port()
            command = [sys.executable, "-m", "featureflag_server"]
            if args.client == "httpx":
                command = [sys.executable, __file__, "--serve-httpx"]
            argv = [*command, "--port", str(port), "--loop", args.loop, "--server", server]
            argv += ["--db", str(log_dir / f"bench-{server}.sqlite3")]
            if server == "uvicorn":
                argv += ["--http", args.http]
            if args.no_access_log:
                argv.append("--no-access-log")
            services[server] = stack.enter_context(
                run_server(
                    argv, port=port, ready_path="/healthz", env=ENV, log_dir=log_dir,
                    name=f"service-{server}",
                )
            )  # fmt: skip
        for kind in kinds:
            app, extra = UPSTREAMS[kind]
            with run_uvicorn(
                app,
                log_dir=log_dir,
                env=ENV,
                extra=[*extra, "--loop", args.loop],
                name=kind,
                quiet=args.no_access_log,
            ) as upstream:
                forks: dict[str, tuple[Server, str]] = {}
                for server, service in services.items():
                    created = httpx.post(
                        service.url + "/api/forks",
                        headers={"Authorization": f"Bearer {API_TOKEN}"},
                        json={"name": kind, "upstream": upstream.url, "flags": FLAGS[kind]},
                    )
                    created.raise_for_status()
                    forks[server] = (service, f"{kind}.localhost:{service.port}")
                direct_host = f"127.0.0.1:{upstream.port}"
                print()
                print(f"== upstream {kind!r} ==")
                first, fork_host = next(iter(forks.values()))
                headers = forks_headers(kind, fork_host, upstream.url)
                report(args, upstream, forks, direct_host, headers)
                if kind == "hello":
                    print()
                    memory = stream_memory(first, fork_host)
                    clients = client_cost(upstream.url + "/")
                    print_extras(memory, clients)


def forks_headers(kind: str, fork_host: str, upstream_url: str) -> list[str]:
    """What the fork adds to each request it sends upstream, made by the service's own
    code: a token for its flags and the ``X-Forwarded-*`` fields."""
    from featureflag.tokens import OverrideSigner
    from featureflag_server.fork_tokens import TokenCache
    from featureflag_server.forwarding import request_headers
    from featureflag_server.store import Fork

    signer = OverrideSigner(SECRET, environment=ENV["FEATUREFLAG_ENVIRONMENT"])
    fork = Fork(name=kind, upstream=upstream_url, flags=dict(FLAGS[kind]))
    token = TokenCache(signer, ttl=3600, clock=time.time).token_for(fork)
    added = request_headers([], token=token, client_ip="127.0.0.1", scheme="http", host=fork_host)
    return [f"{name.decode('latin-1')}: {value.decode('latin-1')}" for name, value in added]


def report(
    args: argparse.Namespace,
    upstream: Server,
    forks: dict[str, tuple[Server, str]],
    direct_host: str,
    fork_headers: list[str],
) -> None:
    """Direct and through each service's fork (keyed by its server), rounds alternated."""
    n = args.connections
    watch = {"upstream": upstream.process.pid}
    watch |= {f"service_{name}": service.process.pid for name, (service, _) in forks.items()}

    def load(
        port: int,
        host: str,
        connections: int,
        seconds: float,
        rate: float = 0.0,
        headers: list[str] | None = None,
    ) -> dict[str, object]:
        return run_load(port, host, connections, seconds, watch, rate, headers)

    # Warm every path (imports, pools, the token cache) before anything is measured.
    load(upstream.port, direct_host, n, 0.5)
    load(upstream.port, direct_host, n, 0.5, headers=fork_headers)
    for service, fork_host in forks.values():
        load(service.port, fork_host, n, 0.5)
    direct: list[dict[str, object]] = []
    direct_as_fork: list[dict[str, object]] = []
    fork: dict[str, list[dict[str, object]]] = {name: [] for name in forks}
    for _ in range(args.rounds):
        direct.append(load(upstream.port, direct_host, n, args.seconds))
        # What the upstream costs for the fork's request, with no proxy in between: the
        # share of the fork's cost that is the app honouring the token.
        direct_as_fork.append(load(upstream.port, direct_host, n, args.seconds, 0, fork_headers))
        for name, (service, fork_host) in forks.items():
            fork[name].append(load(service.port, fork_host, n, args.seconds))
    solo_direct: list[dict[str, object]] = []
    solo_fork: dict[str, list[dict[str, object]]] = {name: [] for name in forks}
    for _ in range(args.rounds):
        solo_direct.append(load(upstream.port, direct_host, 1, args.seconds / 2))
        for name, (service, fork_host) in forks.items():
            solo_fork[name].append(load(service.port, fork_host, 1, args.seconds / 2))
    d, da, sd = summary(direct), summary(direct_as_fork), summary(solo_direct)
    f = {name: summary(rounds) for name, rounds in fork.items()}
    sf = {name: summary(rounds) for name, rounds in solo_fork.items()}
    # Latency under load, without the queue: the same paced rate every way, half of what
    # the slowest fork sustained (so nothing saturates), over the same connections.
    rate = round(min(s["rps"] for s in f.values()) / 2, -1)
    paced_direct: list[dict[str, object]] = []
    paced_fork: dict[str, list[dict[str, object]]] = {name: [] for name in forks}
    for _ in range(args.rounds):
        paced_direct.append(load(upstream.port, direct_host, n, args.seconds, rate))
        for name, (service, fork_host) in forks.items():
            paced_fork[name].append(load(service.port, fork_host, n, args.seconds, rate))
    pd = summary(paced_direct)
    pf = {name: summary(rounds) for name, rounds in paced_fork.items()}
    several = len(forks) > 1

    def label(name: str) -> str:
        return f"fork, {name}" if several else "through the fork"

    def added(forks_: dict[str, dict[str, float]], base: dict[str, float], note: str) -> None:
        for name, s in forks_.items():
            prefix = f"{name}: " if several else ""
            print(
                f"{prefix}added p50 / p99     {s['p50_ms'] - base['p50_ms']:.2f} / "
                f"{s['p99_ms'] - base['p99_ms']:.2f} ms ({note})"
            )

    def latency(title: str, base: dict[str, float], forks_: dict[str, dict[str, float]]) -> None:
        print()
        print(title)
        for text, s in (("direct", base), *((label(name), s) for name, s in forks_.items())):
            print(f"{text:20}{s['rps']:>8.0f}{s['p50_ms']:>15.2f}{s['p99_ms']:>9.2f}")
        added(forks_, base, "target p50 <= 1.5 ms")

    header = f"{'':20}{'requests/s':>14}{'p50 ms':>9}{'p99 ms':>9}"
    print(header + f"{'CPU µs/request: upstream':>27}{'service':>9}{'load':>6}")
    rows = [("direct", d, ""), ("direct, as the fork", da, "")]
    rows += [(label(name), s, name) for name, s in f.items()]
    for text, s, name in rows:
        service_cpu = s[f"cpu_service_{name}"] if name else 0.0
        print(
            f"{text:20}{s['rps']:>8.0f} ±{s['rps_stdev']:<4.0f}{s['p50_ms']:>9.2f}"
            f"{s['p99_ms']:>9.2f}{s['cpu_upstream']:>27.0f}{service_cpu:>9.0f}"
            f"{s['cpu_load']:>6.0f}"
        )
    for name, s in f.items():
        prefix = f"{name}: " if several else ""
        print(f"{prefix}throughput ratio    {s['rps'] / d['rps']:.0%}   (target on page >= 30%)")
        print(
            f"{prefix}                    {s['rps'] / da['rps']:.0%}   of direct as the fork "
            "(its token and X-Forwarded-* sent straight: the proxy's share alone)"
        )
    added(f, d, "saturated: mostly waiting in line")
    latency(
        f"{n} connections paced at {rate:.0f} requests/s in all (half the fork's rate):", pd, pf
    )
    latency("one connection, nothing queued:", sd, sf)
    print(f"load average after: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


def print_extras(memory: dict[str, float], clients: dict[str, float]) -> None:
    print("for scale, one sequential GET to the upstream from a bare client in this process:")
    for label, cost in clients.items():
        print(f"{label:36}{cost:>6.0f} µs CPU per request")
    print()
    print(
        f"streaming 100 MB through the fork (service RSS {memory['rss_before_mb']:.0f} MB before):"
    )
    print(
        f"download: peak RSS +{memory['download_growth_mb']:.1f} MB at "
        f"{memory['download_mb_s']:.0f} MB/s; upload: +{memory['upload_growth_mb']:.1f} MB at "
        f"{memory['upload_mb_s']:.0f} MB/s (target < 30 MB)"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        load_main(sys.argv[2:])
    elif len(sys.argv) > 1 and sys.argv[1] == "--serve-httpx":
        serve_with_httpx(sys.argv[2:])
    else:
        main()
