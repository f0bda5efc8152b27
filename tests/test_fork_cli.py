"""``featureflag fork``: parsing, exit codes and output (a MockTransport service), then
end to end against a real ``featureflag-server`` process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from featureflag.__main__ import main as featureflag_main
from featureflag.fork_cli import TTL_RULE, main, parse_ttl
from tests.support.servers import Server, free_port, run_server

TOKEN = "alice-token-0123456789"
SERVICE = "http://ff.test"
ENV = {"FEATUREFLAG_SERVICE_URL": SERVICE, "FEATUREFLAG_API_TOKEN": TOKEN}


class FakeService:
    """The fork API as the contract describes it: PUT creates (201) or replaces (200)."""

    def __init__(self) -> None:
        self.forks: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        path = "/api/forks" + request.url.path.partition("/api/forks")[2]  # any mount prefix
        if request.headers.get("authorization") != f"Bearer {TOKEN}" and request.method != "GET":
            return httpx.Response(
                401, json={"error": "unauthorized", "message": "Unknown API token.", "errors": []}
            )
        if path == "/api/forks" and request.method == "GET":
            return httpx.Response(200, json={"forks": list(self.forks.values())})
        name = path.removeprefix("/api/forks/")
        if request.method == "PUT":
            body = json.loads(request.content)
            if not body["upstream"].startswith("http"):
                problem = {"field": "upstream", "rule": "an upstream is an http(s) URL"}
                return httpx.Response(
                    422,
                    json={
                        "error": "invalid",
                        "message": "The request is invalid: upstream: an upstream is an "
                        "http(s) URL",
                        "errors": [problem],
                    },
                )
            status = 200 if name in self.forks else 201
            self.forks[name] = {
                "name": name,
                "url": f"http://{name}.localhost:8000/",
                "flags": {},
                "routes": {},
                "labels": {},
                "expires_at": None,
                **body,
            }
            return httpx.Response(status, json=self.forks[name])
        if name not in self.forks:
            return httpx.Response(
                404, json={"error": "not-found", "message": f"No fork {name!r}.", "errors": []}
            )
        if request.method == "DELETE":
            del self.forks[name]
            return httpx.Response(204)
        return httpx.Response(200, json=self.forks[name])


def cli(
    args: list[str],
    capsys: pytest.CaptureFixture[str],
    service: Any = None,
    env: dict[str, str] | None = None,
) -> tuple[int, str, str]:
    transport = httpx.MockTransport(service if service is not None else FakeService())
    code = main(args, environ=ENV if env is None else env, transport=transport)
    out, err = capsys.readouterr()
    return code, out, err


# --- apply ---------------------------------------------------------------------------


def test_apply_puts_the_fork_and_prints_only_its_url(capsys: pytest.CaptureFixture[str]) -> None:
    service = FakeService()
    args = [
        "apply", "pr-12", "--upstream", "http://127.0.0.1:5000",
        "--flag", "SomeNewFeature.is_released=true", "--flag", "new-lp=b",
        "--flag", "copy=", "--route", "recommendations=http://recs-pr-12.internal:8080",
        "--label", "pr=12", "--label", "team=checkout", "--ttl", "7d",
    ]  # fmt: skip
    code, out, err = cli(args, capsys, service)
    assert (code, out, err) == (0, "http://pr-12.localhost:8000/\n", "")
    [request] = service.requests
    assert (request.method, str(request.url)) == ("PUT", SERVICE + "/api/forks/pr-12")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == {
        "upstream": "http://127.0.0.1:5000",
        "flags": {"SomeNewFeature.is_released": True, "new-lp": "b", "copy": ""},
        "routes": {"recommendations": "http://recs-pr-12.internal:8080"},
        "labels": {"pr": "12", "team": "checkout"},
        "ttl": 7 * 86400,
    }


def test_apply_is_idempotent(capsys: pytest.CaptureFixture[str]) -> None:
    service = FakeService()
    args = ["apply", "pr-12", "--upstream", "http://127.0.0.1:5000", "--flag", "a=false"]
    first = cli(args, capsys, service)
    second = cli(args, capsys, service)
    assert first == second == (0, "http://pr-12.localhost:8000/\n", "")
    assert service.forks["pr-12"]["flags"] == {"a": False}


@pytest.mark.parametrize(
    ("text", "seconds"), [("45s", 45), ("30m", 1800), ("12h", 43200), ("7d", 604800)]
)
def test_ttl_units(text: str, seconds: int) -> None:
    assert parse_ttl(text) == seconds


@pytest.mark.parametrize("ttl", ["0d", "0s", "-1d", "7w", "", "1.5h", "d", "7", "7 d x"])
def test_a_bad_ttl_is_refused_naming_the_rule(ttl: str, capsys: pytest.CaptureFixture[str]) -> None:
    service = FakeService()
    code, out, err = cli(
        ["apply", "pr-1", "--upstream", "http://127.0.0.1:5000", f"--ttl={ttl}"], capsys, service
    )
    assert (code, out) == (2, "")
    assert TTL_RULE in err
    assert service.requests == []


@pytest.mark.parametrize(
    ("option", "rule"),
    [
        (["--route", "recommendations=http://u@evil.example"], "no user, password"),
        (["--route", "recommendations=ftp://recs.internal"], "a route is an http"),
        (["--route", "recs/v2=http://recs.internal"], "a service name is"),
        (["--route", "recommendations"], "write KEY=VALUE"),
        (["--flag", "new-lp"], "write KEY=VALUE"),
        (["--label", "=x"], "write KEY=VALUE"),
    ],
)
def test_a_malformed_option_is_refused_before_any_request(
    option: list[str], rule: str, capsys: pytest.CaptureFixture[str]
) -> None:
    service = FakeService()
    code, out, err = cli(
        ["apply", "pr-1", "--upstream", "http://127.0.0.1:5000", *option], capsys, service
    )
    assert (code, out) == (2, "")
    assert rule in err and err.count("\n") == 1
    assert service.requests == []


def test_a_refusal_names_the_field_and_rule_and_exits_1(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = cli(["apply", "pr-1", "--upstream", "ftp://x"], capsys)
    assert (code, out) == (1, "")
    assert "422 invalid" in err
    assert "  upstream: an upstream is an http(s) URL" in err


def test_a_wrong_api_token_exits_1_and_says_what_to_check(
    capsys: pytest.CaptureFixture[str],
) -> None:
    env = {**ENV, "FEATUREFLAG_API_TOKEN": "wrong"}
    code, out, err = cli(["apply", "a", "--upstream", "http://x"], capsys, env=env)
    assert (code, out) == (1, "")
    assert "401" in err and "check $FEATUREFLAG_API_TOKEN" in err


# --- configuration errors: exit 2, one line ------------------------------------------


@pytest.mark.parametrize(
    ("env", "args", "says"),
    [
        ({"FEATUREFLAG_SERVICE_URL": SERVICE}, ["delete", "a"], "set FEATUREFLAG_API_TOKEN"),
        (
            {"FEATUREFLAG_SERVICE_URL": SERVICE},
            ["apply", "a", "--upstream", "http://x"],
            "set FEATUREFLAG_API_TOKEN",
        ),
        ({"FEATUREFLAG_API_TOKEN": TOKEN}, ["list"], "set FEATUREFLAG_SERVICE_URL"),
        ({**ENV, "FEATUREFLAG_SERVICE_URL": "localhost:8000"}, ["list"], "not an http(s) URL"),
        ({**ENV, "FEATUREFLAG_SERVICE_URL": "ftp://ff.test"}, ["list"], "not an http(s) URL"),
        (ENV, ["list", "--service", "http://"], "not an http(s) URL"),
    ],
)
def test_configuration_errors_exit_2_with_one_line(
    env: dict[str, str], args: list[str], says: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(args, capsys, env=env)
    assert (code, out) == (2, "")
    assert says in err
    assert err.count("\n") == 1


def test_an_unreachable_service_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    code, out, err = cli(["list"], capsys, down)
    assert (code, out) == (2, "")
    assert "cannot reach the service at http://ff.test" in err
    assert "FEATUREFLAG_SERVICE_URL" in err and err.count("\n") == 1


def test_a_service_that_is_not_featureflag_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(["list"], capsys, lambda r: httpx.Response(404, text="<html>nope"))
    assert code == 2 and "is http://ff.test a featureflag-server?" in err


@pytest.mark.parametrize(
    "args",
    [
        ["list", "--service", "https://other.test/ff/"],
        ["--service", "https://other.test/ff", "list"],
    ],
)
def test_service_option_wins_over_the_environment(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    service = FakeService()
    assert cli(args, capsys, service)[0] == 0
    assert str(service.requests[0].url) == "https://other.test/ff/api/forks"


def test_a_bad_option_is_refused_whatever_the_environment(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, _, err = cli(["apply", "a", "--upstream", "http://x", "--ttl", "0d"], capsys, env={})
    assert code == 2 and TTL_RULE in err


def test_an_answer_without_a_fork_url_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(
        ["apply", "a", "--upstream", "http://x"], capsys, lambda r: httpx.Response(200, json={})
    )
    assert (code, out) == (2, "")
    assert "without a fork URL" in err


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["apply", "pr-1"], capsys)[0] == 2  # --upstream is required
    assert cli(["frobnicate"], capsys)[0] == 2
    assert cli(["--help"], capsys)[0] == 0


# --- get, list, delete ---------------------------------------------------------------


def test_get_list_and_delete(capsys: pytest.CaptureFixture[str]) -> None:
    service = FakeService()
    for name, team in (("pr-1", "checkout"), ("pr-2", "search")):
        cli(["apply", name, "--upstream", "http://x", "--label", f"team={team}"], capsys, service)
    code, out, _ = cli(["get", "pr-1", "--json"], capsys, service)
    assert code == 0 and json.loads(out) == service.forks["pr-1"]
    code, out, _ = cli(["get", "pr-1"], capsys, service)
    assert out.splitlines()[0] == "pr-1  http://pr-1.localhost:8000/"
    assert '  labels: team="checkout"' in out and "  expires: never" in out
    code, out, _ = cli(["list", "--label", "team=search", "--json"], capsys, service)
    assert [f["name"] for f in json.loads(out)["forks"]] == ["pr-2"]
    code, out, _ = cli(["list"], capsys, service)
    assert [line.split("\t")[0] for line in out.splitlines()] == ["pr-1", "pr-2"]
    assert cli(["delete", "pr-1"], capsys, service) == (0, "", "")
    code, out, err = cli(["delete", "pr-1"], capsys, service)
    assert (code, out) == (1, "") and "404 not-found" in err
    code, out, err = cli(["delete", "pr-1", "--missing-ok"], capsys, service)
    assert (code, out) == (0, "") and "nothing to delete" in err
    code, _, err = cli(["get", "pr-1"], capsys, service)
    assert code == 1 and "No fork 'pr-1'" in err


def test_python_m_featureflag_dispatches_fork(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("FEATUREFLAG_SERVICE_URL", raising=False)
    assert featureflag_main(["fork", "list"]) == 2
    assert "set FEATUREFLAG_SERVICE_URL" in capsys.readouterr().err


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).with_name("featureflag")
    done = subprocess.run(
        [str(script), "fork", "list"],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "featureflag fork: set FEATUREFLAG_SERVICE_URL (or pass --service URL) "
        "to the override service\n"
    )


# --- end to end: a real featureflag-server -------------------------------------------

SERVER_ENV = {
    "FEATUREFLAG_SECRET": "e2e-secret-" + "x" * 32,
    "FEATUREFLAG_API_TOKENS": f"alice:{TOKEN}",
    "FEATUREFLAG_ENVIRONMENT": "qa",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("fork-cli")
    port = free_port()
    command = str(Path(sys.executable).with_name("featureflag-server"))
    argv = [command, "--port", str(port), "--db", str(tmp / "ff.sqlite3")]
    with run_server(argv, port=port, ready_path="/healthz", env=SERVER_ENV, log_dir=tmp) as s:
        yield s


@pytest.fixture
def put_forks(server: Server) -> Server:
    """The real service, which creates forks with PUT and takes labels, routes and ttl."""
    return server


def run_cli(url: str, *args: str, token: str = TOKEN) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "FEATUREFLAG_SERVICE_URL": url}
    if token:
        env["FEATUREFLAG_API_TOKEN"] = token
    script = str(Path(sys.executable).with_name("featureflag"))
    return subprocess.run(
        [script, "fork", *args], env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.integration
def test_e2e_configuration_and_refusals(server: Server) -> None:
    no_token = run_cli(server.url, "delete", "x", token="")
    assert no_token.returncode == 2 and "FEATUREFLAG_API_TOKEN" in no_token.stderr
    wrong = run_cli(server.url, "delete", "x", token="wrong-token-000000000")
    assert wrong.returncode == 1 and "401" in wrong.stderr
    missing = run_cli(server.url, "get", "nope")
    assert missing.returncode == 1 and "not-found" in missing.stderr
    gone = run_cli(server.url, "delete", "nope", "--missing-ok")
    assert gone.returncode == 0
    down = run_cli(f"http://127.0.0.1:{free_port()}", "list")
    assert down.returncode == 2 and "cannot reach" in down.stderr
    listed = run_cli(server.url, "list", "--json")
    assert listed.returncode == 0 and "forks" in json.loads(listed.stdout)


@pytest.mark.integration
def test_e2e_apply_get_list_delete(put_forks: Server) -> None:
    url = put_forks.url
    args = ["apply", "pr-7", "--upstream", "http://127.0.0.1:5000", "--flag", "new-lp=b",
            "--route", "recommendations=http://127.0.0.1:5001", "--label", "pr=7",
            "--ttl", "2h"]  # fmt: skip
    first = run_cli(url, *args)
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip().startswith("http://pr-7.") and first.stdout.count("\n") == 1
    again = run_cli(url, *args)
    assert (again.returncode, again.stdout) == (0, first.stdout)
    fork = json.loads(run_cli(url, "get", "pr-7", "--json").stdout)
    assert fork["flags"] == {"new-lp": "b"}
    assert fork["routes"] == {"recommendations": "http://127.0.0.1:5001"}
    assert fork["labels"] == {"pr": "7"}
    assert fork["expires_at"] and fork["updated_by"] == "alice"
    listed = json.loads(run_cli(url, "list", "--label", "pr=7", "--json").stdout)["forks"]
    assert [f["name"] for f in listed] == ["pr-7"]
    assert run_cli(url, "delete", "pr-7").returncode == 0
    assert run_cli(url, "get", "pr-7").returncode == 1


@pytest.mark.integration
def test_e2e_the_service_refusal_names_field_and_rule(put_forks: Server) -> None:
    refused = run_cli(put_forks.url, "apply", "pr-8", "--upstream", "ftp://nope")
    assert (refused.returncode, refused.stdout) == (1, "")
    assert "upstream:" in refused.stderr
