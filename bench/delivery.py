"""Notification delivery throughput and latency, against the ceiling and a hand-built baseline.

    .venv/bin/python bench/delivery.py [--events 5000] [--concurrency 64] [--latency-seconds 8]
                                       [--skip-postgres] [--skip-celery]
    .venv/bin/python bench/delivery.py --backlog 1000000 [--store sqlite|postgresql]

A receiver process answers every POST with 200 at once and records when each event arrived
(wall clock). Then, in the same run, against that receiver:

1. **ceiling**: the raw aiohttp client posting one signed notification body, the same bytes
   every time, `--concurrency` requests at once;
2. **docuhooks** on SQLite and on PostgreSQL (a throwaway `bench_<random>` database on
   127.0.0.1:5432, dropped after): `--events` events written through the outbox
   (`outbox.enqueue`, 500 per transaction, untimed), then the real `Worker` (concurrency
   `--concurrency` with as many connections to the receiver, as the ceiling's client opens;
   batch 100) started in this process, as `docuhooks serve` runs it, and timed
   until the receiver has every one; each delivery is signed (HMAC JWT), sent, and its attempt
   and outcome written to the store;
3. **celery**: `bench/celery_delivery.py`, a Celery task that signs and POSTs with requests,
   on a Redis broker (127.0.0.1:6379/15), its worker a subprocess with `--pool threads
   --concurrency <same>`; the tasks are queued first, then the worker starts.

Rates are measured at the receiver: deliveries over the time from the first arrival to the
last. Then each runs again at half its measured rate for `--latency-seconds`, one event at a
time: docuhooks commits each event in a transaction of its own (then wakes the worker, as the
API does), Celery's producer calls `.delay()`, the ceiling just sends. Latency is the
receiver's arrival time minus the producer's commit (or send) time.

With the `otel` extra and `OTEL_*` set (as for `docuhooks serve`), the worker records its
spans: `OTEL_TRACES_EXPORTER=none` measures what recording them costs.

`--workers N [M …]` runs, after SQLite and PostgreSQL in process, the PostgreSQL store with N
(then M, …) `docuhooks worker` processes on one database, as a scaled-out installation runs:
the events are committed in one transaction once every worker listens, the drain timed as
above, then the end-to-end run with this process's producers. It reports each worker's CPU
per delivery and the CPU of the database's backends for this database (psutil on their
pids), the load average, and, with `--count-round-trips`, the round trips per delivery
(workers) and per event (producers), counted on the wire by a relay
(`bench/pg_round_trips.py`; the relay's own work slows the run, so rates are read from a
run without it).

`--backlog N` inserts N pending deliveries with bulk SQL (no outbox, no API), then starts
`docuhooks worker` as a subprocess and reports the drain rate of the first and the last 10 %
of the deliveries and the worker process's peak RSS (sampled every 0.2 s with psutil).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import structlog
import uvloop
from aiohttp import web
from sqlalchemy.engine import make_url

from docuhooks import tracing
from docuhooks.context import AppContext
from docuhooks.core.clock import utcnow
from docuhooks.core.events import Actor, Event, EventType
from docuhooks.core.ids import uuid7
from docuhooks.core.signing import SigningSecret, WebhookTarget, build_request
from docuhooks.delivery import outbox
from docuhooks.delivery.attempts import USER_AGENT
from docuhooks.delivery.worker import Worker
from docuhooks.identity import service as identity
from docuhooks.identity.models import Principal, Role
from docuhooks.identity.secrets import SecretBox
from docuhooks.logs import configure
from docuhooks.memory import freeze_long_lived
from docuhooks.settings import Settings
from docuhooks.store.database import Database
from docuhooks.store.schema import deliveries, events
from docuhooks.webhooks import service as webhook_service

BENCH_DIR = Path(__file__).resolve().parent
POSTGRES_ADMIN = os.environ.get(
    "DOCUHOOKS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
REDIS_URL = os.environ.get("DOCUHOOKS_BENCH_REDIS_URL", "redis://127.0.0.1:6379/15")
SECRET_KEY = "bench-secret-key-0123456789"
ACTOR = Actor(id=str(uuid.uuid4()), login_name="ann@bench.example", name="Ann", email="ann@x")
OUTBOX_CHUNK = 500
#: Concurrent producers in the end-to-end run (API requests completing versions, say).
PRODUCERS = 8

Producer = Callable[[int], Awaitable[tuple[str, float]]]


# --- the receiver -----------------------------------------------------------------------------


def _receiver(port: int) -> None:
    """Answers 200 at once; records arrival times (and, in latency mode, per event id)."""
    times: list[float] = []
    by_event: dict[str, float] = {}
    state = {"track": False}

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        now = time.time()
        times.append(now)
        if state["track"]:
            by_event[request.headers.get("X-Docuhooks-Event-Id", "")] = now
        return web.Response()

    async def count(_: web.Request) -> web.Response:
        return web.json_response({"count": len(times)})

    async def reset(request: web.Request) -> web.Response:
        times.clear()
        by_event.clear()
        state["track"] = request.query.get("track") == "1"
        return web.json_response({})

    async def arrivals(_: web.Request) -> web.Response:
        return web.json_response({"times": times, "byEvent": by_event})

    app = web.Application()
    app.router.add_post("/hook", hook)
    app.router.add_get("/count", count)
    app.router.add_post("/reset", reset)
    app.router.add_get("/arrivals", arrivals)
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)


class Receiver:
    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/hook"
        self._base = f"http://127.0.0.1:{self.port}"
        self._process = multiprocessing.get_context("spawn").Process(
            target=_receiver, args=(self.port,), daemon=True
        )

    async def start(self) -> None:
        self._process.start()
        async with aiohttp.ClientSession() as http:
            for _ in range(200):
                try:
                    async with http.get(f"{self._base}/count"):
                        return
                except aiohttp.ClientError:
                    await asyncio.sleep(0.05)
        raise RuntimeError("the receiver did not start")

    def stop(self) -> None:
        self._process.terminate()
        self._process.join(5)

    async def _call(self, method: str, path: str) -> Any:
        async with aiohttp.ClientSession() as http, http.request(method, self._base + path) as r:
            return await r.json()

    async def reset(self, *, track: bool = False) -> None:
        await self._call("POST", f"/reset?track={int(track)}")

    async def count(self) -> int:
        return int((await self._call("GET", "/count"))["count"])

    async def wait_for(self, expected: int, timeout: float) -> None:  # noqa: ASYNC109
        deadline = time.monotonic() + timeout
        while (got := await self.count()) < expected:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the receiver got {got} of {expected} within {timeout:.0f} s")
            await asyncio.sleep(0.1)

    async def arrivals(self) -> tuple[list[float], dict[str, float]]:
        body = await self._call("GET", "/arrivals")
        return sorted(body["times"]), body["byEvent"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# --- measurements -----------------------------------------------------------------------------


@dataclass
class Result:
    name: str
    #: Deliveries per second with the events already committed (what the sender sustains).
    rate: float
    #: Deliveries per second with producers committing events meanwhile, one per transaction.
    e2e_rate: float | None = None
    #: Commit-to-receipt latency at half `e2e_rate`.
    p50_ms: float | None = None
    p99_ms: float | None = None
    #: For worker processes: what the drain cost, by who paid it (a line each).
    costs: list[str] = field(default_factory=list)


def _rate(times: list[float]) -> float:
    if len(times) < 2:
        return 0.0
    return (len(times) - 1) / (times[-1] - times[0])


def _percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def _latencies(sent: dict[str, float], arrived: dict[str, float]) -> tuple[float, float]:
    missing = set(sent) - set(arrived)
    if missing:
        raise RuntimeError(f"{len(missing)} events never arrived")
    values = [(arrived[key] - sent[key]) * 1000 for key in sent]
    return statistics.median(values), _percentile(values, 0.99)


async def _paced(rate: float, seconds: float, send: Any) -> dict[str, float]:
    """Call `send(i)` `rate` times a second for `seconds`; returns {key: commit time}."""
    sent: dict[str, float] = {}
    interval = 1.0 / rate
    start = time.monotonic()
    pending: set[asyncio.Task[None]] = set()

    async def one(i: int) -> None:
        key, moment = await send(i)
        sent[key] = moment

    for i in range(max(1, int(rate * seconds))):
        delay = start + i * interval - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(i))
        pending.add(task)
        task.add_done_callback(pending.discard)
    if pending:
        await asyncio.gather(*pending)
    return sent


def _sample_event(site_id: str, index: int, base: str = "https://bench.example") -> Event:
    item, version, document = (str(uuid.uuid4()) for _ in range(3))
    return Event(
        event_type=EventType.NEW_WORK_ITEM_VERSION_COMPLETE,
        site_id=site_id,
        created_by=ACTOR,
        data={
            "workItemId": item,
            "workItemName": f"Matter {index}",
            "workItemVersionId": version,
            "versionNumber": 1,
            "workGroupId": str(uuid.uuid4()),
            "templateId": str(uuid.uuid4()),
            "templateName": "Engagement letter",
            "documents": [
                {
                    "id": document,
                    "name": "Engagement letter",
                    "fileName": "Engagement letter.docx",
                    "contentType": "application/vnd.openxmlformats-officedocument."
                    "wordprocessingml.document",
                    "size": 18211,
                    "sha256": "9f" * 32,
                    "url": f"{base}/api/v1/workitems/{item}/versions/{version}"
                    f"/documents/{document}/content",
                }
            ],
        },
        created_date=utcnow(),
    )


async def ceiling(
    receiver: Receiver, n: int, concurrency: int, body: bytes, headers: Any
) -> Result:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def post() -> None:
            async with http.post(receiver.url, data=body, headers=headers) as response:
                await response.read()
                assert response.status == 200

        for _ in range(concurrency):  # open the connections first, as the worker's pool has
            await post()
        await receiver.reset()
        remaining = n

        async def lane() -> None:
            nonlocal remaining
            while remaining > 0:
                remaining -= 1
                await post()

        await asyncio.gather(*(lane() for _ in range(concurrency)))
        times, _ = await receiver.arrivals()
        return Result("ceiling (raw aiohttp)", _rate(times))


async def end_to_end(
    receiver: Receiver, result: Result, n: int, seconds: float, produce: Producer
) -> None:
    """Fill in `result`'s end-to-end rate (`PRODUCERS` producers committing `n` events as fast
    as they can while the sender runs) and its latency at half that rate."""
    await receiver.reset()
    started = time.time()
    counter = iter(range(n))

    async def producer() -> None:
        for i in counter:
            await produce(i)

    await asyncio.gather(*(producer() for _ in range(PRODUCERS)))
    await receiver.wait_for(n, timeout=max(120.0, n / 20))
    times, _ = await receiver.arrivals()
    result.e2e_rate = n / (times[-1] - started)

    await receiver.reset(track=True)
    sent = await _paced(result.e2e_rate / 2, seconds, produce)
    await receiver.wait_for(len(sent), timeout=120)
    _, arrived = await receiver.arrivals()
    result.p50_ms, result.p99_ms = _latencies(sent, arrived)


# --- docuhooks --------------------------------------------------------------------------------


def _quiet_logs() -> None:
    """Production logging (JSON at info: a line per failed attempt), written to /dev/null."""
    configure("info", json=True)
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")))  # noqa: SIM115


@asynccontextmanager
async def store(kind: str, data_dir: Path) -> AsyncIterator[str]:
    """A database URL: a SQLite file, or a throwaway PostgreSQL database dropped after."""
    if kind == "sqlite":
        yield f"sqlite:///{data_dir / 'bench.db'}"
        return
    import asyncpg

    name = f"bench_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}"
    finally:
        admin = await asyncpg.connect(POSTGRES_ADMIN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


#: `--caps`: the destination's and the site's cap on calls in flight; None for `caps`' default.
_CAPS: int | None = None
#: The worker's batch (`worker_batch_size`'s default).
WORKER_BATCH = 100


def caps(concurrency: int) -> int:
    """The caps on calls in flight to the one destination and for the one site.

    A delivery counts toward them from its claim, so caps equal to the senders would leave
    nothing claimed ahead: each sender whose call ended would wait for the next claim, and
    the run would measure the claim's cadence under a binding cap rather than the engine.
    By default they let the senders be busy and a batch wait for them (the webhook's own
    `maxConcurrency`, 100, binds first), as with no caps at all; `--caps N` measures a
    destination held to N (`--caps 64`: held to the senders' number)."""
    return _CAPS if _CAPS is not None else concurrency + WORKER_BATCH


def _settings(url: str, data_dir: Path, concurrency: int) -> Settings:
    return Settings(
        data_dir=data_dir,
        database_url=url,
        secret_key=SECRET_KEY,
        base_url="https://bench.example",
        dev_mode=True,  # the address policy lets loopback through
        worker_concurrency=concurrency,
        worker_batch_size=WORKER_BATCH,
        # The same concurrency on the wire as the ceiling's client, which opens a connection
        # per lane (the default, 20 to one receiver, would leave senders waiting their turn).
        connections_per_host=concurrency,
        # One site and one destination: let them use every sender, and a batch claimed ahead
        # (`caps`).
        destination_max_in_flight=caps(concurrency),
        site_max_in_flight=caps(concurrency),
        # SQLite's durability, as `serve` reads it: `full` shows what an fsync per commit costs.
        sqlite_synchronous=os.environ.get("DOCUHOOKS_SQLITE_SYNCHRONOUS", "normal"),
    )


async def _context(settings: Settings) -> AppContext:
    db = Database.from_url(
        settings.resolved_database_url,
        pool_size=20,
        sqlite_synchronous=settings.sqlite_synchronous,
    )
    await db.upgrade()
    return AppContext(settings=settings, db=db, box=SecretBox(settings.secret_key))


async def _webhook(ctx: AppContext, url: str) -> tuple[str, str, str]:
    """A site and one HMAC NewWorkItemVersionComplete webhook, allowed the most calls in
    flight; (site, webhook, secret)."""
    async with ctx.db.transaction() as conn:
        site_id = await identity.create_site(
            conn, name="Bench", base_url="https://bench.example", now=ctx.now()
        )
        admin = Principal(
            user_id=str(uuid.uuid4()),
            site_id=site_id,
            login_name="admin@bench.example",
            name="Admin",
            email="admin@bench.example",
            account_type="UserAccount",
            roles=frozenset({Role.SITE_ADMINISTRATOR}),
        )
        created, secret = await webhook_service.create(
            ctx,
            conn,
            admin,
            # The most calls in flight a webhook may have (claimed ahead included): one webhook
            # here stands for the whole load, and the default (10) would cap the senders.
            {
                "name": "bench",
                "url": url,
                "eventType": "NewWorkItemVersionComplete",
                "maxConcurrency": 100,
            },
        )
    assert secret is not None
    return site_id, created["id"], secret


async def _enqueue(ctx: AppContext, site_id: str, n: int) -> None:
    for start in range(0, n, OUTBOX_CHUNK):
        async with ctx.db.transaction() as conn:
            for index in range(start, min(n, start + OUTBOX_CHUNK)):
                await outbox.enqueue(
                    conn,
                    _sample_event(site_id, index),
                    work_group_id=None,
                    template_id=None,
                    now=ctx.now(),
                )


async def commit_event(ctx: AppContext, site_id: str, index: int) -> tuple[str, float]:
    """Write one event through the outbox in a transaction of its own, as a request does, and
    wake the in-process worker; (the event's id, when its transaction committed)."""
    event = _sample_event(site_id, index)
    async with ctx.db.transaction() as conn:
        await outbox.enqueue(conn, event, work_group_id=None, template_id=None, now=ctx.now())
    moment = time.time()
    ctx.events_committed()
    return event.event_id, moment


async def docuhooks(
    kind: str, receiver: Receiver, n: int, concurrency: int, seconds: float, tmp: Path
) -> Result:
    async with store(kind, tmp) as url:
        ctx = await _context(_settings(url, tmp / kind, concurrency))
        try:
            site_id, _, _ = await _webhook(ctx, receiver.url)
            await _enqueue(ctx, site_id, n)
            await receiver.reset()
            worker = Worker(ctx)
            await worker.start()
            freeze_long_lived()  # as `docuhooks serve` does once its components have started
            try:
                await receiver.wait_for(n, timeout=max(120.0, n / 50))
                times, _ = await receiver.arrivals()
                result = Result(f"docuhooks, {kind}", _rate(times))

                async def produce(i: int) -> tuple[str, float]:
                    return await commit_event(ctx, site_id, i)

                await end_to_end(receiver, result, n, seconds, produce)
            finally:
                await worker.stop()
        finally:
            await ctx.close()
    return result


# --- worker processes on PostgreSQL -------------------------------------------------------------


def _worker_env(url: str, data_dir: Path, concurrency: int) -> dict[str, str]:
    return {
        **os.environ,
        "DOCUHOOKS_DATABASE_URL": url,
        "DOCUHOOKS_SECRET_KEY": SECRET_KEY,
        "DOCUHOOKS_DATA_DIR": str(data_dir),
        "DOCUHOOKS_DEV_MODE": "true",
        "DOCUHOOKS_WORKER_CONCURRENCY": str(concurrency),
        "DOCUHOOKS_CONNECTIONS_PER_HOST": str(concurrency),
        "DOCUHOOKS_DESTINATION_MAX_IN_FLIGHT": str(caps(concurrency)),
        "DOCUHOOKS_SITE_MAX_IN_FLIGHT": str(caps(concurrency)),
    }


async def _listening_workers(admin: Any) -> int:
    return int(
        await admin.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND query ILIKE 'LISTEN%'"
        )
    )


async def _database_counters(admin: Any) -> tuple[int, int]:
    """The server's WAL position (bytes) and this database's commits so far. The commit
    count is the statistics collector's, flushed by each session at least every second or
    so: read it after a pause."""
    await asyncio.sleep(1.5)
    row = await admin.fetchrow(
        "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint AS wal,"
        " (SELECT xact_commit FROM pg_stat_database WHERE datname = current_database())"
        " AS commits"
    )
    return int(row["wal"]), int(row["commits"])


async def _sample_in_flight(admin: Any, done: asyncio.Event) -> list[int]:
    """The `flights` rows (calls claimed and not yet recorded, all workers), every 0.1 s
    until `done`."""
    samples: list[int] = []
    while not done.is_set():
        samples.append(int(await admin.fetchval("SELECT count(*) FROM flights")))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(done.wait(), 0.1)
    return samples


def _minus(after: tuple[int, int], before: tuple[int, int]) -> tuple[int, int]:
    return after[0] - before[0], after[1] - before[1]


async def _backend_pids(admin: Any) -> set[int]:
    """The server processes of this database's sessions, but the benchmark's own."""
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    return {row["pid"] for row in rows}


def _cpu_seconds(pid: int) -> float:
    try:
        times = psutil.Process(pid).cpu_times()
    except psutil.Error:
        return 0.0
    return float(times.user + times.system)


class _CpuMeter:
    """CPU seconds spent by processes between `start` and `stop`; a process first seen at
    `stop` (a connection opened meanwhile) counts from zero."""

    def __init__(self) -> None:
        self._start: dict[int, float] = {}

    def start(self, pids: set[int]) -> None:
        self._start = {pid: _cpu_seconds(pid) for pid in pids}

    def stop(self, pids: set[int]) -> float:
        return sum(_cpu_seconds(pid) - self._start.get(pid, 0.0) for pid in pids | set(self._start))


async def _start_workers(
    admin: Any, url: str, data_dir: Path, concurrency: int, workers: int
) -> list[asyncio.subprocess.Process]:
    """`workers` `docuhooks worker` processes on `url`, returned once each listens."""
    processes = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "docuhooks",
            "worker",
            env=_worker_env(url, data_dir, concurrency),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(workers)
    ]
    deadline = time.monotonic() + 120
    while await _listening_workers(admin) < workers:
        if time.monotonic() > deadline or any(p.returncode is not None for p in processes):
            await _stop_workers(processes)
            raise RuntimeError("the worker processes did not start listening")
        await asyncio.sleep(0.2)
    await asyncio.sleep(1.0)  # their first, empty claims
    return processes


async def _stop_workers(processes: list[asyncio.subprocess.Process]) -> None:
    for process in processes:
        if process.returncode is None:
            process.terminate()
    for process in processes:
        await process.wait()


def _transaction_lines(relay: Any, per: int, unit: str) -> list[str]:
    """The relay's transactions by shape, the most frequent first."""
    lines = [f"round trips {relay.round_trips / per:.2f} per {unit}; by transaction:"]
    for (label, trips), count in relay.transactions.most_common(8):
        lines.append(f"  {count / per:7.3f} per {unit} × {trips:2d} round trips: {label}")
    return lines


@asynccontextmanager
async def _relays(url: str, count: bool) -> AsyncIterator[tuple[Any, Any]]:
    """Relays counting the workers' and the producers' round trips, or (None, None)."""
    if not count:
        yield None, None
        return
    from pg_round_trips import RoundTripRelay

    target = make_url(url)
    relays = [RoundTripRelay(target.host or "127.0.0.1", target.port or 5432) for _ in "wp"]
    for relay in relays:
        await relay.start()
    try:
        yield relays[0], relays[1]
    finally:
        for relay in relays:
            await relay.stop()


async def worker_processes(
    receiver: Receiver,
    n: int,
    concurrency: int,
    seconds: float,
    tmp: Path,
    workers: int,
    count_round_trips: bool,
) -> Result:
    import asyncpg

    data_dir = tmp / f"workers-{workers}"
    async with (
        store("postgresql", tmp) as url,
        _relays(url, count_round_trips) as (worker_relay, producer_relay),
    ):
        ctx = await _context(_settings(url, data_dir, concurrency))
        admin = await asyncpg.connect(url)
        processes: list[asyncio.subprocess.Process] = []
        try:
            site_id, _, _ = await _webhook(ctx, receiver.url)
            processes = await _start_workers(
                admin,
                worker_relay.url(url) if worker_relay else url,
                data_dir,
                concurrency,
                workers,
            )
            await receiver.reset()
            workers_cpu, backends_cpu = _CpuMeter(), _CpuMeter()
            async with ctx.db.transaction() as conn:  # all at once, when every worker listens
                for index in range(n):
                    await outbox.enqueue(
                        conn,
                        _sample_event(site_id, index),
                        work_group_id=None,
                        template_id=None,
                        now=ctx.now(),
                    )
                workers_cpu.start({p.pid for p in processes})
                backends = await _backend_pids(admin)
                backends_cpu.start(backends)
                database_before = await _database_counters(admin)
                if worker_relay:
                    worker_relay.reset()
            drained = asyncio.Event()
            sampling = asyncio.create_task(_sample_in_flight(admin, drained))
            try:
                await receiver.wait_for(n, timeout=max(120.0, n / 50))
            finally:
                drained.set()
            in_flight = await sampling
            worker_seconds = workers_cpu.stop({p.pid for p in processes})
            backend_seconds = backends_cpu.stop(backends | await _backend_pids(admin))
            wal_bytes, commits = _minus(await _database_counters(admin), database_before)
            times, _ = await receiver.arrivals()
            label = "process" if workers == 1 else "processes"
            result = Result(f"postgresql, {workers} worker {label}", _rate(times))
            result.costs.append(
                f"workers' CPU {worker_seconds / n * 1e6:.0f} µs per delivery (all {workers});"
                f" the database's backends {backend_seconds / n * 1e6:.0f} µs per delivery;"
                f" load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}"
            )
            result.costs.append(
                f"WAL {wal_bytes / n:.0f} bytes per delivery (server-wide: other databases'"
                f" writes included); {commits / n:.3f} commits per delivery (this database)"
            )
            if in_flight:
                average = statistics.mean(in_flight)
                result.costs.append(
                    f"calls in flight (flights rows) {average:.0f} on average, at most"
                    f" {max(in_flight)}: each delivery in flight {average / result.rate * 1000:.0f}"
                    " ms (Little's law)"
                )
            if worker_relay:
                result.costs += _transaction_lines(worker_relay, n, "delivery")
            await _end_to_end_with_workers(
                receiver,
                result,
                n,
                seconds,
                site_id,
                producer_relay,
                url,
                data_dir,
                concurrency,
                admin,
            )
        finally:
            await _stop_workers(processes)
            await admin.close()
            await ctx.close()
    return result


async def _end_to_end_with_workers(
    receiver: Receiver,
    result: Result,
    n: int,
    seconds: float,
    site_id: str,
    relay: Any,
    url: str,
    data_dir: Path,
    concurrency: int,
    admin: Any,
) -> None:
    """The end-to-end run with the worker processes running: this process's producers
    commit each event in a transaction of its own; the trigger's NOTIFY wakes the workers."""
    producers = await _context(_settings(relay.url(url) if relay else url, data_dir, concurrency))
    try:

        async def produce(i: int) -> tuple[str, float]:
            event = _sample_event(site_id, i)
            async with producers.db.transaction() as conn:
                await outbox.enqueue(
                    conn, event, work_group_id=None, template_id=None, now=producers.now()
                )
            return event.event_id, time.time()

        if relay:
            relay.reset()
        backends_cpu = _CpuMeter()
        backends_cpu.start(backends := await _backend_pids(admin))
        started = time.process_time()
        await end_to_end(receiver, result, n, seconds, produce)
        producing = time.process_time() - started
        backend_seconds = backends_cpu.stop(backends | await _backend_pids(admin))
        # `end_to_end`'s events: n, then its latency run's (`_paced` at half the rate).
        events = n + max(1, int((result.e2e_rate or 0) / 2 * seconds))
        result.costs.append(
            f"producers' CPU {producing / events * 1e6:.0f} µs per event (this process,"
            " end to end and latency runs); the database's backends"
            f" {backend_seconds / events * 1e6:.0f} µs per event and its delivery"
        )
        if relay:
            result.costs += _transaction_lines(relay, events, "event (end to end)")
    finally:
        await producers.close()


# --- celery -----------------------------------------------------------------------------------


async def celery_baseline(
    receiver: Receiver, n: int, concurrency: int, seconds: float, secret: str
) -> Result:
    queue = f"bench-delivery-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "BENCH_CELERY_BROKER": REDIS_URL,
        "BENCH_CELERY_QUEUE": queue,
        "PYTHONPATH": str(BENCH_DIR),
    }
    os.environ.update(BENCH_CELERY_BROKER=REDIS_URL, BENCH_CELERY_QUEUE=queue)
    sys.path.insert(0, str(BENCH_DIR))
    import celery_delivery

    site_id, webhook_id = str(uuid.uuid4()), str(uuid.uuid4())
    issuer = "https://bench.example"

    def queue_one(i: int) -> str:
        event = _sample_event(site_id, i).to_dict()
        celery_delivery.deliver.delay(receiver.url, event, secret, webhook_id, issuer)
        return str(event["eventId"])

    for i in range(n):
        queue_one(i)
    await receiver.reset()
    worker = await asyncio.create_subprocess_exec(
        *[
            sys.executable,
            "-m",
            "celery",
            "-A",
            "celery_delivery",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ],
        cwd=BENCH_DIR,
        env=env,
        stdout=subprocess.DEVNULL,
    )
    try:
        await receiver.wait_for(n, timeout=max(120.0, n / 20))
        times, _ = await receiver.arrivals()
        result = Result("celery + requests, redis", _rate(times))

        async def produce(i: int) -> tuple[str, float]:
            key = await asyncio.to_thread(queue_one, i)
            return key, time.time()

        await end_to_end(receiver, result, n, seconds, produce)
    finally:
        worker.terminate()
        await worker.wait()
        import redis

        redis.Redis.from_url(REDIS_URL).delete(queue)
    return result


# --- the backlog ------------------------------------------------------------------------------


async def backlog(kind: str, receiver: Receiver, n: int, concurrency: int, tmp: Path) -> None:
    async with store(kind, tmp) as url:
        settings = _settings(url, tmp / kind, concurrency)
        ctx = await _context(settings)
        try:
            site_id, webhook_id, _ = await _webhook(ctx, receiver.url)
            started = time.monotonic()
            await _bulk_insert(ctx, site_id, webhook_id, n)
            print(f"inserted {n} pending deliveries in {time.monotonic() - started:.0f} s")
        finally:
            await ctx.close()
        await receiver.reset()
        env = {
            **os.environ,
            "DOCUHOOKS_DATABASE_URL": url,
            "DOCUHOOKS_SECRET_KEY": SECRET_KEY,
            "DOCUHOOKS_DATA_DIR": str(tmp / kind),
            "DOCUHOOKS_DEV_MODE": "true",
            "DOCUHOOKS_WORKER_CONCURRENCY": str(concurrency),
            "DOCUHOOKS_CONNECTIONS_PER_HOST": str(concurrency),
            "DOCUHOOKS_DESTINATION_MAX_IN_FLIGHT": str(caps(concurrency)),
            "DOCUHOOKS_SITE_MAX_IN_FLIGHT": str(caps(concurrency)),
        }
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "docuhooks",
            "worker",
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        process = psutil.Process(worker.pid)
        peak = 0
        last_report = time.monotonic()
        try:
            while (got := await receiver.count()) < n:
                if worker.returncode is not None:
                    raise RuntimeError(f"the worker exited with {worker.returncode}")
                peak = max(peak, process.memory_info().rss)
                if time.monotonic() - last_report > 10:
                    print(f"  {got} delivered, worker RSS {peak / 2**20:.0f} MB so far")
                    last_report = time.monotonic()
                await asyncio.sleep(0.2)
            peak = max(peak, process.memory_info().rss)
        finally:
            worker.terminate()
            await worker.wait()
    times, _ = await receiver.arrivals()
    tenth = max(2, len(times) // 10)
    first, last = _rate(times[:tenth]), _rate(times[-tenth:])
    print(
        f"\nbacklog of {n} on {kind}: {_rate(times):.0f} deliveries/s overall; "
        f"first 10 % {first:.0f}/s, last 10 % {last:.0f}/s (ratio {last / first:.2f}); "
        f"worker peak RSS {peak / 2**20:.0f} MB"
    )


async def _bulk_insert(ctx: AppContext, site_id: str, webhook_id: str, n: int) -> None:
    """N events and their pending deliveries, straight into the tables in large batches."""
    chunk = 5000
    now = datetime.now(UTC) - timedelta(seconds=1)
    for start in range(0, n, chunk):
        event_rows, delivery_rows = [], []
        for index in range(start, min(n, start + chunk)):
            event = _sample_event(site_id, index)
            moment = now + timedelta(microseconds=index)
            event_rows.append(
                {
                    "id": event.event_id,
                    "site_id": site_id,
                    "event_type": str(event.event_type),
                    "payload": event.to_dict(),
                    "work_item_id": None,
                    "created_at": moment,
                }
            )
            delivery_rows.append(
                {
                    "id": uuid7(),  # as the outbox makes them
                    "event_id": event.event_id,
                    "webhook_id": webhook_id,
                    "site_id": site_id,
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": moment,
                    "created_at": moment,
                }
            )
        async with ctx.db.transaction() as conn:
            await conn.execute(events.insert(), event_rows)
            await conn.execute(deliveries.insert(), delivery_rows)
    if ctx.db.dialect == "postgresql":
        async with ctx.db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE deliveries")
            await conn.exec_driver_sql("VACUUM ANALYZE events")


# --- main -------------------------------------------------------------------------------------


def _signed_body(secret: str, webhook_id: str) -> tuple[bytes, dict[str, str]]:
    target = WebhookTarget(
        webhook_id=webhook_id,
        url="http://127.0.0.1/hook",
        verb="POST",  # type: ignore[arg-type]
        auth_method="HMAC",  # type: ignore[arg-type]
        issuer="https://bench.example",
        secret=SigningSecret("kid", secret),
    )
    request = build_request(
        _sample_event(str(uuid.uuid4()), 0).to_dict(),
        target,
        delivery_id=str(uuid.uuid4()),
        attempt=1,
        now=datetime.now(UTC),
        user_agent=USER_AGENT,
    )
    assert request.body is not None
    return request.body, dict(request.headers)


def _machine() -> str:
    model = "unknown CPU"
    with open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} CPUs ({model}), {memory:.0f} GiB RAM, Python {sys.version.split()[0]}"


async def _main(args: argparse.Namespace) -> None:
    _quiet_logs()
    receiver = Receiver()
    await receiver.start()
    print(_machine())
    try:
        with tempfile.TemporaryDirectory(prefix="docuhooks-bench-") as tmp_name:
            tmp = Path(tmp_name)
            if args.backlog:
                await backlog(args.store, receiver, args.backlog, args.concurrency, tmp)
                return
            secret = "bench-secret-" + uuid.uuid4().hex
            body, headers = _signed_body(secret, str(uuid.uuid4()))
            rounds = [
                await ceiling(receiver, args.events, args.concurrency, body, headers)
                for _ in range(3)
            ]
            results = [sorted(rounds, key=lambda r: r.rate)[1]]  # the median of three
            kinds = ["sqlite"] + ([] if args.skip_postgres else ["postgresql"])
            for kind in kinds:
                results.append(
                    await docuhooks(
                        kind, receiver, args.events, args.concurrency, args.latency_seconds, tmp
                    )
                )
            for workers in args.workers:
                results.append(
                    await worker_processes(
                        receiver,
                        args.events,
                        args.concurrency,
                        args.latency_seconds,
                        tmp,
                        workers,
                        args.count_round_trips,
                    ),
                )
            if not args.skip_celery:
                results.append(
                    await celery_baseline(
                        receiver, args.events, args.concurrency, args.latency_seconds, secret
                    )
                )
    finally:
        receiver.stop()
    _report(results, args)


def _report(results: list[Result], args: argparse.Namespace) -> None:
    top = results[0].rate
    print(
        f"\n{args.events} events, concurrency {args.concurrency} (caps on calls in flight "
        f"{caps(args.concurrency)}), {PRODUCERS} producers; "
        f"latency at half the end-to-end rate for {args.latency_seconds:g} s\n"
    )
    print(f"{'':<26}{'drain/s':>9}{'× ceiling':>11}{'end-to-end/s':>14}{'p50 ms':>9}{'p99 ms':>9}")
    for r in results:
        e2e = f"{r.e2e_rate:>14.0f}" if r.e2e_rate else f"{'—':>14}"
        p50 = f"{r.p50_ms:>9.1f}" if r.p50_ms is not None else f"{'—':>9}"
        p99 = f"{r.p99_ms:>9.1f}" if r.p99_ms is not None else f"{'—':>9}"
        print(f"{r.name:<26}{r.rate:>9.0f}{r.rate / top:>11.2f}{e2e}{p50}{p99}")
    for r in results:
        for line in r.costs:
            print(f"{r.name}: {line}")
    celery = next((r for r in results if r.name.startswith("celery")), None)
    if celery is not None and celery.rate:
        for r in results[1:-1]:
            print(
                f"{r.name}: {r.rate / celery.rate:.1f}× the Celery baseline draining, "
                f"{(r.e2e_rate or 0) / (celery.e2e_rate or 1):.1f}× end to end"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--latency-seconds", type=float, default=8.0)
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-celery", action="store_true")
    parser.add_argument(
        "--workers",
        type=int,
        nargs="*",
        default=[],
        help="also run PostgreSQL with this many `docuhooks worker` processes (each given)",
    )
    parser.add_argument(
        "--count-round-trips",
        action="store_true",
        help="with --workers: count round trips on the wire (slows the run)",
    )
    parser.add_argument(
        "--caps",
        type=int,
        default=None,
        help="the destination's and the site's cap on calls in flight (default: the "
        "concurrency plus a batch, so that they do not bind)",
    )
    parser.add_argument("--backlog", type=int, default=0, help="drain this many pending")
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    # Spans as `docuhooks serve` records them: on when OTEL_* asks (e.g.
    # OTEL_TRACES_EXPORTER=none to measure their cost without an exporter), else off.
    args = parser.parse_args()
    global _CAPS
    _CAPS = args.caps
    stop_tracing = tracing.configure()
    try:
        # uvloop, as `docuhooks serve` (uvicorn) and `docuhooks worker` run the worker.
        uvloop.run(_main(args))
    finally:
        stop_tracing()


if __name__ == "__main__":
    main()
