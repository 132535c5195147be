"""docs/configuration.md stays true: every setting is documented with its real default."""

from __future__ import annotations

import re
from pathlib import Path

from docuhooks.settings import field_defaults

DOC = Path(__file__).parents[2] / "docs" / "configuration.md"


def test_every_setting_is_documented_with_its_default() -> None:
    rows = dict(re.findall(r"^\| `(\w+)` \| ([^|]+) \|", DOC.read_text(), re.MULTILINE))
    for name, default in field_defaults().items():
        assert name in rows, f"setting {name} is missing from docs/configuration.md"
        documented = rows[name].strip()
        if default in ("", None):
            assert documented == "*(empty)*", name
        elif isinstance(default, bool):
            assert documented == f"`{str(default).lower()}`", name
        else:
            assert documented == f"`{default}`", name
    assert set(rows) == set(field_defaults()), "docs list a setting that no longer exists"
