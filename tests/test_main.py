"""``python -m featureflag`` (featureflag/__main__.py): the version and the usage line."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest

import featureflag
from featureflag.__main__ import main


def test_version_is_the_installed_distributions() -> None:
    # featureflag.__version__ is written by hand: this catches a release that bumps
    # pyproject.toml and forgets it (or the other way round).
    assert featureflag.__version__ == metadata.version("featureflag")


@pytest.mark.parametrize("flag", ["--version", "-V"])
def test_version_flag(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([flag]) == 0
    assert capsys.readouterr().out == f"featureflag {featureflag.__version__}\n"


def test_python_dash_m_prints_the_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "featureflag", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert done.stdout == f"featureflag {featureflag.__version__}\n"


def test_usage_mentions_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--version" in capsys.readouterr().out


def test_unknown_command_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--versoin"]) == 2
    assert "unknown command '--versoin'" in capsys.readouterr().err
