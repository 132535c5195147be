"""Regenerate the screenshots the docs show: `python -m tests.ui.screenshots`.

The browser tests write a screenshot of every page, at desktop and phone width, to
`screenshots/` (ignored by git). This runs them, then copies the few that
`docs/web-ui.md` shows into `docs/images/`. It needs what the browser tests need (Chromium,
npm for axe-core) and fails rather than skips without them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.ui.browser_support import SCREENSHOTS

ROOT = Path(__file__).resolve().parents[2]
DOC_IMAGES = ROOT / "docs" / "images"
#: The screenshots docs/web-ui.md shows, by the name the browser tests give them.
SHOWN = (
    "webhook_list-desktop.png",
    "webhook_page-desktop.png",
    "dashboard-desktop.png",
    "event_list-phone.png",
    "template_page-desktop.png",
    "new_template-phone.png",
)
TESTS = ("tests/ui/test_pages.py", "tests/ui/test_browser_templates.py")


def main() -> int:
    env = {**os.environ, "DOCUHOOKS_REQUIRE_BROWSER": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *TESTS],
        cwd=ROOT,
        env=env,
        check=False,
    )
    if run.returncode != 0:
        print("the browser tests failed: no screenshot was copied", file=sys.stderr)
        return run.returncode
    DOC_IMAGES.mkdir(exist_ok=True)
    for name in SHOWN:
        shutil.copyfile(SCREENSHOTS / name, DOC_IMAGES / name)
        print(f"docs/images/{name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
