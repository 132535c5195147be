"""docs/platform.md's commands, run as written: they start their own server, bootstrap a
site, build a template, walk an interview through and fetch the document."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.docs.shell_docs import ROOT, clean_env, free_port, run_blocks, shell_blocks

DOC = ROOT / "docs" / "platform.md"
#: Blocks a receiver runs with what an event gave it (a service principal's password, a
#: document's URL), shown for the receiver's side; the rest run as one session.
RECEIVER_SIDE = ("RECEIVER_TOKEN", "$RAUTH")


@pytest.mark.slow
def test_the_platform_guide_runs_as_written(tmp_path: Path) -> None:
    blocks = [b for b in shell_blocks(DOC) if not any(m in b for m in RECEIVER_SIDE)]
    assert len(blocks) >= 12, "the guide lost its commands"
    port = free_port()
    session = run_blocks(
        blocks,
        tmp_path,
        clean_env(),
        port,
        replace={
            "--port 8000": f"--port {port}",
            "/tmp/docuhooks-platform-demo": str(tmp_path / "data"),
        },
    )
    assert session.returncode == 0, session.stdout + session.stderr
    calls = [call for call in session.calls if not call.url.endswith("/healthz")]
    wrong = [call for call in calls if not 200 <= call.status < 300]
    assert wrong == [], session.stderr
    script = "\n".join(blocks)
    assert len(calls) == script.count("curl -sf") - 1  # all but the wait for /healthz
    assert (tmp_path / "jane.docx").read_bytes()[:2] == b"PK"
    assert (tmp_path / "quick.docx").read_bytes()[:2] == b"PK"
