"""Entering post-processing and driving it: `begin` in the finishing transaction,
`after_finish` once it committed, `drive_due` for one pass, and the app's background driver
(`PostProcessor`, started by `start_post_processor`)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import tracing
from docuhooks.core.events import EventType
from docuhooks.core.tracecontext import TraceContext
from docuhooks.identity.models import Principal
from docuhooks.platform import completion, documents
from docuhooks.platform.interfaces import PlatformContext
from docuhooks.platform.postprocessing import records
from docuhooks.platform.postprocessing.calls import call, release
from docuhooks.platform.postprocessing.claiming import CONCURRENCY, Claimed, claim_due
from docuhooks.platform.workitems import VersionStatus
from docuhooks.store.schema import interviews, work_item_versions
from docuhooks.webhooks import matching

logger = structlog.get_logger("docuhooks.platform.postprocessing")

#: How often a driver looks for versions due (deadlines, calls a stopped process left).
SWEEP_SECONDS = 5.0
#: How long stopping waits for calls under way before it hands them back.
STOP_TIMEOUT_SECONDS = 10.0

_versions = work_item_versions


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
    record = records.started_record(
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
            # The call and the completion event happen later, elsewhere: they continue the
            # trace of the request that finished the interview.
            **_trace_columns(tracing.current()),
        )
    )
    # The person has finished: their answers are what was assembled.
    await conn.execute(
        interviews.update()
        .where(interviews.c.version_id == version.id, interviews.c.status == "open")
        .values(status=completion.INTERVIEW_FINISHED, finished_at=now)
    )
    return True


def _trace_columns(trace: TraceContext | None) -> dict[str, str | None]:
    if trace is None:
        return {"traceparent": None, "tracestate": None}
    return {"traceparent": trace.traceparent, "tracestate": trace.state or None}


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
                async with asyncio.timeout(max(0.0, next_sweep - time.monotonic())):
                    version_id = await self._queue.get()
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
