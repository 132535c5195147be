"""Retention: what the delivery log keeps, and for how long.

- Attempts go `attempt_retention_days` after they started.
- Finished deliveries (succeeded or failed: `queries.FINISHED`) go `delivery_retention_days`
  (by default `attempt_retention_days`) after they finished, with whatever attempts they
  still have. Pending deliveries stay, however old: a suspended webhook's backlog, or one
  waiting out its retries, is still to be sent.
- Events go once no delivery refers to them and they are older than the same retention.
- Finished recovery jobs (succeeded or failed: `recovery.FINISHED`) go as long after they
  finished as finished deliveries do, about when the deliveries they queued again go.
  Queued and running jobs stay, however old.
- The statistics roll-up's buckets go past what it keeps (`delivery.rollup`: 48 hours of
  hours, folded into days, 30 days of days), in the same hourly round.

One background loop does each in turn, every hour. Each deletes in bounded batches,
each its own transaction, so pruning a month of a busy log never holds one long lock that
workers recording attempts would queue behind. On SQLite, where the deletes run on the event
loop, batches are sized by time (`core.pacing`) rather than count.

Redelivery and recovery read the deliveries they copy with a share lock (PostgreSQL), held
until the copies are written, and the prune skips rows so held rather than wait for them: a
delivery being redelivered is pruned only after its copy exists (in a later round), and the
copy then keeps the event. Events are found and locked first, then deleted only if still
without a delivery (`upkeep_queries.prune_events`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.pacing import Pacer
from docuhooks.core.tasks import stop_task
from docuhooks.delivery import recovery, rollup, upkeep_queries
from docuhooks.delivery.interfaces import DeliveryContext
from docuhooks.settings import Settings
from docuhooks.store.database import Database

__all__ = [
    "Pruned",
    "prune",
    "prune_attempts",
    "prune_deliveries",
    "prune_events",
    "prune_recoveries",
    "prune_rollup",
    "start_pruner",
]

log = structlog.get_logger(__name__)

PRUNE_INTERVAL_SECONDS = 3600.0
#: Attempts one batch deletes on PostgreSQL.
BATCH = 5000
#: Deliveries one batch deletes on PostgreSQL: each may take its attempts and a flight
#: with it, and its row is wider than an attempt's.
DELIVERY_BATCH = 2000
#: Events one batch deletes on PostgreSQL.
EVENT_BATCH = 2000
#: Recovery jobs one batch deletes on PostgreSQL.
RECOVERY_BATCH = 2000
#: How long one batch of deletes should hold the event loop on SQLite.
BATCH_SECONDS = 0.010

#: One batch: given the connection and the batch's size, (rows examined, rows deleted).
_Batch = Callable[[AsyncConnection, int], Awaitable[tuple[int, int]]]


async def _in_batches(db: Database, batch: _Batch, *, fixed: int) -> int:
    """Run `batch` until one examines fewer rows than it was allowed; the rows deleted."""
    pacer = Pacer.aiming(BATCH_SECONDS, start=200) if db.is_sqlite else Pacer.fixed(fixed)
    total = 0
    while True:
        size, started = pacer.size, time.perf_counter()
        async with db.transaction() as conn:
            examined, deleted = await batch(conn, size)
        pacer.took(examined, time.perf_counter() - started)
        total += deleted
        if examined < size:
            return total
        await asyncio.sleep(0)  # between batches, whatever else waits goes first


async def prune_attempts(db: Database, *, now: datetime, retention_days: int) -> int:
    """Delete every attempt that started more than `retention_days` before `now`."""
    cutoff = now - timedelta(days=retention_days)

    async def batch(conn: AsyncConnection, size: int) -> tuple[int, int]:
        deleted = await upkeep_queries.prune_attempts(conn, older_than=cutoff, limit=size)
        return deleted, deleted

    return await _in_batches(db, batch, fixed=BATCH)


async def prune_deliveries(db: Database, *, now: datetime, retention_days: int) -> int:
    """Delete every finished delivery that finished more than `retention_days` before `now`,
    with its attempts; pending deliveries are never touched."""
    cutoff = now - timedelta(days=retention_days)

    async def batch(conn: AsyncConnection, size: int) -> tuple[int, int]:
        deleted = await upkeep_queries.prune_deliveries(conn, older_than=cutoff, limit=size)
        return deleted, deleted

    return await _in_batches(db, batch, fixed=DELIVERY_BATCH)


async def prune_events(db: Database, *, now: datetime, retention_days: int) -> int:
    """Delete every event made more than `retention_days` before `now` that has no delivery
    left, pending or finished."""
    cutoff = now - timedelta(days=retention_days)
    after: tuple[datetime, str] | None = None

    async def batch(conn: AsyncConnection, size: int) -> tuple[int, int]:
        nonlocal after
        found = await upkeep_queries.prune_events(conn, older_than=cutoff, after=after, limit=size)
        after = found.last or after
        return found.found, found.deleted

    return await _in_batches(db, batch, fixed=EVENT_BATCH)


async def prune_recoveries(db: Database, *, now: datetime, retention_days: int) -> int:
    """Delete every recovery job that finished more than `retention_days` before `now`;
    queued and running jobs are never touched."""
    cutoff = now - timedelta(days=retention_days)

    async def batch(conn: AsyncConnection, size: int) -> tuple[int, int]:
        postgresql = conn.dialect.name == "postgresql"
        result = await conn.execute(recovery.finished_jobs_delete(cutoff, size, postgresql))
        return result.rowcount, result.rowcount

    return await _in_batches(db, batch, fixed=RECOVERY_BATCH)


@dataclass(frozen=True, slots=True)
class Pruned:
    attempts: int
    deliveries: int
    events: int
    recoveries: int


async def prune(db: Database, settings: Settings, *, now: datetime) -> Pruned:
    """One round of retention: attempts, then finished deliveries, then the events they
    leave without deliveries, then finished recovery jobs, each as `settings` say."""
    attempts = await prune_attempts(db, now=now, retention_days=settings.attempt_retention_days)
    kept = settings.kept_delivery_days
    deliveries = await prune_deliveries(db, now=now, retention_days=kept)
    events = await prune_events(db, now=now, retention_days=kept)
    recoveries = await prune_recoveries(db, now=now, retention_days=kept)
    return Pruned(attempts=attempts, deliveries=deliveries, events=events, recoveries=recoveries)


async def prune_rollup(db: Database, *, now: datetime) -> int:
    """Delete the roll-up's buckets past its retention: at most one hour's worth of rows per
    webhook since the last round, so one short transaction."""
    async with db.transaction() as conn:
        return await rollup.prune(conn, now=now)


async def start_pruner(ctx: DeliveryContext) -> Callable[[], Awaitable[None]]:
    """Prune now and then every hour, in the background; returns the stop function."""

    async def loop() -> None:
        while True:
            try:
                pruned = await prune(ctx.db, ctx.settings, now=ctx.now())
                if pruned.attempts:
                    log.info("attempts.pruned", deleted=pruned.attempts)
                if pruned.deliveries or pruned.events:
                    log.info(
                        "deliveries.pruned", deliveries=pruned.deliveries, events=pruned.events
                    )
                if pruned.recoveries:
                    log.info("recoveries.pruned", deleted=pruned.recoveries)
            except Exception as exc:
                log.warning("retention.prune_failed", error=f"{type(exc).__name__}: {exc}")
            try:
                await prune_rollup(ctx.db, now=ctx.now())
            except Exception as exc:
                log.warning("stats.prune_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)

    task = asyncio.create_task(loop(), name="docuhooks-pruner")

    async def stop() -> None:
        await stop_task(task)

    return stop
