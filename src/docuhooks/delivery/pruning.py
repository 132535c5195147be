"""Attempt log retention: attempts older than `attempt_retention_days` go; so do the
roll-up's buckets past what it keeps (`delivery.rollup`), in the same hourly round.

Deleted in bounded batches, each its own transaction, so pruning a month of a busy log never
holds one long lock that workers recording attempts would queue behind. On SQLite, where the
deletes run on the event loop, batches are sized by time (`core.pacing`) rather than count.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog

from docuhooks.core.pacing import Pacer
from docuhooks.delivery import rollup, upkeep_queries
from docuhooks.delivery.interfaces import DeliveryContext
from docuhooks.store.database import Database

__all__ = ["prune_attempts", "prune_rollup", "start_pruner"]

log = structlog.get_logger(__name__)

PRUNE_INTERVAL_SECONDS = 3600.0
#: Attempts one batch deletes on PostgreSQL.
BATCH = 5000
#: How long one batch of deletes should hold the event loop on SQLite.
BATCH_SECONDS = 0.010


async def prune_attempts(db: Database, *, now: datetime, retention_days: int) -> int:
    """Delete every attempt that started more than `retention_days` before `now`."""
    cutoff = now - timedelta(days=retention_days)
    pacer = Pacer.aiming(BATCH_SECONDS, start=200) if db.is_sqlite else Pacer.fixed(BATCH)
    total = 0
    while True:
        size, started = pacer.size, time.perf_counter()
        async with db.transaction() as conn:
            deleted = await upkeep_queries.prune_attempts(conn, older_than=cutoff, limit=size)
        pacer.took(deleted, time.perf_counter() - started)
        total += deleted
        if deleted < size:
            return total
        await asyncio.sleep(0)  # between batches, whatever else waits goes first


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
                deleted = await prune_attempts(
                    ctx.db, now=ctx.now(), retention_days=ctx.settings.attempt_retention_days
                )
                if deleted:
                    log.info("attempts.pruned", deleted=deleted)
            except Exception as exc:
                log.warning("attempts.prune_failed", error=f"{type(exc).__name__}: {exc}")
            try:
                await prune_rollup(ctx.db, now=ctx.now())
            except Exception as exc:
                log.warning("stats.prune_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)

    task = asyncio.create_task(loop(), name="docuhooks-pruner")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop
