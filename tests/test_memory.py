"""The start-up freeze: long-lived objects leave the collector's full passes."""

import gc
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from tests.docs.shell_docs import clean_env
from tests.support import free_loopback_port

from docuhooks.memory import freeze_long_lived, start_frozen
from docuhooks.server import components
from docuhooks.settings import Settings


@pytest.fixture
def unfrozen() -> Iterator[None]:
    gc.unfreeze()
    yield
    gc.unfreeze()  # the rest of the test session collects as usual


def test_freezing_moves_everything_alive_out_of_the_collectors_walk(unfrozen: None) -> None:
    assert gc.get_freeze_count() == 0
    kept = [[n] for n in range(10_000)]  # tracked containers, alive across the freeze
    freeze_long_lived()
    assert gc.get_freeze_count() >= len(kept)
    # A full collection now walks only what was made since: none of the frozen objects.
    assert sum(len(generation) for generation in (gc.get_objects(i) for i in range(3))) < (
        gc.get_freeze_count()
    )


async def test_serve_freezes_last_once_everything_has_started(
    unfrozen: None, tmp_path: Path
) -> None:
    parts = components(Settings(data_dir=tmp_path, secret_key="k" * 20))
    assert parts[-1] is start_frozen
    stop = await start_frozen(None)
    assert gc.get_freeze_count() > 0
    await stop()


#: Runs a `docuhooks` command (its arguments follow) as `python -m docuhooks` does, and at
#: exit prints how many objects the command left frozen.
_REPORTING = """
import atexit, gc, sys
atexit.register(lambda: print(f"frozen {gc.get_freeze_count()}", file=sys.stderr))
from docuhooks.cli import main
main()
"""

#: Most of what start-up built: the modules and the app alone are tens of thousands.
_START_UP_OBJECTS = 50_000


def _frozen(output: str) -> int:
    (line,) = [line for line in output.splitlines() if line.startswith("frozen ")]
    return int(line.removeprefix("frozen "))


def _started(process: subprocess.Popen[str], ready: Callable[[], bool], output: Path) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        assert process.poll() is None, output.read_text()
        assert time.monotonic() < deadline, output.read_text()
        time.sleep(0.1)


@pytest.mark.slow
def test_serve_and_worker_processes_freeze_what_start_up_built(tmp_path: Path) -> None:
    """In the processes themselves: `serve` once it answers, `worker` once it has started."""
    data = str(tmp_path / "data")
    port = free_loopback_port()
    output = tmp_path / "serve.log"
    with output.open("w") as log:
        serving = subprocess.Popen(
            [sys.executable, "-c", _REPORTING, "serve", "--port", str(port), "--data-dir", data],
            env=clean_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def answers() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        _started(serving, answers, output)
    finally:
        serving.send_signal(signal.SIGINT)
        serving.wait(30)
    assert _frozen(output.read_text()) > _START_UP_OBJECTS, output.read_text()

    output = tmp_path / "worker.log"
    with output.open("w") as log:
        working = subprocess.Popen(
            [sys.executable, "-c", _REPORTING, "worker", "--data-dir", data],
            env=clean_env(),
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
    try:
        _started(working, lambda: "worker.started" in output.read_text(), output)
    finally:
        working.terminate()
        working.wait(30)
    assert _frozen(output.read_text()) > _START_UP_OBJECTS, output.read_text()


@pytest.mark.slow
def test_the_demo_process_freezes_what_start_up_built(tmp_path: Path) -> None:
    demo = subprocess.run(
        [sys.executable, "-c", _REPORTING, "demo", "--no-wait", "--data-dir",
         str(tmp_path / "demo"), "--port", str(free_loopback_port()),
         "--receiver-port", str(free_loopback_port())],
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert _frozen(demo.stderr) > _START_UP_OBJECTS, demo.stderr
