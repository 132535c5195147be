"""The transactional outbox: an event and its deliveries are written with the change that caused
them, in the same transaction, so nothing is sent for a change that rolled back and nothing
committed is ever lost. Workers pick the deliveries up from the table.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
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

__all__ = ["enqueue", "hold_in_order", "release_in_order"]


@dataclass(frozen=True, slots=True)
class _Reach:
    """Which webhooks an event reaches (matched by site, type and scopes, or named outright),
    and its place in its work item's order (`enqueue`'s arguments of that name)."""

    work_group_id: str | None
    template_id: str | None
    work_item_id: str | None
    ordering_seq: int | None
    webhook_ids: Sequence[str] | None
    interview_event_name: str | None


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

    On PostgreSQL all of it is one statement (`_enqueue_in_one_statement`), a round trip
    where it was three; on SQLite, where a statement costs no round trip, three prepared ones.
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
        reach = _Reach(
            work_group_id,
            template_id,
            work_item_id,
            ordering_seq,
            webhook_ids,
            interview_event_name,
        )
        # Without spans the event keeps the context it was written in (a new trace when
        # there is none): its attempts are children of that span, which costs no new id.
        return await _write(conn, event, span.context or new_trace(), reach, now=now)


async def _write(
    conn: AsyncConnection,
    event: Event,
    trace: TraceContext,
    reach: _Reach,
    *,
    now: datetime,
) -> list[str]:
    if conn.dialect.name == "postgresql":
        return await _enqueue_in_one_statement(conn, event, trace, reach, now=now)
    work_item_id, ordering_seq, webhook_ids = (
        reach.work_item_id,
        reach.ordering_seq,
        reach.webhook_ids,
    )
    if webhook_ids is None:
        target_ids = await matching.matching_ids(
            conn,
            site_id=event.site_id,
            event_type=EventType(event.event_type),
            work_group_id=reach.work_group_id,
            template_id=reach.template_id,
            interview_event_name=reach.interview_event_name,
        )
    else:
        target_ids = await _named_webhooks(conn, event.site_id, webhook_ids)

    # One statement whether or not the event exists: a round trip fewer on every event.
    await _INSERT_NEW_EVENT.execute(
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


#: `INSERT INTO events … ON CONFLICT (id) DO NOTHING` on SQLite, built once: building it
#: (and its cache key) per event cost more than running it. PostgreSQL writes the event in
#: `_one_statement_enqueue`.
_INSERT_NEW_EVENT = Prepared(
    sqlite.insert(events).on_conflict_do_nothing(index_elements=[events.c.id])
)
_INSERT_DELIVERIES = Prepared(deliveries.insert())


async def _enqueue_in_one_statement(
    conn: AsyncConnection,
    event: Event,
    trace: TraceContext,
    reach: _Reach,
    *,
    now: datetime,
) -> list[str]:
    """`enqueue` on PostgreSQL: match, write the event and its deliveries in one statement,
    run on asyncpg in the caller's transaction (`store.prepared`)."""
    work_item_id, ordering_seq, webhook_ids = (
        reach.work_item_id,
        reach.ordering_seq,
        reach.webhook_ids,
    )
    params: dict[str, Any] = {
        "event_id": event.event_id,
        "payload": event.to_dict(),
        "work_item_id": work_item_id,
        "now": now,
        "traceparent": trace.traceparent,
        "tracestate": trace.state or None,
        "ordering_key": work_item_id if ordering_seq is not None else None,
        "ordering_seq": ordering_seq,
    }
    if webhook_ids is None:
        params |= matching.matching_params(
            event.site_id,
            EventType(event.event_type),
            reach.work_group_id,
            reach.template_id,
            reach.interview_event_name,
        )
        statement = _one_statement_enqueue(
            _MATCHED_NAMED if "interview_event_name" in params else _MATCHED
        )
    else:
        params |= {
            "site_id": event.site_id,
            "event_type": str(event.event_type),
            "webhook_ids": list(webhook_ids),
        }
        statement = _one_statement_enqueue(_NAMED)
    return [row.id for row in await statement.all(conn, params)]


#: What `_one_statement_enqueue` delivers to: the webhooks matching selects, or those the
#: caller names.
_MATCHED, _MATCHED_NAMED, _NAMED = "matched", "matched by interview event name", "named"


@functools.cache
def _one_statement_enqueue(targets: str) -> Prepared:
    """The outbox on PostgreSQL in one statement: the event's insert (`ON CONFLICT DO
    NOTHING`: a redelivery's event exists), the webhooks it reaches (`targets`), and one
    pending delivery for each, its id made by `docuhooks_uuid7()` (migration 0015); returns
    the deliveries' ids in the webhooks' order.

    Its parts are one statement's, so they see the same snapshot and commit together; the
    deliveries' foreign key on the event is checked when the statement ends, after the
    event's insert. The insert wakes the workers by its trigger, only if it wrote a row."""
    now = sa.bindparam("now", type_=deliveries.c.created_at.type)
    event_id = sa.bindparam("event_id", type_=events.c.id.type)
    site_id = sa.bindparam("site_id", type_=events.c.site_id.type)
    new_event = (
        postgresql.insert(events)
        .values(
            id=event_id,
            site_id=site_id,
            event_type=sa.bindparam("event_type", type_=events.c.event_type.type),
            payload=sa.bindparam("payload", type_=events.c.payload.type),
            work_item_id=sa.bindparam("work_item_id", type_=events.c.work_item_id.type),
            created_at=now,
            traceparent=sa.bindparam("traceparent", type_=events.c.traceparent.type),
            tracestate=sa.bindparam("tracestate", type_=events.c.tracestate.type),
        )
        .on_conflict_do_nothing(index_elements=[events.c.id])
        .cte("new_event")
    )
    if targets == _NAMED:
        # Named by an administrator: of the event's site and active; scopes not checked again.
        place = sa.func.row_number().over(
            order_by=(webhooks.c.sort_order, webhooks.c.created_at, webhooks.c.id)
        )
        selection = sa.select(webhooks.c.id, place.label("place")).where(
            webhooks.c.site_id == site_id,
            webhooks.c.active.is_(True),
            webhooks.c.id
            == sa.func.any(sa.bindparam("webhook_ids", type_=postgresql.ARRAY(sa.String))),
        )
    else:
        selection = matching.ranked_selection(interview_event_name=targets == _MATCHED_NAMED)
    matched = selection.cte("matched")
    # The webhooks written to, locked as the deliveries' foreign key check would lock them,
    # but first: a webhook deleted by a transaction that commits while this statement runs is
    # left out (READ COMMITTED skips a row deleted while it waited for its lock) instead of
    # failing the foreign key check at the statement's end, which would roll back the
    # caller's change (an interview step, a finished work item) for an unrelated edit. A
    # delete that comes later waits for the caller's commit and cascades to its deliveries.
    locked = (
        sa.select(webhooks.c.id)
        .where(webhooks.c.id.in_(sa.select(matched.c.id).scalar_subquery()))
        .with_for_update(read=True, key_share=True)
        .cte("locked")
    )
    new_deliveries = (
        deliveries.insert()
        .from_select(
            [
                "id",
                "event_id",
                "webhook_id",
                "site_id",
                "status",
                "attempts",
                "next_attempt_at",
                "ordering_key",
                "ordering_seq",
                "created_at",
            ],
            sa.select(
                sa.func.docuhooks_uuid7(type_=deliveries.c.id.type),
                event_id,
                matched.c.id,
                site_id,
                sa.literal_column(f"'{queries.PENDING}'"),
                sa.literal_column("0"),
                now,
                sa.bindparam("ordering_key", type_=deliveries.c.ordering_key.type),
                sa.bindparam("ordering_seq", type_=deliveries.c.ordering_seq.type),
                now,
            ).join(locked, locked.c.id == matched.c.id),
        )
        .returning(deliveries.c.id, deliveries.c.webhook_id)
        .cte("new_deliveries")
    )
    return Prepared(
        sa.select(new_deliveries.c.id)
        .join(matched, matched.c.id == new_deliveries.c.webhook_id)
        .order_by(matched.c.place)
        .add_cte(new_event)
    )


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


# --- a later version that completes first ----------------------------------------------------


async def hold_in_order(
    conn: AsyncConnection, ordering_key: str, ordering_seq: int, *, until: datetime
) -> None:
    """Hold the pending deliveries of (`ordering_key`, `ordering_seq`) to `orderedDelivery`
    webhooks until `until`, in the caller's transaction: an earlier place in the order
    (a work item's earlier version, still in post-processing) has no event yet, so nothing
    pending would hold them back, and they would reach the receiver first.

    `release_in_order` lets them go once the earlier places have their events; `until` is
    the latest those places can take (their deadlines), so that a delivery is held back at
    worst that long, never forever."""
    await conn.execute(
        deliveries.update()
        .where(
            _of_ordered_webhooks(),
            deliveries.c.ordering_key == ordering_key,
            deliveries.c.ordering_seq == ordering_seq,
            _pending(conn),
        )
        .values(next_attempt_at=until)
    )


async def release_in_order(
    conn: AsyncConnection, ordering_key: str, *, after: int, before: int | None, now: datetime
) -> None:
    """Let go of the deliveries `hold_in_order` held in `ordering_key`'s order after place
    `after` (which has its event now) and before `before` (the next place still without
    one; None: none is left): due now, they follow the earlier places' deliveries in
    order (`queries.first_in_order`)."""
    places = [deliveries.c.ordering_seq > after]
    if before is not None:
        places.append(deliveries.c.ordering_seq < before)
    await conn.execute(
        deliveries.update()
        .where(
            _of_ordered_webhooks(),
            deliveries.c.ordering_key == ordering_key,
            *places,
            _pending(conn),
            deliveries.c.attempts == 0,
            deliveries.c.next_attempt_at > now,
        )
        .values(next_attempt_at=now)
    )


def _of_ordered_webhooks() -> sa.ColumnElement[bool]:
    """Deliveries to `orderedDelivery` webhooks: the lead of `ix_deliveries_ordering`, which
    then finds a work item's pending deliveries by its key."""
    ordered = sa.select(webhooks.c.id).where(webhooks.c.ordered_delivery.is_(True))
    return deliveries.c.webhook_id.in_(ordered.scalar_subquery())


def _pending(conn: AsyncConnection) -> sa.ColumnElement[bool]:
    """`is_pending`, which `ix_deliveries_ordering`'s predicate needs. SQLite, with no
    statistics (it is never analysed), would rather seek `ix_deliveries_due` by it: every
    pending delivery of the installation, in the write lock. Wrapped in `likely()` it still
    matches the partial index's predicate but is no seek key, so SQLite reads the work
    item's few rows through `ix_deliveries_ordering`."""
    if conn.dialect.name == "sqlite":
        # Untyped: as a Boolean, SQLAlchemy would write `likely(...) = 1`, which no longer
        # matches the predicate.
        pending: sa.ColumnElement[bool] = sa.func.likely(queries.is_pending())
        return pending
    return queries.is_pending()
