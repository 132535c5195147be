"""Operational events in the store: each is written through the outbox **in the transaction
that makes the change it reports**, by whoever wins that change, so it fires exactly once
however many workers race (the losers' conditional updates change nothing and write
nothing).

- suspended, resumed by a probe, deactivated by a 410: the recorder (`delivery.recorder`);
- resumed by an administrator: :func:`resume`, which the API and the web UI call;
- a breaker opened or closed: `delivery.destinations.record`, once per site that has
  webhooks at the destination;
- a secret's grace period about to end: :func:`announce_grace_endings`, run by the upkeep
  (`delivery.grace_notices`).

An event reaches the site's active webhooks of its type (matching, as for any event), never
the webhook it is about, and a breaker event never the webhooks at its destination. No
subscriber, no event row: a site that asked for none pays one indexed read per change.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core import operational
from docuhooks.core.events import Event, EventType
from docuhooks.delivery import outbox
from docuhooks.delivery.interfaces import DeliveryContext
from docuhooks.identity.models import Principal
from docuhooks.store.schema import webhooks
from docuhooks.webhooks import matching, service

__all__ = [
    "announce_breaker",
    "announce_grace_endings",
    "resume",
    "webhook_deactivated",
    "webhook_resumed",
    "webhook_suspended",
]

log = structlog.get_logger(__name__)

_SUMMARY_COLUMNS = (
    webhooks.c.id,
    webhooks.c.site_id,
    webhooks.c.name,
    webhooks.c.url,
    webhooks.c.event_type,
    webhooks.c.active,
    webhooks.c.suspended_at,
    webhooks.c.status_reason,
)


def _summary(row: Any) -> operational.WebhookSummary:
    return operational.WebhookSummary(
        id=row.id,
        name=row.name,
        url=row.url,
        event_type=row.event_type,
        status=service.status_of(row),
        status_reason=row.status_reason,
    )


async def _webhook(conn: AsyncConnection, webhook_id: str) -> Any:
    return (
        await conn.execute(sa.select(*_SUMMARY_COLUMNS).where(webhooks.c.id == webhook_id))
    ).first()


async def _send(
    conn: AsyncConnection, event: Event, *, excluding: Collection[str], now: datetime
) -> int:
    """Queue `event` for the site's webhooks of its type, except `excluding`; the number of
    deliveries written (none: nothing is written at all)."""
    targets = await matching.matching_ids(
        conn,
        site_id=event.site_id,
        event_type=EventType(event.event_type),
        work_group_id=None,
        template_id=None,
    )
    targets = [webhook_id for webhook_id in targets if webhook_id not in excluding]
    if not targets:
        return 0
    ids = await outbox.enqueue(
        conn, event, work_group_id=None, template_id=None, webhook_ids=targets, now=now
    )
    log.info(
        "operational_event.queued",
        event_id=event.event_id,
        event_type=str(event.event_type),
        deliveries=len(ids),
    )
    return len(ids)


async def webhook_suspended(
    conn: AsyncConnection,
    webhook_id: str,
    *,
    consecutive_failures: int,
    first_failure_at: datetime | None,
    next_probe_at: datetime,
    now: datetime,
) -> int:
    """The recorder has just suspended `webhook_id` (its conditional update changed the row)."""
    row = await _webhook(conn, webhook_id)
    if row is None:
        return 0
    event = operational.webhook_suspended(
        row.site_id,
        _summary(row),
        consecutive_failures=consecutive_failures,
        first_failure_at=first_failure_at,
        next_probe_at=next_probe_at,
        now=now,
    )
    return await _send(conn, event, excluding={webhook_id}, now=now)


async def webhook_resumed(
    conn: AsyncConnection,
    webhook_id: str,
    *,
    resumed_by: str,
    suspended_at: datetime | None,
    now: datetime,
    principal: Principal | None = None,
) -> int:
    """`webhook_id`'s suspension has just been lifted in this transaction."""
    row = await _webhook(conn, webhook_id)
    if row is None:
        return 0
    event = operational.webhook_resumed(
        row.site_id,
        _summary(row),
        resumed_by=resumed_by,
        suspended_at=suspended_at,
        now=now,
        actor=principal.as_actor() if principal is not None else operational.SYSTEM_ACTOR,
    )
    return await _send(conn, event, excluding={webhook_id}, now=now)


async def webhook_deactivated(
    conn: AsyncConnection, webhook_id: str, *, status_code: int, now: datetime
) -> int:
    """The recorder has just deactivated `webhook_id` because its receiver answered 410."""
    row = await _webhook(conn, webhook_id)
    if row is None:
        return 0
    event = operational.webhook_deactivated(
        row.site_id, _summary(row), status_code=status_code, now=now
    )
    return await _send(conn, event, excluding={webhook_id}, now=now)


async def resume(
    ctx: DeliveryContext, conn: AsyncConnection, principal: Principal, webhook_id: str
) -> dict[str, Any]:
    """An administrator resumes a webhook (`webhooks.service.resume_webhook`); if that lifted
    a suspension, `WebhookResumed` goes out with `resumedBy: "admin"` and the administrator
    as `createdBy`."""
    resumption = await service.resume_webhook(ctx, conn, principal, webhook_id)
    if resumption.lifted:
        await webhook_resumed(
            conn,
            resumption.webhook["id"],
            resumed_by="admin",
            suspended_at=resumption.suspended_at,
            now=ctx.now(),
            principal=principal,
        )
    return resumption.webhook


async def announce_breaker(
    conn: AsyncConnection,
    site_id: str,
    destination: str,
    *,
    opened: bool,
    failures: int,
    next_probe_at: datetime | None,
    opened_at: datetime | None,
    now: datetime,
) -> int:
    """A site's breaker of a destination has just opened (`opened`) or closed, in this
    transaction: one event to the site, listing its active webhooks at `destination` (those
    whose calls the breaker holds back, suspended ones included)."""
    rows = (
        await conn.execute(
            sa.select(*_SUMMARY_COLUMNS)
            .where(
                webhooks.c.site_id == site_id,
                webhooks.c.destination == destination,
                webhooks.c.active.is_(True),
            )
            .order_by(webhooks.c.site_id, webhooks.c.created_at, webhooks.c.id)
        )
    ).all()
    by_site: dict[str, list[Any]] = {}
    for row in rows:
        by_site.setdefault(row.site_id, []).append(row)
    queued = 0
    for site_id, site_rows in by_site.items():
        summaries: Sequence[operational.WebhookSummary] = [_summary(row) for row in site_rows]
        if opened:
            event = operational.breaker_opened(
                site_id,
                destination,
                summaries,
                failures=failures,
                next_probe_at=next_probe_at,
                now=now,
            )
        else:
            event = operational.breaker_closed(
                site_id, destination, summaries, opened_at=opened_at, now=now
            )
        # The webhooks at the destination are what the event is about, and their calls are
        # what the breaker holds back: never through them.
        queued += await _send(conn, event, excluding={row.id for row in site_rows}, now=now)
    return queued


#: Rotations whose grace ends within the lead time and that have not been announced.
_GRACE_DUE = (
    sa.select(
        *_SUMMARY_COLUMNS,
        webhooks.c.secret_kid,
        webhooks.c.previous_secret_kid,
        webhooks.c.previous_secret_expires_at,
    )
    .where(
        webhooks.c.previous_secret_expires_at > sa.bindparam("now"),
        webhooks.c.previous_secret_expires_at <= sa.bindparam("until"),
        sa.or_(
            webhooks.c.grace_notice_kid.is_(None),
            webhooks.c.grace_notice_kid != webhooks.c.previous_secret_kid,
        ),
    )
    .order_by(webhooks.c.previous_secret_expires_at, webhooks.c.id)
    .limit(sa.bindparam("limit"))
)

#: At most this many announcements per transaction.
GRACE_BATCH = 100


async def announce_grace_endings(ctx: DeliveryContext, *, now: datetime, lead: timedelta) -> int:
    """Announce every secret rotation whose grace period ends within `lead` of `now`, once
    per rotation; the number announced.

    The rotation is remembered by its previous secret's id (`grace_notice_kid`): a new
    rotation has a new one, so it is announced again. Marking it is a conditional update,
    so of two processes that find the same rotation only the one whose update changes the
    row writes the event."""
    announced = 0
    while True:
        queued = 0
        async with ctx.db.transaction() as conn:
            due = (
                await conn.execute(
                    _GRACE_DUE, {"now": now, "until": now + lead, "limit": GRACE_BATCH}
                )
            ).all()
            for row in due:
                marked = await conn.execute(
                    webhooks.update()
                    .where(
                        webhooks.c.id == row.id,
                        webhooks.c.previous_secret_kid == row.previous_secret_kid,
                        sa.or_(
                            webhooks.c.grace_notice_kid.is_(None),
                            webhooks.c.grace_notice_kid != row.previous_secret_kid,
                        ),
                    )
                    .values(grace_notice_kid=row.previous_secret_kid)
                )
                if marked.rowcount != 1:
                    continue  # another process announced it, or it was rotated again
                event = operational.secret_grace_ending(
                    row.site_id,
                    _summary(row),
                    secret_id=row.secret_kid,
                    previous_secret_id=row.previous_secret_kid,
                    grace_ends_at=row.previous_secret_expires_at,
                    now=now,
                )
                queued += await _send(conn, event, excluding={row.id}, now=now)
                announced += 1
        if queued:
            ctx.events_committed()
        if len(due) < GRACE_BATCH:
            return announced
