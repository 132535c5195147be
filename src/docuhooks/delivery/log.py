"""The delivery log: what was sent where, what came back, and the administrator's repairs:
redeliver one delivery here; recovering a webhook's failures since a time is a background job
(`delivery.recovery`), which uses this module's checks.

Every function is confined to the caller's site and needs a webhook-admin role; another site's
delivery or event is not found, exactly as if it did not exist. Reads take the caller's
connection; the repairs run their own transaction, because the worker must be woken only after
the new deliveries have committed.

Redelivery writes a **new delivery** for the same event and webhook rather than reopening the
old one: the new one gets the whole retry schedule and counts its attempts from 1 (so
`X-Docuhooks-Attempt` means what it says), and the old one keeps its attempt history exactly
as it ended. Both are listed under the webhook and under the event, newest first.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import audit
from docuhooks.core.events import NOTIFICATION_EVENTS, EventType
from docuhooks.delivery import manual_sends, queries, upkeep_queries
from docuhooks.delivery.interfaces import DeliveryContext
from docuhooks.errors import Conflict, FieldError, NotFound, ValidationFailed
from docuhooks.identity.models import Principal
from docuhooks.store import pagination
from docuhooks.store.schema import attempts, deliveries, events, webhooks
from docuhooks.store.scoped import lock_site
from docuhooks.webhooks import service as webhook_service

__all__ = [
    "DELIVERY_STATUSES",
    "get_delivery",
    "get_event",
    "list_deliveries",
    "list_events",
    "redeliver",
]

DELIVERY_STATUSES = (queries.PENDING, queries.SUCCEEDED, queries.FAILED)
NOTIFICATION_TYPES = sorted(str(t) for t in NOTIFICATION_EVENTS)


# --- input checks -----------------------------------------------------------------------------


def aware(value: datetime | None, field: str) -> datetime | None:
    """`value` in UTC; a time without a zone is read as UTC (as every time on the wire is)."""
    if value is None:
        return None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ValidationFailed.of([FieldError(field, "is not a time that exists in UTC")]) from None


def _event_type(value: str | None) -> str | None:
    if value is not None and value not in {t.value for t in EventType}:
        names = ", ".join(t.value for t in EventType)
        raise ValidationFailed.of([FieldError("eventType", f"must be one of {names}")])
    return value


def _uuid(value: str, what: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise NotFound(f"{what} {value} does not exist") from None


def check_window(start: datetime | None, end: datetime | None) -> None:
    if start is not None and end is not None and end < start:
        raise ValidationFailed.of([FieldError("until", "is before since")])


def _window(
    column: sa.ColumnElement[Any], since: datetime | None, until: datetime | None
) -> list[sa.ColumnElement[bool]]:
    start, end = aware(since, "since"), aware(until, "until")
    check_window(start, end)
    conditions = []
    if start is not None:
        conditions.append(column >= start)
    if end is not None:
        conditions.append(column < end)
    return conditions


# --- deliveries ---------------------------------------------------------------------------------

_DELIVERY_COLUMNS = (*deliveries.c, events.c.event_type)
#: Whether a delivery's event is a test (`"test": true`): the one member read in SQL, not
#: the whole event.
_IS_TEST = sa.func.coalesce(events.c.payload["test"].as_boolean(), False).label("test")
#: One delivery's columns, and whether it is a test.
_DELIVERY_ROW = (*_DELIVERY_COLUMNS, _IS_TEST)


def _delivery(row: sa.Row[Any], now: datetime) -> dict[str, Any]:
    leased = (
        row.status == queries.PENDING
        and row.lease_expires_at is not None
        and row.lease_expires_at >= now
    )
    return {
        "id": row.id,
        "eventId": row.event_id,
        "eventType": row.event_type,
        "webhookId": row.webhook_id,
        "status": row.status,
        "inFlight": leased,
        "attemptCount": row.attempts,
        "nextAttemptDate": row.next_attempt_at if row.status == queries.PENDING else None,
        "lastStatusCode": row.last_status_code,
        "lastErrorClass": row.last_error_class,
        "lastError": row.last_error,
        "createdDate": row.created_at,
        "completedDate": row.completed_at,
    }


def _attempt(row: sa.Row[Any]) -> dict[str, Any]:
    # Stored already redacted (the worker and the interview engine redact before writing).
    return {
        "id": row.id,
        "attemptNumber": row.attempt_number,
        "startedDate": row.started_at,
        "durationMs": row.duration_ms,
        "requestMethod": row.request_method,
        "requestUrl": row.request_url,
        "requestHeaders": row.request_headers or {},
        "statusCode": row.status_code,
        "responseHeaders": row.response_headers,
        "responseBody": row.response_body,
        "errorClass": row.error_class,
        "error": row.error,
    }


async def list_deliveries(
    conn: AsyncConnection,
    principal: Principal,
    webhook_id: str,
    *,
    now: datetime,
    limit: int = 50,
    cursor: str | None = None,
    status: str | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pagination.Page[dict[str, Any]]:
    """A webhook's deliveries, newest first; `since`/`until` bound when each was created."""
    hook = await webhook_service.get_row(conn, principal, webhook_id)
    query = (
        sa.select(*_DELIVERY_COLUMNS)
        .join(events, events.c.id == deliveries.c.event_id)
        .where(deliveries.c.webhook_id == hook.id, *_window(deliveries.c.created_at, since, until))
    )
    if status is not None:
        if status not in DELIVERY_STATUSES:
            raise ValidationFailed.of(
                [FieldError("status", f"must be one of {', '.join(DELIVERY_STATUSES)}")]
            )
        # Failed ones read through the partial index `ix_deliveries_webhook_failed` (its
        # predicate stated as a literal), in the page's own order: a page of a webhook's few
        # failures among a million successes reads only those failures.
        failed = status == queries.FAILED
        query = query.where(queries.is_failed() if failed else deliveries.c.status == status)
    if _event_type(event_type) is not None:
        query = query.where(events.c.event_type == event_type)
    query = pagination.apply(
        query, deliveries.c.created_at, deliveries.c.id, limit=limit, cursor=cursor
    )
    rows = list((await conn.execute(query)).all())
    return pagination.page_of(rows, limit, lambda row: _delivery(row, now))


def _missing(what: str, given: str, kept_days: int | None) -> NotFound:
    if kept_days is None:
        return NotFound(f"{what} {given} does not exist")
    return NotFound(
        f"{what} {given} does not exist: finished deliveries, and then their events, are "
        f"kept for {kept_days} days and then pruned"
    )


async def _delivery_row(
    conn: AsyncConnection,
    principal: Principal,
    delivery_id: str,
    *,
    kept_days: int | None = None,
    lock: bool = False,
) -> sa.Row[Any]:
    webhook_service.require_admin(principal)
    wanted = _uuid(delivery_id, "delivery")
    query = (
        sa.select(*_DELIVERY_ROW)
        .join(events, events.c.id == deliveries.c.event_id)
        .where(deliveries.c.id == wanted, deliveries.c.site_id == principal.site_id)
    )
    if lock:
        # Held to the transaction's end, so retention cannot prune the delivery (and then
        # its event) while a redelivery of it is being written.
        query = query.with_for_update(read=True, of=deliveries)
    row = (await conn.execute(query)).first()
    if row is None:
        raise _missing("delivery", delivery_id, kept_days)
    return row


async def get_delivery(
    conn: AsyncConnection,
    principal: Principal,
    delivery_id: str,
    *,
    now: datetime,
    kept_days: int | None = None,
) -> dict[str, Any]:
    """One delivery with every attempt, oldest attempt first; `kept_days` (the retention)
    goes into the 404 of one that does not exist, since it may have been pruned."""
    row = await _delivery_row(conn, principal, delivery_id, kept_days=kept_days)
    tries = await conn.execute(
        sa.select(attempts)
        .where(attempts.c.delivery_id == row.id)
        .order_by(attempts.c.attempt_number, attempts.c.started_at, attempts.c.id)
    )
    return {**_delivery(row, now), "attempts": [_attempt(a) for a in tries]}


async def sendable_webhook(conn: AsyncConnection, webhook_id: str) -> sa.Row[Any]:
    hook = (await conn.execute(sa.select(webhooks).where(webhooks.c.id == webhook_id))).one()
    if not hook.active:
        raise Conflict(
            f"webhook {hook.name!r} is inactive and sends nothing: activate it first "
            f"(POST /api/v1/webhooks/{hook.id}/activate)"
        )
    return hook


async def redeliver(ctx: DeliveryContext, principal: Principal, delivery_id: str) -> dict[str, Any]:
    """Send a delivery's event to its webhook again; returns the delivery that will.

    A finished delivery (succeeded or failed) gets a new delivery, due now. A pending one that
    waits for its next retry is made due now instead (a second delivery would only duplicate
    it). One a worker is sending right now is a 409: its outcome is seconds away. Interview and
    post-processing calls are answered while someone waits and cannot be sent again (409).

    Each redelivery takes a turn of the site's manual sends (`delivery.manual_sends`; 429 past
    them): a test delivery's (`"test": true`) of `webhook_tests_per_minute`, since sending
    it again is a test send, any other's of `redeliveries_per_minute`. A pending delivery
    made due counts too: it calls the receiver now, as a new delivery would. The turn is
    taken in the redelivery's own transaction, so one refused for another reason uses none.
    """
    webhook_service.require_admin(principal)
    now = ctx.now()
    async with ctx.db.transaction() as conn:
        # The site's lock first, before the delivery's row: the turn is counted under it, and
        # two redeliveries of one pending delivery, each holding the row's share lock while
        # the other waited to update it, would deadlock.
        await lock_site(conn, principal.site_id)
        original = await _delivery_row(
            conn, principal, delivery_id, kept_days=ctx.settings.kept_delivery_days, lock=True
        )
        if original.event_type not in NOTIFICATION_TYPES:
            raise Conflict(
                f"a {original.event_type} call is made while a person or the platform waits "
                "for its answer and cannot be redelivered; use POST "
                f"/api/v1/webhooks/{original.webhook_id}/test to call the receiver again"
            )
        hook = await sendable_webhook(conn, original.webhook_id)
        if original.test:
            limit, per_minute = manual_sends.TEST_SENDS, ctx.settings.webhook_tests_per_minute
        else:
            limit, per_minute = manual_sends.REDELIVERIES, ctx.settings.redeliveries_per_minute
        await manual_sends.take_turn(
            conn,
            limit,
            principal.site_id,
            webhook_id=original.webhook_id,
            per_minute=per_minute,
            now=now,
        )
        if original.status == queries.PENDING:
            if not await upkeep_queries.make_due(conn, original.id, now=now):
                raise Conflict(
                    f"delivery {original.id} is being sent right now; wait for the outcome "
                    "of this attempt, then redeliver it if it fails"
                )
            target_id = original.id
        else:
            (target_id,) = await upkeep_queries.insert_redeliveries(conn, [original], now=now)
        await audit.record(
            conn,
            principal,
            site_id=principal.site_id,
            now=now,
            action="delivery.redelivered",
            object_type="webhook",
            object_id=hook.id,
            details={
                "eventId": original.event_id,
                "deliveryId": original.id,
                "newDeliveryId": target_id if target_id != original.id else None,
            },
        )
        result = await get_delivery(conn, principal, target_id, now=now)
    ctx.events_committed()
    return result


# --- events ----------------------------------------------------------------------------------


def _event(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "eventType": row.event_type,
        "createdDate": row.created_at,
        "workItemId": row.work_item_id,
        "test": bool(row.test),
    }


async def list_events(
    conn: AsyncConnection,
    principal: Principal,
    *,
    limit: int = 50,
    cursor: str | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> pagination.Page[dict[str, Any]]:
    """The site's events, newest first, without their payloads (a page stays small)."""
    webhook_service.require_admin(principal)
    query = sa.select(
        events.c.id,
        events.c.event_type,
        events.c.created_at,
        events.c.work_item_id,
        events.c.payload["test"].as_boolean().label("test"),
    ).where(events.c.site_id == principal.site_id, *_window(events.c.created_at, since, until))
    if _event_type(event_type) is not None:
        query = query.where(events.c.event_type == event_type)
    query = pagination.apply(query, events.c.created_at, events.c.id, limit=limit, cursor=cursor)
    rows = list((await conn.execute(query)).all())
    return pagination.page_of(rows, limit, _event)


async def get_event(
    conn: AsyncConnection,
    principal: Principal,
    event_id: str,
    *,
    now: datetime,
    kept_days: int | None = None,
) -> dict[str, Any]:
    """One event with its payload (exactly as receivers get it) and its deliveries' states;
    `kept_days` as for `get_delivery`."""
    webhook_service.require_admin(principal)
    wanted = _uuid(event_id, "event")
    row = (
        await conn.execute(
            sa.select(events).where(events.c.id == wanted, events.c.site_id == principal.site_id)
        )
    ).first()
    if row is None:
        raise _missing("event", event_id, kept_days)
    sent: list[sa.Row[Any]] = await _rows(
        conn,
        sa.select(*_DELIVERY_COLUMNS, webhooks.c.name.label("webhook_name"))
        .join(events, events.c.id == deliveries.c.event_id)
        .outerjoin(webhooks, webhooks.c.id == deliveries.c.webhook_id)
        .where(deliveries.c.event_id == row.id)
        .order_by(deliveries.c.created_at, deliveries.c.id),
    )
    return {
        "id": row.id,
        "eventType": row.event_type,
        "createdDate": row.created_at,
        "workItemId": row.work_item_id,
        "test": bool(row.payload.get("test", False)),
        "payload": row.payload,
        "deliveries": [{**_delivery(d, now), "webhookName": d.webhook_name} for d in sent],
    }


async def _rows(conn: AsyncConnection, query: sa.Select[Any]) -> list[sa.Row[Any]]:
    return list((await conn.execute(query)).all())
