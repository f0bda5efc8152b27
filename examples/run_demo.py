"""``./scripts/demo``: start the override service, the demo shop and its downstream service.

Keeps a secret and an API token in ``.featureflag/`` (created on the first run, reused
after, never committed), starts three processes on 127.0.0.1, pushes the flag catalog,
creates the fork ``new-lp`` when it is missing, prints the URLs and the API token, and
stops every process it started (by pid) on Ctrl-C. Logs go to ``.featureflag/logs/``.
"""

from __future__ import annotations

import argparse
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import httpx

ROOT = Path(__file__).resolve().parents[1]
FORK = "new-lp"
PR_FORK = "pr-build"
FORK_FLAGS: dict[str, bool | str] = {"new-lp": "b", "Recommendations.strategy": "personal"}
# Each service pushes its own part of the catalog (``--service``), as each app's CI would.
CATALOG_SERVICES = {"demo-app": "examples.demo_app", "downstream": "examples.downstream"}


@dataclass
class Child:
    name: str
    process: subprocess.Popen[bytes]
    log: Path


def read_or_create(path: Path, make: str) -> str:
    """The value kept in *path*, or *make* written there (owner-only) on the first run."""
    if path.exists():
        value = path.read_text().strip()
        if value:
            return value
    path.write_text(make + "\n")
    path.chmod(0o600)
    return make


# The ports the demo binds, in the order it starts them: (option, what listens there).
PORTS = (
    ("--service-port", "override service"),
    ("--app-port", "demo app"),
    ("--downstream-port", "downstream service"),
    ("--pr-downstream-port", "downstream PR build"),
)


def port_taken(port: int) -> bool:
    """Whether *port* on 127.0.0.1 cannot be bound, as uvicorn binds it."""
    with socket.socket() as s:
        # As uvicorn binds: connections of a previous run in TIME_WAIT do not count.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def taken_ports(args: argparse.Namespace) -> str | None:
    """Every port the demo needs that is taken (or given twice), in one message; None
    when all are free. Checked before anything starts, so one run names them all."""
    problems = []
    owner: dict[int, str] = {}
    for option, what in PORTS:
        port: int = getattr(args, option.removeprefix("--").replace("-", "_"))
        if port in owner:
            problems.append(
                f"  port {port}, for the {what}: also given for the {owner[port]} "
                f"(choose another with {option} N)"
            )
        elif port_taken(port):
            problems.append(
                f"  port {port}, for the {what}: taken (choose another with {option} N)"
            )
        owner.setdefault(port, what)
    if not problems:
        return None
    count = "a port is" if len(problems) == 1 else f"{len(problems)} ports are"
    return (
        f"demo: {count} not free on 127.0.0.1, so nothing was started:\n"
        + "\n".join(problems)
        + "\nStop what uses them, or choose other ports with the options shown (or "
        "DEMO_SERVICE_PORT, DEMO_APP_PORT, DEMO_DOWNSTREAM_PORT, DEMO_PR_DOWNSTREAM_PORT)."
    )


def wait_ready(url: str, child: Child, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.process.poll() is not None:
            raise RuntimeError(f"the {child.name} exited at start-up:\n{tail(child.log)}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the {child.name} did not answer at {url}:\n{tail(child.log)}")


def tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def push_catalog(service_url: str, api_token: str, env: Mapping[str, str]) -> None:
    """Upload each demo service's flags with ``python -m featureflag catalog --push
    --service NAME``, after emptying the catalog (a database from an earlier demo may
    hold the same names pushed without a service, which a scoped push may not take)."""
    emptied = httpx.put(
        f"{service_url}/api/flags",
        json={"flags": []},
        headers={"Authorization": f"Bearer {api_token}"},
    )
    if emptied.status_code != 200:
        raise RuntimeError(f"emptying the catalog failed: {emptied.status_code} {emptied.text}")
    for service, module in CATALOG_SERVICES.items():
        command = [sys.executable, "-m", "featureflag", "catalog", module]
        command += ["--push", f"{service_url}/api/flags", "--service", service]
        result = subprocess.run(
            command,
            cwd=ROOT,
            env={**env, "FEATUREFLAG_API_TOKEN": api_token},
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"pushing the catalog failed:\n{result.stderr or result.stdout}")


def ensure_pr_fork(
    service_url: str, api_token: str, upstream: str, pr_downstream: str
) -> dict[str, object]:
    """Create or replace the fork ``pr-build``: the shop, with its calls to the downstream
    service routed to the second instance (the pull request's build)."""
    body = {
        "upstream": upstream,
        "flags": {},
        "routes": {"downstream": pr_downstream},
        "labels": {"demo": "pr-build"},
    }
    headers = {"Authorization": f"Bearer {api_token}"}
    with httpx.Client(base_url=service_url, headers=headers, timeout=10) as client:
        response = client.put(f"/api/forks/{PR_FORK}", json=body)
    if response.status_code >= 400:
        raise RuntimeError(f"creating the fork {PR_FORK!r} failed: {response.text}")
    return dict(response.json())


def ensure_fork(service_url: str, api_token: str, upstream: str) -> dict[str, object]:
    """Create the ``new-lp`` fork, or point an existing one at *upstream*; return its JSON."""
    headers = {"Authorization": f"Bearer {api_token}"}
    with httpx.Client(base_url=service_url, headers=headers, timeout=10) as client:
        found = client.get(f"/api/forks/{FORK}")
        if found.status_code == 404:
            body = {"name": FORK, "upstream": upstream, "flags": FORK_FLAGS}
            response = client.post("/api/forks", json=body)
        else:
            found.raise_for_status()
            fork = found.json()
            if fork["upstream"] == upstream:
                return dict(fork)
            body = {"name": FORK, "upstream": upstream, "flags": fork["flags"]}
            response = client.put(f"/api/forks/{FORK}", json=body)
        if response.status_code >= 400:
            raise RuntimeError(f"creating the fork {FORK!r} failed: {response.text}")
        return dict(response.json())


def start(name: str, argv: Sequence[str], env: Mapping[str, str], logs: Path) -> Child:
    log = logs / f"{name.replace(' ', '-')}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            list(argv), cwd=ROOT, env=dict(env), stdout=out, stderr=subprocess.STDOUT
        )
    return Child(name, process, log)


def stop(children: list[Child]) -> None:
    """Stop every child by its pid: SIGTERM, then SIGKILL after 10 s."""
    for child in children:
        if child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    for child in children:
        try:
            child.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()


def uvicorn(app: str, port: int) -> list[str]:
    return [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]


def port_number(text: str) -> int:
    """An argparse type: a TCP port, 1 to 65535."""
    if not text.strip().isascii() or not text.strip().isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: give a number from 1 to 65535")
    return int(text)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(prog="scripts/demo", description=__doc__)
    parser.add_argument(
        "--service-port", type=port_number, default=env.get("DEMO_SERVICE_PORT", "8000")
    )
    parser.add_argument("--app-port", type=port_number, default=env.get("DEMO_APP_PORT", "8001"))
    parser.add_argument(
        "--downstream-port", type=port_number, default=env.get("DEMO_DOWNSTREAM_PORT", "8002")
    )
    parser.add_argument(
        "--pr-downstream-port",
        type=port_number,
        default=env.get("DEMO_PR_DOWNSTREAM_PORT", "8003"),
        help="the downstream service's second instance, the pull request's build (8003)",
    )
    parser.add_argument(
        "--state-dir",
        type=Path,
        default=Path(env.get("DEMO_STATE_DIR", ROOT / ".featureflag")),
        help="where the secret, the API token, the database and the logs live",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if (taken := taken_ports(args)) is not None:
        print(taken, file=sys.stderr)
        return 1
    state: Path = args.state_dir.resolve()
    state.mkdir(mode=0o700, parents=True, exist_ok=True)
    logs = state / "logs"
    logs.mkdir(exist_ok=True)
    secret = read_or_create(state / "secret", secrets.token_urlsafe(48))
    api_token = read_or_create(state / "api-token", secrets.token_urlsafe(32))

    service_url = f"http://127.0.0.1:{args.service_port}"
    app_url = f"http://127.0.0.1:{args.app_port}"
    downstream_url = f"http://127.0.0.1:{args.downstream_port}"
    pr_downstream_url = f"http://127.0.0.1:{args.pr_downstream_port}"
    env = {
        **os.environ,
        "FEATUREFLAG_SECRET": secret,
        "FEATUREFLAG_ENVIRONMENT": os.environ.get("FEATUREFLAG_ENVIRONMENT", "development"),
        "FEATUREFLAG_API_TOKENS": f"demo:{api_token}",
        "DEMO_DOWNSTREAM_URL": downstream_url,
    }
    env.pop("FEATUREFLAG_API_TOKEN", None)

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    # Ctrl-C, kill and a closed terminal all stop the children; SIGINT is set explicitly
    # because a shell starting the demo in the background hands it over ignored.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)
    children: list[Child] = []
    try:
        db = str(state / "featureflag.sqlite3")
        server = [sys.executable, "-m", "featureflag_server", "--host", "127.0.0.1"]
        server += ["--port", str(args.service_port), "--db", db]
        children.append(start("override service", server, env, logs))
        app = uvicorn("examples.demo_app:app", args.app_port)
        children.append(start("demo app", app, env, logs))
        downstream = uvicorn("examples.downstream:app", args.downstream_port)
        children.append(start("downstream service", downstream, env, logs))
        pr_build = uvicorn("examples.downstream:app", args.pr_downstream_port)
        pr_env = {**env, "DEMO_BUILD": "pr-build"}
        children.append(start("downstream PR build", pr_build, pr_env, logs))
        wait_ready(f"{service_url}/healthz", children[0])
        wait_ready(f"{app_url}/healthz", children[1])
        wait_ready(f"{downstream_url}/healthz", children[2])
        wait_ready(f"{pr_downstream_url}/healthz", children[3])
        push_catalog(service_url, api_token, env)
        fork = ensure_fork(service_url, api_token, app_url)
        pr_fork = ensure_pr_fork(service_url, api_token, app_url, pr_downstream_url)
        urls = Urls(service_url, app_url, downstream_url, pr_downstream_url)
        print_banner(urls, str(fork["url"]), str(pr_fork["url"]), api_token, state)
        while True:
            for child in children:
                if child.process.poll() is not None:
                    print(
                        f"demo: the {child.name} stopped (exit {child.process.returncode}):\n"
                        f"{tail(child.log)}",
                        file=sys.stderr,
                    )
                    return 1
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("\nStopping…", flush=True)
        return 0
    except RuntimeError as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        stop(children)
        print("Stopped the override service, the demo app and the downstream services.")


@dataclass(frozen=True)
class Urls:
    """Where the demo's processes listen."""

    service: str
    app: str
    downstream: str
    pr_downstream: str


def print_banner(urls: Urls, fork_url: str, pr_fork_url: str, token: str, state: Path) -> None:
    service_url = urls.service
    print(
        f"""
featureflag demo is running. Ctrl-C stops everything.

  Override service:   {service_url}/
  Demo app:           {urls.app}/
  Fork new-lp:        {fork_url}
  Fork pr-build:      {pr_fork_url}
  Downstream service: {urls.downstream}/recommendations
  Downstream PR build: {urls.pr_downstream}/recommendations

  API token:          {token}

Open the override service and log in with the API token to see, create and edit forks.
The fork URL shows the demo app with "new-lp" = "b" baked in, no extension needed.
The fork pr-build routes the shop's calls to the downstream service to its PR build
(new arrivals first): a whole product against one service's pull request.
Browser extension: load {ROOT / "browser-extension" / "dist"} unpacked (chrome://extensions,
Developer mode), then in its options set the service URL to {service_url} and paste the
API token. Secret, token, database and logs: {state}/
""",
        flush=True,
    )


if __name__ == "__main__":
    raise SystemExit(main())
