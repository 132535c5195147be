"""The server runs on its runtime dependencies alone: what only the demo, the benchmarks or
exported traces use lives in extras (`demo`, `bench`, `otel` in pyproject.toml), and
`docuhooks demo` without its extra says how to install it instead of failing with a
traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: The extras' modules, made unimportable in the probe below (python-docx, which the demo
#: imports, is also what docxtpl renders with, so the server has it anyway; recent FastAPI
#: releases depend on OpenTelemetry's API, but its SDK comes only with the `otel` extra).
EXTRAS_ONLY = ("aiohttp", "celery", "redis", "requests", "psutil", "opentelemetry.sdk")

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


DEMO_WITHOUT = """
import sys
sys.modules[sys.argv[1]] = None  # importing it now raises ModuleNotFoundError
from docuhooks.cli import main
main(["demo", "--no-wait"])
"""


def test_the_demo_without_its_extra_says_how_to_install_it(tmp_path: Path) -> None:
    # In a process of its own: in this one the demo may be imported already (and would run).
    missing = "aiohttp"
    result = subprocess.run(
        [sys.executable, "-c", DEMO_WITHOUT, missing],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"the demo needs {missing}" in result.stderr
    assert "pip install 'docuhooks[demo]'" in result.stderr
    assert not (tmp_path / "docuhooks-demo").exists()  # nothing was made
