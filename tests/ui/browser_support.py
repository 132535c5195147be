"""What the browser tests share: Debian's Chromium driven by Playwright, and axe-core, the
accessibility checker, installed from the npm registry into a cache folder (never into the
repository).

Without Chromium, npm or the registry these tests skip and say why, except in CI (`CI=true`)
or with `DOCUHOOKS_REQUIRE_BROWSER=1`, where a missing part is a failure."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ViewportSize

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
WAIT_MS = 20_000

#: The axe-core release the accessibility test runs: pinned, so a new rule set cannot turn
#: the suite red overnight; raise it on purpose and fix what the new rules find.
AXE_VERSION = "4.14.1"
#: The impacts that fail the test; `moderate` and `minor` are reported, not failed.
AXE_FAILING_IMPACTS = ("serious", "critical")

DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
#: Where the browser tests leave screenshots for a reviewer (ignored by git).
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"


def _required() -> bool:
    return os.environ.get("CI") == "true" or os.environ.get("DOCUHOOKS_REQUIRE_BROWSER") == "1"


def _missing(reason: str) -> None:
    if _required():
        pytest.fail(f"the browser tests are required here, but {reason}")
    pytest.skip(reason)


def require_chromium() -> None:
    if not CHROMIUM.exists():
        _missing(f"{CHROMIUM} is missing (apt-get install chromium)")


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "docuhooks-tests" / f"axe-core-{AXE_VERSION}"


@functools.cache
def _install_axe() -> str | Path:
    """The path of axe.min.js, or why it could not be installed."""
    folder = _cache_dir()
    script = folder / "node_modules" / "axe-core" / "axe.min.js"
    if script.exists():
        return script
    npm = shutil.which("npm")
    if npm is None:
        return "npm is missing (apt-get install npm)"
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [
            npm,
            "install",
            "--no-save",
            "--no-audit",
            "--no-fund",
            "--prefix",
            str(folder),
            f"axe-core@{AXE_VERSION}",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if done.returncode != 0 or not script.exists():
        return f"npm could not install axe-core@{AXE_VERSION}: {done.stderr.strip()[-500:]}"
    return script


def axe_source() -> str:
    """axe.min.js, installed on first use."""
    found = _install_axe()
    if isinstance(found, str):
        _missing(found)
    assert isinstance(found, Path)
    return found.read_text(encoding="utf-8")


def axe_problems(page: Any, source: str) -> list[str]:
    """Run axe-core on the page as it is now; one line per failing violation and element.

    axe is evaluated through the DevTools protocol rather than added as a <script>: the
    pages' Content-Security-Policy allows no inline script, and stays on for the check."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(source)
    result = page.evaluate("async () => await axe.run(document, {resultTypes: ['violations']})")
    problems = []
    for violation in result["violations"]:
        if violation["impact"] not in AXE_FAILING_IMPACTS:
            continue
        for node in violation["nodes"]:
            problems.append(
                f"{violation['impact']} {violation['id']} ({violation['help']}) at "
                f"{' '.join(node['target'])}: {node.get('failureSummary', '').strip()}"
            )
    return problems
