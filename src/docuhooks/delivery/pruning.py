"""Attempt log retention: attempts older than `attempt_retention_days` go.

Deleted in bounded batches, each its own transaction, so pruning a month of a busy log never
holds one long lock that workers recording attempts would queue behind.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

import structlog

from docuhooks.delivery import upkeep_queries
from docuhooks.delivery.interfaces import DeliveryContext
from docuhooks.store.database import Database

__all__ = ["prune_attempts", "start_pruner"]

log = structlog.get_logger(__name__)

PRUNE_INTERVAL_SECONDS = 3600.0
BATCH = 5000


async def prune_attempts(db: Database, *, now: datetime, retention_days: int) -> int:
    """Delete every attempt that started more than `retention_days` before `now`."""
    cutoff = now - timedelta(days=retention_days)
    total = 0
    while True:
        async with db.transaction() as conn:
            deleted = await upkeep_queries.prune_attempts(conn, older_than=cutoff, limit=BATCH)
        total += deleted
        if deleted < BATCH:
            return total


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
            await asyncio.sleep(PRUNE_INTERVAL_SECONDS)

    task = asyncio.create_task(loop(), name="docuhooks-pruner")

    async def stop() -> None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    return stop
