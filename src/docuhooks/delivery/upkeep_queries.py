"""The statements beside the send path: administrators' redelivery, retention (pruning
attempts, finished deliveries and events left without deliveries), the queue's state for
the metrics, and the worker fleet's heartbeats.

Times are parameters from the caller's clock, never the database's `now()`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.ids import uuid7
from docuhooks.delivery.queries import FINISHED, PENDING, is_pending, unleased
from docuhooks.store.notify import notify_due_deliveries
from docuhooks.store.schema import attempts, deliveries, events, flights, webhooks, workers

# --- administrators' redelivery -------------------------------------------------


async def make_due(conn: AsyncConnection, delivery_id: str, *, now: datetime) -> bool:
    """Bring a pending, unleased delivery's next attempt forward to `now`; False if it is no
    longer pending or a worker took it meanwhile."""
    result = await conn.execute(
        deliveries.update()
        .where(deliveries.c.id == delivery_id, is_pending(), unleased(now))
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


async def prune_deliveries(conn: AsyncConnection, *, older_than: datetime, limit: int) -> int:
    """Delete up to `limit` finished deliveries that finished before `older_than`, the oldest
    first (a seek of `ix_deliveries_completed`); their attempts and flights go with them (the
    foreign keys cascade). A pending delivery has no `completed_at` and is never chosen,
    however old; the status is checked as well, so only `FINISHED` ones ever go."""
    postgresql = conn.dialect.name == "postgresql"
    result = await conn.execute(finished_deliveries_delete(older_than, limit, postgresql))
    return result.rowcount


def finished_deliveries_delete(older_than: datetime, limit: int, postgresql: bool) -> sa.Delete:
    """`prune_deliveries`' statement (also for `bench/pruning.py`'s plans).

    On PostgreSQL `id = ANY(ARRAY(subquery))`: the batch's ids are found first (an InitPlan)
    and then deleted by primary key. As `id IN (subquery)` the generic plan that asyncpg's
    prepared statement ends up with may join the batch to a sequential scan of the whole
    table (measured at 200,000 deliveries: `bench/pruning.py`)."""
    # The status is checked through `coalesce` (it is never null): as a plain `IN`, SQLite,
    # which keeps no statistics here, would read every finished delivery through
    # `ix_deliveries_due`'s status and sort them, instead of the oldest few in order.
    finished = sa.func.coalesce(deliveries.c.status, "").in_(FINISHED)
    old = (
        sa.select(deliveries.c.id)
        .where(deliveries.c.completed_at < older_than, finished)
        .order_by(deliveries.c.completed_at)
        .limit(limit)
    )
    return delete_batch(deliveries, old, postgresql=postgresql)


def delete_batch(table: sa.Table, batch: sa.Select[Any], *, postgresql: bool) -> sa.Delete:
    """Delete from `table` the rows whose ids `batch` selects: retention's batches.

    On PostgreSQL `id = ANY(ARRAY(batch))`, skipping the rows another transaction holds (a
    redelivery or recovery copying them, under a share lock): the prune never waits, so it
    can never be one side of a deadlock, and what it skipped goes in the next round."""
    if postgresql:
        batch = batch.with_for_update(skip_locked=True)
        chosen = table.c.id == sa.any_(sa.func.array(batch.scalar_subquery()))
    else:
        chosen = table.c.id.in_(batch.scalar_subquery())
    return table.delete().where(chosen)


@dataclass(frozen=True, slots=True)
class EventBatch:
    #: Events found with no delivery left (and, on PostgreSQL, not locked by anyone).
    found: int
    deleted: int
    #: `(created_at, id)` of the last event found: the next batch starts after it.
    last: tuple[datetime, str] | None


def _no_delivery_left() -> sa.ColumnElement[bool]:
    # Any delivery, pending or finished, keeps its event (a seek of `ix_deliveries_event`).
    return ~sa.exists().where(deliveries.c.event_id == events.c.id)


async def prune_events(
    conn: AsyncConnection,
    *,
    older_than: datetime,
    after: tuple[datetime, str] | None,
    limit: int,
) -> EventBatch:
    """Delete up to `limit` events made before `older_than` that no delivery refers to any
    more, the oldest first, starting after `after` (a walk of `ix_events_created`: the old
    events that keep a delivery are read once per prune, not once per batch).

    Two statements, so a delivery written for an event meanwhile keeps it: the first finds
    the events and (PostgreSQL) locks them, skipping any a writer holds; the second deletes
    them, checking again under the lock with a snapshot taken after it. Without the second
    check an event whose redelivery committed between the two would go, and the foreign
    key's cascade would take the new delivery with it.
    """
    found = (await conn.execute(unreferenced_events_select(older_than, after, limit))).all()
    if not found:
        return EventBatch(found=0, deleted=0, last=None)
    postgresql = conn.dialect.name == "postgresql"
    result = await conn.execute(unreferenced_events_delete([row.id for row in found], postgresql))
    last = found[-1]
    return EventBatch(found=len(found), deleted=result.rowcount, last=(last.created_at, last.id))


def unreferenced_events_select(
    older_than: datetime, after: tuple[datetime, str] | None, limit: int
) -> sa.Select[tuple[str, datetime]]:
    """`prune_events`' first statement (also for `bench/pruning.py`'s plans)."""
    query = (
        sa.select(events.c.id, events.c.created_at)
        .where(events.c.created_at < older_than, _no_delivery_left())
        .order_by(events.c.created_at, events.c.id)
        .limit(limit)
        .with_for_update(of=events, skip_locked=True)
    )
    if after is not None:
        query = query.where(sa.tuple_(events.c.created_at, events.c.id) > sa.tuple_(*after))
    return query


def unreferenced_events_delete(ids: list[str], postgresql: bool) -> sa.Delete:
    """`prune_events`' second statement: the events found, if still without a delivery. On
    PostgreSQL the ids are one array parameter: one prepared statement whatever their
    number, where `IN` would make one per batch size."""
    if postgresql:
        chosen = events.c.id == sa.any_(sa.bindparam("ids", ids, type_=ARRAY(sa.String())))
    else:
        chosen = events.c.id.in_(ids)
    return events.delete().where(chosen, _no_delivery_left())


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
                is_pending(), deliveries.c.next_attempt_at <= now
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
