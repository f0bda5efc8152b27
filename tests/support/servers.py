"""Real server processes for integration tests: 127.0.0.1, a free port, stopped by pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Server:
    url: str
    port: int
    process: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log.read_text()}")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"server not ready at {url} after {timeout}s:\n{log.read_text()}")


@contextmanager
def run_server(
    argv: Sequence[str],
    *,
    port: int,
    ready_path: str = "/",
    env: Mapping[str, str] | None = None,
    log_dir: Path,
    name: str = "server",
    host: str = "127.0.0.1",
) -> Iterator[Server]:
    """Start *argv* (which must listen on *port*), wait until *ready_path* answers."""
    log = log_dir / f"{name}-{port}.log"
    full_env = {**os.environ, **(env or {})}
    with log.open("wb") as out:
        process = subprocess.Popen(
            list(argv), cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://{host}:{port}"
    try:
        wait_ready(url + ready_path, process, log)
        yield Server(url=url, port=port, process=process, log=log)
    finally:
        stop(process)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def run_uvicorn(
    app: str,
    *,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/",
    factory: bool = False,
    extra: Sequence[str] = (),
    name: str = "uvicorn",
    quiet: bool = True,
) -> Iterator[Server]:
    """Run ``uvicorn <app>`` (an import string) on 127.0.0.1 and a free port.

    *quiet* turns the access log off (tests); False logs as uvicorn does by default.
    """
    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port)]
    if quiet:
        argv += ["--no-access-log", "--log-level", "warning"]
    argv += extra
    if factory:
        argv.append("--factory")
    with run_server(
        argv, port=port, ready_path=ready_path, env=env, log_dir=log_dir, name=name
    ) as server:
        yield server
