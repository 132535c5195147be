"""An administrator's resume or delete beside a worker's recorder, on PostgreSQL.

The recorder takes a delivery's row (its outcome) and then its webhook's (the failure run it
ends). A resume or a delete that took the webhook's row first and then waited for one of its
deliveries' rows would hold what the recorder waits for while waiting for what the recorder
holds: PostgreSQL aborts one of the two (40P01), and the administrator got a 500 or the
outcome was written again. Each test holds a recorder's transaction once it has settled a
delivery, starts the administrator's change, waits until that change waits for a lock, then
lets the recorder go on: both must commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.delivery.delivery_support import (
    a_lock_is_awaited,
    admin_of,
    make_webhook,
    queue_event,
)
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.delivery import operational, recorder_queries
from docuhooks.store.schema import deliveries, webhooks
from docuhooks.webhooks import service

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

OWNER = "probe-worker"


async def _suspended_webhook_with_a_leased_delivery(
    ctx: AppContext, site: SiteUsers
) -> tuple[str, str]:
    """A suspended webhook (a failure run of 3) whose one delivery a worker holds, as when
    its probe is in flight; (webhook id, delivery id)."""
    now = ctx.now()
    hook, _ = await make_webhook(ctx, site, "https://receiver.example/hook")
    _, (delivery,) = await queue_event(ctx, site.site_id, now=now)
    async with ctx.db.transaction() as conn:
        await conn.execute(
            sa.update(webhooks)
            .where(webhooks.c.id == hook)
            .values(suspended_at=now, consecutive_failures=3, first_failure_at=now)
        )
        await conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id == delivery)
            .values(lease_owner=OWNER, lease_expires_at=now + timedelta(minutes=5))
        )
    return hook, delivery


async def _beside_a_recorder(
    ctx: AppContext,
    hook: str,
    delivery: str,
    change: Callable[[AsyncConnection], Awaitable[object]],
) -> None:
    """Run `change` in a transaction of its own while a recorder writes the delivery's
    success, in the recorder's order: its delivery's row, then (once `change` waits for a
    lock) its webhook's failure run, which the success ends (resuming the webhook)."""
    settled, go_on = asyncio.Event(), asyncio.Event()

    async def record() -> list[str]:
        async with ctx.db.transaction() as conn:
            now = ctx.now()
            assert await recorder_queries.settle_succeeded(
                conn, owner=OWNER, delivery_ids=[delivery], status_code=200, now=now
            ) == {delivery}
            settled.set()
            await go_on.wait()
            return await recorder_queries.count_successes(conn, [hook], now)

    async def administrator() -> None:
        async with ctx.db.transaction() as conn:
            await change(conn)

    recording = asyncio.create_task(record())
    await settled.wait()
    changing = asyncio.create_task(administrator())
    await a_lock_is_awaited(ctx)  # the change waits for the settled delivery's row
    go_on.set()
    resumed, _ = await asyncio.gather(recording, changing)
    assert resumed == [hook], "the recorder's success did not find the webhook suspended"


async def test_a_resume_beside_a_recorder_both_commit(ctx: AppContext, site: SiteUsers) -> None:
    hook, delivery = await _suspended_webhook_with_a_leased_delivery(ctx, site)

    async def resume(conn: AsyncConnection) -> object:
        return await operational.resume(ctx, conn, admin_of(site), hook)

    await _beside_a_recorder(ctx, hook, delivery, resume)
    async with ctx.db.read() as conn:
        row = (await conn.execute(sa.select(webhooks).where(webhooks.c.id == hook))).one()
        status = (
            await conn.execute(sa.select(deliveries.c.status).where(deliveries.c.id == delivery))
        ).scalar_one()
    assert (row.active, row.suspended_at, row.consecutive_failures) == (True, None, 0)
    assert status == "succeeded"


async def test_a_delete_beside_a_recorder_both_commit(ctx: AppContext, site: SiteUsers) -> None:
    hook, delivery = await _suspended_webhook_with_a_leased_delivery(ctx, site)

    async def delete(conn: AsyncConnection) -> object:
        await service.delete(ctx, conn, admin_of(site), hook)
        return None

    await _beside_a_recorder(ctx, hook, delivery, delete)
    async with ctx.db.read() as conn:
        left = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(deliveries)
                .where(deliveries.c.webhook_id == hook)
            )
        ).scalar_one()
        found = (await conn.execute(sa.select(webhooks.c.id).where(webhooks.c.id == hook))).first()
    assert (found, left) == (None, 0)
