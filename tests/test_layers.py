"""The import contracts (`[tool.importlinter]` in pyproject.toml) hold on the tree, and they
really bite: the same check on a copy with one import turned upside down fails, naming it.

`lint-imports` runs on a copy of the packages in a temporary directory, put first on the
path, so the check reads the copy and the working tree is never touched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "docuhooks"
RECEIVER = ROOT / "receiver" / "src" / "docuhooks_receiver"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the project's contracts, on the package copied under `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    for package in (PACKAGE, RECEIVER):
        shutil.copytree(
            package, tmp_path / package.name, ignore=shutil.ignore_patterns("__pycache__")
        )
    return tmp_path


def test_the_tree_keeps_every_contract(tree: Path) -> None:
    result = _lint(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_an_import_from_a_lower_layer_up_breaks_the_layers(tree: Path) -> None:
    retry = tree / "docuhooks" / "core" / "retry.py"
    retry.write_text(retry.read_text() + "\nimport docuhooks.api.deps  # noqa: E402, F401\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "Imports run one way, from the edges down BROKEN" in result.stdout
    assert "docuhooks.core.retry -> docuhooks.api.deps" in result.stdout


def test_a_cycle_between_packages_breaks_the_acyclic_contract(tree: Path) -> None:
    """Two packages of one layer importing each other: no layer is crossed upward, the
    cycle alone is the fault."""
    answers = tree / "docuhooks" / "answers" / "limits.py"
    answers.write_text(answers.read_text() + "\nimport docuhooks.listen.report  # noqa\n")
    listen = tree / "docuhooks" / "listen" / "report.py"
    listen.write_text(listen.read_text() + "\nimport docuhooks.answers.limits  # noqa\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "No import cycles between the packages of docuhooks BROKEN" in result.stdout


def test_an_import_of_the_server_breaks_the_receiver_sdk(tree: Path) -> None:
    """The SDK installs alone (the docuhooks-receiver distribution): one import of the server
    would make it fail there."""
    verify = tree / "docuhooks_receiver" / "verify.py"
    verify.write_text(verify.read_text() + "\nimport docuhooks.core.signing  # noqa: E402, F401\n")
    result = _lint(tree)
    assert result.returncode != 0
    assert "The receiver SDK imports nothing of the server BROKEN" in result.stdout
    assert "docuhooks_receiver.verify -> docuhooks.core.signing" in result.stdout
