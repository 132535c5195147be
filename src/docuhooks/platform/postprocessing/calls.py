"""Calling a claimed post-processing version's receiver, and settling what it answered in
one transaction with the call's delivery log: an inline reply's documents applied and the
version completed, a 202 left waiting for `completeUrl`, a failure (or returned documents
past the site's storage quota) completed with the original documents. `release` hands
back a call stopped before its answer."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from enum import StrEnum

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import tracing
from docuhooks.core.signing import OutboundRequest, build_request
from docuhooks.delivery.transport import ErrorClass, TransportResult
from docuhooks.interview_hooks import log as call_log
from docuhooks.interview_hooks.engine import USER_AGENT
from docuhooks.platform import documents
from docuhooks.platform.interfaces import PlatformContext
from docuhooks.platform.postprocessing import records, replies
from docuhooks.platform.postprocessing.claiming import Claimed, complete, give_up
from docuhooks.platform.storage import StorageQuota, StorageQuotaExceeded
from docuhooks.platform.workitems import VersionStatus
from docuhooks.store.schema import work_item_versions, work_items
from docuhooks.webhooks import matching

logger = structlog.get_logger("docuhooks.platform.postprocessing")

_versions = work_item_versions


async def call(ctx: PlatformContext, claimed: Claimed) -> None:
    """Call the receiver for a claimed version and settle what it answered, in the trace
    of the request that finished the interview."""
    with tracing.span(
        "docuhooks.post_processing.call",
        parent=claimed.trace if claimed.trace is not None else tracing.CURRENT,
        kind=tracing.Kind.CLIENT,
        attributes={
            "docuhooks.webhook.id": claimed.webhook.id,
            "docuhooks.delivery.id": claimed.delivery_id,
            "docuhooks.work_item_version.id": claimed.version_id,
        },
        propagated=True,
    ) as span:
        await _call(ctx, claimed, span)


async def _call(ctx: PlatformContext, claimed: Claimed, span: tracing.Span) -> None:
    assert span.context is not None  # a propagated span always has one
    started = ctx.now()
    clock = time.perf_counter()
    request: OutboundRequest | None = None
    try:
        target = matching.signing_target(ctx, claimed.webhook, claimed.issuer, started)
        request = build_request(
            claimed.event,
            target,
            delivery_id=claimed.delivery_id,
            attempt=1,
            now=started,
            user_agent=USER_AGENT,
            traceparent=span.context.traceparent,
            tracestate=span.context.state,
        )
    except Exception as exc:
        result = TransportResult.failure(
            ErrorClass.CONNECT, f"the request could not be built: {exc}"
        )
    else:
        result = await ctx.interactive_send(
            claimed.site_id,
            request,
            timeout=claimed.timeout,
            verify_tls=not claimed.webhook.accept_untrusted_ssl,
            max_body=replies.MAX_REPLY_BYTES,
        )
    finished = started + timedelta(seconds=time.perf_counter() - clock)
    if result.status is not None:
        span.set_attribute("http.response.status_code", result.status)
    if result.error_class is not None:
        span.fail(result.error or str(result.error_class))
    await _settle(ctx, claimed, request, result, started, finished)


class _Settled(StrEnum):
    """What settling a reply did to its version."""

    COMPLETED = "completed"
    WAITING = "waiting"
    MOVED_ON = "moved on"
    DELETED = "deleted"


async def _settle(
    ctx: PlatformContext,
    claimed: Claimed,
    request: OutboundRequest | None,
    result: TransportResult,
    started: datetime,
    finished: datetime,
) -> None:
    # Judged once, before the transaction: reading a large reply holds no lock.
    judged = await replies.judge_in_pool(ctx.render_pool, result, site_id=claimed.site_id)
    # Run again from the start should PostgreSQL abort it to end a deadlock: completing the
    # version writes its event, whose deliveries reach webhook rows that administrators'
    # changes take in their own order. The call was made and judged once, above; the
    # transaction only writes rows (what an aborted run wrote is gone with it), and what
    # it did is said and the workers woken once, after the commit.
    settled = await ctx.db.retried(
        lambda conn: _settle_in(ctx, conn, claimed, request, result, judged, started, finished)
    )
    if settled is _Settled.COMPLETED:
        ctx.events_committed()
    elif settled is not _Settled.WAITING:
        logger.info(
            "post-processing reply not applied: the version moved on"
            if settled is _Settled.MOVED_ON
            else "post-processing reply not applied: the version was deleted",
            version_id=claimed.version_id,
            delivery_id=claimed.delivery_id,
        )


async def _settle_in(
    ctx: PlatformContext,
    conn: AsyncConnection,
    claimed: Claimed,
    request: OutboundRequest | None,
    result: TransportResult,
    judged: replies.Judged,
    started: datetime,
    finished: datetime,
) -> _Settled:
    """The settling transaction, with the call's delivery log."""
    version = (
        await conn.execute(
            sa.select(_versions).where(_versions.c.id == claimed.version_id).with_for_update()
        )
    ).first()
    current: list[str] = []
    if version is not None:
        current = [row.id for row in await documents.rows_of_version(conn, version.id)]
        judged = replies.check_replaced(judged, current)
    record = dict(version.post_processing or {}) if version is not None else {}
    # Not if it was completed through completeUrl meanwhile, or taken over after the
    # lease ran out; nor if, completed so, it was deleted with its work item since
    # (`platform.deletion`): the call is still logged, and nothing else is written.
    ours = (
        version is not None
        and version.status == VersionStatus.POST_PROCESSING
        and record.get("deliveryId") == claimed.delivery_id
    )
    now = ctx.now()
    if ours and version is not None and judged.succeeded and judged.mode is replies.Mode.INLINE:
        try:
            await documents.apply_returned(
                conn,
                version,
                {d.id: d.as_new() for d in judged.documents if d.id is not None},
                [
                    entry if isinstance(entry, str) else entry.as_new()
                    for entry in replies.arrange(current, judged.documents)
                ],
                now=now,
                quota=StorageQuota.from_settings(ctx.settings),
            )
        except StorageQuotaExceeded as exc:
            # Refused whole (nothing of it was written), as a reply that cannot be read
            # is: the log and the version's record say why, and the version completes
            # with the documents it was assembled with.
            judged = replies.refused(exc.message)
    await call_log.write(
        conn,
        [
            call_log.StepLog(
                event=claimed.logged_event,
                site_id=claimed.site_id,
                work_item_id=claimed.work_item_id,
                calls=[
                    call_log.CallRecord(
                        claimed.delivery_id,
                        claimed.webhook.id,
                        started,
                        request,
                        result,
                        judged.outcome,
                    )
                ],
                created_at=started,
                finished_at=finished,
                trace=tracing.current(),
            )
        ],
    )
    if version is None:
        return _Settled.DELETED
    if not ours:
        return _Settled.MOVED_ON
    item = (
        await conn.execute(sa.select(work_items).where(work_items.c.id == version.work_item_id))
    ).one()
    if not judged.succeeded:
        await give_up(
            conn,
            version,
            item,
            record,
            records.Status.FAILED,
            now,
            error=judged.error or "the call failed",
            error_class=judged.error_class,
        )
        return _Settled.COMPLETED
    if judged.mode is replies.Mode.CALLBACK:
        await conn.execute(
            _versions.update()
            .where(_versions.c.id == version.id)
            .values(
                post_processing=records.updated(
                    record, status=records.Status.WAITING, mode=replies.Mode.CALLBACK
                ),
                post_processing_due_at=version.post_processing_deadline,
            )
        )
        return _Settled.WAITING
    # applied above
    await complete(
        conn,
        version,
        item,
        records.finished(record, records.Status.COMPLETED, now, mode=replies.Mode.INLINE),
        now,
    )
    return _Settled.COMPLETED


async def release(ctx: PlatformContext, claimed: Claimed) -> None:
    """Hand back a claimed call that was stopped before its answer: the version is due
    again at once, for this process's successor or another one."""
    async with ctx.db.transaction() as conn:
        version = (
            await conn.execute(
                sa.select(_versions).where(_versions.c.id == claimed.version_id).with_for_update()
            )
        ).first()
        record = dict(version.post_processing or {}) if version is not None else {}
        if (
            version is None
            or version.status != VersionStatus.POST_PROCESSING
            or record.get("deliveryId") != claimed.delivery_id
        ):
            return
        await conn.execute(
            _versions.update()
            .where(_versions.c.id == version.id)
            .values(
                post_processing=records.updated(
                    record,
                    status=records.Status.PENDING,
                    error="the platform stopped during the call; the receiver is called again",
                ),
                post_processing_due_at=ctx.now(),
            )
        )
