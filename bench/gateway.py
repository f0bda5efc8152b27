"""Benchmark forks through the team's own gateway: nginx with ``/api/forward-auth``.

One run, one upstream (``page``: ``bench/proxy_app.py``, a Starlette page behind
``FeatureFlagMiddleware``), N keep-alive connections, several ways, interleaved round by
round so drift hits all alike:

- ``direct``: straight to the upstream; ``direct + token``: the same, with the fork's
  token (the app verifies it and reports the flags: work every fork request costs);
- ``nginx proxy``: nginx as a plain reverse proxy to an ``upstream`` block with kept-alive
  connections (the requests carry the fork's token, so the app does the same work as
  behind forward-auth); ``nginx proxy, no ka``: ``proxy_pass http://127.0.0.1:PORT`` as it comes
  (a new upstream connection per request);
- ``nginx fa``: the config ``featureflag-server gateway-config nginx`` renders, the fork's
  answer cached by nginx (the steady state: one miss per fork per cache time). It routes
  to each fork's own upstream, which nginx cannot pool: compare it with ``no ka``;
- ``nginx fa --upstream``: rendered with ``--upstream`` (every fork to one app, kept-alive
  connections): compare it with ``nginx proxy``;
- ``embedded proxy``: the service's own fork proxy.

Then the forward-auth endpoint alone (every request a cache miss: the service computes
the answer). Access logs are off everywhere (nginx, uvicorn, the service).

    .venv/bin/python bench/gateway.py [--seconds 3] [--rounds 3] [--connections 16]

Targets (issue 13): nginx forward-auth >= 90% of nginx plain-proxy throughput, <= 0.3 ms
added at p50 (each forward-auth way against the plain proxy that connects the same way).
Needs nginx (scripts/install-gateways).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from proxy import _Client, cpu_seconds, summary  # type: ignore[import-not-found]  # noqa: E402

from featureflag.tokens import OverrideSigner  # noqa: E402
from featureflag_server.gateway_config import GatewayOptions, render  # noqa: E402
from tests.support.servers import free_port, run_server, run_uvicorn, stop  # noqa: E402

SECRET = "bench-secret-" + "x" * 40
API_TOKEN = "bench-token-0123456789"
ENV = {
    "FEATUREFLAG_SECRET": SECRET,
    "FEATUREFLAG_ENVIRONMENT": "bench",
    "FEATUREFLAG_API_TOKENS": f"bench:{API_TOKEN}",
}
FLAGS = {"bench.new_layout": True}


# --- the load generator (a child process: python bench/gateway.py --load ...) ----------


async def _load(port: int, request: bytes, connections: int, seconds: float) -> dict[str, object]:
    latencies: list[float] = []
    errors: list[str] = []
    loop = asyncio.get_running_loop()
    started = time.perf_counter()
    stop_at = started + seconds
    clients = []
    for _ in range(connections):
        _, client = await loop.create_connection(
            lambda: _Client(request, stop_at, latencies, errors, 0.0, 0.0), "127.0.0.1", port
        )
        clients.append(client)
    await asyncio.gather(*(client.done for client in clients))
    return {"elapsed": time.perf_counter() - started, "latencies": latencies, "errors": errors[:5]}


def load_main(argv: list[str]) -> None:
    port, connections, seconds = int(argv[0]), int(argv[1]), float(argv[2])
    path, host = argv[3], argv[4]
    extra = "".join(f"{line}\r\n" for line in argv[5:])
    request = f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: bench\r\n{extra}\r\n"
    print(json.dumps(asyncio.run(_load(port, request.encode(), connections, seconds))))


def family(pid: int) -> list[int]:
    """*pid* and its children (nginx's master and workers)."""
    children = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            children.append(int(stat.parent.name))
    return [pid, *children]


def _cpu(pids: list[int]) -> dict[int, float]:
    # nginx's cache loader exits a minute after start: skip processes that are gone.
    times = {}
    for pid in pids:
        try:
            times[pid] = cpu_seconds(pid)
        except OSError:
            pass
    return times


def run_load(
    port: int,
    path: str,
    host: str,
    args: argparse.Namespace,
    watch: dict[str, list[int]],
    headers: tuple[str, ...] = (),
) -> dict[str, object]:
    before = {name: _cpu(pids) for name, pids in watch.items()}
    argv = [sys.executable, __file__, "--load", str(port), str(args.connections)]
    argv += [str(args.seconds), path, host, *headers]
    out = subprocess.run(argv, check=True, capture_output=True, text=True)
    result: dict[str, object] = json.loads(out.stdout)
    for name, pids in watch.items():
        after = _cpu(pids)
        result[f"cpu_{name}"] = sum(after[p] - before[name][p] for p in after if p in before[name])
    if result["errors"]:
        raise SystemExit(f"non-200 answers from {host}{path}: {result['errors']}")
    return result


# --- the set-up -------------------------------------------------------------------------


def plain_servers(port: int, port_no_ka: int, upstream_port: int) -> str:
    """nginx as a plain reverse proxy: kept-alive upstream connections, and as it comes."""
    return (
        f"upstream plain {{\n    server 127.0.0.1:{upstream_port};\n    keepalive 32;\n}}\n"
        f"server {{\n    listen 127.0.0.1:{port};\n    location / {{\n"
        "        proxy_pass http://plain;\n        proxy_http_version 1.1;\n"
        '        proxy_set_header Connection "";\n    }\n}\n'
        f"server {{\n    listen 127.0.0.1:{port_no_ka};\n"
        f"    location / {{ proxy_pass http://127.0.0.1:{upstream_port}; }}\n}}\n"
    )


def start_nginx(directory: Path, snippet: str) -> subprocess.Popen[bytes]:
    """nginx with *snippet* inside ``http { }``, one worker, no access log."""
    binary = shutil.which("nginx") or "/usr/sbin/nginx"
    if not os.path.exists(binary):
        raise SystemExit("nginx is not installed: run scripts/install-gateways")
    directory.mkdir()
    user = f"user {pwd.getpwuid(os.getuid()).pw_name};\n" if os.geteuid() == 0 else ""
    temps = "".join(
        f"    {kind}_temp_path {directory / kind};\n"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (directory / "snippet.conf").write_text(snippet)
    (directory / "nginx.conf").write_text(
        f"{user}worker_processes 1;\npid {directory / 'nginx.pid'};\n"
        f"error_log {directory / 'error.log'} warn;\nevents {{ worker_connections 1024; }}\n"
        f"http {{\n    access_log off;\n{temps}    include {directory / 'snippet.conf'};\n}}\n"
    )
    argv = [binary, "-p", str(directory), "-c", str(directory / "nginx.conf")]
    return subprocess.Popen([*argv, "-g", "daemon off;"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round")
    parser.add_argument("--rounds", type=int, default=3, help="rounds per way, interleaved")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    print(f"gateway benchmark: {platform.python_implementation()} {platform.python_version()}")
    print(f"cores: {os.cpu_count()} (load generator, nginx, upstream and service share them)")
    print("load average before: " + " ".join(Path("/proc/loadavg").read_text().split()[:3]))
    print(f"{args.connections} keep-alive connections, {args.rounds} x {args.seconds:g} s a way")
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        port = free_port()
        argv = [sys.executable, "-m", "featureflag_server", "--port", str(port)]
        argv += ["--db", str(directory / "bench.sqlite3"), "--no-access-log"]
        with (
            run_server(
                argv, port=port, ready_path="/healthz", env=ENV, log_dir=directory, name="ff"
            ) as service,
            run_uvicorn(
                "proxy_app:app",
                log_dir=directory,
                env=ENV,
                extra=["--app-dir", str(ROOT / "bench")],
                name="page",
            ) as upstream,
        ):
            httpx.post(
                service.url + "/api/forks",
                headers={"Authorization": f"Bearer {API_TOKEN}"},
                json={"name": "page", "upstream": upstream.url, "flags": FLAGS},
            ).raise_for_status()
            ports = {name: free_port() for name in ("plain", "no_ka", "fa", "fa_up")}
            per_fork = GatewayOptions(
                fork_domain="localhost",
                service=service.url,
                listen=f"127.0.0.1:{ports['fa']}",
                cache_dir=str(directory / "cache"),
                api_token=API_TOKEN,
            )
            one_app = replace(
                per_fork,
                listen=f"127.0.0.1:{ports['fa_up']}",
                cache_dir=str(directory / "cache-up"),
                upstream=upstream.url,
            )
            nginx = [
                start_nginx(
                    directory / "nginx-a",
                    plain_servers(ports["plain"], ports["no_ka"], upstream.port)
                    + render("nginx", per_fork),
                ),
                start_nginx(directory / "nginx-b", render("nginx", one_app)),
            ]
            try:
                ways = {
                    "direct": (upstream.port, f"127.0.0.1:{upstream.port}"),
                    "direct + token": (upstream.port, f"127.0.0.1:{upstream.port}"),
                    "nginx proxy": (ports["plain"], "127.0.0.1"),
                    "nginx fa --upstream": (ports["fa_up"], f"page.localhost:{ports['fa_up']}"),
                    "nginx proxy, no ka": (ports["no_ka"], "127.0.0.1"),
                    "nginx fa": (ports["fa"], f"page.localhost:{ports['fa']}"),
                    "embedded proxy": (port, f"page.localhost:{port}"),
                }
                for way_port, host in ways.values():
                    for _ in range(50):  # up, and the forward-auth answers cached
                        try:
                            httpx.get(f"http://127.0.0.1:{way_port}/", headers={"Host": host})
                            break
                        except httpx.TransportError:
                            time.sleep(0.1)
                watch = {
                    "nginx": [pid for process in nginx for pid in family(process.pid)],
                    "service": [service.process.pid],
                    "upstream": [upstream.process.pid],
                }
                # The app does more for a request with a token (verify it, report the
                # flags): the plain proxies carry the fork's, so only the gateway differs.
                signer = OverrideSigner(SECRET, environment=ENV["FEATUREFLAG_ENVIRONMENT"])
                minted = signer.dumps(FLAGS, sub="fork:page", origin="fork:page", ttl=3600)
                token = (f"Feature-Flag-Overrides: {minted}",)
                results: dict[str, list[dict[str, object]]] = {way: [] for way in ways}
                for _ in range(args.rounds):
                    for way, (way_port, host) in ways.items():
                        extra = () if way == "direct" or "fa" in way or "embedded" in way else token
                        results[way].append(run_load(way_port, "/", host, args, watch, extra))
                headers = (f"Authorization: Bearer {API_TOKEN}", "X-Forwarded-Host: page.localhost")
                miss = [
                    run_load(port, "/api/forward-auth", "127.0.0.1", args, watch, headers)
                    for _ in range(args.rounds)
                ]
            finally:
                for process in nginx:
                    stop(process)
            report({way: summary(rounds) for way, rounds in results.items()}, summary(miss))


def report(ways: dict[str, dict[str, float]], miss: dict[str, float]) -> None:
    direct = ways["direct"]
    print()
    print(
        f"{'way':<22}{'req/s':>8}{'% direct':>10}{'p50 ms':>8}{'p99 ms':>8}"
        f"{'nginx us':>10}{'service us':>12}{'upstream us':>13}"
    )
    for way, s in ways.items():
        print(
            f"{way:<22}{s['rps']:>8.0f}{100 * s['rps'] / direct['rps']:>9.0f}%"
            f"{s['p50_ms']:>8.2f}{s['p99_ms']:>8.2f}{s['cpu_nginx']:>10.0f}"
            f"{s['cpu_service']:>12.0f}{s['cpu_upstream']:>13.0f}"
        )
    print("(CPU columns: microseconds per request, per process family)")
    print()
    for fa, plain in (("nginx fa --upstream", "nginx proxy"), ("nginx fa", "nginx proxy, no ka")):
        ratio = ways[fa]["rps"] / ways[plain]["rps"]
        added = ways[fa]["p50_ms"] - ways[plain]["p50_ms"]
        print(
            f"{fa} vs {plain}: {100 * ratio:.0f}% of its throughput (target >= 90%), "
            f"{added:+.2f} ms at p50 (target <= +0.3 ms)"
        )
    embedded = ways["embedded proxy"]["rps"]
    print(
        f"embedded proxy: {100 * embedded / ways['nginx fa --upstream']['rps']:.0f}%"
        " of nginx fa --upstream"
    )
    print(
        f"/api/forward-auth on a cache miss: {miss['rps']:.0f} req/s, p50 {miss['p50_ms']:.2f} ms,"
        f" {miss['cpu_service']:.0f} us of service CPU per answer"
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        load_main(sys.argv[2:])
    else:
        main()
