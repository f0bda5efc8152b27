from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import featureflag
from featureflag.__main__ import main
from tests.support.servers import ROOT


@featureflag.trap(name="Cataloged")
class Cataloged:
    def is_on(self) -> bool:
        """First line of the doc.

        Second paragraph.
        """
        return True

    def untyped(self):  # type: ignore[no-untyped-def]
        return "x"


def test_catalog_lists_name_type_place_and_doc() -> None:
    info = {f.name: f for f in featureflag.catalog()}
    on = info["Cataloged.is_on"]
    assert on.type == "bool"
    assert on.kind == "trap"
    assert on.module == __name__
    assert on.path == __file__
    assert on.line == Cataloged.is_on.__wrapped__.__code__.co_firstlineno  # type: ignore[attr-defined]
    assert on.description == "First line of the doc."
    assert on.default is None  # a method's default is code, not a static value
    assert info["Cataloged.untyped"].type is None  # known once a request evaluates it


def test_catalog_json_round_trips() -> None:
    entry = {f.name: f for f in featureflag.catalog()}["Cataloged.is_on"].to_json()
    assert json.loads(json.dumps(entry))["name"] == "Cataloged.is_on"
    assert set(entry) == {
        "name",
        "type",
        "choices",
        "default",
        "kind",
        "module",
        "path",
        "line",
        "description",
    }


def test_cli_catalog_imports_modules_and_prints_json() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "featureflag", "catalog", "tests.fixtures.catalog_flags"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    flags = {f["name"]: f for f in json.loads(out)["flags"]}
    assert set(flags) == {"CatalogDemo.is_released", "CatalogDemo.is_variant", "catalog-lp"}
    assert flags["CatalogDemo.is_variant"]["choices"] == ["a", "b"]
    assert flags["catalog-lp"] == {
        "name": "catalog-lp",
        "type": "str",
        "choices": ["a", "b"],
        "default": "a",
        "kind": "intercept",
        "module": "tests.fixtures.catalog_flags",
        "path": flags["catalog-lp"]["path"],
        "line": flags["catalog-lp"]["line"],
        "description": "The landing page variant.",
    }
    assert flags["catalog-lp"]["path"].endswith("catalog_flags.py")
    assert flags["CatalogDemo.is_released"]["description"] == "Whether the demo is released."


def test_cli_catalog_unknown_module_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["catalog", "no_such_module_here"]) == 2
    assert "cannot import 'no_such_module_here'" in capsys.readouterr().err


def test_cli_push_needs_an_api_token(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FEATUREFLAG_API_TOKEN", raising=False)
    assert main(["catalog", "tests.fixtures.catalog_flags", "--push", "http://127.0.0.1:9/"]) == 2
    assert "FEATUREFLAG_API_TOKEN" in capsys.readouterr().err


def test_cli_service_goes_with_push(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["catalog", "json", "--service", "shop"])
    assert exited.value.code == 2
    assert "--service goes with --push" in capsys.readouterr().err


def test_cli_unknown_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["nope"]) == 2
    assert "unknown command 'nope'" in capsys.readouterr().err


def test_package_marks_itself_typed() -> None:
    assert (Path(featureflag.__file__).parent / "py.typed").exists()


def test_declare_lists_an_intercept_flag_before_its_first_call() -> None:
    name = featureflag.declare("reg-declared", False, description="Shown up front.")
    assert name == "reg-declared"
    info = {f.name: f for f in featureflag.catalog()}["reg-declared"]
    assert (info.type, info.default, info.kind) == ("bool", False, "intercept")
    assert info.description == "Shown up front."
    assert info.path == __file__
    # Its call sites (any number) use the declaration: no "declared twice" error.
    assert featureflag.intercept("reg-declared", lambda: False) is False
    with featureflag.overrides({"reg-declared": True}):
        assert featureflag.intercept("reg-declared", lambda: False) is True
        assert featureflag.intercept("reg-declared", False) is True  # a second site
    assert {f.name: f for f in featureflag.catalog()}["reg-declared"].line == info.line


def test_declare_checks_the_default_and_the_call_sites_type() -> None:
    with pytest.raises(featureflag.FlagDeclarationError, match="bool or str"):
        featureflag.declare("reg-bad", 3)  # type: ignore[arg-type]
    with pytest.raises(featureflag.FlagDeclarationError, match="not one of the choices"):
        featureflag.declare("reg-bad", "c", choices=["a", "b"])
    featureflag.declare("reg-typed", "a", choices=["a", "b"])
    with pytest.raises(featureflag.FlagDeclarationError, match="Make them agree"):
        featureflag.intercept("reg-typed", True)
    with featureflag.overrides({"reg-typed": "b"}):
        assert featureflag.intercept("reg-typed", lambda: "a") == "b"
    with pytest.raises(featureflag.OverrideTypeError, match="accepts only"):
        featureflag.overrides({"reg-typed": "z"})


def test_declare_twice_from_two_places_is_still_an_error() -> None:
    featureflag.declare("reg-twice", True)
    with pytest.raises(featureflag.DuplicateFlagError):
        featureflag.declare("reg-twice", True)
