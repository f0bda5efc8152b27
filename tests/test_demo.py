"""``./scripts/demo`` as a user runs it: four real processes, two forks, Ctrl-C stops them."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import stat
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from examples.run_demo import parse_args, taken_ports
from tests.support.servers import ROOT, free_port

pytestmark = pytest.mark.integration

LABELS = "Override service|Demo app|Fork new-lp|Fork pr-build|Downstream service|API token"
LINE = re.compile(rf"^\s+({LABELS}):\s+(\S+)")


@dataclass
class Demo:
    process: subprocess.Popen[str]
    urls: dict[str, str]
    output: list[str]
    ports: tuple[int, int, int, int]


def _reader(process: subprocess.Popen[str], lines: queue.Queue[str | None]) -> None:
    assert process.stdout is not None
    for line in process.stdout:
        lines.put(line)
    lines.put(None)


@contextmanager
def run_demo(
    state: Path, ports: tuple[int, int, int, int], *, group: bool = False
) -> Iterator[Demo]:
    """Run the demo; at the end send SIGINT to it (*group*: to its whole process group,
    as Ctrl-C in a terminal does)."""
    service, app, downstream, pr_downstream = ports
    argv = ["./scripts/demo", "--no-install", "--state-dir", str(state)]
    argv += ["--service-port", str(service), "--app-port", str(app)]
    argv += ["--downstream-port", str(downstream), "--pr-downstream-port", str(pr_downstream)]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATUREFLAG_")}
    process = subprocess.Popen(
        argv,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(process, lines), daemon=True).start()
    output: list[str] = []
    urls: dict[str, str] = {}
    try:
        while "API token" not in urls:
            line = lines.get(timeout=90)
            if line is None:
                raise AssertionError("the demo exited before it was ready:\n" + "".join(output))
            output.append(line)
            if match := LINE.match(line):
                urls[match.group(1)] = match.group(2)
        demo = Demo(process, urls, output, ports)
        yield demo
    finally:
        if process.poll() is None:
            if group:
                os.killpg(process.pid, signal.SIGINT)
            else:
                process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        while (line := lines.get(timeout=10)) is not None:
            output.append(line)
        assert process.stdout is not None
        process.stdout.close()


def running_on(port: int) -> list[str]:
    """Command lines of live processes started with ``--port <port>``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"--port" in args and str(port).encode() in args:
            found.append(" ".join(a.decode(errors="replace") for a in args))
    return found


def refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def four_ports() -> tuple[int, int, int, int]:
    ports: set[int] = set()
    while len(ports) < 4:
        ports.add(free_port())
    a, b, c, d = sorted(ports)
    return a, b, c, d


def test_the_demo_starts_everything_serves_the_fork_and_stops_on_ctrl_c(tmp_path: Path) -> None:
    state = tmp_path / "state"
    ports = four_ports()
    with run_demo(state, ports) as demo:
        urls = demo.urls
        service_port = ports[0]
        assert urls["Override service"] == f"http://127.0.0.1:{service_port}/"
        assert urls["Fork new-lp"] == f"http://new-lp.localhost:{service_port}/"
        token = urls["API token"]

        # The app on its own: defaults.
        page = httpx.get(urls["Demo app"], timeout=10)
        assert page.status_code == 200
        assert 'data-variant="a"' in page.text
        assert '<strong data-testid="strategy">popular</strong>' in page.text

        # The fork URL (Host new-lp.localhost): "new-lp" = "b" is baked in, and the
        # downstream service's flag comes back through propagation.
        fork = httpx.get(
            f"http://127.0.0.1:{service_port}/",
            headers={"Host": f"new-lp.localhost:{service_port}"},
            timeout=10,
        )
        assert fork.status_code == 200
        assert 'data-variant="b"' in fork.text
        assert '<strong data-testid="strategy">personal</strong>' in fork.text
        report = fork.headers["feature-flags"]
        assert '"new-lp";value="b";source=override' in report
        assert '"Recommendations.strategy";value="personal";source=override;service=' in report

        # The printed token is an API token of the service; the catalog was pushed.
        auth = {"Authorization": f"Bearer {token}"}
        forks = httpx.get(f"{urls['Override service']}api/forks", headers=auth).json()
        assert [f["name"] for f in forks["forks"]] == ["new-lp", "pr-build"]

        # The fork pr-build: the same shop, its downstream calls routed to the PR build.
        assert urls["Fork pr-build"] == f"http://pr-build.localhost:{service_port}/"
        assert '<strong data-testid="build">main</strong>' in page.text
        pr = httpx.get(
            f"http://127.0.0.1:{service_port}/",
            headers={"Host": f"pr-build.localhost:{service_port}"},
            timeout=10,
        )
        assert pr.status_code == 200
        assert '<strong data-testid="build">pr-build</strong>' in pr.text
        assert "New: speckled mug" in pr.text and "New: speckled mug" not in page.text
        assert (
            f'route;service="downstream";url="http://127.0.0.1:{ports[3]}"'
            in (pr.headers["feature-flags"])
        )
        catalog = httpx.get(f"{urls['Override service']}api/flags", headers=auth).json()
        services = {f["name"]: f.get("service") for f in catalog["flags"]}
        # Each demo service pushed its own part of the catalog.
        assert services["new-lp"] == services["Checkout.is_one_click"] == "demo-app"
        assert services["Recommendations.strategy"] == "downstream"
        # An intercept flag is declared when its line runs; the catalog was pushed
        # before the shop served a page, and is not pushed again (docs/demo.md).
        assert "promo-banner" not in services

        # Four processes, one per port (what the end of the test checks is gone).
        assert all(len(running_on(port)) == 1 for port in ports), [
            running_on(port) for port in ports
        ]

        # The service's web page is there.
        assert "Log in" in httpx.get(f"{urls['Override service']}login").text

    assert demo.process.returncode == 0, "".join(demo.output)
    assert "Stopped the override service" in "".join(demo.output)
    assert all(refuses(port) for port in ports)
    assert [running_on(port) for port in ports] == [[], [], [], []]

    # Secret and token are kept, owner-only, and reused by the next run.
    for name in ("secret", "api-token"):
        assert stat.S_IMODE((state / name).stat().st_mode) == 0o600
    assert (state / "featureflag.sqlite3").exists()
    with run_demo(state, ports, group=True) as again:
        assert again.urls["API token"] == token
        fork = httpx.get(
            f"http://127.0.0.1:{service_port}/",
            headers={"Host": f"new-lp.localhost:{service_port}"},
            timeout=10,
        )
        assert 'data-variant="b"' in fork.text
    assert again.process.returncode == 0, "".join(again.output)
    assert all(refuses(port) for port in ports)
    assert [running_on(port) for port in ports] == [[], [], [], []]


def test_every_taken_port_is_named_at_once_with_the_option_to_change(tmp_path: Path) -> None:
    # Issue 19 item 6: the ports were reported one at a time, one run each.
    ports = four_ports()
    with socket.socket() as app, socket.socket() as pr_build:
        app.bind(("127.0.0.1", ports[1]))
        app.listen()
        pr_build.bind(("127.0.0.1", ports[3]))
        pr_build.listen()
        result = subprocess.run(
            [
                "./scripts/demo", "--no-install", "--state-dir", str(tmp_path),
                "--service-port", str(ports[0]), "--app-port", str(ports[1]),
                "--downstream-port", str(ports[2]), "--pr-downstream-port", str(ports[3]),
            ],
            cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    assert result.returncode == 1
    assert result.stderr.startswith("demo: 2 ports are not free on 127.0.0.1")
    assert f"port {ports[1]}, for the demo app: taken (choose another with --app-port N)" in (
        result.stderr
    )
    assert (
        f"port {ports[3]}, for the downstream PR build: taken "
        "(choose another with --pr-downstream-port N)"
    ) in result.stderr
    assert str(ports[0]) not in result.stderr and str(ports[2]) not in result.stderr
    assert refuses(ports[0]) and refuses(ports[2])
    assert not (tmp_path / "logs").exists()  # nothing was started


def test_taken_ports_lists_each_taken_or_repeated_port_with_what_it_is_for() -> None:
    ports = four_ports()
    argv = ["--service-port", str(ports[0]), "--app-port", str(ports[1])]
    argv += ["--downstream-port", str(ports[2]), "--pr-downstream-port", str(ports[3])]
    assert taken_ports(parse_args(argv)) is None
    with socket.socket() as service, socket.socket() as downstream:
        service.bind(("127.0.0.1", ports[0]))
        service.listen()
        downstream.bind(("127.0.0.1", ports[2]))
        message = taken_ports(parse_args(argv))
    assert message is not None
    lines = message.splitlines()
    assert lines[0] == "demo: 2 ports are not free on 127.0.0.1, so nothing was started:"
    assert lines[1:3] == [
        f"  port {ports[0]}, for the override service: taken (choose another with "
        "--service-port N)",
        f"  port {ports[2]}, for the downstream service: taken (choose another with "
        "--downstream-port N)",
    ]
    # The same port given twice is named too (the second would fail to start).
    twice = ["--service-port", str(ports[0]), "--app-port", str(ports[0])]
    twice += ["--downstream-port", str(ports[2]), "--pr-downstream-port", str(ports[3])]
    message = taken_ports(parse_args(twice))
    assert message is not None and message.startswith("demo: a port is not free")
    assert (
        f"port {ports[0]}, for the demo app: also given for the override service "
        "(choose another with --app-port N)"
    ) in message


@pytest.mark.parametrize("value", ["70000", "0", "-1", "eighty", "\uff18\uff10"])
def test_a_port_that_is_no_port_is_refused_by_name(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args(["--app-port", value])
    assert exited.value.code == 2
    assert f"argument --app-port: {value!r} is not a port" in capsys.readouterr().err
