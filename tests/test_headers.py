"""featureflag.headers: the one place the names on the wire are spelled."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import featureflag
from featureflag import headers
from featureflag.headers import RESERVED_NAMES, asgi_name, wsgi_key

ROOT = Path(featureflag.__file__).resolve().parents[1]
HOME = Path(headers.__file__).resolve()

# Packages whose code must take the names from featureflag.headers. The service
# (server/featureflag_server) belongs here too once it imports them.
PACKAGES = ["featureflag", "server/featureflag_server"]

# Every form a name can take in code: as written, as ASGI bytes, as a WSGI key.
SPELLINGS = sorted(
    {
        form.lower()
        for name in (
            headers.TOKEN_HEADER,
            headers.TOKEN_COOKIE,
            headers.REPORT_HEADER,
            headers.ERROR_HEADER,
            headers.OFREP_PATH,
            headers.TRUNCATED,
        )
        for form in (name, wsgi_key(name))
    }
)


def _docstrings(tree: ast.Module) -> set[int]:
    """ids of the docstring nodes: prose may name a header, code may not."""
    found: set[int] = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and node.body
        ):
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def second_spellings(source: str, filename: str) -> list[str]:
    """``file:line: literal`` for every string or bytes literal that spells a name."""
    tree = ast.parse(source, filename)
    prose = _docstrings(tree)
    out = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Constant) or id(node) in prose:
            continue
        value = node.value
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        if isinstance(value, str) and any(s in value.lower() for s in SPELLINGS):
            out.append(f"{filename}:{node.lineno}: {node.value!r}")
    return out


@pytest.mark.parametrize("package", PACKAGES)
def test_names_are_spelled_only_in_featureflag_headers(package: str) -> None:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        if path.resolve() != HOME:
            found += second_spellings(path.read_text(), str(path.relative_to(ROOT)))
    assert found == [], "import these names from featureflag.headers instead"


def test_the_checker_finds_literals_in_code_but_not_in_prose() -> None:
    source = '''
"""Reads the Feature-Flag-Overrides header."""
def f(environ):
    """The featureflag_overrides cookie."""
    # Feature-Flags, in a comment
    return environ.get("HTTP_FEATURE_FLAG_OVERRIDES"), b"feature-flags", "/ofrep/v1/evaluate/flags"
'''
    assert sorted(second_spellings(source, "x.py")) == [
        "x.py:6: '/ofrep/v1/evaluate/flags'",
        "x.py:6: 'HTTP_FEATURE_FLAG_OVERRIDES'",
        "x.py:6: b'feature-flags'",
    ]


def test_the_contract_names() -> None:
    # docs/middleware.md and the browser extension depend on these exact values.
    assert headers.TOKEN_HEADER == "Feature-Flag-Overrides"
    assert headers.TOKEN_COOKIE == "featureflag_overrides"
    assert headers.REPORT_HEADER == "Feature-Flags"
    assert headers.ERROR_HEADER == "Feature-Flag-Override-Error"
    assert headers.OFREP_PATH == "/ofrep/v1/evaluate/flags"
    assert headers.VARY == "Cookie, Feature-Flag-Overrides"


def test_server_forms() -> None:
    assert asgi_name(headers.ERROR_HEADER) == b"feature-flag-override-error"
    assert wsgi_key(headers.TOKEN_HEADER) == "HTTP_FEATURE_FLAG_OVERRIDES"


def test_all_is_sorted_and_documented() -> None:
    assert headers.__all__ == sorted(headers.__all__, key=lambda n: (n.islower(), n))
    assert set(headers.__all__) == {
        n for n in vars(headers) if n.isidentifier() and not n.startswith("_")
    } - {"annotations"}
    for name in ("asgi_name", "wsgi_key"):
        assert getattr(headers, name).__doc__


def test_the_extension_knows_the_sdk_name_rule() -> None:
    # browser-extension/src/edits.ts mirrors featureflag/_names.py's NAME_RULE.
    from featureflag._names import NAME_RULE

    source = (ROOT / "browser-extension" / "src" / "edits.ts").read_text()
    for name in sorted(RESERVED_NAMES):
        assert f'"{name}"' in source
    assert " ".join(NAME_RULE.split()[:6]) in source
