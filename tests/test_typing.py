"""mypy sees through @trap: decorated classes and functions keep their types."""

from __future__ import annotations

import textwrap
from pathlib import Path

from mypy import api


def test_mypy_keeps_the_types_of_trapped_code(tmp_path: Path) -> None:
    source = tmp_path / "typed_use.py"
    source.write_text(
        textwrap.dedent(
            """
            import featureflag

            @featureflag.trap(only=r"^is_")
            class Feature:
                def is_on(self, user: str) -> bool:
                    return bool(user)

            @featureflag.trap
            def variant() -> str:
                return "a"

            reveal_type(Feature().is_on)
            reveal_type(variant)
            reveal_type(featureflag.intercept("typing-x", lambda: 3 > 2))
            Feature().is_on(1)
            """
        )
    )
    stdout, _, status = api.run(
        [
            str(source),
            "--strict",
            "--no-incremental",
            "--no-error-summary",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    assert 'Revealed type is "def (user: str) -> bool"' in stdout
    assert 'Revealed type is "def () -> str"' in stdout
    assert 'Revealed type is "bool"' in stdout
    assert 'Argument 1 to "is_on" of "Feature" has incompatible type "int"' in stdout
    assert status == 1
