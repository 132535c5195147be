"""The server runs on its runtime dependencies alone: what only the demo or the benchmarks use
lives in extras (`demo`, `bench` in pyproject.toml), and `docuhooks demo` without its extra
says how to install it instead of failing with a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from docuhooks.cli import main

#: The extras' modules, made unimportable in the probe below (python-docx, which the demo
#: imports, is also what docxtpl renders with, so the server has it anyway).
EXTRAS_ONLY = ("aiohttp", "celery", "redis", "requests", "psutil")

PROBE = f"""
import importlib, pkgutil, sys
for name in {EXTRAS_ONLY!r}:
    sys.modules[name] = None  # importing it now raises ModuleNotFoundError
import docuhooks
for module in pkgutil.walk_packages(docuhooks.__path__, "docuhooks."):
    if module.name == "docuhooks.__main__" or module.name.split(".")[1] == "demo":
        continue  # __main__ runs the command line
    importlib.import_module(module.name)
print("imported")
"""


def test_every_module_but_the_demo_imports_without_the_extras() -> None:
    result = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "imported"


def test_the_demo_without_its_extra_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    missing = "aiohttp"
    for name in [
        m for m in sys.modules if m == "docuhooks.demo" or m.startswith("docuhooks.demo.")
    ]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)
    result = CliRunner().invoke(main, ["demo", "--no-wait"])
    assert result.exit_code == 1
    assert f"the demo needs {missing}" in result.output
    assert "pip install 'docuhooks[demo]'" in result.output
