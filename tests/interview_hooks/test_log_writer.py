"""The background log writer: a field of the context while it runs, out of the way of an
interview step's transaction on SQLite, and flushed on stop."""

from __future__ import annotations

import asyncio
import uuid

import sqlalchemy as sa
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.interview_hooks import foreground_transaction, start_log_writer
from docuhooks.interview_hooks import log as interview_log
from docuhooks.store.schema import events


def step(ctx: AppContext, site: SiteUsers) -> interview_log.StepLog:
    now = ctx.now()
    return interview_log.StepLog(
        event={"eventId": str(uuid.uuid4()), "eventType": "InterviewLoadEvent"},
        site_id=site.site_id,
        work_item_id=str(uuid.uuid4()),
        calls=[],
        created_at=now,
        finished_at=now,
    )


async def logged(ctx: AppContext, event_id: str) -> bool:
    async with ctx.db.read() as conn:
        found = await conn.scalar(sa.select(events.c.id).where(events.c.id == event_id))
    return found is not None


async def test_the_writer_waits_for_an_open_step_transaction(
    ctx: AppContext, site: SiteUsers
) -> None:
    assert ctx.interview_log is None
    stop = await start_log_writer(ctx)
    assert ctx.interview_log is not None
    try:
        one = step(ctx, site)
        async with foreground_transaction(ctx) as conn:
            await interview_log.submit(ctx, one)
            await asyncio.sleep(interview_log.LINGER_SECONDS + 0.1)
            if ctx.db.dialect == "sqlite":
                # No batch started beside the step's write lock.
                assert not ctx.interview_log.writing
                assert not await logged(ctx, one.event["eventId"])
            await conn.execute(sa.select(1))
        for _ in range(50):
            if await logged(ctx, one.event["eventId"]):
                break
            await asyncio.sleep(0.02)
        assert await logged(ctx, one.event["eventId"])
    finally:
        await stop()
    assert ctx.interview_log is None


async def test_stopping_writes_what_is_queued(ctx: AppContext, site: SiteUsers) -> None:
    stop = await start_log_writer(ctx)
    steps = [step(ctx, site) for _ in range(3)]
    for one in steps:
        await interview_log.submit(ctx, one)
    await stop()
    for one in steps:
        assert await logged(ctx, one.event["eventId"])
    # Without the writer a step is written before submit returns.
    alone = step(ctx, site)
    await interview_log.submit(ctx, alone)
    assert await logged(ctx, alone.event["eventId"])
