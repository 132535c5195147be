"""docs/receiving.md promises its snippets run as they stand: run them, in order."""

import contextlib
import io
import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "receiving.md"


def test_every_python_snippet_runs_in_order() -> None:
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(), flags=re.S | re.M)
    assert len(blocks) >= 10, "the guide lost its examples"
    namespace: dict[str, object] = {"__name__": "receiving_md"}
    output = io.StringIO()
    for number, block in enumerate(blocks, start=1):
        with contextlib.redirect_stdout(output):
            try:
                exec(compile(block, f"{DOC.name} snippet {number}", "exec"), namespace)
            except Exception as exc:
                raise AssertionError(f"snippet {number} fails:\n{block}") from exc
    printed = output.getvalue()
    assert "InterviewLoadEvent ann@example.com Lease for Jane" in printed
    assert "401 BadSignature" in printed
    assert "<AnswerSet" in printed


def test_every_linked_file_exists() -> None:
    for link in re.findall(r"\]\((\.\./[^)]+)\)", DOC.read_text()):
        assert (DOC.parent / link).resolve().exists(), link
