"""Reliability under failure, with real processes: `docuhooks worker` subprocesses deliver to a
receiver in its own process (tests/delivery/receiver_process.py), which logs every request.

* kill: SIGKILL a worker mid-run; a new one finishes; every event arrives, and duplicates are
  at most the deliveries the dead worker held;
* outage: the receiver is down, then back; everything arrives, on the (compressed) schedule;
* database restart: a PostgreSQL cluster of this test's own restarts mid-run;
* two PostgreSQL workers never hold one delivery's request open at the same time.
"""

from __future__ import annotations

import asyncio
import dataclasses
import glob
import itertools
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.delivery.delivery_support import make_webhook, version_event
from tests.pgbouncer import running_pgbouncer
from tests.support import SiteUsers, make_site

from docuhooks.context import AppContext, database_of
from docuhooks.core.retry import RetrySchedule
from docuhooks.delivery import outbox
from docuhooks.identity.secrets import SecretBox
from docuhooks.settings import Settings
from docuhooks.store.database import Database
from docuhooks.store.schema import attempts, deliveries

pytestmark = pytest.mark.slow

RECEIVER = Path(__file__).with_name("receiver_process.py")
REQUIRE_POSTGRES = os.environ.get("DOCUHOOKS_REQUIRE_POSTGRES") == "1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


class Receiver:
    def __init__(self, tmp: Path, *args: str) -> None:
        self.port = free_port()
        self.log = tmp / f"received-{self.port}.log"
        self.log.touch()
        self._args = args
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(RECEIVER), str(self.port), str(self.log), *self._args]
        )
        wait_for_port(self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()

    def lines(self) -> list[tuple[str, str, float, float]]:
        """The deliveries the receiver has logged, each a whole line: a line it is writing
        as this reads (no newline yet) is left for the next read."""
        out = []
        text = self.log.read_text()
        for line in text[: text.rfind("\n") + 1].splitlines():
            event_id, delivery_id, arrival, departure = line.split()
            out.append((event_id, delivery_id, float(arrival), float(departure)))
        return out

    def event_ids(self) -> list[str]:
        return [line[0] for line in self.lines()]


class Workers:
    """`docuhooks worker` subprocesses over one database, with compressed timings."""

    def __init__(self, settings: Settings, tmp: Path, database_url: str, **env: str) -> None:
        self.env = {
            **os.environ,
            "DOCUHOOKS_DATABASE_URL": database_url,
            "DOCUHOOKS_DATA_DIR": str(settings.data_dir),
            "DOCUHOOKS_SECRET_KEY": settings.secret_key,
            "DOCUHOOKS_DEV_MODE": "1",
            "DOCUHOOKS_LOG_LEVEL": "warning",
            "DOCUHOOKS_WORKER_POLL_SECONDS": "0.2",
            "DOCUHOOKS_WORKER_LEASE_SECONDS": "5",
            "DOCUHOOKS_WORKER_CONCURRENCY": "16",
            "DOCUHOOKS_RETRY_SCHEDULE": "0,0.2s,0.5s,1s,1s,1s,1s,1s,1s",
            **env,
        }
        self.tmp = tmp
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = (self.tmp / f"worker-{len(self.processes)}.log").open("wb")
        process = subprocess.Popen(
            [sys.executable, "-m", "docuhooks", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait()


async def feed(
    ctx: AppContext, site_id: str, count: int, *, batch: int = 40, pause: float = 0.02
) -> list[str]:
    """Queue `count` events through the outbox while the workers run; survive DB restarts."""
    queued: list[str] = []
    while len(queued) < count:
        events = [version_event(site_id) for _ in range(min(batch, count - len(queued)))]
        try:
            async with ctx.db.transaction() as conn:
                for event in events:
                    await outbox.enqueue(
                        conn, event, work_group_id=None, template_id=None, now=ctx.now()
                    )
        except Exception:
            await asyncio.sleep(0.2)  # the database is restarting: write the batch again
            continue
        queued += [e.event_id for e in events]
        await asyncio.sleep(pause)
    return queued


async def eventually(check: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds} s waiting for {what}")
        await asyncio.sleep(0.1)


async def all_recorded(ctx: AppContext, seconds: float) -> None:
    """Wait until no delivery is pending: a worker writes an outcome after the receiver has
    answered, so a receipt alone does not mean the attempt is in the log yet."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            async with ctx.db.read() as conn:
                query = sa.select(sa.func.count()).where(deliveries.c.status == "pending")
                if int((await conn.execute(query)).scalar_one()) == 0:
                    return
        except Exception:
            pass  # the database is still coming back
        if time.monotonic() > deadline:
            raise AssertionError(f"deliveries still pending after {seconds} s")
        await asyncio.sleep(0.1)


async def leased_deliveries(ctx: AppContext) -> int:
    async with ctx.db.read() as conn:
        query = sa.select(sa.func.count()).where(
            deliveries.c.status == "pending", deliveries.c.lease_owner.is_not(None)
        )
        return int((await conn.execute(query)).scalar_one())


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    r = Receiver(tmp_path)
    yield r
    r.stop()


async def test_a_killed_worker_loses_nothing(
    ctx: AppContext, site: SiteUsers, settings: Settings, tmp_path: Path, receiver: Receiver
) -> None:
    workers = Workers(settings, tmp_path, settings.resolved_database_url)
    await kill_mid_run(ctx, site, workers, receiver)


# PgBouncer in transaction mode, in front of PostgreSQL: the workers and the producer go
# through it; the workers LISTEN on the direct URL (docs/operations.md, "PgBouncer").
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_killed_worker_loses_nothing_through_pgbouncer(
    ctx: AppContext, site: SiteUsers, settings: Settings, tmp_path: Path, receiver: Receiver
) -> None:
    direct = settings.resolved_database_url
    with running_pgbouncer(direct, pool_size=4) as bouncer:
        pooled_settings = dataclasses.replace(
            settings, database_url=bouncer.url_for(direct), database_pooler="transaction"
        )
        pooled = AppContext(settings=pooled_settings, db=database_of(pooled_settings), box=ctx.box)
        workers = Workers(
            pooled_settings,
            tmp_path,
            pooled_settings.database_url,
            DOCUHOOKS_DATABASE_POOLER="transaction",
            DOCUHOOKS_DATABASE_LISTEN_URL=direct,
        )
        try:
            await kill_mid_run(pooled, site, workers, receiver)
        finally:
            await pooled.db.dispose()


async def kill_mid_run(
    ctx: AppContext, site: SiteUsers, workers: Workers, receiver: Receiver
) -> None:
    """SIGKILL a worker mid-run, start another; every event arrives, and duplicates are at
    most the deliveries the dead worker held."""
    total = 2000
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    receiver.start()
    await make_webhook(ctx, site, receiver.url)
    try:
        first = workers.start()
        feeder = asyncio.create_task(feed(ctx, site.site_id, total))
        kill_at = rng.randrange(100, 1500)
        await eventually(lambda: len(receiver.lines()) >= kill_at, 40, f"{kill_at} deliveries")
        first.send_signal(signal.SIGKILL)
        first.wait()
        held = await leased_deliveries(ctx)
        workers.start()
        queued = await feeder
        await eventually(
            lambda: set(queued) <= set(receiver.event_ids()), 50, "every event to arrive"
        )
    finally:
        workers.stop_all()
    received = Counter(receiver.event_ids())
    duplicates = sum(received.values()) - len(received)
    assert set(received) == set(queued)
    assert duplicates <= held, f"seed {seed}: {duplicates} duplicates, {held} were in flight"


async def test_a_receiver_outage_is_retried_on_schedule_until_it_returns(
    ctx: AppContext, site: SiteUsers, settings: Settings, tmp_path: Path, receiver: Receiver
) -> None:
    schedule = "0,0.5s,1s,1s,2s,2s,2s,2s,2s,2s"
    delays = RetrySchedule.from_setting(schedule).delays
    await make_webhook(ctx, site, receiver.url)
    # The retry schedule alone: the destination's circuit breaker, which would postpone the
    # retries of an outage this long, is tested on its own.
    workers = Workers(
        settings,
        tmp_path,
        settings.resolved_database_url,
        DOCUHOOKS_RETRY_SCHEDULE=schedule,
        DOCUHOOKS_BREAKER_FAILURE_THRESHOLD="1000000",
    )
    try:
        workers.start()
        queued = await feed(ctx, site.site_id, 100, batch=20)

        async def failed_attempts() -> int:
            async with ctx.db.read() as conn:
                query = sa.select(sa.func.count()).where(attempts.c.error_class == "connect")
                return int((await conn.execute(query)).scalar_one())

        deadline = time.monotonic() + 20
        while await failed_attempts() < 200:  # every event tried at least twice, all refused
            assert time.monotonic() < deadline, "the worker is not retrying"
            await asyncio.sleep(0.1)
        receiver.start()
        await eventually(lambda: set(queued) <= set(receiver.event_ids()), 30, "the backlog")
        await all_recorded(ctx, 10)
    finally:
        workers.stop_all()

    async with ctx.db.read() as conn:
        statuses = set((await conn.execute(sa.select(deliveries.c.status))).scalars())
        rows = (
            await conn.execute(
                sa.select(
                    attempts.c.delivery_id, attempts.c.attempt_number, attempts.c.started_at
                ).order_by(attempts.c.delivery_id, attempts.c.attempt_number)
            )
        ).all()
    assert statuses == {"succeeded"}
    started: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        started[row.delivery_id].append(row.started_at.timestamp())
    for times in started.values():
        for number, (before, after) in enumerate(itertools.pairwise(times), start=1):
            gap = after - before
            # Never sooner than the schedule (less 20 % jitter); never much later either.
            assert gap >= delays[number] * 0.8 - 0.01, (number, gap)
            assert gap <= delays[number] * 1.2 + 2.0, (number, gap)


# Several workers share a PostgreSQL; SQLite runs one in-process worker, so only PostgreSQL.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_postgres_workers_never_send_one_delivery_at_once(
    ctx: AppContext, site: SiteUsers, settings: Settings, tmp_path: Path
) -> None:
    # Some answers take longer than a lease: only the heartbeat keeps the other worker off.
    receiver = Receiver(
        tmp_path, "--delay", "0.02", "--slow-share", "0.05", "--slow-seconds", "2.5"
    )
    receiver.start()
    await make_webhook(ctx, site, receiver.url)
    workers = Workers(
        settings,
        tmp_path,
        settings.resolved_database_url,
        **{"DOCUHOOKS_WORKER_LEASE_SECONDS": "1"},
    )
    try:
        workers.start()
        workers.start()
        queued = await feed(ctx, site.site_id, 400, batch=50)
        await eventually(lambda: set(queued) <= set(receiver.event_ids()), 50, "every event")
        # The receiver logs as it answers; the worker writes the attempt after that.
        await all_recorded(ctx, 20)
    finally:
        workers.stop_all()
        receiver.stop()
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _, delivery_id, arrival, departure in receiver.lines():
        spans[delivery_id].append((arrival, departure))
    overlapping = {
        delivery_id: sorted(times)
        for delivery_id, times in spans.items()
        if any(b[0] < a[1] for a, b in itertools.pairwise(sorted(times)))
    }
    assert not overlapping
    async with ctx.db.read() as conn:
        owners = (
            await conn.execute(sa.select(sa.func.count(sa.distinct(attempts.c.id))))
        ).scalar_one()
    assert owners >= len(queued)


# --- the database restarts: a PostgreSQL cluster of this test's own ---------------------------


@pytest.fixture
def own_postgres() -> Iterator[tuple[str, Callable[[], None]]]:
    """A throwaway cluster (never the shared server on 5432) and a function restarting it."""
    binaries = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not binaries or shutil.which("runuser") is None:
        reason = "PostgreSQL server binaries (initdb, pg_ctl) or runuser are not installed"
        if REQUIRE_POSTGRES:
            pytest.fail(f"DOCUHOOKS_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    bin_dir = Path(binaries[-1]).parent
    root = Path(tempfile.mkdtemp(prefix="docuhooks-pg-"))
    shutil.chown(root, "postgres", "postgres")
    data = root / "data"
    port = free_port()

    def as_postgres(*command: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *command],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.STDOUT,
        )

    pg_ctl = str(bin_dir / "pg_ctl")
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"
    as_postgres(str(bin_dir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres")
    as_postgres(pg_ctl, "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start")

    def restart() -> None:
        as_postgres(pg_ctl, "-D", str(data), "-m", "fast", "-w", "restart", "-o", options)

    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres", restart
    finally:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            check=False,
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def own_ctx(
    own_postgres: tuple[str, Callable[[], None]], tmp_path: Path
) -> AsyncIterator[AppContext]:
    url, _ = own_postgres
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        secret_key="test-secret-key-0123456789",
        dev_mode=True,
        log_json=False,
    )
    db = Database.from_url(url)
    await db.upgrade()
    context = AppContext(settings=settings, db=db, box=SecretBox(settings.secret_key))
    yield context
    await db.dispose()


async def test_workers_reconnect_after_a_database_restart(
    own_ctx: AppContext,
    own_postgres: tuple[str, Callable[[], None]],
    tmp_path: Path,
    receiver: Receiver,
) -> None:
    ctx = own_ctx
    url, restart = own_postgres
    site = await make_site(ctx)
    receiver.start()
    await make_webhook(ctx, site, receiver.url)
    workers = Workers(ctx.settings, tmp_path, url)
    try:
        workers.start()
        feeder = asyncio.create_task(feed(ctx, site.site_id, 600, batch=20, pause=0.05))
        await eventually(lambda: len(receiver.lines()) >= 150, 30, "deliveries before restart")
        await asyncio.to_thread(restart)
        at_restart = len(receiver.lines())
        queued = await feeder
        await eventually(
            lambda: set(queued) <= set(receiver.event_ids()), 50, "every event after the restart"
        )
        await all_recorded(ctx, 20)
    finally:
        workers.stop_all()
    assert at_restart < len(queued), "the restart happened mid-run"
    async with ctx.db.read() as conn:
        statuses = Counter((await conn.execute(sa.select(deliveries.c.status))).scalars())
    assert statuses == {"succeeded": len(queued)}
