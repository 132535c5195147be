"""The event loop is never blocked for long on SQLite, where statements run on it.

A real server (uvicorn, every component `serve` runs) drains a few thousand events to a
receiver in its own process while a scraper process reads `/metrics` in a loop and a
recovery job queues a few thousand failed deliveries again. A task on the server's own loop
sleeps 5 ms at a time and records how late each wake-up is: 50 ms late (not counting time
the thread waited for a CPU the machine gave to other processes) means some statement or
step held the loop that long, which is the bound this test enforces.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from tests.delivery.delivery_support import make_webhook, version_event
from tests.support import LiveServer, SiteUsers

from docuhooks import server
from docuhooks.context import AppContext
from docuhooks.delivery import outbox
from docuhooks.store.schema import deliveries

RECEIVER = Path(__file__).with_name("receiver_process.py")
#: Pending events the worker drains, and failed ones the recovery queues again.
DRAIN = 3000
FAILED = 3000
#: The loop may be late by this much at most (the feature's bound).
MAX_LAG = 0.050
TICK = 0.005

pytestmark = pytest.mark.slow


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """SQLite only: on PostgreSQL no statement runs on the loop."""
    return f"sqlite:///{tmp_path / 'docuhooks.db'}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    port = _free_port()
    log = tmp_path / "received.log"
    log.touch()
    process = subprocess.Popen([sys.executable, str(RECEIVER), str(port), str(log)])
    try:
        _wait_for_port(port)
        yield f"http://127.0.0.1:{port}/hook", log
    finally:
        process.terminate()
        process.wait(10)


_SCRAPER = """
import sys, time, urllib.request
url, out = sys.argv[1], sys.argv[2]
while True:
    with urllib.request.urlopen(url, timeout=30) as answer:
        answer.read()
    with open(out, "a") as fh:
        fh.write(".")
    time.sleep(0.02)
"""


def _start_scraper(url: str, out: Path) -> subprocess.Popen[bytes]:
    """A process that reads `url` every 20 ms, adding a byte to `out` for each read.

    One appended byte per scrape, never a rewritten count: a scraper stopped between
    truncating and rewriting a count would leave the file empty, as if it never ran."""
    return subprocess.Popen([sys.executable, "-c", _SCRAPER, url, str(out)])


def _run_queue_wait() -> float:
    """Seconds this thread has spent runnable but waiting for a CPU (Linux schedstat)."""
    with open("/proc/thread-self/schedstat") as stat:
        return int(stat.read().split()[1]) / 1e9


class LagMonitor:
    """An app component that measures, on the server's loop, how late a 5 ms sleep wakes.

    On a machine shared with other work the clock alone also counts the time the kernel
    gave the CPU to other processes, which no change to the server can remove; so each
    wake-up's lateness is reduced by the time the loop's thread spent runnable but waiting
    for a CPU meanwhile (its schedstat run-queue time). What is left is time the loop spent
    running something or blocked in a call (a statement, a lock, a sleep): what the bound
    is about. Both are reported."""

    def __init__(self) -> None:
        #: The latest wake-up, less the time the thread waited for a CPU meanwhile.
        self.worst = 0.0
        #: The latest wake-up by the clock alone.
        self.worst_wall = 0.0
        self.ticks = 0
        self.measuring = False
        #: Where the server's thread was when the loop was late, for the failure message.
        self.stalls: list[str] = []
        #: Every wake-up over 20 ms late (ms), for the report.
        self.late: list[float] = []
        self._last = time.monotonic()
        self._thread_id = 0
        self._watching = threading.Event()

    def _watch(self) -> None:
        """From a thread of its own: the server thread's stack when the loop is late by half
        the bound or more (by the clock: a failure then shows where the worst stalls were)."""
        while not self._watching.wait(0.01):
            late = time.monotonic() - self._last > MAX_LAG / 2 + TICK
            if self.measuring and late and len(self.stalls) < 20:
                frame = sys._current_frames().get(self._thread_id)
                if frame is not None:
                    self.stalls.append("".join(traceback.format_stack(frame)[-12:]))
                self._last = time.monotonic()

    async def __call__(self, _ctx: AppContext) -> Callable[[], Awaitable[None]]:
        self._thread_id = threading.get_ident()
        watcher = threading.Thread(target=self._watch, daemon=True)
        watcher.start()

        async def run() -> None:
            while True:
                started, queued = time.monotonic(), _run_queue_wait()
                self._last = started
                await asyncio.sleep(TICK)
                if self.measuring:
                    late = time.monotonic() - started - TICK
                    blocked = max(0.0, late - (_run_queue_wait() - queued))
                    self.worst_wall = max(self.worst_wall, late)
                    self.worst = max(self.worst, blocked)
                    self.ticks += 1
                    if blocked > 0.02:
                        self.late.append(round(blocked * 1000, 1))

        task = asyncio.create_task(run(), name="lag-monitor")

        async def stop() -> None:
            self._watching.set()
            task.cancel()

        return stop


async def _seed(ctx: AppContext, site: SiteUsers, *, count: int, at: datetime, tag: str) -> None:
    """`count` events for every matching webhook, in transactions of 500."""
    for start in range(0, count, 500):
        async with ctx.db.transaction() as conn:
            for n in range(start, min(count, start + 500)):
                event = version_event(site.site_id, f"{tag}-{n}", 1)
                await outbox.enqueue(
                    conn,
                    event,
                    work_group_id=None,
                    template_id=None,
                    work_item_id=f"{tag}-{n}",
                    ordering_seq=None,
                    now=at,
                )


async def test_the_loop_is_never_blocked_50ms_during_a_drain_with_scrapes_and_a_recovery(
    ctx: AppContext, site: SiteUsers, receiver: tuple[str, Path], tmp_path: Path
) -> None:
    url, received = receiver
    hook, _ = await make_webhook(ctx, site, url)
    long_ago = datetime.now(UTC) - timedelta(hours=2)
    await _seed(ctx, site, count=FAILED, at=long_ago, tag="failed")
    async with ctx.db.transaction() as conn:
        await conn.execute(
            deliveries.update().values(status="failed", completed_at=long_ago, attempts=1)
        )
    await _seed(ctx, site, count=DRAIN, at=datetime.now(UTC), tag="drain")

    monitor = LagMonitor()
    components = [monitor, *server.components(ctx.settings)]
    scrapes = tmp_path / "scrapes"
    with LiveServer(ctx, components=components) as live:
        monitor.measuring = True
        scraper = _start_scraper(f"{live.url}/metrics", scrapes)
        try:
            async with httpx.AsyncClient(base_url=live.url, timeout=30) as http:
                made = await http.post(
                    f"/api/v1/webhooks/{hook}/recover",
                    json={"since": (long_ago - timedelta(minutes=1)).isoformat()},
                    headers=site.auth(),
                )
                assert made.status_code == 202, made.text
                link = made.json()["link"]
                async with asyncio.timeout(600):  # a hang, not a timing bound
                    # Watching the receiver's log only: this process's own work would
                    # contend with the server's thread for the GIL and count as its lag.
                    while True:
                        if len(received.read_text().splitlines()) >= DRAIN + FAILED:
                            break
                        await asyncio.sleep(0.5)
                    # Every redelivery arrived; the job's last (empty) batch ends it.
                    while True:
                        job = (await http.get(link, headers=site.auth())).json()
                        if job["status"] not in ("queued", "running"):
                            break
                        await asyncio.sleep(0.1)
        finally:
            monitor.measuring = False
            scraper.terminate()
            scraper.wait(10)
    scraped = len(scrapes.read_bytes()) if scrapes.exists() else 0
    print(
        f"\nloop lag: worst {monitor.worst * 1000:.1f} ms blocked "
        f"({monitor.worst_wall * 1000:.1f} ms by the clock) over {monitor.ticks} ticks; "
        f"{scraped} scrapes; recovery {job['redelivered']} of {job['total']}; "
        f"over 20 ms: {sorted(monitor.late)}"
    )
    assert job["status"] == "succeeded" and job["redelivered"] == FAILED
    assert scraped >= 5, "the scrapes ran beside the drain"
    assert monitor.ticks > 100
    stalls = "\n---\n".join(monitor.stalls)
    assert monitor.worst < MAX_LAG, (
        f"the loop was blocked {monitor.worst * 1000:.1f} ms; where it was:\n{stalls}"
    )
    async with ctx.db.read() as conn:
        left = await conn.execute(
            sa.select(sa.func.count()).where(deliveries.c.status == "pending")
        )
        assert left.scalar_one() == 0
