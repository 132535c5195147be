"""Pruning the attempt log at 10,000,000 attempts on PostgreSQL: batched deletes against
dropping time partitions, and the plans of the claim and of the delivery log's reads there;
and the retention of finished deliveries and their events at millions of each.

    .venv/bin/python bench/pruning.py [--rows 10000000] [--days 40] [--retention 30]
                                      [--database NAME] [--keep] [--skip-partitions]
                                      [--skip-delete] [--deliveries N] [--skip-attempts]

It creates a throwaway `prune_<random>` database on 127.0.0.1:5432 (dropped after, unless
`--keep`; `--database` reuses one a `--keep` run left, skipping the build) with
`bench/claim_plans.py`'s sites, webhooks and 100,000 pending deliveries, `--rows / 4`
succeeded deliveries of webhook E (created at random times over the last `--days` days),
and `--rows` attempts of those (four each, with the headers and a short body a real attempt
has), started evenly over the last `--days` days, all inserted with `INSERT … SELECT` from
`generate_series` in chunks of 500,000, then `VACUUM ANALYZE`d (the development server runs
without autovacuum, so the script vacuums where autovacuum would).

Then:

1. **Plans at 10M**: the worker's claim (through `claim_plans.run`: generic plans, times),
   a delivery's attempts as `GET /deliveries/{id}` reads them, and the first page of a
   webhook's deliveries as `GET /webhooks/{id}/deliveries` reads it, each with
   `EXPLAIN (ANALYZE, BUFFERS)`.
2. **Time partitions** (unless `--skip-partitions`): a copy of the attempts in a table
   partitioned by day on `started_at` (the primary key must then include `started_at`);
   the attempt-log read on both; then the partitions older than the retention dropped one
   by one, each `DROP TABLE` timed while a reader of the attempt log and a writer of
   attempts run beside it (a partition's drop takes an ACCESS EXCLUSIVE lock on the parent:
   both wait for it).
3. **Batched deletes**: `delivery.pruning`'s loop (batches of `pruning.BATCH`, each its own
   transaction) deleting the attempts older than `--retention` days, with the same reader
   and writer and a claim loop beside it: the longest batch (every lock a batch takes is
   held until its commit, so that is the longest lock), rows per second, the side loops'
   latency before and during, and the table's size before, after, and after `VACUUM`.
4. **Retention of deliveries and events** (with `--deliveries N`): N events over the last
   `--days` days, each with a finished delivery of webhook E (one in 33 failed, the others
   succeeded, finished up to two minutes after they were made), and one event in 1,000 with
   a second delivery, still pending, of webhook B (a suspended webhook's old backlog). The
   plans of a batch of `delivery.pruning`'s statements (generic plans, as asyncpg's prepared
   statements end up with) and their times, then its loops, timed batch by batch with the
   claim, a read and an insert beside them, then the tables' sizes. `--skip-attempts` leaves
   out 1-3 (and builds no attempts).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

sys.path.insert(0, str(Path(__file__).parent))
import claim_plans

from docuhooks.core.pacing import Pacer
from docuhooks.delivery import claims, pruning, upkeep_queries
from docuhooks.store.database import Database
from docuhooks.store.schema import deliveries, events

NOW = claim_plans.NOW
CHUNK = 500_000
HOOK_E = claim_plans._hook_id("E")


@asynccontextmanager
async def database(name: str | None, keep: bool) -> AsyncIterator[tuple[Database, bool]]:
    """The database and whether it still needs building."""
    import asyncpg

    admin_url = claim_plans.POSTGRES_ADMIN
    fresh = name is None
    name = name or f"prune_{uuid.uuid4().hex[:12]}"
    if fresh:
        admin = await asyncpg.connect(admin_url)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
    print(f"database {name}")
    db = Database.from_url(admin_url.rsplit("/", 1)[0] + f"/{name}")
    try:
        if fresh:
            await db.upgrade()
        yield db, fresh
    finally:
        await db.dispose()
        if not keep:
            admin = await asyncpg.connect(admin_url)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()
            print(f"dropped {name}")


async def sql(db: Database, statement: str, **params: Any) -> Any:
    async with db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        result = await conn.execute(sa.text(statement), params)
        return result.all() if result.returns_rows else []


ATTEMPTS_SELECT = """
SELECT md5('attempt' || i::text)::uuid::text,
       md5('E' || 'succeeded' || (i / 4)::text)::uuid::text,
       :hook, 'site-1', (i % 4) + 1,
       CAST(:start AS timestamptz) + interval '1 second' * (:seconds * i / :rows),
       10 + (i % 900), 'POST', 'https://e.example/hook',
       json_build_object('content-type', 'application/json', 'user-agent', 'docuhooks/1.0',
                         'webhook-id', md5(i::text), 'webhook-timestamp', (1700000000 + i)::text,
                         'webhook-signature', 'v1,' || md5('sig' || i::text),
                         'x-docuhooks-attempt', ((i % 4) + 1)::text),
       CASE WHEN i % 4 = 3 THEN 200 ELSE 503 END,
       json_build_object('content-type', 'text/plain', 'server', 'receiver'),
       CASE WHEN i % 4 = 3 THEN 'ok' ELSE 'upstream unavailable, try later' END,
       CASE WHEN i % 4 = 3 THEN NULL ELSE 'http_status' END,
       CASE WHEN i % 4 = 3 THEN NULL ELSE 'the receiver answered 503' END
FROM generate_series(CAST(:low AS bigint), CAST(:high AS bigint) - 1) AS i
"""
SPREAD_CREATED = (
    "UPDATE deliveries SET created_at = CAST(:start AS timestamptz) "
    "+ interval '1 second' * floor(random() * :seconds) WHERE webhook_id = :hook"
)
ATTEMPT_COLUMNS = (
    "id, delivery_id, webhook_id, site_id, attempt_number, started_at, duration_ms, "
    "request_method, request_url, request_headers, status_code, response_headers, "
    "response_body, error_class, error"
)


async def build(db: Database, rows: int, days: int) -> None:
    started = time.perf_counter()
    await claim_plans.populate(db, 100_000, rows // 4)
    start = NOW - timedelta(days=days)
    # claim_plans creates them all at one time; a real log's are spread over the days.
    await sql(db, SPREAD_CREATED, hook=HOOK_E, start=start, seconds=days * 86_400)
    print(f"deliveries built in {time.perf_counter() - started:.0f} s", flush=True)
    for low in range(0, rows, CHUNK):
        async with db.transaction() as conn:
            await conn.execute(
                sa.text(f"INSERT INTO attempts ({ATTEMPT_COLUMNS}) {ATTEMPTS_SELECT}"),
                {
                    "hook": HOOK_E,
                    "start": start,
                    "seconds": days * 86_400,
                    "rows": rows,
                    "low": low,
                    "high": min(rows, low + CHUNK),
                },
            )
        print(
            f"  {min(rows, low + CHUNK):,} attempts, {time.perf_counter() - started:.0f} s",
            flush=True,
        )
    await sql(db, "VACUUM ANALYZE")
    print(f"built in {time.perf_counter() - started:.0f} s", flush=True)


async def sizes(db: Database, table: str) -> str:
    (row,) = await sql(
        db,
        "SELECT count(*) FROM pg_inherits WHERE inhparent = CAST(:t AS regclass)",
        t=table,
    )
    if row[0]:
        (total,) = await sql(
            db,
            "SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits "
            "WHERE inhparent = CAST(:t AS regclass)",
            t=table,
        )
        return f"{total[0] / 2**30:.2f} GiB (all partitions, with indexes)"
    (total,) = await sql(
        db,
        "SELECT pg_relation_size(CAST(:t AS regclass)), "
        "pg_total_relation_size(CAST(:t AS regclass))",
        t=table,
    )
    return f"{total[0] / 2**30:.2f} GiB heap, {total[1] / 2**30:.2f} GiB with indexes"


async def explain(db: Database, statement: str, **params: Any) -> tuple[str, float]:
    """The plan as run, and the median execution time of five runs (after one warm-up)."""
    times = []
    lines: list[str] = []
    for _ in range(6):
        rows = await sql(db, f"EXPLAIN (ANALYZE, BUFFERS) {statement}", **params)
        lines = [row[0] for row in rows]
        times.append(float(lines[-1].split(":")[1].split()[0]))
    return "\n".join(lines), statistics.median(times[1:])


DELIVERY_ATTEMPTS = (
    "SELECT * FROM {table} WHERE delivery_id = :delivery ORDER BY attempt_number, started_at, id"
)


async def plans(db: Database, rows: int) -> str:
    """Print the plans of the claim and the delivery log's reads; returns a delivery id in
    the middle of the log."""
    print("\n## plans at", f"{rows:,}", "attempts", flush=True)

    async def claim(conn: AsyncConnection) -> None:
        await claims.claim(
            conn,
            owner="plans",
            now=NOW,
            lease=timedelta(seconds=60),
            limit=100,
            probe_interval=timedelta(seconds=30),
            caps=claims.Caps(),
        )

    await claim_plans.run(db, "claim (limit 100)", claim)
    (delivery,) = await sql(
        db, "SELECT md5('E' || 'succeeded' || :i)::uuid::text", i=str(rows // 8)
    )
    plan, took = await explain(db, DELIVERY_ATTEMPTS.format(table="attempts"), delivery=delivery[0])
    print(f"\n### a delivery's attempts (GET /deliveries/{{id}}): {took:.2f} ms\n{plan}")
    # The first page of webhook E's deliveries as `log.list_deliveries` builds it.
    page = (
        sa.select(*deliveries.c, events.c.event_type)
        .join(events, events.c.id == deliveries.c.event_id)
        .where(deliveries.c.webhook_id == HOOK_E)
        .order_by(deliveries.c.created_at.desc(), deliveries.c.id.desc())
        .limit(51)
    )
    compiled = page.compile(db.engine, compile_kwargs={"literal_binds": True})
    plan, took = await explain(db, str(compiled))
    print(f"\n### a webhook's deliveries, first page: {took:.2f} ms\n{plan}")
    return str(delivery[0])


# --- what runs beside pruning ---------------------------------------------------------------


class Beside:
    """Loops that run beside pruning, each timing its calls: a claim (rolled back), a read
    of one delivery's attempts, an insert of one attempt (rolled back)."""

    def __init__(self, db: Database, table: str, delivery: str) -> None:
        self.db, self.table, self.delivery = db, table, delivery
        self.times: dict[str, list[float]] = {"claim": [], "read": [], "insert": []}
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def _loop(self, name: str, call: Callable[[AsyncConnection], Awaitable[Any]]) -> None:
        async with self.db.engine.connect() as conn:
            while not self._stop.is_set():
                await conn.begin()
                started = time.perf_counter()
                await call(conn)
                self.times[name].append((time.perf_counter() - started) * 1000)
                await conn.rollback()
                await asyncio.sleep(0.005)

    async def _claim(self, conn: AsyncConnection) -> None:
        await claims.claim(
            conn,
            owner="beside",
            now=NOW,
            lease=timedelta(seconds=60),
            limit=100,
            probe_interval=timedelta(seconds=30),
            caps=claims.Caps(),
        )

    async def _read(self, conn: AsyncConnection) -> None:
        await conn.execute(
            sa.text(DELIVERY_ATTEMPTS.format(table=self.table)), {"delivery": self.delivery}
        )

    async def _insert(self, conn: AsyncConnection) -> None:
        await conn.execute(
            sa.text(
                f"INSERT INTO {self.table} ({ATTEMPT_COLUMNS}) "
                "VALUES (gen_random_uuid()::text, :delivery, :hook, 'site-1', 9, :at, 12, "
                "'POST', 'https://e.example/hook', '{}', 200, '{}', 'ok', NULL, NULL)"
            ),
            {"delivery": self.delivery, "hook": HOOK_E, "at": NOW},
        )

    def start(self, *names: str) -> None:
        calls = {"claim": self._claim, "read": self._read, "insert": self._insert}
        self._stop.clear()
        for values in self.times.values():
            values.clear()
        self._tasks = [asyncio.create_task(self._loop(n, calls[n])) for n in names]

    async def stop(self) -> str:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return ", ".join(
            f"{name} p50 {statistics.median(t):.1f} ms / max {max(t):.1f} ms ({len(t)} runs)"
            for name, t in self.times.items()
            if t
        )


async def baseline(beside: Beside, *names: str, seconds: float = 10.0) -> None:
    beside.start(*names)
    await asyncio.sleep(seconds)
    print(f"  beside, idle: {await beside.stop()}", flush=True)


# --- time partitions ------------------------------------------------------------------------


async def partitions(db: Database, days: int, retention: int, delivery: str) -> None:
    print("\n## time partitions (by day on started_at)", flush=True)
    start = NOW - timedelta(days=days)
    await sql(
        db,
        "CREATE TABLE attempts_by_day (LIKE attempts INCLUDING DEFAULTS, "
        "PRIMARY KEY (id, started_at)) PARTITION BY RANGE (started_at)",
    )
    first_day = datetime(start.year, start.month, start.day, tzinfo=start.tzinfo)
    for n in range(days + 2):
        low, high = first_day + timedelta(days=n), first_day + timedelta(days=n + 1)
        await sql(
            db,
            f"CREATE TABLE attempts_d{n:03d} PARTITION OF attempts_by_day "
            f"FOR VALUES FROM ('{low.isoformat()}') TO ('{high.isoformat()}')",
        )
    await sql(
        db,
        "CREATE INDEX ix_attempts_by_day_delivery ON attempts_by_day (delivery_id, attempt_number)",
    )
    started = time.perf_counter()
    await sql(db, "INSERT INTO attempts_by_day SELECT * FROM attempts")
    await sql(db, "VACUUM ANALYZE attempts_by_day")
    print(f"copied in {time.perf_counter() - started:.0f} s; {await sizes(db, 'attempts_by_day')}")
    plan, took = await explain(
        db, DELIVERY_ATTEMPTS.format(table="attempts_by_day"), delivery=delivery
    )
    print(f"\n### a delivery's attempts, partitioned ({days + 2} partitions): {took:.2f} ms")
    print("\n".join(plan.splitlines()[:12]) + "\n     …")
    _, single = await explain(db, DELIVERY_ATTEMPTS.format(table="attempts"), delivery=delivery)
    print(f"(the same read on the single table: {single:.2f} ms)")

    cutoff = NOW - timedelta(days=retention)
    old = [n for n in range(days + 2) if first_day + timedelta(days=n + 1) <= cutoff]
    beside = Beside(db, "attempts_by_day", delivery)
    await baseline(beside, "read", "insert")
    beside.start("read", "insert")
    drops = []
    started = time.perf_counter()
    for n in old:
        one = time.perf_counter()
        await sql(db, f"DROP TABLE attempts_d{n:03d}")
        drops.append((time.perf_counter() - one) * 1000)
        await asyncio.sleep(0.05)
    took = time.perf_counter() - started
    print(
        f"  dropped {len(old)} partitions in {took:.1f} s: longest DROP (ACCESS EXCLUSIVE on "
        f"the parent) {max(drops):.1f} ms, median {statistics.median(drops):.1f} ms"
    )
    print(f"  beside, dropping: {await beside.stop()}")
    print(f"  after: {await sizes(db, 'attempts_by_day')}")
    await sql(db, "DROP TABLE attempts_by_day")


# --- batched deletes ------------------------------------------------------------------------


async def batched(db: Database, retention: int, delivery: str) -> None:
    print(f"\n## batched deletes (batches of {pruning.BATCH})", flush=True)
    print(f"  before: {await sizes(db, 'attempts')}")
    cutoff = NOW - timedelta(days=retention)
    (count,) = await sql(db, "SELECT count(*) FROM attempts WHERE started_at < :c", c=cutoff)
    print(f"  {count[0]:,} attempts older than {retention} days")
    beside = Beside(db, "attempts", delivery)
    await baseline(beside, "claim", "read", "insert")
    beside.start("claim", "read", "insert")
    # `pruning.prune_attempts`'s loop, each batch timed.
    pacer = Pacer.fixed(pruning.BATCH)
    batches: list[float] = []
    total = 0
    started = time.perf_counter()
    while True:
        one = time.perf_counter()
        async with db.transaction() as conn:
            deleted = await upkeep_queries.prune_attempts(conn, older_than=cutoff, limit=pacer.size)
        batches.append((time.perf_counter() - one) * 1000)
        total += deleted
        if deleted < pacer.size:
            break
        await asyncio.sleep(0)
    took = time.perf_counter() - started
    print(
        f"  deleted {total:,} in {took:.0f} s ({total / took:,.0f} rows/s), {len(batches)} "
        f"batches: longest {max(batches):.0f} ms, p99 "
        f"{statistics.quantiles(batches, n=100)[98]:.0f} ms, median "
        f"{statistics.median(batches):.0f} ms"
    )
    print(f"  beside, pruning: {await beside.stop()}")
    print(f"  after: {await sizes(db, 'attempts')}")
    started = time.perf_counter()
    await sql(db, "VACUUM attempts")
    print(
        f"  VACUUM in {time.perf_counter() - started:.0f} s (a plain VACUUM: no lock that "
        f"blocks reads or writes); after: {await sizes(db, 'attempts')}"
    )
    _plan, took = await explain(db, DELIVERY_ATTEMPTS.format(table="attempts"), delivery=delivery)
    print(f"  a delivery's attempts after pruning: {took:.2f} ms")


# --- retention of deliveries and events ------------------------------------------------------

EVENTS_SELECT = """
SELECT md5('ev' || i::text)::uuid::text, 'site-1', 'NewWorkItemVersionComplete',
       json_build_object('id', md5('ev' || i::text)::uuid::text,
                         'eventType', 'NewWorkItemVersionComplete', 'siteId', 'site-1',
                         'createdBy', json_build_object('id', 'user-1', 'name', 'Ann Lee'),
                         'data', json_build_object('workItemId', md5('wi' || i::text)::uuid::text,
                                                   'versionNumber', 1,
                                                   'documents', json_build_array())),
       md5('wi' || i::text)::uuid::text,
       CAST(:start AS timestamptz) + interval '1 second' * (:seconds * i / :rows)
FROM generate_series(CAST(:low AS bigint), CAST(:high AS bigint) - 1) AS i
"""
FINISHED_SELECT = """
SELECT md5('dv' || i::text)::uuid::text, md5('ev' || i::text)::uuid::text, :hook, 'site-1',
       CASE WHEN i % 33 = 0 THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN i % 33 = 0 THEN 9 ELSE 1 END,
       CASE WHEN i % 33 = 0 THEN 503 ELSE 200 END,
       CASE WHEN i % 33 = 0 THEN 'http_status' END,
       made, made + interval '1 second' * (i % 120)
FROM (SELECT i, CAST(:start AS timestamptz) + interval '1 second' * (:seconds * i / :rows) AS made
      FROM generate_series(CAST(:low AS bigint), CAST(:high AS bigint) - 1) AS i) AS s
"""
BACKLOG_SELECT = """
SELECT md5('backlog' || i::text)::uuid::text, md5('ev' || i::text)::uuid::text, :hook,
       'site-1', 'pending', 20, made + interval '1 day', made
FROM (SELECT i, CAST(:start AS timestamptz) + interval '1 second' * (:seconds * i / :rows) AS made
      FROM generate_series(CAST(:low AS bigint), CAST(:high AS bigint) - 1, 1000) AS i) AS s
"""


async def build_retention(db: Database, count: int, days: int) -> None:
    started = time.perf_counter()
    start = NOW - timedelta(days=days)
    shape = {"start": start, "seconds": days * 86_400, "rows": count}
    for low in range(0, count, CHUNK):
        span = {**shape, "low": low, "high": min(count, low + CHUNK)}
        async with db.transaction() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO events (id, site_id, event_type, payload, work_item_id, "
                    f"created_at) {EVENTS_SELECT}"
                ),
                span,
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO deliveries (id, event_id, webhook_id, site_id, status, "
                    "attempts, last_status_code, last_error_class, created_at, completed_at) "
                    f"{FINISHED_SELECT}"
                ),
                {**span, "hook": HOOK_E},
            )
            await conn.execute(
                sa.text(
                    "INSERT INTO deliveries (id, event_id, webhook_id, site_id, status, "
                    f"attempts, next_attempt_at, created_at) {BACKLOG_SELECT}"
                ),
                {**span, "hook": claim_plans._hook_id("B")},
            )
        print(f"  {span['high']:,} events, {time.perf_counter() - started:.0f} s", flush=True)
    await sql(db, "VACUUM ANALYZE")
    print(f"built in {time.perf_counter() - started:.0f} s", flush=True)


async def timed_batches(
    db: Database, title: str, batch: Callable[[AsyncConnection, int], Awaitable[tuple[int, int]]]
) -> None:
    """`pruning._in_batches`' loop at its PostgreSQL size, each batch timed."""
    size = pruning.DELIVERY_BATCH if "deliveries" in title else pruning.EVENT_BATCH
    times: list[float] = []
    total = 0
    started = time.perf_counter()
    while True:
        one = time.perf_counter()
        async with db.transaction() as conn:
            examined, deleted = await batch(conn, size)
        times.append((time.perf_counter() - one) * 1000)
        total += deleted
        if examined < size:
            break
        await asyncio.sleep(0)
    took = time.perf_counter() - started
    quantile = statistics.quantiles(times, n=100)[98] if len(times) > 1 else times[0]
    print(
        f"  {title}: deleted {total:,} in {took:.0f} s ({total / took:,.0f} rows/s), "
        f"{len(times)} batches of {size}: longest {max(times):.0f} ms, p99 {quantile:.0f} ms, "
        f"median {statistics.median(times):.0f} ms",
        flush=True,
    )


async def retention(db: Database, retention_days: int) -> None:
    print(f"\n## retention of deliveries and events ({retention_days} days)", flush=True)
    for table in ("deliveries", "events"):
        print(f"  {table}: {await sizes(db, table)}")
    cutoff = NOW - timedelta(days=retention_days)
    (counts,) = await sql(
        db,
        "SELECT (SELECT count(*) FROM deliveries WHERE completed_at < :c), "
        "(SELECT count(*) FROM deliveries WHERE status = 'pending'), "
        "(SELECT count(*) FROM events WHERE created_at < :c)",
        c=cutoff,
    )
    print(
        f"  {counts[0]:,} deliveries finished before the cutoff, {counts[1]:,} pending in "
        f"all; {counts[2]:,} events made before it"
    )

    async def one_delivery_batch(conn: AsyncConnection) -> None:
        await upkeep_queries.prune_deliveries(conn, older_than=cutoff, limit=pruning.DELIVERY_BATCH)

    async def one_event_batch(conn: AsyncConnection) -> None:
        await upkeep_queries.prune_events(
            conn, older_than=cutoff, after=None, limit=pruning.EVENT_BATCH
        )

    await claim_plans.run(db, "a batch of finished deliveries (rolled back)", one_delivery_batch)
    (delivery,) = await sql(
        db, "SELECT id FROM deliveries WHERE status = 'pending' ORDER BY id LIMIT 1"
    )
    beside = Beside(db, "attempts", str(delivery[0]))
    await baseline(beside, "claim", "read", "insert")

    async def deliveries_batch(conn: AsyncConnection, size: int) -> tuple[int, int]:
        deleted = await upkeep_queries.prune_deliveries(conn, older_than=cutoff, limit=size)
        return deleted, deleted

    after: tuple[datetime, str] | None = None

    async def events_batch(conn: AsyncConnection, size: int) -> tuple[int, int]:
        nonlocal after
        found = await upkeep_queries.prune_events(conn, older_than=cutoff, after=after, limit=size)
        after = found.last or after
        return found.found, found.deleted

    beside.start("claim", "read", "insert")
    await timed_batches(db, "finished deliveries", deliveries_batch)
    print(f"  beside, pruning deliveries: {await beside.stop()}", flush=True)
    await claim_plans.run(db, "a batch of events (rolled back)", one_event_batch)
    beside.start("claim", "read", "insert")
    await timed_batches(db, "events", events_batch)
    print(f"  beside, pruning events: {await beside.stop()}", flush=True)
    (left,) = await sql(
        db,
        "SELECT (SELECT count(*) FROM deliveries), (SELECT count(*) FROM events), "
        "(SELECT count(*) FROM events WHERE created_at < :c)",
        c=cutoff,
    )
    print(f"  left: {left[0]:,} deliveries, {left[1]:,} events ({left[2]:,} older: backlog's)")
    started = time.perf_counter()
    await sql(db, "VACUUM deliveries")
    await sql(db, "VACUUM events")
    print(f"  VACUUM of both in {time.perf_counter() - started:.0f} s")
    for table in ("deliveries", "events"):
        print(f"  {table} after: {await sizes(db, table)}")


async def main_async(args: argparse.Namespace) -> None:
    async with database(args.database, args.keep) as (db, fresh):
        if fresh:
            await build(db, 0 if args.skip_attempts else args.rows, args.days)
            if args.deliveries:
                await build_retention(db, args.deliveries, args.days)
        if not args.skip_attempts:
            print(f"attempts: {await sizes(db, 'attempts')}")
            delivery = await plans(db, args.rows)
            if not args.skip_partitions:
                await partitions(db, args.days, args.retention, delivery)
            if not args.skip_delete:
                await batched(db, args.retention, delivery)
        if args.deliveries:
            await retention(db, args.retention)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--days", type=int, default=40)
    parser.add_argument("--retention", type=int, default=30)
    parser.add_argument("--database", help="reuse a database a --keep run left")
    parser.add_argument("--keep", action="store_true", help="leave the database")
    parser.add_argument("--skip-partitions", action="store_true")
    parser.add_argument("--skip-delete", action="store_true")
    parser.add_argument(
        "--deliveries", type=int, default=0, help="events (and finished deliveries) to prune"
    )
    parser.add_argument("--skip-attempts", action="store_true", help="only the retention part")
    args = parser.parse_args()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")))  # noqa: SIM115
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
