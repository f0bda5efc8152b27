"""examples/ci: preview.sh against a real featureflag-server and a GitHub comments stand-in
(tests/apps/github_comments.py on uvicorn), as github-preview.yml runs it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import ROOT, Server, free_port, run_server, run_uvicorn
from tests.test_fork_cli import SERVER_ENV, TOKEN

SCRIPT = ROOT / "examples" / "ci" / "preview.sh"
WORKFLOW = ROOT / "examples" / "ci" / "github-preview.yml"
GH_TOKEN = "gh-test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("previews")
    port = free_port()
    command = str(Path(sys.executable).with_name("featureflag-server"))
    argv = [command, "--port", str(port), "--db", str(tmp / "ff.sqlite3")]
    with run_server(argv, port=port, ready_path="/healthz", env=SERVER_ENV, log_dir=tmp) as s:
        yield s


@pytest.fixture
def github(tmp_path: Path) -> Iterator[Server]:
    with run_uvicorn(
        "tests.apps.github_comments:create_app", factory=True, log_dir=tmp_path
    ) as server:
        yield server


@pytest.fixture
def put_forks(service: Server) -> Server:
    """The real service, which creates forks with PUT and takes labels, routes and ttl."""
    return service


def preview(mode: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{Path(sys.executable).parent}:/usr/bin:/bin"
    return subprocess.run(
        ["bash", str(SCRIPT), mode],
        env={"PATH": path, "GITHUB_REPOSITORY": "acme/shop", "GITHUB_TOKEN": GH_TOKEN, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def writes(github: Server) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = httpx.get(github.url + "/_writes").json()
    return answer


def comments(github: Server, pr: int) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = httpx.get(
        f"{github.url}/repos/acme/shop/issues/{pr}/comments",
        headers={"Authorization": f"Bearer {GH_TOKEN}"},
    ).json()
    return answer


def env_for(service: Server, github: Server, pr: int) -> dict[str, str]:
    return {
        "PR_NUMBER": str(pr),
        "FEATUREFLAG_SERVICE_URL": service.url,
        "FEATUREFLAG_API_TOKEN": TOKEN,
        "GITHUB_API_URL": github.url,
    }


# --- the comment ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "environment"), [("/preview qa", "qa"), ("/preview staging-2\nthanks!", "staging-2")]
)
def test_the_environment_comes_from_the_comment(body: str, environment: str) -> None:
    done = preview("env-from-comment", COMMENT_BODY=body)
    assert (done.returncode, done.stdout) == (0, environment + "\n")


@pytest.mark.parametrize(
    "body", ["/preview", "/preview qa now", "/preview QA", "/preview $(id)", "/previewqa", "hi"]
)
def test_a_bad_preview_comment_is_refused(body: str) -> None:
    done = preview("env-from-comment", COMMENT_BODY=body)
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("preview.sh: ")


def test_an_unknown_mode_is_a_usage_error() -> None:
    done = preview("deploy")
    assert done.returncode == 2 and "usage" in done.stderr


# --- against the service and the comments API ---------------------------------------


def test_a_pr_without_a_preview_has_no_environment(service: Server, github: Server) -> None:
    done = preview("env-from-pr", **env_for(service, github, 5))
    assert (done.returncode, done.stdout) == (0, "")


def test_closing_a_pr_without_a_preview_writes_nothing(service: Server, github: Server) -> None:
    done = preview("delete", **env_for(service, github, 6))
    assert done.returncode == 0, done.stderr
    assert writes(github) == []


def test_a_refused_apply_posts_no_comment(service: Server, github: Server) -> None:
    env = env_for(service, github, 7) | {"PREVIEW_ENV": "qa", "PREVIEW_UPSTREAM": "ftp://x"}
    done = preview("apply", **env)
    assert done.returncode == 1
    assert "featureflag fork:" in done.stderr
    assert writes(github) == []


def test_apply_without_a_token_says_what_to_set(service: Server, github: Server) -> None:
    env = env_for(service, github, 7) | {"PREVIEW_ENV": "qa", "PREVIEW_UPSTREAM": "http://x"}
    del env["FEATUREFLAG_API_TOKEN"]
    done = preview("apply", **env)
    assert done.returncode == 2 and "FEATUREFLAG_API_TOKEN" in done.stderr
    assert writes(github) == []


def test_comment_push_push_close(put_forks: Server, github: Server) -> None:
    """/preview qa, two pushes, then the PR closes: one fork, then none; one comment."""
    env = env_for(put_forks, github, 12) | {
        "PREVIEW_ENV": "qa",
        "PREVIEW_UPSTREAM": "http://127.0.0.1:5000/pr-{pr}",
        "PREVIEW_ROUTES": "recommendations=http://127.0.0.1:5001/pr-{pr}\n",
        "PREVIEW_FLAGS": "new-lp=b",
        "PREVIEW_TTL": "3d",
    }
    first = preview("apply", **env)
    assert first.returncode == 0, first.stderr
    url = first.stdout.strip()
    assert re.fullmatch(r"http://pr-12\.[^/]+/", url)
    fork = httpx.get(f"{put_forks.url}/api/forks/pr-12", headers=AUTH).json()
    assert fork["upstream"] == "http://127.0.0.1:5000/pr-12"
    assert fork["routes"] == {"recommendations": "http://127.0.0.1:5001/pr-12"}
    assert fork["labels"] == {"pr": "12", "env": "qa"}
    assert fork["flags"] == {"new-lp": "b"}
    assert fork["expires_at"]
    # The push events find the environment in the comment, and re-apply.
    found = preview("env-from-pr", **env_for(put_forks, github, 12))
    assert found.stdout == "qa\n"
    for _ in range(2):
        again = preview("apply", **env)
        assert (again.returncode, again.stdout.strip()) == (0, url), again.stderr
    [comment] = comments(github, 12)
    assert url in comment["body"] and "Preview (qa)" in comment["body"]
    assert [w["method"] for w in writes(github)] == ["POST", "PATCH", "PATCH"]
    assert {w["id"] for w in writes(github)} == {comment["id"]}
    closed = preview("delete", **env_for(put_forks, github, 12))
    assert closed.returncode == 0, closed.stderr
    assert httpx.get(f"{put_forks.url}/api/forks/pr-12", headers=AUTH).status_code == 404
    [comment] = comments(github, 12)
    assert "removed" in comment["body"] and url not in comment["body"]


# --- the workflow ---------------------------------------------------------------------


def test_the_workflow_calls_only_modes_the_script_has() -> None:
    text = WORKFLOW.read_text()
    modes = set(re.findall(r"examples/ci/preview\.sh ([a-z-]+)", text))
    assert modes == {"env-from-comment", "env-from-pr", "apply", "delete"}
    for mode in modes:
        assert f"\n{mode})" in SCRIPT.read_text()


def test_the_workflow_never_pastes_the_comment_into_a_script() -> None:
    # ${{ github.event.comment.body }} inside `run:` would let a comment run commands.
    lines = [line.strip() for line in WORKFLOW.read_text().splitlines()]
    pasted = [line for line in lines if "github.event.comment.body }}" in line]
    assert pasted == ["COMMENT_BODY: ${{ github.event.comment.body }}"]


def test_the_script_is_executable() -> None:
    assert os.access(SCRIPT, os.X_OK)
