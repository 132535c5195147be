"""An administrator's resume or delete beside a worker's recorder, on PostgreSQL.

The recorder takes a delivery's row (its outcome), then its webhook's (the failure run it
ends or counts), and, when a probe's success resumes the webhook, that webhook's other
pending deliveries; a batch with two outcomes of one webhook takes a delivery, the webhook,
then the next delivery. An administrator's resume or delete takes the webhook's row and its
deliveries'. No one order keeps clear of all of these, so a cycle can form, and PostgreSQL
ends it by aborting one transaction (40P01). The administrator's change runs in
`Database.retried`, which runs it again; the recorder retries its batch too.

Each test holds a recorder's transaction after its first rows, starts the administrator's
change, waits until that change waits for a lock, then lets the recorder go on: both must
commit, and the administrator's change must have done what it says.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.delivery.delivery_support import (
    a_lock_is_awaited,
    admin_of,
    make_webhook,
    queue_event,
    version_event,
)
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.events import EventType
from docuhooks.delivery import operational, outbox, recorder_queries
from docuhooks.store.schema import deliveries, webhooks
from docuhooks.webhooks import service

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)

OWNER = "probe-worker"

Step = Callable[[AsyncConnection], Awaitable[object]]


async def _race(ctx: AppContext, before: list[Step], after: list[Step], change: Step) -> None:
    """A recorder runs `before`, pauses while the administrator's `change` starts and waits
    for a lock, then runs `after`; both in `Database.retried`, as they run for real."""
    paused, go_on = asyncio.Event(), asyncio.Event()

    async def record(conn: AsyncConnection) -> None:
        for step in before:
            await step(conn)
        if not paused.is_set():
            paused.set()
            await go_on.wait()
        for step in after:
            await step(conn)

    recording = asyncio.create_task(ctx.db.retried(record))
    await paused.wait()
    changing = asyncio.create_task(ctx.db.retried(change))
    await a_lock_is_awaited(ctx)
    go_on.set()
    await asyncio.gather(recording, changing)


async def _webhook_with_deliveries(
    ctx: AppContext, site: SiteUsers, n: int, *, leased: int, suspended: bool
) -> tuple[str, list[str]]:
    """A webhook with `n` pending deliveries, the first `leased` held by a worker (in a
    failure run of 3, suspended or not)."""
    now = ctx.now()
    hook, _ = await make_webhook(ctx, site, "https://receiver.example/hook")
    ids = []
    for i in range(n):
        _, (delivery,) = await queue_event(ctx, site.site_id, now=now, work_item_id=f"wi-{i}")
        ids.append(delivery)
    async with ctx.db.transaction() as conn:
        await conn.execute(
            sa.update(webhooks)
            .where(webhooks.c.id == hook)
            .values(
                suspended_at=now if suspended else None,
                consecutive_failures=3,
                first_failure_at=now,
            )
        )
        await conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id.in_(ids[:leased]))
            .values(lease_owner=OWNER, lease_expires_at=now + timedelta(minutes=5))
        )
    return hook, ids


def _resume(ctx: AppContext, site: SiteUsers, hook: str) -> Step:
    async def change(conn: AsyncConnection) -> object:
        return await operational.resume(ctx, conn, admin_of(site), hook)

    return change


def _delete(ctx: AppContext, site: SiteUsers, hook: str) -> Step:
    async def change(conn: AsyncConnection) -> object:
        await service.delete(ctx, conn, admin_of(site), hook)
        return None

    return change


def _succeed(delivery: str, now: datetime) -> Step:
    async def step(conn: AsyncConnection) -> object:
        return await recorder_queries.settle_succeeded(
            conn, owner=OWNER, delivery_ids=[delivery], status_code=200, now=now
        )

    return step


def _fail(delivery: str, now: datetime) -> Step:
    async def step(conn: AsyncConnection) -> object:
        return await recorder_queries.settle(
            conn,
            delivery_id=delivery,
            owner=OWNER,
            values={
                "attempts": 1,
                "last_status_code": 500,
                "next_attempt_at": now + timedelta(minutes=1),
            },
        )

    return step


def _end_failure_run(hook: str, now: datetime) -> Step:
    async def step(conn: AsyncConnection) -> object:
        return await recorder_queries.count_successes(conn, [hook], now)

    return step


def _count_failure(hook: str, now: datetime) -> Step:
    async def step(conn: AsyncConnection) -> object:
        return await recorder_queries.count_failure(conn, hook, now)

    return step


async def _row(ctx: AppContext, hook: str) -> Any:
    async with ctx.db.read() as conn:
        return (await conn.execute(sa.select(webhooks).where(webhooks.c.id == hook))).first()


async def _pending(ctx: AppContext, hook: str) -> list[Any]:
    async with ctx.db.read() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(deliveries.c.id, deliveries.c.status, deliveries.c.next_attempt_at)
                    .where(deliveries.c.webhook_id == hook)
                    .order_by(deliveries.c.id)
                )
            ).all()
        )


@pytest.mark.parametrize("change", ["resume", "delete"])
async def test_beside_a_success_that_ends_a_failure_run(
    ctx: AppContext, site: SiteUsers, change: str
) -> None:
    """The recorder's usual order: a delivery's row, then its webhook's."""
    now = ctx.now()
    hook, (delivery,) = await _webhook_with_deliveries(ctx, site, 1, leased=1, suspended=False)
    act = _resume(ctx, site, hook) if change == "resume" else _delete(ctx, site, hook)

    await _race(ctx, [_succeed(delivery, now)], [_end_failure_run(hook, now)], act)

    row = await _row(ctx, hook)
    if change == "delete":
        assert (row, await _pending(ctx, hook)) == (None, [])
    else:
        assert row is not None
        assert (row.active, row.suspended_at, row.consecutive_failures) == (True, None, 0)
        assert [d.status for d in await _pending(ctx, hook)] == ["succeeded"]


@pytest.mark.parametrize("probe_due_later", [False, True])
@pytest.mark.parametrize("change", ["resume", "delete"])
async def test_beside_a_probes_success_that_resumes_a_backlog(
    ctx: AppContext, site: SiteUsers, change: str, probe_due_later: bool
) -> None:
    """A probe's success resumes its webhook and makes the webhook's backlog due: the
    recorder takes the probe's row, the webhook's, then the backlog's. (A probe whose
    earlier attempts failed is due later than the backlog, which the administrator's
    statement then reaches first.)"""
    now = ctx.now()
    hook, (probe, backlog) = await _webhook_with_deliveries(ctx, site, 2, leased=1, suspended=True)
    if probe_due_later:
        async with ctx.db.transaction() as conn:
            await conn.execute(
                sa.update(deliveries)
                .where(deliveries.c.id == probe)
                .values(attempts=3, next_attempt_at=now + timedelta(minutes=5))
            )
    act = _resume(ctx, site, hook) if change == "resume" else _delete(ctx, site, hook)

    await _race(ctx, [_succeed(probe, now)], [_end_failure_run(hook, now)], act)

    row = await _row(ctx, hook)
    if change == "delete":
        assert (row, await _pending(ctx, hook)) == (None, [])
    else:
        assert row is not None and row.suspended_at is None
        states = {d.id: d.status for d in await _pending(ctx, hook)}
        assert states == {probe: "succeeded", backlog: "pending"}


@pytest.mark.parametrize("change", ["resume", "delete"])
async def test_beside_a_batch_with_two_failures_of_the_webhook(
    ctx: AppContext, site: SiteUsers, change: str
) -> None:
    """A batch writes a failure, counts it on the webhook, then writes the next failure."""
    now = ctx.now()
    hook, ids = await _webhook_with_deliveries(ctx, site, 2, leased=2, suspended=False)
    first, second = sorted(ids, reverse=True)  # against the order a statement reads them in
    act = _resume(ctx, site, hook) if change == "resume" else _delete(ctx, site, hook)

    await _race(
        ctx,
        [_fail(first, now), _count_failure(hook, now)],
        [_fail(second, now), _count_failure(hook, now)],
        act,
    )

    row = await _row(ctx, hook)
    if change == "delete":
        assert (row, await _pending(ctx, hook)) == (None, [])
    else:
        assert row is not None and row.active


async def test_deleting_an_operational_webhook_beside_a_recorder_announcing_to_it(
    ctx: AppContext, site: SiteUsers
) -> None:
    """In one batch the recorder suspends a webhook, which announces it to the site's
    operational webhook (the outbox takes a key-share lock on that webhook's row), then
    writes an outcome of the operational webhook's own delivery."""
    now = ctx.now()
    hook, (failing,) = await _webhook_with_deliveries(ctx, site, 1, leased=1, suspended=False)
    async with ctx.db.transaction() as conn:
        created, _ = await service.create(
            ctx,
            conn,
            admin_of(site),
            {
                "name": "ops",
                "url": "https://ops.example/hook",
                "eventType": EventType.WEBHOOK_SUSPENDED.value,
            },
        )
    ops = created["id"]
    async with ctx.db.transaction() as conn:
        (announced,) = await outbox.enqueue(
            conn,
            version_event(site.site_id),
            work_group_id=None,
            template_id=None,
            webhook_ids=[ops],
            now=now,
        )
        await conn.execute(
            sa.update(deliveries)
            .where(deliveries.c.id == announced)
            .values(lease_owner=OWNER, lease_expires_at=now + timedelta(minutes=5))
        )

    async def fail_and_suspend(conn: AsyncConnection) -> object:
        await _fail(failing, now)(conn)
        failures = await recorder_queries.count_failure(conn, hook, now)
        next_probe_at = now + timedelta(minutes=5)
        assert await recorder_queries.suspend(
            conn, hook, now=now, next_probe_at=next_probe_at, reason="suspended"
        )
        return await operational.webhook_suspended(
            conn,
            hook,
            consecutive_failures=failures.consecutive_failures,
            first_failure_at=failures.first_failure_at,
            next_probe_at=next_probe_at,
            now=now,
        )

    await _race(ctx, [fail_and_suspend], [_fail(announced, now)], _delete(ctx, site, ops))

    assert await _row(ctx, ops) is None
    suspended = await _row(ctx, hook)
    assert suspended is not None and suspended.suspended_at is not None
