"""The statements beside the send path: administrators' redelivery, pruning the attempt
log, the queue's state for the metrics, and the worker fleet's heartbeats.

Times are parameters from the caller's clock, never the database's `now()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.ids import uuid7
from docuhooks.delivery.queries import PENDING, unleased
from docuhooks.store.notify import notify_due_deliveries
from docuhooks.store.schema import attempts, deliveries, flights, webhooks, workers

# --- administrators' redelivery -------------------------------------------------


async def make_due(conn: AsyncConnection, delivery_id: str, *, now: datetime) -> bool:
    """Bring a pending, unleased delivery's next attempt forward to `now`; False if it is no
    longer pending or a worker took it meanwhile."""
    result = await conn.execute(
        deliveries.update()
        .where(deliveries.c.id == delivery_id, deliveries.c.status == PENDING, unleased(now))
        .values(next_attempt_at=now)
    )
    if result.rowcount != 1:
        return False
    await notify_due_deliveries(conn)
    return True


async def insert_redeliveries(
    conn: AsyncConnection, originals: list[sa.Row[Any]], *, now: datetime
) -> list[str]:
    """A new pending delivery, due now, for the event and webhook of each original delivery.

    A fresh row rather than a reopened one: it gets the whole retry schedule and counts its
    attempts from 1, and the original keeps its attempt history exactly as it ended. The
    ordering key carries over, so an ordered webhook still gets a work item's versions in turn.
    """
    if not originals:
        return []
    rows = [
        {
            "id": uuid7(),
            "event_id": original.event_id,
            "webhook_id": original.webhook_id,
            "site_id": original.site_id,
            "status": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "ordering_key": original.ordering_key,
            "ordering_seq": original.ordering_seq,
            "created_at": now,
        }
        for original in originals
    ]
    await conn.execute(deliveries.insert(), rows)  # the insert trigger wakes the workers
    return [row["id"] for row in rows]


# --- pruning ----------------------------------------------------------------------------------


async def prune_attempts(conn: AsyncConnection, *, older_than: datetime, limit: int) -> int:
    """Delete up to `limit` attempts that started before `older_than`; the count deleted."""
    old = (
        sa.select(attempts.c.id)
        .where(attempts.c.started_at < older_than)
        .order_by(attempts.c.started_at)
        .limit(limit)
    )
    result = await conn.execute(attempts.delete().where(attempts.c.id.in_(old.scalar_subquery())))
    return result.rowcount


# --- metrics and the worker fleet -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class QueueState:
    oldest_due_at: datetime | None
    workers_alive: int


async def queue_state(conn: AsyncConnection, *, now: datetime, alive_since: datetime) -> QueueState:
    """The oldest due delivery (one seek of `ix_deliveries_due`) and the workers alive; the
    counts of the queue are `delivery.health.backlog`'s."""
    oldest = (
        await conn.execute(
            sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(
                deliveries.c.status == PENDING, deliveries.c.next_attempt_at <= now
            )
        )
    ).scalar_one()
    alive = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(workers)
            .where(workers.c.heartbeat_at >= alive_since)
        )
    ).scalar_one()
    return QueueState(oldest_due_at=oldest, workers_alive=alive)


async def suspended_webhooks(conn: AsyncConnection) -> int:
    """Active webhooks that are suspended (inactive ones send nothing either way)."""
    count: int = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(webhooks)
            .where(webhooks.c.suspended_at.is_not(None), webhooks.c.active.is_(True))
        )
    ).scalar_one()
    return count


async def heartbeat(
    conn: AsyncConnection, *, worker_id: str, hostname: str, pid: int, now: datetime
) -> None:
    updated = await conn.execute(
        workers.update().where(workers.c.id == worker_id).values(heartbeat_at=now)
    )
    if updated.rowcount == 0:
        await conn.execute(
            workers.insert().values(
                id=worker_id, hostname=hostname, pid=pid, started_at=now, heartbeat_at=now
            )
        )


async def forget_worker(conn: AsyncConnection, worker_id: str) -> None:
    await conn.execute(workers.delete().where(workers.c.id == worker_id))


async def forget_dead_workers(conn: AsyncConnection, *, silent_since: datetime) -> None:
    await conn.execute(workers.delete().where(workers.c.heartbeat_at < silent_since))
    # Their calls in flight ran out with their leases; the rows count for nothing now.
    await conn.execute(flights.delete().where(flights.c.expires_at < silent_since))
