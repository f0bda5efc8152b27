"""What the distributions hold and what the installed commands say about themselves."""

from __future__ import annotations

import email
import re
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

import featureflag

ROOT = Path(__file__).resolve().parents[1]
PROJECT_URL = "https://github.com/featureflag-dev/featureflag"


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The wheel and the sdist, built offline by hatchling, as `pip wheel .` would."""
    out = tmp_path_factory.mktemp("dist")
    code = (
        "import sys; from hatchling.build import build_sdist, build_wheel; "
        "print(build_wheel(sys.argv[1])); print(build_sdist(sys.argv[1]))"
    )
    names = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return out / names[0], out / names[1]


def test_the_wheel_installs_only_featureflag_names_and_a_license(dists: tuple[Path, Path]) -> None:
    wheel, _ = dists
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    top = {name.split("/", 1)[0] for name in names}
    dist_info = f"featureflag-{featureflag.__version__}.dist-info"
    assert top == {"featureflag", "featureflag_server", dist_info}
    assert f"{dist_info}/licenses/LICENSE" in names
    # The service's page needs its templates and static files.
    assert "featureflag_server/templates/base.html" in names
    assert "featureflag_server/static/app.js" in names
    assert "featureflag/py.typed" in names


def test_the_wheel_metadata_has_version_urls_and_entry_points(dists: tuple[Path, Path]) -> None:
    wheel, _ = dists
    dist_info = f"featureflag-{featureflag.__version__}.dist-info"
    with zipfile.ZipFile(wheel) as zf:
        metadata = email.message_from_bytes(zf.read(f"{dist_info}/METADATA"))
        entry_points = zf.read(f"{dist_info}/entry_points.txt").decode()
    assert metadata["Version"] == featureflag.__version__
    assert metadata["License-Expression"] == "MIT"
    urls = metadata.get_all("Project-URL") or []
    assert any(url.endswith(PROJECT_URL) for url in urls), urls
    assert "Typing :: Typed" in (metadata.get_all("Classifier") or [])
    assert "featureflag-server = featureflag_server.__main__:main" in entry_points


def test_the_sdist_ships_the_license_and_no_generic_package(dists: tuple[Path, Path]) -> None:
    _, sdist = dists
    with tarfile.open(sdist) as tf:
        names = {name.split("/", 1)[1] for name in tf.getnames() if "/" in name}
    assert "LICENSE" in names
    assert "server/featureflag_server/__init__.py" in names
    assert not any(name.startswith("server/") and name.count("/") == 1 for name in names)


def test_readme_links_and_images_are_absolute() -> None:
    # A package index renders README.md away from the repository: relative links break.
    text = (ROOT / "README.md").read_text()
    targets = re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(r"^\[[^\]]+\]:\s*(\S+)", text, re.M)
    assert targets
    for target in targets:
        assert target.startswith(("https://", "http://127.0.0.1", "http://localhost")), target


@pytest.mark.parametrize(
    "command",
    [["featureflag-server"], [sys.executable, "-m", "featureflag_server"]],
    ids=["featureflag-server", "python -m featureflag_server"],
)
def test_the_service_command_prints_its_version(command: list[str]) -> None:
    if command[0] == "featureflag-server":
        command = [str(Path(sys.executable).with_name("featureflag-server"))]
    done = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"featureflag-server {featureflag.__version__}"


def _readme_section(title: str) -> str:
    text = (ROOT / "README.md").read_text()
    return text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_readme_layout_names_every_top_level_folder() -> None:
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, check=True, capture_output=True, text=True
    ).stdout.split()
    folders = {path.split("/", 1)[0] for path in tracked if "/" in path}
    layout = _readme_section("Layout")
    missing = sorted(f for f in folders if f"`{f}/" not in layout)
    assert missing == [], f"README's Layout section does not name {missing}"
    assert "`server/featureflag_server/`" in layout


def test_readme_links_every_docs_page() -> None:
    docs = _readme_section("Documentation")
    pages = sorted(p.name for p in (ROOT / "docs").glob("*.md"))
    assert [p for p in pages if f"/docs/{p})" not in docs] == []


def test_readme_links_to_the_repository_point_at_files_that_exist() -> None:
    text = (ROOT / "README.md").read_text()
    prefixes = (
        f"{PROJECT_URL}/blob/main/",
        "https://raw.githubusercontent.com/featureflag-dev/featureflag/main/",
    )
    for target in re.findall(r"\]\(([^)\s]+)\)", text) + re.findall(
        r"^\[[^\]]+\]:\s*(\S+)", text, re.M
    ):
        for prefix in prefixes:
            if target.startswith(prefix):
                path = target.removeprefix(prefix).split("#", 1)[0]
                assert (ROOT / path).exists(), target
