"""The transactional outbox: an event and its deliveries are written with the change that caused
them, in the same transaction, so nothing is sent for a change that rolled back and nothing
committed is ever lost. Workers pick the deliveries up from the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import tracing
from docuhooks.core.events import Event, EventType
from docuhooks.core.ids import uuid7
from docuhooks.core.tracecontext import TraceContext, new_trace
from docuhooks.delivery import queries
from docuhooks.store.prepared import Prepared
from docuhooks.store.schema import deliveries, events, webhooks
from docuhooks.webhooks import matching

__all__ = ["enqueue"]


async def enqueue(
    conn: AsyncConnection,
    event: Event,
    *,
    work_group_id: str | None,
    template_id: str | None,
    work_item_id: str | None = None,
    ordering_seq: int | None = None,
    webhook_ids: Sequence[str] | None = None,
    interview_event_name: str | None = None,
    trace: TraceContext | None = tracing.CURRENT,
    now: datetime,
) -> list[str]:
    """Write `event` and one pending delivery per webhook it reaches; return the delivery ids.

    The contract with the caller:

    * `conn` is the caller's open write transaction (`ctx.db.transaction()`); this function
      never commits. If the transaction rolls back, the event and its deliveries vanish with
      it and nothing is ever sent.
    * After the commit, the caller calls `ctx.events_committed()`: that wakes the in-process
      worker (SQLite). On PostgreSQL the insert raises `NOTIFY docuhooks_deliveries` (a
      trigger), which the server delivers to listening workers only when the transaction
      commits.

    The webhooks are those `webhooks.matching.matching` selects (index-driven), the
    suspended ones included: their deliveries queue and drain when they resume.
    `webhook_ids` instead names the webhooks outright (the test endpoint, redelivery): they
    must belong to the event's site and be active, but their scopes and type are not checked
    again, because an administrator chose them. Writing an event that already exists (same
    `eventId`, e.g. a redelivery) adds deliveries to it without writing it twice.

    `work_item_id` and `ordering_seq` (the version number) let a webhook with
    `orderedDelivery` receive a work item's events strictly in sequence.

    The event keeps the trace context it is written in (`trace`: the current one by
    default), so every attempt continues that trace; an event that already exists keeps
    its own.
    """
    with tracing.span(
        "docuhooks.outbox.write",
        parent=trace,
        kind=tracing.Kind.PRODUCER,
        attributes={
            "docuhooks.event.id": event.event_id,
            "docuhooks.event.type": str(event.event_type),
        },
    ) as span:
        # Without spans the event keeps the context it was written in (a new trace when
        # there is none): its attempts are children of that span, which costs no new id.
        return await _write(
            conn,
            event,
            span.context or new_trace(),
            work_group_id=work_group_id,
            template_id=template_id,
            work_item_id=work_item_id,
            ordering_seq=ordering_seq,
            webhook_ids=webhook_ids,
            interview_event_name=interview_event_name,
            now=now,
        )


async def _write(
    conn: AsyncConnection,
    event: Event,
    trace: TraceContext,
    *,
    work_group_id: str | None,
    template_id: str | None,
    work_item_id: str | None,
    ordering_seq: int | None,
    webhook_ids: Sequence[str] | None,
    interview_event_name: str | None,
    now: datetime,
) -> list[str]:
    if webhook_ids is None:
        target_ids = await matching.matching_ids(
            conn,
            site_id=event.site_id,
            event_type=EventType(event.event_type),
            work_group_id=work_group_id,
            template_id=template_id,
            interview_event_name=interview_event_name,
        )
    else:
        target_ids = await _named_webhooks(conn, event.site_id, webhook_ids)

    # One statement whether or not the event exists: a round trip fewer on every event.
    await _INSERT_NEW_EVENT[conn.dialect.name].execute(
        conn,
        {
            "id": event.event_id,
            "site_id": event.site_id,
            "event_type": str(event.event_type),
            "payload": event.to_dict(),
            "work_item_id": work_item_id,
            "created_at": now,
            "traceparent": trace.traceparent,
            "tracestate": trace.state or None,
        },
    )
    if not target_ids:
        return []

    rows: list[dict[str, Any]] = [
        {
            "id": uuid7(),
            "event_id": event.event_id,
            "webhook_id": webhook_id,
            "site_id": event.site_id,
            "status": queries.PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "ordering_key": work_item_id if ordering_seq is not None else None,
            "ordering_seq": ordering_seq,
            "created_at": now,
        }
        for webhook_id in target_ids
    ]
    # On PostgreSQL the insert wakes the workers itself (a trigger, migration 0008).
    await _INSERT_DELIVERIES.executemany(conn, rows)
    return [row["id"] for row in rows]


#: `INSERT INTO events … ON CONFLICT (id) DO NOTHING` in each dialect's own words, built once:
#: building it (and its cache key) per event cost more than running it.
_INSERT_NEW_EVENT: dict[str, Prepared] = {
    name: Prepared(insert(events).on_conflict_do_nothing(index_elements=[events.c.id]))
    for name, insert in (("postgresql", postgresql.insert), ("sqlite", sqlite.insert))
}
_INSERT_DELIVERIES = Prepared(deliveries.insert())


async def _named_webhooks(
    conn: AsyncConnection, site_id: str, webhook_ids: Sequence[str]
) -> list[str]:
    if not webhook_ids:
        return []
    found = (
        await conn.execute(
            sa.select(webhooks.c.id)
            .where(
                webhooks.c.site_id == site_id,
                webhooks.c.active.is_(True),
                webhooks.c.id.in_(list(webhook_ids)),
            )
            .order_by(webhooks.c.sort_order, webhooks.c.created_at, webhooks.c.id)
        )
    ).scalars()
    return list(found)
