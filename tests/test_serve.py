"""`docuhooks serve` as a newcomer starts it: a real process, a fresh directory. Its first
lines say where it answers, where the data is and how to make the first administrator, and
every line it logs has one format: JSON when its output is not a terminal, readable lines
on one."""

from __future__ import annotations

import html
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.docs.shell_docs import clean_env, free_port, start_server, stop


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as JSON; a line that is not fails the test."""
    events = []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except ValueError:
            raise AssertionError(f"a line that is not JSON: {line!r}\n{text}") from None
    return events


@pytest.mark.slow
def test_first_start_logs_json_lines_with_the_banner_and_the_next_step(tmp_path: Path) -> None:
    env = clean_env()
    server, port, log = start_server(tmp_path, env)
    try:
        login = httpx.get(f"http://127.0.0.1:{port}/ui/login")
        assert login.status_code == 200
        assert "No one can sign in yet" in login.text
    finally:
        stop(server)
    # The login page shows the banner's commands (lines continued with a backslash).
    shown = re.search(r"<pre[^>]*><code>(.*?)</code></pre>", login.text, re.S)
    assert shown is not None, login.text
    page_commands = html.unescape(shown.group(1)).replace("\\\n    ", "").splitlines()
    events = json_lines(log.read_text())
    (started,) = [e for e in events if e["event"] == "server.started"]
    data_dir = (tmp_path / "docuhooks-data").resolve()
    assert started["url"] == f"http://127.0.0.1:{port}"
    assert started["data_dir"] == str(data_dir)
    assert started["database"] == f"sqlite:///{data_dir / 'docuhooks.db'}"
    assert started["worker"] is True and started["dev_mode"] is False
    assert "docuhooks admin create-site" in started["next"]
    assert " && ".join(page_commands) == started["next"]
    # uvicorn's lines are JSON too; Alembic's set-up and migration steps are debug detail.
    assert any(e.get("logger") == "uvicorn.error" for e in events), events
    assert not any("alembic" in str(e.get("logger")) or "plugin" in e["event"] for e in events)
    assert not any("Uvicorn running" in e["event"] for e in events)

    # The next step, as printed, makes an administrator who can sign in (the password is
    # asked for); the second start then has no next step to suggest.
    made = subprocess.run(
        ["bash", "-e", "-c", started["next"]],
        cwd=tmp_path,
        env=env,
        input="a first password\na first password\n",
        capture_output=True,
        text=True,
        timeout=120,
        start_new_session=True,  # no terminal: the password is read from standard input
    )
    assert made.returncode == 0, made.stdout + made.stderr
    server, port, log = start_server(tmp_path, env, log=tmp_path / "second.log")
    try:
        signed_in = httpx.post(
            f"http://127.0.0.1:{port}/api/v1/auth/tokens",
            json={"loginName": "you@example.com", "password": "a first password"},
        )
        assert signed_in.status_code == 201, signed_in.text
        login = httpx.get(f"http://127.0.0.1:{port}/ui/login")
        assert "No one can sign in yet" not in login.text
    finally:
        stop(server)
    (again,) = [e for e in json_lines(log.read_text()) if e["event"] == "server.started"]
    assert "next" not in again


@pytest.mark.slow
def test_on_a_terminal_the_banner_and_every_log_line_are_readable(tmp_path: Path) -> None:
    port = free_port()
    primary, secondary = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "docuhooks", "serve", "--port", str(port), "--dev",
         "--no-worker", "--data-dir", "elsewhere"],
        cwd=tmp_path,
        env=clean_env(),
        stdin=subprocess.DEVNULL,
        stdout=secondary,
        stderr=secondary,
    )  # fmt: skip
    os.close(secondary)
    output = b""
    try:
        deadline = time.monotonic() + 60
        while b"    docuhooks admin create-user" not in output:
            assert time.monotonic() < deadline, output.decode(errors="replace")
            assert process.poll() is None, output.decode(errors="replace")
            if select.select([primary], [], [], 0.5)[0]:
                output += os.read(primary, 65536)
        process.send_signal(signal.SIGINT)
        while True:
            try:
                chunk = os.read(primary, 65536)
            except OSError:  # the process has gone and closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert process.wait(20) == 130
    finally:
        if process.poll() is None:
            process.kill()
        os.close(primary)
    text = re.sub(r"\x1b\[[0-9;]*m", "", output.decode()).replace("\r\n", "\n")
    data_dir = (tmp_path / "elsewhere").resolve()
    assert f"is serving http://127.0.0.1:{port}" in text
    assert f"  data      {data_dir}  (SQLite database docuhooks.db, secret key)" in text
    assert "  worker    off: deliveries wait for `docuhooks worker`" in text
    assert "  dev mode  on: webhooks may call loopback addresses" in text
    # Its worker is off: the workers that send its deliveries have settings of their own.
    assert (
        "            workers too only with `docuhooks worker --dev` (or DOCUHOOKS_DEV_MODE=true)"
        in text
    )
    # The data directory is not the default one: the commands name it.
    assert f"--base-url http://127.0.0.1:{port} --data-dir {data_dir})" in text
    assert not any(line.startswith("{") for line in text.splitlines()), text
    assert re.search(r"^\S+Z \[info +\] Shutting down +\[uvicorn\.error\]$", text, re.M), text
    assert "setup plugin" not in text and "Traceback" not in text and "Aborted" not in text


def test_a_worker_logs_in_the_same_one_format(tmp_path: Path) -> None:
    created = subprocess.run(
        [sys.executable, "-m", "docuhooks", "db", "upgrade", "--data-dir", "data"],
        cwd=tmp_path,
        env=clean_env(),
        capture_output=True,
    )
    assert created.returncode == 0, created.stderr
    log = tmp_path / "worker.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "docuhooks", "worker", "--data-dir", "data"],
            cwd=tmp_path,
            env=clean_env(),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 60
        while "worker.started" not in log.read_text():
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        process.terminate()
        process.wait(20)
    events = json_lines(log.read_text())
    assert [e["event"] for e in events] == ["worker.started", "worker.stopped"], events
    database = (tmp_path / "data" / "docuhooks.db").resolve()
    assert events[0]["database"] == f"sqlite:///{database}"
