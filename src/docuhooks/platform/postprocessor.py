"""Post-processing calls, made in the background and durable by the version row.

Finishing an interview whose template the site's PostProcessingEvent webhook selects puts the
version in `PostProcessing` (`begin`, in the finishing transaction) and returns: nobody waits
for the receiver. A driver then takes the version:

* **claim** (one short transaction): a new one-time completion token, the call's ids, and
  `post_processing_due_at` moved past the call's timeout. The row is locked while claiming
  (`FOR UPDATE SKIP LOCKED` on PostgreSQL, the write lock on SQLite) and is not due again
  until that time passes, so two drivers never call the same version at once.
* **call**: signed and sent like every other webhook call, bounded by the webhook's
  `timeoutSeconds` and the version's deadline.
* **judge** (no transaction): the reply is read and its documents checked in a render
  worker (`postprocessing.judge_in_pool`), never on the event loop.
* **settle** (one transaction, with the call's delivery log): an inline reply's documents are
  applied and the version completed; a 202 leaves it waiting for `PUT completeUrl` until the
  deadline; a failure puts the original documents back and completes it. A reply that comes
  after another driver took the version over (its lease ran out) changes nothing.

A version whose due time passes is driven again by any process: its deadline passed (the
originals are put back and it completes, `timed_out`), or the process calling it stopped
mid-call, and the receiver is called again from the original documents, with a new event
and a new `completeUrl` (the old one stops working), at most `MAX_CALLS` times in all.

The app runs one driver (`start_post_processor`): it takes versions as they finish and looks
for due ones every `SWEEP_SECONDS`. Without it (a script), finishing drives the version
before it returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.events import Actor, Event, EventType
from docuhooks.core.ids import uuid7
from docuhooks.core.signing import OutboundRequest, build_request, redact_url
from docuhooks.delivery.transport import ErrorClass, TransportResult
from docuhooks.identity.models import Principal
from docuhooks.interview_hooks import log as call_log
from docuhooks.interview_hooks.engine import USER_AGENT
from docuhooks.platform import completion, documents
from docuhooks.platform import postprocessing as pp
from docuhooks.platform.interfaces import PlatformContext
from docuhooks.platform.workitems import VersionStatus
from docuhooks.store.schema import interviews, templates, webhooks, work_item_versions, work_items
from docuhooks.webhooks import matching

logger = structlog.get_logger("docuhooks.platform.postprocessor")

#: Calls of one version at most, counting those a stopped process never finished.
MAX_CALLS = 3
#: How long past a call's timeout its version stays claimed by the driver calling it.
LEASE_MARGIN_SECONDS = 30.0
#: How often a driver looks for versions due (deadlines, calls a stopped process left).
SWEEP_SECONDS = 5.0
#: Calls one driver makes at once.
CONCURRENCY = 16
#: How long stopping waits for calls under way before it hands them back.
STOP_TIMEOUT_SECONDS = 10.0

_versions = work_item_versions


# --- starting -----------------------------------------------------------------------------------


async def begin(
    ctx: PlatformContext,
    conn: AsyncConnection,
    principal: Principal,
    *,
    work_item: Any,
    version: Any,
    template: Any,
    now: datetime,
) -> bool:
    """In the transaction that stored the assembled documents: when the site's
    post-processing webhook selects this template, put the version in PostProcessing and
    keep its documents; True then (the version is completed later, by a driver)."""
    hooks = await matching.matching(
        conn,
        site_id=work_item.site_id,
        event_type=EventType.POST_PROCESSING_EVENT,
        work_group_id=work_item.work_group_id,
        template_id=template.id,
    )
    if not hooks:
        return False
    deadline = now + timedelta(seconds=ctx.settings.post_processing_deadline_seconds)
    await documents.keep_originals(conn, version.id)
    record = pp.started_record(
        webhook=hooks[0], actor=principal.as_actor().to_dict(), deadline=deadline, now=now
    )
    await conn.execute(
        _versions.update()
        .where(_versions.c.id == version.id)
        .values(
            status=VersionStatus.POST_PROCESSING,
            post_processing=record,
            post_processing_deadline=deadline,
            post_processing_due_at=now,
            complete_token_hash=None,
        )
    )
    # The person has finished: their answers are what was assembled.
    await conn.execute(
        interviews.update()
        .where(interviews.c.version_id == version.id, interviews.c.status == "open")
        .values(status=completion.INTERVIEW_FINISHED, finished_at=now)
    )
    return True


async def after_finish(
    ctx: PlatformContext,
    principal: Principal,
    work_item: Any,
    version_id: str,
    result: dict[str, Any],
) -> dict[str, Any]:
    """After the finishing transaction committed a version in PostProcessing: hand it to the
    app's driver and return `result` at once; without a driver, drive it now."""
    driver = ctx.post_processor
    if driver is not None:
        driver.submit(version_id)
        return result
    await drive_due(ctx, version_id=version_id)
    async with ctx.db.read() as conn:
        return await completion.version_with_documents(conn, principal, work_item, version_id)


# --- claiming ------------------------------------------------------------------------------------


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
    once (its deadline passed, or it cannot be called) or claimed for a call."""
    now = ctx.now()
    claimed: list[Claimed] = []
    completed = False
    async with ctx.db.transaction() as conn:
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
        for version in (await conn.execute(query)).all():
            call = await _claim(ctx, conn, version, now)
            if call is None:
                completed = True
            else:
                claimed.append(call)
    if completed:
        ctx.events_committed()
    return claimed


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
            if record.get("status") == pp.Status.WAITING
            else "the deadline passed before the receiver's answer was recorded"
        )
        await _give_up(conn, version, item, record, pp.Status.TIMED_OUT, now, error=error)
        return None
    hook = (
        await conn.execute(sa.select(webhooks).where(webhooks.c.id == record.get("webhookId")))
    ).first()
    if hook is None or not hook.active:
        await _give_up(
            conn,
            version,
            item,
            record,
            pp.Status.FAILED,
            now,
            error="the post-processing webhook was deleted or deactivated before it was called",
        )
        return None
    calls = int(record.get("calls") or 0) + 1
    if calls > MAX_CALLS:
        await _give_up(
            conn,
            version,
            item,
            record,
            pp.Status.FAILED,
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
    token = pp.new_complete_token()
    delivery_id = uuid7()
    deadline: datetime = version.post_processing_deadline
    timeout = max(0.1, min(float(hook.timeout_seconds), (deadline - now).total_seconds()))
    base_url = await documents.site_base_url(conn, item.site_id)
    rows = await documents.rows_for_event(conn, version.id, content_up_to=pp.INLINE_CONTENT_BYTES)
    actor = pp.finished_by(record, item.site_id)
    event = Event(
        event_type=EventType.POST_PROCESSING_EVENT,
        site_id=item.site_id,
        created_by=actor.as_actor() if actor else Actor(id="", login_name="", name="", email=""),
        created_date=now,
        data=pp.event_data(
            work_item=item,
            version=version,
            template=template,
            rows=rows,
            base_url=base_url,
            deadline=deadline,
            complete=pp.complete_url(base_url, item.id, version.id, token),
        ),
    ).to_dict()
    await conn.execute(
        _versions.update()
        .where(_versions.c.id == version.id)
        .values(
            post_processing=pp.updated(
                record,
                status=pp.Status.CALLING,
                calls=calls,
                eventId=event["eventId"],
                deliveryId=delivery_id,
                error=None,
                errorClass=None,
            ),
            complete_token_hash=pp.token_hash(token),
            post_processing_due_at=now + timedelta(seconds=timeout + LEASE_MARGIN_SECONDS),
        )
    )
    return Claimed(version.id, item.site_id, item.id, hook, base_url, event, delivery_id, timeout)


async def _give_up(
    conn: AsyncConnection,
    version: Any,
    item: Any,
    record: dict[str, Any],
    status: pp.Status,
    now: datetime,
    *,
    error: str,
    error_class: ErrorClass | None = None,
) -> None:
    """Complete the version with the documents it was assembled with, saying why."""
    await documents.restore_originals(conn, version.id)
    await _complete(
        conn,
        version,
        item,
        pp.finished(record, status, now, error=error, error_class=error_class),
        now,
    )


async def _complete(
    conn: AsyncConnection, version: Any, item: Any, record: dict[str, Any], now: datetime
) -> None:
    template = (
        await conn.execute(sa.select(templates).where(templates.c.id == item.template_id))
    ).one()
    actor = pp.finished_by(record, item.site_id)
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


# --- calling and settling ------------------------------------------------------------------------


async def call(ctx: PlatformContext, claimed: Claimed) -> None:
    """Call the receiver for a claimed version and settle what it answered."""
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
            max_body=pp.MAX_REPLY_BYTES,
        )
    finished = started + timedelta(seconds=time.perf_counter() - clock)
    await _settle(ctx, claimed, request, result, started, finished)


async def _settle(
    ctx: PlatformContext,
    claimed: Claimed,
    request: OutboundRequest | None,
    result: TransportResult,
    started: datetime,
    finished: datetime,
) -> None:
    completed = False
    # Judged once, before the transaction: reading a large reply holds no lock.
    judged = await pp.judge_in_pool(ctx.render_pool, result, site_id=claimed.site_id)
    async with ctx.db.transaction() as conn:
        version = (
            await conn.execute(
                sa.select(_versions).where(_versions.c.id == claimed.version_id).with_for_update()
            )
        ).one()
        current = [row.id for row in await documents.rows_of_version(conn, version.id)]
        judged = pp.check_replaced(judged, current)
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
                )
            ],
        )
        record = dict(version.post_processing or {})
        if (
            version.status != VersionStatus.POST_PROCESSING
            or record.get("deliveryId") != claimed.delivery_id
        ):
            # Completed through completeUrl meanwhile, or taken over after the lease ran out.
            logger.info(
                "post-processing reply not applied: the version moved on",
                version_id=version.id,
                delivery_id=claimed.delivery_id,
            )
            return
        now = ctx.now()
        item = (
            await conn.execute(sa.select(work_items).where(work_items.c.id == version.work_item_id))
        ).one()
        if not judged.succeeded:
            await _give_up(
                conn,
                version,
                item,
                record,
                pp.Status.FAILED,
                now,
                error=judged.error or "the call failed",
                error_class=judged.error_class,
            )
            completed = True
        elif judged.mode is pp.Mode.CALLBACK:
            await conn.execute(
                _versions.update()
                .where(_versions.c.id == version.id)
                .values(
                    post_processing=pp.updated(
                        record, status=pp.Status.WAITING, mode=pp.Mode.CALLBACK
                    ),
                    post_processing_due_at=version.post_processing_deadline,
                )
            )
        else:
            await documents.apply_returned(
                conn,
                version,
                {d.id: d.as_new() for d in judged.documents if d.id is not None},
                [
                    entry if isinstance(entry, str) else entry.as_new()
                    for entry in pp.arrange(current, judged.documents)
                ],
                now=now,
            )
            await _complete(
                conn,
                version,
                item,
                pp.finished(record, pp.Status.COMPLETED, now, mode=pp.Mode.INLINE),
                now,
            )
            completed = True
    if completed:
        ctx.events_committed()


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
                post_processing=pp.updated(
                    record,
                    status=pp.Status.PENDING,
                    error="the platform stopped during the call; the receiver is called again",
                ),
                post_processing_due_at=ctx.now(),
            )
        )


async def drive_due(
    ctx: PlatformContext, *, version_id: str | None = None, limit: int = CONCURRENCY
) -> int:
    """Claim every version due (or just `version_id`), `limit` at a time, and make their
    calls; returns how many calls were made. What a driver does in one pass, awaited."""
    made = 0
    while True:
        batch = await claim_due(ctx, version_id=version_id, limit=limit)
        if not batch:
            return made
        await asyncio.gather(*(call(ctx, claimed) for claimed in batch))
        made += len(batch)


# --- the app's driver ----------------------------------------------------------------------------


class PostProcessor:
    """Takes finished versions as they come, and looks for due ones every `SWEEP_SECONDS`."""

    def __init__(self, ctx: PlatformContext) -> None:
        self._ctx = ctx
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._calls: dict[asyncio.Task[None], Claimed] = {}

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="post-processor")

    def submit(self, version_id: str) -> None:
        self._queue.put_nowait(version_id)

    async def stop(self) -> None:
        """Stop taking versions; give calls under way `STOP_TIMEOUT_SECONDS`, then hand the
        rest back (`release`) so the next driver calls them again at once."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        under_way = dict(self._calls)
        if not under_way:
            return
        _, pending = await asyncio.wait(list(under_way), timeout=STOP_TIMEOUT_SECONDS)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for task in pending:
            claimed = under_way[task]
            try:
                await release(self._ctx, claimed)
            except Exception:
                logger.exception(
                    "post-processing call not handed back", version_id=claimed.version_id
                )

    async def _run(self) -> None:
        next_sweep = 0.0  # at once: versions a stopped process left behind
        while True:
            version_id: str | None = None
            with contextlib.suppress(TimeoutError):
                version_id = await asyncio.wait_for(
                    self._queue.get(), max(0.0, next_sweep - time.monotonic())
                )
            try:
                if version_id is not None:
                    self._spawn(await claim_due(self._ctx, version_id=version_id))
                if time.monotonic() >= next_sweep:
                    next_sweep = time.monotonic() + SWEEP_SECONDS
                    room = CONCURRENCY - len(self._calls)
                    if room > 0:
                        self._spawn(await claim_due(self._ctx, limit=room))
            except Exception:
                logger.exception("post-processing claim failed; trying again at the next sweep")

    def _spawn(self, batch: list[Claimed]) -> None:
        for claimed in batch:
            task = asyncio.create_task(self._call(claimed), name="post-processing-call")
            self._calls[task] = claimed
            task.add_done_callback(lambda done: self._calls.pop(done, None))

    async def _call(self, claimed: Claimed) -> None:
        try:
            await call(self._ctx, claimed)
        except asyncio.CancelledError:
            raise
        except Exception:
            # The version stays claimed until its lease runs out, then is called again.
            logger.exception("post-processing call failed", version_id=claimed.version_id)


async def start_post_processor(ctx: PlatformContext) -> Callable[[], Awaitable[None]]:
    """The app component that calls post-processing webhooks in the background."""
    driver = PostProcessor(ctx)
    driver.start()
    ctx.post_processor = driver

    async def stop() -> None:
        if ctx.post_processor is driver:
            ctx.post_processor = None
        await driver.stop()

    return stop
