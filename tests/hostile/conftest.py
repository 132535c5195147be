"""The hostile-input suite builds its archives and templates with the platform tests'
factories (`tests/platform/hostile_docx.py`, `docx_factory.py`)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "platform"))
