"""Claiming a due post-processing version: a new one-time completion token, the call's
ids and event, and a due time past the call's timeout, in one short transaction; or, when it
cannot be called (its deadline passed, its webhook is gone, it was called `MAX_CALLS`
times), completing it with the documents it was assembled with."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.events import Actor, Event, EventType
from docuhooks.core.ids import uuid7
from docuhooks.core.signing import redact_url
from docuhooks.core.tracecontext import TraceContext, from_stored
from docuhooks.delivery.transport import ErrorClass
from docuhooks.platform import completion, documents
from docuhooks.platform.interfaces import PlatformContext
from docuhooks.platform.postprocessing import records
from docuhooks.platform.workitems import VersionStatus
from docuhooks.store.schema import templates, webhooks, work_item_versions, work_items

#: Calls of one version at most, counting those a stopped process never finished.
MAX_CALLS = 3
#: How long past a call's timeout its version stays claimed by the driver calling it.
LEASE_MARGIN_SECONDS = 30.0
#: Calls one driver makes at once.
CONCURRENCY = 16

_versions = work_item_versions


@dataclass(frozen=True)
class Claimed:
    """One call a driver has claimed: everything it needs to make and settle it."""

    version_id: str
    site_id: str
    work_item_id: str
    webhook: Any
    issuer: str
    event: dict[str, Any]
    delivery_id: str
    timeout: float
    #: The trace of the request that finished the interview (None for older versions).
    trace: TraceContext | None = None

    @property
    def logged_event(self) -> dict[str, Any]:
        """The event as the log keeps it: no completion token, no document bytes."""
        data = dict(self.event["data"])
        data["completeUrl"] = redact_url(data["completeUrl"])
        data["documents"] = [
            {k: v for k, v in d.items() if k != "content"} for d in data["documents"]
        ]
        return {**self.event, "data": data}


async def claim_due(
    ctx: PlatformContext, *, version_id: str | None = None, limit: int = CONCURRENCY
) -> list[Claimed]:
    """Claim up to `limit` versions due (or just `version_id`): each is either completed at
    once (its deadline passed, or it cannot be called) or claimed for a call.

    One transaction, run again from the start should PostgreSQL abort it to end a deadlock
    (`Database.retried`): completing a version writes its event, whose deliveries reach
    webhook rows that administrators' changes take in their own order. The transaction is
    all it does (each run claims afresh: new tokens, ids and events, what an aborted run
    made gone with it); waking the workers comes once, after the commit."""
    claimed, completed = await ctx.db.retried(
        lambda conn: _claim_due(ctx, conn, version_id=version_id, limit=limit)
    )
    if completed:
        ctx.events_committed()
    return claimed


async def _claim_due(
    ctx: PlatformContext, conn: AsyncConnection, *, version_id: str | None, limit: int
) -> tuple[list[Claimed], bool]:
    """The claim's transaction: the versions claimed for a call, and whether any was
    completed."""
    now = ctx.now()
    claimed: list[Claimed] = []
    completed = False
    query = (
        sa.select(_versions)
        .where(
            _versions.c.status == VersionStatus.POST_PROCESSING,
            _versions.c.post_processing_due_at <= now,
        )
        .order_by(_versions.c.post_processing_due_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if version_id is not None:
        query = query.where(_versions.c.id == version_id)
    # By work item: completing one takes its work item's order lock
    # (`completion._keep_versions_in_order`), held to the commit; two drivers claiming
    # versions of the same work items take those locks in the same order, so neither
    # waits for the other through them. Past an order lock, nothing here may take the
    # site's lock (`storage.admit`) or wait for a version: a finish holding those waits
    # for that order lock (`platform.workitems`).
    due = sorted((await conn.execute(query)).all(), key=_by_work_item)
    for version in due:
        call = await _claim(ctx, conn, version, now)
        if call is None:
            completed = True
        else:
            claimed.append(call)
    return claimed, completed


def _by_work_item(version: Any) -> tuple[str, int]:
    return version.work_item_id, version.version_number


async def _claim(
    ctx: PlatformContext, conn: AsyncConnection, version: Any, now: datetime
) -> Claimed | None:
    record = dict(version.post_processing or {})
    item = (
        await conn.execute(sa.select(work_items).where(work_items.c.id == version.work_item_id))
    ).one()
    if version.post_processing_deadline <= now:
        error = (
            "the receiver did not complete the version before its deadline"
            if record.get("status") == records.Status.WAITING
            else "the deadline passed before the receiver's answer was recorded"
        )
        await give_up(conn, version, item, record, records.Status.TIMED_OUT, now, error=error)
        return None
    hook = (
        await conn.execute(sa.select(webhooks).where(webhooks.c.id == record.get("webhookId")))
    ).first()
    if hook is None or not hook.active:
        await give_up(
            conn,
            version,
            item,
            record,
            records.Status.FAILED,
            now,
            error="the post-processing webhook was deleted or deactivated before it was called",
        )
        return None
    calls = int(record.get("calls") or 0) + 1
    if calls > MAX_CALLS:
        await give_up(
            conn,
            version,
            item,
            record,
            records.Status.FAILED,
            now,
            error=f"called {MAX_CALLS} times, and each time the platform stopped before the "
            "answer was recorded",
        )
        return None
    if calls > 1:
        # Called before by a process that stopped mid-call: start again from the originals.
        await documents.restore_originals(conn, version.id)
    template = (
        await conn.execute(
            sa.select(templates.c.id, templates.c.name).where(templates.c.id == item.template_id)
        )
    ).one()
    token = records.new_complete_token()
    delivery_id = uuid7()
    deadline: datetime = version.post_processing_deadline
    timeout = max(0.1, min(float(hook.timeout_seconds), (deadline - now).total_seconds()))
    base_url = await documents.site_base_url(conn, item.site_id)
    rows = await documents.rows_for_event(
        conn, version.id, content_up_to=records.INLINE_CONTENT_BYTES
    )
    actor = records.finished_by(record, item.site_id)
    event = Event(
        event_type=EventType.POST_PROCESSING_EVENT,
        site_id=item.site_id,
        created_by=actor.as_actor() if actor else Actor(id="", login_name="", name="", email=""),
        created_date=now,
        data=records.event_data(
            work_item=item,
            version=version,
            template=template,
            rows=rows,
            base_url=base_url,
            deadline=deadline,
            complete=records.complete_url(base_url, item.id, version.id, token),
        ),
    ).to_dict()
    await conn.execute(
        _versions.update()
        .where(_versions.c.id == version.id)
        .values(
            post_processing=records.updated(
                record,
                status=records.Status.CALLING,
                calls=calls,
                eventId=event["eventId"],
                deliveryId=delivery_id,
                error=None,
                errorClass=None,
            ),
            complete_token_hash=records.token_hash(token),
            post_processing_due_at=now + timedelta(seconds=timeout + LEASE_MARGIN_SECONDS),
        )
    )
    return Claimed(
        version.id,
        item.site_id,
        item.id,
        hook,
        base_url,
        event,
        delivery_id,
        timeout,
        from_stored(version.traceparent, version.tracestate),
    )


async def give_up(
    conn: AsyncConnection,
    version: Any,
    item: Any,
    record: dict[str, Any],
    status: records.Status,
    now: datetime,
    *,
    error: str,
    error_class: ErrorClass | None = None,
) -> None:
    """Complete the version with the documents it was assembled with, saying why."""
    await documents.restore_originals(conn, version.id)
    await complete(
        conn,
        version,
        item,
        records.finished(record, status, now, error=error, error_class=error_class),
        now,
    )


#: What the completion event names of the template: not its document or its variables, which
#: the whole row would read (and decode) in the transaction that completes the version.
_NAMED: tuple[sa.Column[Any], ...] = (templates.c.id, templates.c.name)


async def complete(
    conn: AsyncConnection, version: Any, item: Any, record: dict[str, Any], now: datetime
) -> None:
    template = (
        await conn.execute(sa.select(*_NAMED).where(templates.c.id == item.template_id))
    ).one()
    actor = records.finished_by(record, item.site_id)
    assert actor is not None, "begin records who finished the interview"
    await completion.complete_version(
        conn,
        actor,
        work_item=item,
        version=version,
        template=template,
        documents=await documents.rows_of_version(conn, version.id),
        now=now,
        post_processing=record,
    )
