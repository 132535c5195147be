"""The README's curl walk-through, run as written against a live `docuhooks serve` started the
way the quick start says (from the same directory, with no settings)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.docs.shell_docs import ROOT, clean_env, run_blocks, shell_blocks, start_server, stop

README = ROOT / "README.md"
SECTION = "Bootstrap a site and manage webhooks with curl"


@pytest.mark.slow
def test_the_curl_section_runs_as_written(tmp_path: Path) -> None:
    blocks = shell_blocks(README, SECTION)
    assert blocks, "the README lost its curl section"
    script = "\n".join(blocks)
    env = clean_env()
    server, port, log = start_server(tmp_path, env)
    try:
        session = run_blocks(blocks, tmp_path, env, port)
    finally:
        stop(server)
    assert session.returncode == 0, session.stdout + session.stderr + log.read_text()
    # Every curl of the section ran, and each answered 2xx: a missing id would be a 307 to
    # the list or a 404, which `curl -s` prints nothing or an error body for.
    assert len(session.calls) == script.count("curl -s"), session.stderr
    wrong = [call for call in session.calls if not 200 <= call.status < 300]
    assert wrong == [], session.stdout + session.stderr
    methods = [(call.method, call.url.rsplit("/webhooks", 1)[1]) for call in session.calls]
    webhook_id = methods[2][1].strip("/")
    assert methods == [
        ("POST", ""),
        ("GET", ""),
        ("GET", f"/{webhook_id}"),
        ("PATCH", f"/{webhook_id}"),
        ("POST", f"/{webhook_id}/deactivate"),
        ("POST", f"/{webhook_id}/activate"),
        ("POST", f"/{webhook_id}/regenerate-secret"),
        ("DELETE", f"/{webhook_id}"),
    ]
    assert len(webhook_id) == 36
    # The create call's reply, with its secret, is shown to the reader.
    assert '"secret":' in session.stdout and webhook_id in session.stdout
    assert '"timeoutSeconds":30' in session.stdout.replace(" ", "")
