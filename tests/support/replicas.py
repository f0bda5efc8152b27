"""Several real ``featureflag-server`` processes on one database, started at once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from tests.support.servers import ROOT, Server, free_port, stop, wait_ready

TOKEN = "alice-token-0123456789"
ENV = {"FEATUREFLAG_SECRET": "k" * 40, "FEATUREFLAG_API_TOKENS": f"alice:{TOKEN}"}
COMMAND = str(Path(sys.executable).with_name("featureflag-server"))


@contextmanager
def replicas(
    db: str, *, count: int = 2, log_dir: Path, extra: Sequence[str] = ()
) -> Iterator[list[Server]]:
    """*count* services on *db*, all started before any is waited for; stopped by pid."""
    started: list[Server] = []
    env = {**os.environ, **ENV}
    try:
        for i in range(count):
            port = free_port()
            log = log_dir / f"replica-{i}-{port}.log"
            with log.open("wb") as out:
                process = subprocess.Popen(
                    [COMMAND, "--port", str(port), "--db", db, "--no-access-log", *extra],
                    cwd=ROOT,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            started.append(Server(f"http://127.0.0.1:{port}", port, process, log))
        for server in started:
            wait_ready(server.url + "/healthz", server.process, server.log)
        yield started
    finally:
        for server in started:
            stop(server.process)
