"""The Python samples in README.md and docs/*.md run, so the docs cannot drift from the code.

pytest-examples finds the fenced ``python`` blocks. Each block says whether it runs:
```` ```python test="run" ```` for a sample that runs as shown, ```` ```python test="skip" ````
for a fragment that needs the reader's own app (a block that says neither fails
here). The runnable samples of one page run in order in one namespace, as a reader
would type them into one session, with ``FEATUREFLAG_SECRET`` and
``FEATUREFLAG_ENVIRONMENT`` set as the pages ask. A ``print`` in a sample is followed by
its output as ``#>`` comments, and the output is checked too
(``pytest tests/test_docs.py --update-examples`` rewrites them).
"""

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
from pytest_examples import CodeExample, EvalExample, find_examples

from featureflag import OverrideSigner, _intercept, _registry
from featureflag.headers import ERROR_HEADER, REPORT_HEADER, TOKEN_HEADER

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SECRET = "docs-secret-" + "x" * 40


def _mode(example: CodeExample) -> str | None:
    return example.prefix_settings().get("test")


def _samples(page: Path) -> list[CodeExample]:
    return [e for e in find_examples(str(page)) if _mode(e) == "run"]


RUNNABLE = [page for page in PAGES if _samples(page)]


@pytest.fixture
def fresh_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A page's samples see what a new process would: an empty flag registry, the env."""
    monkeypatch.setenv("FEATUREFLAG_SECRET", SECRET)
    monkeypatch.setenv("FEATUREFLAG_ENVIRONMENT", "qa")
    flags, sites = dict(_registry._flags), dict(_intercept._sites)
    main = sys.modules["__main__"]  # pytest-examples runs each sample as __main__
    _registry._flags.clear()
    _intercept._sites.clear()
    try:
        yield
    finally:
        sys.modules["__main__"] = main
        _registry._flags.clear()
        _registry._flags.update(flags)
        _intercept._sites.clear()
        _intercept._sites.update(sites)


@pytest.mark.parametrize("page", RUNNABLE, ids=lambda p: p.name)
def test_the_samples_of_a_page_run(
    page: Path, eval_example: EvalExample, fresh_process: None
) -> None:
    namespace: dict[str, Any] = {}
    for example in _samples(page):
        if eval_example.update_examples:
            namespace.update(eval_example.run_print_update(example, module_globals=namespace))
        else:
            namespace.update(eval_example.run_print_check(example, module_globals=namespace))


def test_every_python_block_says_whether_it_runs() -> None:
    unsaid = [
        f"{e.path.relative_to(ROOT)}:{e.start_line}"
        for page in PAGES
        for e in find_examples(str(page))
        if e.prefix.split()[0] == "python" and _mode(e) not in ("run", "skip")
    ]
    assert unsaid == [], 'tag these blocks ```python test="run"``` or ```python test="skip"```'


def test_pages_with_runnable_samples() -> None:
    # A page whose runnable samples lost their tag would silently stop being tested.
    assert {p.name for p in RUNNABLE} >= {
        "README.md",
        "flags.md",
        "middleware.md",
        "propagation.md",
        "testing.md",
        "tokens.md",
    }


def test_demo_md_an_intercept_flag_is_not_in_the_pushed_catalog() -> None:
    # docs/demo.md: the demo pushes its catalog by importing examples.demo_app, and an
    # intercept block declares its flag only when its line runs: promo-banner is not
    # in it (the fork form's "another flag" row adds it), the trapped flags are.
    done = subprocess.run(
        [sys.executable, "-m", "featureflag", "catalog", "examples.demo_app"],
        cwd=ROOT,
        env={**os.environ, "FEATUREFLAG_SECRET": SECRET},
        capture_output=True,
        text=True,
        check=True,
    )
    assert '"promo-banner"' not in done.stdout
    assert '"new-lp"' in done.stdout and '"Checkout.is_one_click"' in done.stdout


async def test_the_curl_examples_show_what_the_middleware_sends(
    eval_example: EvalExample, fresh_process: None
) -> None:
    # README.md and docs/middleware.md curl docs/middleware.md's app.py and show the
    # answers: the same app, in-process, must give them.
    middleware = (ROOT / "docs" / "middleware.md").read_text()
    readme = (ROOT / "README.md").read_text()
    [app_py] = [e for e in _samples(ROOT / "docs" / "middleware.md") if "Starlette" in e.source]
    app = eval_example.run(app_py)["app"]
    token = OverrideSigner(SECRET, environment="qa").dumps(
        {"SomeNewFeature.is_released": True, "new-lp": "b"}, sub="docs"
    )
    transport = httpx.ASGITransport(app)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8001") as c:
        plain = await c.get("/")
        overridden = await c.get("/", headers={TOKEN_HEADER: token})
        refused = await c.get("/", headers={TOKEN_HEADER: "not-a-token"})

    assert "# released=False landing=a" in middleware
    assert plain.text == "released=False landing=a\n"
    assert REPORT_HEADER.lower() not in plain.headers
    shown = [
        re.search(r"^feature-flags: (.+)$", readme, re.MULTILINE),
        re.search(r"^# feature-flags: (.+)$", middleware, re.MULTILINE),
    ]
    assert [m.group(1) if m else None for m in shown] == [overridden.headers[REPORT_HEADER]] * 2
    assert "# cache-control: private, no-store" in middleware
    assert overridden.headers["cache-control"] == "private, no-store"
    assert "# released=True landing=b" in middleware
    assert overridden.text == "released=True landing=b\n"
    assert "# feature-flag-override-error: malformed" in middleware
    assert refused.headers[ERROR_HEADER] == "malformed"
    # Both pages send the requests to the app's port, not the override service's.
    curled = re.findall(r"curl .*?http://127\.0\.0\.1:(\d+)/", readme + middleware)
    assert curled and set(curled) == {"8001"}
