"""docs/web-ui.md stays true: the screenshots it shows are there and are the ones
`python -m tests.ui.screenshots` regenerates; and the links between the docs (and the
README's) lead to files that exist."""

from __future__ import annotations

import re
from pathlib import Path

from tests.ui.screenshots import SHOWN

ROOT = Path(__file__).parents[2]
DOC = ROOT / "docs" / "web-ui.md"


def test_every_screenshot_shown_is_regenerated_by_the_script() -> None:
    shown = set(re.findall(r"images/([\w.-]+\.png)", DOC.read_text()))
    assert shown == set(SHOWN)
    for name in shown:
        assert (ROOT / "docs" / "images" / name).stat().st_size > 0, name


def test_links_to_documents_lead_somewhere() -> None:
    for page in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}"
