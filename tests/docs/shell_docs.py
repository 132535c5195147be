"""Running the documentation's shell blocks as a reader would: in one bash session, against
a real `docuhooks serve`, with every HTTP status curl received on record.

The docs address the server at 127.0.0.1:8000; the tests run it on a free port instead and
rewrite that address, which is the only change made to a block."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
DOCS_ADDRESS = "127.0.0.1:8000"
#: What the curl wrapper writes to stderr after each transfer.
_CALL = re.compile(r"^docs-curl: (\d{3}) (\S+) (\S+)$", re.MULTILINE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def shell_blocks(doc: Path, section: str | None = None) -> list[str]:
    """The ```bash / ```sh blocks of `doc`, or of its `## section` only, in order."""
    text = doc.read_text(encoding="utf-8")
    if section is not None:
        start = text.index(f"\n## {section}\n")
        end = text.find("\n## ", start + 1)
        text = text[start : end if end != -1 else None]
    return re.findall(r"^```(?:bash|sh)\n(.*?)^```", text, flags=re.S | re.M)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a reader who has installed docuhooks: its commands and python3 on
    the PATH, and no DOCUHOOKS_* setting from the test run leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCUHOOKS_")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


@dataclass(frozen=True)
class Call:
    status: int
    method: str
    url: str


@dataclass(frozen=True)
class Session:
    returncode: int
    stdout: str
    stderr: str
    calls: list[Call]


def run_blocks(
    blocks: list[str],
    cwd: Path,
    env: dict[str, str],
    port: int,
    replace: dict[str, str] | None = None,
) -> Session:
    """Run `blocks` in order in one `bash -e -o pipefail`, as one pasted script, with the
    docs' address moved to `port` (and each of `replace` replaced). A curl on the PATH
    ahead of the real one records each transfer's status, method and URL on stderr (without
    touching what it prints)."""
    shim_dir = cwd / ".docs-bin"
    shim_dir.mkdir(exist_ok=True)
    real = shutil.which("curl")
    assert real is not None, "curl is needed to run the docs"
    shim = shim_dir / "curl"
    shim.write_text(
        "#!/bin/sh\n"
        f"exec {real} -w '%{{stderr}}docs-curl: %{{http_code}} %{{method}} %{{url_effective}}\\n'"
        ' "$@"\n'
    )
    shim.chmod(0o755)
    script = "\n".join(blocks).replace(DOCS_ADDRESS, f"127.0.0.1:{port}")
    for old, new in (replace or {}).items():
        assert old in script, old
        script = script.replace(old, new)
    session_env = {**env, "PATH": f"{shim_dir}{os.pathsep}{env['PATH']}"}
    out, err = cwd / ".docs-stdout", cwd / ".docs-stderr"
    # Files, not pipes: a server the script starts in the background keeps them open.
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            ["bash", "-e", "-o", "pipefail", "-c", script],
            cwd=cwd,
            env=session_env,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,  # what the script starts in the background stops with it
        )
        try:
            process.wait(timeout=180)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    stdout_text, stderr_text = out.read_text(), err.read_text()
    calls = [Call(int(c), method, url) for c, method, url in _CALL.findall(stderr_text)]
    return Session(process.returncode, stdout_text, stderr_text, calls)


def start_server(
    cwd: Path, env: dict[str, str], *args: str, log: Path | None = None
) -> tuple[subprocess.Popen[bytes], int, Path]:
    """`docuhooks serve` started in `cwd` as a reader would, answering /healthz."""
    port = free_port()
    log = log or cwd / "server.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "docuhooks", "serve", "--port", str(port), *args],
        cwd=cwd,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200:
                return process, port, log
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the server did not start: " + log.read_text())


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
