"""`docuhooks demo --no-wait` as a newcomer runs it: a real process with the server, worker and
receiver in it, on SQLite, which must walk every step through and show all four event types."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest

EVENT_TYPES = (
    "InterviewLoadEvent",
    "CustomInterviewEvent",
    "PostProcessingEvent",
    "NewWorkItemVersionComplete",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run_demo(data_dir: Path, *options: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "docuhooks", "demo", "--no-wait", "--data-dir", str(data_dir)]
    return subprocess.run(
        [*command, "--receiver-port", str(free_port()), *options],
        capture_output=True,
        text=True,
        timeout=90,
    )


def receiver_saw(stdout: str) -> dict[str, str]:
    """The demo's closing summary: event type → what the receiver made of it."""
    summary = stdout.split("the receiver saw:\n", 1)[1]
    rows = (line.split(maxsplit=1) for line in summary.splitlines() if line.startswith("  "))
    return {event_type: outcome for event_type, outcome in rows}


def assert_every_step_worked(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, result.stdout + result.stderr
    steps = re.findall(r"^\[(\d)/6\]", result.stdout, re.MULTILINE)
    assert steps == ["1", "2", "3", "4", "5", "6"]
    verdicts = re.findall(r"^ {6}(OK|FAILED)$", result.stdout, re.MULTILINE)
    assert verdicts == ["OK"] * 6, result.stdout
    assert "every step worked" in result.stdout
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_the_demo_shows_all_four_event_types_then_continues_on_a_second_run(
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "demo"
    port = free_port()
    first = run_demo(data_dir, "--port", str(port))
    assert_every_step_worked(first)
    seen = receiver_saw(first.stdout)
    assert set(seen) == set(EVENT_TYPES), first.stdout
    for event_type in EVENT_TYPES:
        assert seen[event_type].endswith(("-> 200", "-> 204")), seen
    # The receiver verified each one with the webhook's HMAC secret and printed it.
    for event_type in EVENT_TYPES:
        assert re.search(rf"receiver: .* {event_type}  verified  -> 20[04]", first.stdout)
    # The prefill and the lookup reached the interview, and the letter says so.
    assert 'answers now: Client Name="Jane Smith"' in first.stdout
    assert re.search(r'answers now: .*Fee=1500, Contact Name=\["Ann Lee", ', first.stdout)
    assert "| Dear Jane Smith," in first.stdout
    assert (data_dir / "letter-v1.docx").read_bytes()[:2] == b"PK"

    state = json.loads((data_dir / "demo-state.json").read_text())
    assert f"site           Demo  {state['site_id']}" in first.stdout  # for `admin --site`
    assert state["auth_method"] == "HMAC"
    assert len(state["webhooks"]) == 4
    assert (data_dir / "demo-state.json").stat().st_mode & 0o077 == 0

    # A second run continues the same site (its port remembered) with the next version.
    second = run_demo(data_dir)
    assert_every_step_worked(second)
    assert "continuing the demo set up earlier" in second.stdout
    assert f"server http://127.0.0.1:{port}" in second.stdout
    assert (data_dir / "letter-v2.docx").exists()

    # Port taken? --port moves the existing demo: the site's address follows, so the
    # document URL the completion event carries (fetched in the last step) is the new one.
    moved = free_port()
    third = run_demo(data_dir, "--port", str(moved))
    assert_every_step_worked(third)
    assert f"server http://127.0.0.1:{moved}" in third.stdout
    assert f"GET http://127.0.0.1:{moved}/api/v1/workitems/" in third.stdout
    assert (data_dir / "letter-v3.docx").exists()


@pytest.mark.slow
def test_the_demo_runs_with_standard_webhooks_after_a_reset(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    data_dir.mkdir()
    (data_dir / "docuhooks.db").write_bytes(b"left over from an interrupted run")
    unfinished = run_demo(data_dir, "--port", str(free_port()))
    assert unfinished.returncode == 1 and "--reset" in unfinished.stderr

    result = run_demo(
        data_dir, "--port", str(free_port()), "--reset", "--auth-method", "StandardWebhooks"
    )
    assert_every_step_worked(result)
    assert set(receiver_saw(result.stdout)) == set(EVENT_TYPES)
    assert "(StandardWebhooks)" in result.stdout

    # --reset after a complete run: everything that run wrote is the demo's own.
    again = run_demo(data_dir, "--port", str(free_port()), "--reset")
    assert_every_step_worked(again)
    assert "(HMAC)" in again.stdout
    assert not (data_dir / "letter-v2.docx").exists()


def test_the_demo_never_deletes_a_directory_that_is_not_its_own(tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    result = run_demo(tmp_path, "--port", str(free_port()), "--reset")
    assert result.returncode == 1
    assert "not the demo's (precious.txt)" in result.stderr
    assert precious.read_text() == "keep me"


def _remembered(data_dir: Path, server_port: int, receiver_port: int) -> None:
    from docuhooks.demo.bootstrap import DemoState

    data_dir.mkdir()
    DemoState(server_port=server_port, receiver_port=receiver_port, auth_method="HMAC").write(
        data_dir
    )


def test_reset_checks_the_remembered_ports_before_deleting_anything(tmp_path: Path) -> None:
    data_dir = tmp_path / "demo"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        _remembered(data_dir, port, free_port())
        command = [sys.executable, "-m", "docuhooks", "demo", "--no-wait", "--reset"]
        result = subprocess.run(
            [*command, "--data-dir", str(data_dir)], capture_output=True, text=True, timeout=90
        )
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"the server cannot listen on 127.0.0.1:{port} (Address already in use)" in (
        result.stderr
    )
    assert json.loads((data_dir / "demo-state.json").read_text())["server_port"] == port


def test_reset_keeps_the_remembered_ports_unless_new_ones_are_given(tmp_path: Path) -> None:
    from docuhooks.demo import DemoOptions, _state

    data_dir = tmp_path / "demo"
    _remembered(data_dir, 8123, 9123)
    kept = _state(DemoOptions(data_dir=data_dir, reset=True, auth_method="AccessToken"))
    assert (kept.server_port, kept.receiver_port, kept.auth_method) == (8123, 9123, "AccessToken")
    assert not kept.bootstrapped
    moved = _state(DemoOptions(data_dir=data_dir, port=8124, reset=True))
    assert (moved.server_port, moved.receiver_port, moved.auth_method) == (8124, 9123, "HMAC")


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        (
            "DOCUHOOKS_WORKER_CONCURRENCY",
            "0",
            "Error: setting DOCUHOOKS_WORKER_CONCURRENCY: must be at least 1, not 0",
        ),
        (
            "DOCUHOOKS_ATTEMPT_RETENTION_DAYS",
            "0",
            "Error: setting DOCUHOOKS_ATTEMPT_RETENTION_DAYS: must be at least 1, not 0",
        ),
        ("HTTPS_PROXY", "socks5://proxy.internal:1080", "Error: HTTPS_PROXY: only http:// proxies"),
    ],
)
def test_reset_checks_every_setting_before_deleting_anything(
    tmp_path: Path, variable: str, value: str, message: str
) -> None:
    """The demo emptied its directory and then read the settings: a bad value stopped it,
    named, with the earlier demo's site, tokens and letters gone."""
    data_dir = tmp_path / "demo"
    _remembered(data_dir, free_port(), free_port())
    (data_dir / "receiver-answers.json").write_text('{"kept": true}')
    (data_dir / "letter-1.docx").write_bytes(b"PK earlier letter")
    before = {path.name: path.read_bytes() for path in data_dir.iterdir()}
    command = [sys.executable, "-m", "docuhooks", "demo", "--no-wait", "--reset"]
    result = subprocess.run(
        [*command, "--data-dir", str(data_dir)],
        env={**os.environ, variable: value},
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stderr.splitlines()[-1].startswith(message), result.stderr
    assert "Traceback" not in result.stderr
    assert {path.name: path.read_bytes() for path in data_dir.iterdir()} == before
