"""Completing a work item version: the status change and the
NewWorkItemVersionComplete event are written in one transaction, through the outbox, so the
event exists exactly when the version is Completed."""

from __future__ import annotations

import hmac
from datetime import datetime, timedelta
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import tracing
from docuhooks.core.events import Event, EventType
from docuhooks.core.tracecontext import TraceContext, from_stored
from docuhooks.delivery import outbox
from docuhooks.errors import Conflict, Forbidden
from docuhooks.identity.models import Principal
from docuhooks.platform import catalog, workitems
from docuhooks.platform import documents as documents_service
from docuhooks.platform.interfaces import PlatformContext
from docuhooks.platform.postprocessing import records
from docuhooks.platform.postprocessing.replies import Mode
from docuhooks.platform.workitems import VersionStatus
from docuhooks.store.schema import interviews, work_item_versions
from docuhooks.store.scoped import advisory_lock

INTERVIEW_FINISHED = "finished"


def completion_event(
    principal: Principal,
    *,
    work_item: sa.Row[Any],
    version: sa.Row[Any],
    template: sa.Row[Any],
    documents: list[sa.Row[Any]],
    base_url: str,
    now: datetime,
) -> Event:
    """The NewWorkItemVersionComplete event object, as receivers get it."""
    return Event(
        event_type=EventType.NEW_WORK_ITEM_VERSION_COMPLETE,
        site_id=work_item.site_id,
        created_by=principal.as_actor(),
        created_date=now,
        data={
            "workItemId": work_item.id,
            "workItemName": work_item.name,
            "workItemVersionId": version.id,
            "versionNumber": version.version_number,
            "workGroupId": work_item.work_group_id,
            "templateId": template.id,
            "templateName": template.name,
            "documents": [
                {
                    "id": row.id,
                    "name": row.name,
                    "fileName": row.file_name,
                    "contentType": row.content_type,
                    "size": row.size,
                    "sha256": row.sha256,
                    "url": documents_service.content_url(
                        base_url, work_item.id, version.id, row.id
                    ),
                }
                for row in documents
            ],
        },
    )


async def complete_version(
    conn: AsyncConnection,
    principal: Principal,
    *,
    work_item: sa.Row[Any],
    version: sa.Row[Any],
    template: sa.Row[Any],
    documents: list[sa.Row[Any]],
    now: datetime,
    post_processing: dict[str, Any] | None = None,
) -> Event:
    """Mark `version` Completed, close its interviews, and write the event to the outbox.

    `post_processing` is what the version shows about its post-processing, when it had
    one; the original documents kept for it are let go. `conn` is the caller's write
    transaction, holding `version` locked; after it commits, the caller calls
    `ctx.events_committed()` so workers start at once.
    """
    if version.status not in workitems.OPEN_STATUSES:
        raise Conflict(f"version {version.version_number} is already {version.status}")
    moment = now
    changes: dict[str, Any] = {
        "status": VersionStatus.COMPLETED,
        "completed_at": moment,
        "post_processing_due_at": None,
        "complete_token_hash": None,
    }
    if post_processing is not None:
        changes["post_processing"] = post_processing
    await conn.execute(
        work_item_versions.update().where(work_item_versions.c.id == version.id).values(**changes)
    )
    if version.status == VersionStatus.POST_PROCESSING:
        await documents_service.drop_originals(conn, version.id)
    await conn.execute(
        interviews.update()
        .where(interviews.c.version_id == version.id, interviews.c.status == "open")
        .values(status=INTERVIEW_FINISHED, finished_at=moment)
    )
    event = completion_event(
        principal,
        work_item=work_item,
        version=version,
        template=template,
        documents=documents,
        base_url=await documents_service.site_base_url(conn, work_item.site_id),
        now=moment,
    )
    await outbox.enqueue(
        conn,
        event,
        work_group_id=work_item.work_group_id,
        template_id=work_item.template_id,
        work_item_id=work_item.id,
        ordering_seq=version.version_number,
        trace=continued_trace(version),
        now=moment,
    )
    await _keep_versions_in_order(
        conn,
        work_item.id,
        version.version_number,
        was_post_processing=version.status == VersionStatus.POST_PROCESSING,
        now=moment,
    )
    return event


#: How long past the latest deadline of the earlier versions still in post-processing a
#: later version's ordered deliveries are held at most, should nothing complete those
#: versions (`_keep_versions_in_order`): the drivers give up on a version at its deadline,
#: so it completes within moments of it while any server runs.
ORDER_HOLD_MARGIN = timedelta(minutes=5)


#: The lock `_keep_versions_in_order` takes (`store.scoped.advisory_lock`): this prefix
#: and the work item's id.
ORDER_LOCK_PREFIX = "docuhooks.work_item_order:"


async def _keep_versions_in_order(
    conn: AsyncConnection,
    work_item_id: str,
    number: int,
    *,
    was_post_processing: bool,
    now: datetime,
) -> None:
    """A new version may start while the one before is in post-processing, and complete
    first: its event exists before theirs, so nothing pending holds its deliveries to
    `orderedDelivery` webhooks back. They are held while an earlier version is still in
    post-processing, and let go (in order behind theirs) as the earlier ones complete:
    only a version that was in post-processing can have later ones held for it.

    A completion that holds and one that lets go take the work item's order lock first
    (`ORDER_LOCK_PREFIX`), and so run one after the other: each reads what the other
    committed. Without it, on PostgreSQL, a version completing while the one before it
    completes would count that one as still in post-processing (not committed yet) and
    hold its deliveries, while that one's release could not see them (not committed yet
    either): held to the deadline and past it, behind a version long completed. The lock
    comes last of a work item's locks (`platform.workitems`): its holder reads, and writes
    only this work item's deliveries that it wrote or that committed completions wrote, so
    it never waits for a lock that a transaction waiting for it holds. A version with no
    earlier one open and no post-processing, the common case, neither holds nor lets go: it
    counts, unlocked (a version once closed stays closed, so none open is final), and takes
    no lock."""
    earlier_open = sa.select(
        sa.func.count(), sa.func.max(work_item_versions.c.post_processing_deadline)
    ).where(
        work_item_versions.c.work_item_id == work_item_id,
        work_item_versions.c.status.in_(list(workitems.OPEN_STATUSES)),
        work_item_versions.c.version_number < number,
    )
    if was_post_processing:
        await advisory_lock(conn, ORDER_LOCK_PREFIX + work_item_id)
    waiting, deadline = (await conn.execute(earlier_open)).one()
    if waiting and not was_post_processing:
        # Counted before the lock: an earlier version's completion may be about to commit.
        # Counted again once the lock is held, after that completion has committed.
        await advisory_lock(conn, ORDER_LOCK_PREFIX + work_item_id)
        waiting, deadline = (await conn.execute(earlier_open)).one()
    if waiting:
        until = (deadline or now) + ORDER_HOLD_MARGIN
        await outbox.hold_in_order(conn, work_item_id, number, until=until)
        return
    if not was_post_processing:
        return
    # This version's event is written: later versions held for it may go, up to the next
    # version still in post-processing.
    next_open = (
        await conn.execute(
            sa.select(sa.func.min(work_item_versions.c.version_number)).where(
                work_item_versions.c.work_item_id == work_item_id,
                work_item_versions.c.status == VersionStatus.POST_PROCESSING,
                work_item_versions.c.version_number > number,
            )
        )
    ).scalar()
    await outbox.release_in_order(conn, work_item_id, after=number, before=next_open, now=now)


def continued_trace(version: Any) -> TraceContext | None:
    """The trace a version's completion event continues: the one kept when it entered
    post-processing (the request that finished its interview), whoever completes it (the
    driver, a deadline, the receiver's `completeUrl`), unless the work at hand is already
    in that trace (the post-processing call's span, or a receiver that passed our
    `traceparent` on); the current one for a version without post-processing."""
    current = tracing.current()
    kept = from_stored(getattr(version, "traceparent", None), getattr(version, "tracestate", None))
    if kept is None or (current is not None and current.trace_id == kept.trace_id):
        return current
    return kept


async def complete(
    ctx: PlatformContext,
    principal: Principal,
    work_item_id: str,
    version_id: str,
    *,
    token: str | None = None,
) -> dict[str, Any]:
    """`PUT /workitems/{id}/versions/{vid}/complete`: complete a version with the documents
    it has now.

    A version InProgress needs only the caller's API token. A version in PostProcessing is
    completed by the receiver it was sent to: `token` must be the one-time token of its
    `completeUrl`, and its event names the user who finished the interview.

    It locks the version, then its open interviews: the order every writer of a work item's
    rows takes them in (`platform.workitems`), so a finish, a save or a delete of the same
    version waits for it or it for them, and the one that comes second is told what the
    first did (409, 404). Its event reaches its webhooks' rows and their deliveries, which
    the delivery workers take in their own order: should PostgreSQL abort it to end a
    deadlock through those, it runs again (`Database.retried`).
    """
    result = await ctx.db.retried(
        lambda conn: _complete(ctx, conn, principal, work_item_id, version_id, token)
    )
    ctx.events_committed()
    return result


async def _complete(
    ctx: PlatformContext,
    conn: AsyncConnection,
    principal: Principal,
    work_item_id: str,
    version_id: str,
    token: str | None,
) -> dict[str, Any]:
    item, version = await workitems.get_version_row(
        conn, principal, work_item_id, version_id, lock=True
    )
    template = await catalog.get_summary(conn, principal, item.template_id)
    record: dict[str, Any] | None = None
    actor = principal
    if version.status == VersionStatus.POST_PROCESSING:
        _check_complete_token(version, token)
        record = records.finished(
            version.post_processing,
            records.Status.COMPLETED,
            ctx.now(),
            mode=Mode.CALLBACK,
        )
        actor = records.finished_by(version.post_processing, item.site_id) or principal
    rows = await documents_service.rows_of_version(conn, version.id)
    await complete_version(
        conn,
        actor,
        work_item=item,
        version=version,
        template=template,
        documents=rows,
        now=ctx.now(),
        post_processing=record,
    )
    return await version_with_documents(conn, principal, item, version.id)


def _check_complete_token(version: sa.Row[Any], token: str | None) -> None:
    if not token:
        raise Forbidden(
            f"version {version.version_number} is in PostProcessing: only the receiver it was "
            "sent to completes it, with the completeUrl of its PostProcessingEvent (which "
            "carries ?token=)"
        )
    expected = version.complete_token_hash or ""
    if not hmac.compare_digest(records.token_hash(token), expected):
        raise Forbidden(
            f"the token is not the completion token of version {version.version_number}: use "
            "the completeUrl of the PostProcessingEvent sent for this version (a later call "
            "for the same version replaces it)"
        )


async def version_with_documents(
    conn: AsyncConnection,
    principal: Principal,
    work_item: sa.Row[Any],
    version_id: str,
    *,
    as_stored: bool = False,
) -> dict[str, Any]:
    """The version as the API shows it, with its documents. `as_stored`: its answers are
    the stored JSON text as an `orjson.Fragment`, written out as they are (megabytes of
    answers are then neither decoded nor encoded on the event loop)."""
    _, version = await workitems.get_version_row(
        conn, principal, work_item.id, version_id, text=as_stored
    )
    base_url = await documents_service.site_base_url(conn, principal.site_id)
    rows = await documents_service.rows_of_version(conn, version.id)
    body = workitems.version_to_api(
        version, [documents_service.to_api(row, base_url, work_item.id) for row in rows]
    )
    if as_stored:
        body["answers"] = orjson.Fragment(version.answers)
    return body
