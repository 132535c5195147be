"""The outbox: an event and its deliveries are written in the caller's transaction."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
import sqlalchemy as sa
from tests.delivery.delivery_support import (
    delivery,
    make_webhook,
    queue_event,
    version_event,
)
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock
from docuhooks.delivery import outbox, queries
from docuhooks.store.schema import deliveries, events, webhooks, work_groups


async def test_writes_the_event_and_one_pending_delivery_per_matching_webhook(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    first, _ = await make_webhook(ctx, site, "https://a.example/hook", name="a")
    second, _ = await make_webhook(ctx, site, "https://b.example/hook", name="b")
    await make_webhook(ctx, site, "https://c.example/hook", name="c", active=False)
    await make_webhook(ctx, other_site, "https://d.example/hook", name="d")
    now = FakeClock().now()
    event = version_event(site.site_id)

    async with ctx.db.transaction() as conn:
        ids = await outbox.enqueue(
            conn, event, work_group_id=None, template_id=None, work_item_id="wi-1", now=now
        )

    assert len(ids) == 2
    rows = [await delivery(ctx, i) for i in ids]
    assert {r.webhook_id for r in rows} == {first, second}
    assert {(r.status, r.attempts, r.next_attempt_at, r.lease_owner) for r in rows} == {
        ("pending", 0, now, None)
    }
    async with ctx.db.read() as conn:
        stored = (await conn.execute(sa.select(events).where(events.c.id == event.event_id))).one()
    assert stored.payload == event.to_dict()
    assert stored.work_item_id == "wi-1"


async def test_a_rolled_back_transaction_leaves_nothing(ctx: AppContext, site: SiteUsers) -> None:
    await make_webhook(ctx, site, "https://a.example/hook")
    event = version_event(site.site_id)

    with pytest.raises(RuntimeError):
        async with ctx.db.transaction() as conn:
            await outbox.enqueue(conn, event, work_group_id=None, template_id=None, now=ctx.now())
            raise RuntimeError("the change that caused the event failed")

    async with ctx.db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(events))).scalar() == 0
        count = (await conn.execute(sa.select(sa.func.count()).select_from(deliveries))).scalar()
        assert count == 0


async def test_suspended_webhooks_still_queue(ctx: AppContext, site: SiteUsers) -> None:
    hook, _ = await make_webhook(ctx, site, "https://a.example/hook")
    async with ctx.db.transaction() as conn:
        await conn.execute(
            webhooks.update().where(webhooks.c.id == hook).values(suspended_at=FakeClock().now())
        )
        ids = await outbox.enqueue(
            conn, version_event(site.site_id), work_group_id=None, template_id=None, now=ctx.now()
        )
    assert [(await delivery(ctx, i)).webhook_id for i in ids] == [hook]


async def test_named_webhooks_and_a_second_enqueue_of_the_same_event(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    first, _ = await make_webhook(ctx, site, "https://a.example/hook", name="a")
    await make_webhook(ctx, site, "https://b.example/hook", name="b")
    foreign, _ = await make_webhook(ctx, other_site, "https://c.example/hook", name="c")
    event = version_event(site.site_id)
    async with ctx.db.transaction() as conn:
        once = await outbox.enqueue(
            conn,
            event,
            work_group_id=None,
            template_id=None,
            webhook_ids=[first, foreign],
            now=ctx.now(),
        )
    async with ctx.db.transaction() as conn:
        again = await outbox.enqueue(
            conn, event, work_group_id=None, template_id=None, webhook_ids=[first], now=ctx.now()
        )
    assert [(await delivery(ctx, i)).webhook_id for i in once + again] == [first, first]
    async with ctx.db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(events))).scalar() == 1


async def test_scoped_webhooks_are_matched_by_work_group(ctx: AppContext, site: SiteUsers) -> None:
    group_1, group_2 = str(uuid.uuid4()), str(uuid.uuid4())
    async with ctx.db.transaction() as conn:
        for group in (group_1, group_2):
            await conn.execute(
                work_groups.insert().values(
                    id=group, site_id=site.site_id, name=group, created_at=FakeClock().now()
                )
            )
    scoped, _ = await make_webhook(
        ctx, site, "https://a.example/h", name="a", workGroupIds=[group_1]
    )
    everywhere, _ = await make_webhook(ctx, site, "https://b.example/h", name="b")
    async with ctx.db.transaction() as conn:
        in_group = await outbox.enqueue(
            conn,
            version_event(site.site_id),
            work_group_id=group_1,
            template_id=None,
            now=ctx.now(),
        )
        elsewhere = await outbox.enqueue(
            conn,
            version_event(site.site_id),
            work_group_id=group_2,
            template_id=None,
            now=ctx.now(),
        )
    assert {(await delivery(ctx, i)).webhook_id for i in in_group} == {scoped, everywhere}
    assert {(await delivery(ctx, i)).webhook_id for i in elsewhere} == {everywhere}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # LISTEN/NOTIFY is PostgreSQL's
async def test_postgres_notifies_listeners_only_when_the_transaction_commits(
    ctx: AppContext, site: SiteUsers
) -> None:
    import asyncpg

    from docuhooks.delivery.queries import CHANNEL
    from docuhooks.delivery.wakeup import asyncpg_dsn

    await make_webhook(ctx, site, "https://a.example/hook")
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(ctx.db.engine.url))
    await listener.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[3]))
    try:
        with pytest.raises(RuntimeError):
            async with ctx.db.transaction() as conn:
                await outbox.enqueue(
                    conn,
                    version_event(site.site_id),
                    work_group_id=None,
                    template_id=None,
                    now=ctx.now(),
                )
                raise RuntimeError("rolled back")
        # Notifications arrive in commit order: had the rollback notified, it would come
        # before this marker.
        await send_marker(ctx, CHANNEL)
        assert await asyncio.wait_for(heard.get(), 5) == MARKER
        async with ctx.db.transaction() as conn:
            await outbox.enqueue(
                conn,
                version_event(site.site_id),
                work_group_id=None,
                template_id=None,
                now=ctx.now(),
            )
        assert await asyncio.wait_for(heard.get(), 5) == ""
    finally:
        await listener.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_postgres_workers_hear_of_deliveries_made_due_again(
    ctx: AppContext, site: SiteUsers, client: httpx.AsyncClient
) -> None:
    """Not only new deliveries: a resumed or reactivated webhook's waiting ones, and a
    pending delivery redelivered now, wake the workers of every process at once."""
    import asyncpg

    from docuhooks.delivery.queries import CHANNEL
    from docuhooks.delivery.wakeup import asyncpg_dsn

    hook, _ = await make_webhook(ctx, site, "https://a.example/hook")
    async with ctx.db.transaction() as conn:
        (pending,) = await outbox.enqueue(
            conn, version_event(site.site_id), work_group_id=None, template_id=None, now=ctx.now()
        )
        await conn.execute(deliveries.update().where(deliveries.c.id == pending).values(attempts=1))
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(asyncpg_dsn(ctx.db.engine.url))
    await listener.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[3]))
    api = "/api/v1"
    try:
        for method, path in (
            ("POST", f"{api}/webhooks/{hook}/deactivate"),
            ("POST", f"{api}/webhooks/{hook}/activate"),
            ("POST", f"{api}/webhooks/{hook}/resume"),
            ("POST", f"{api}/deliveries/{pending}/redeliver"),
        ):
            answered = await client.request(method, path, headers=site.auth())
            assert answered.status_code in (200, 201, 202), answered.text
            if path.endswith("deactivate"):
                await send_marker(ctx, CHANNEL)
                heard_first = await asyncio.wait_for(heard.get(), 5)
                assert heard_first == MARKER, "deactivating makes nothing claimable"
            else:
                assert await asyncio.wait_for(heard.get(), 5) == "", path
    finally:
        await listener.close()


#: The payload of a notification a test sends after something that must not notify.
MARKER = "marker"


async def send_marker(ctx: AppContext, channel: str) -> None:
    async with ctx.db.transaction() as conn:
        await conn.execute(
            sa.text("SELECT pg_notify(:channel, :payload)"),
            {"channel": channel, "payload": MARKER},
        )


async def test_a_tampered_stored_traceparent_starts_a_new_trace_without_its_tracestate(
    ctx: AppContext, site: SiteUsers
) -> None:
    """A `tracestate` belongs to the trace its `traceparent` names: when the stored
    `traceparent` fails its check (a row changed by hand), the job sends a new trace and
    none of the old one's vendor state."""
    await make_webhook(ctx, site, "https://receiver.example/hook")
    event, ids = await queue_event(ctx, site.site_id, now=ctx.now())
    async with ctx.db.transaction() as conn:
        await conn.execute(
            events.update()
            .where(events.c.id == event.event_id)
            .values(traceparent="00-not-a-trace", tracestate="vendor=secret")
        )
    async with ctx.db.read() as conn:
        (job,) = await queries.load_jobs(conn, ids)
    assert job.traceparent is None and job.tracestate is None
    assert job.trace is None


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite has one writer
@pytest.mark.parametrize("named", [False, True], ids=["matched", "named"])
async def test_postgres_a_webhook_deleted_while_the_event_is_written_is_left_out(
    ctx: AppContext, site: SiteUsers, named: bool
) -> None:
    """An administrator deleting a webhook must not fail the change that writes an event
    (an interview step, a finished work item) at the same moment: the deleted webhook gets no
    delivery and the others get theirs."""
    doomed, _ = await make_webhook(ctx, site, "https://a.example/hook", name="a")
    kept, _ = await make_webhook(ctx, site, "https://b.example/hook", name="b")
    event = version_event(site.site_id)
    async with ctx.db.engine.connect() as deleter:
        await deleter.begin()
        await deleter.execute(webhooks.delete().where(webhooks.c.id == doomed))
        deleter_pid = (await deleter.execute(sa.select(sa.func.pg_backend_pid()))).scalar()

        async def write() -> list[str]:
            async with ctx.db.transaction() as conn:
                return await outbox.enqueue(
                    conn,
                    event,
                    work_group_id=None,
                    template_id=None,
                    webhook_ids=[doomed, kept] if named else None,
                    now=ctx.now(),
                )

        writing = asyncio.create_task(write())
        # The write has read the webhook as it was and now waits for the delete's lock.
        while not writing.done():
            async with ctx.db.read() as conn:
                blocked = (
                    await conn.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE :pid = ANY(pg_blocking_pids(pid))"
                        ),
                        {"pid": deleter_pid},
                    )
                ).scalar()
            if blocked:
                break
            await asyncio.sleep(0.01)
        await deleter.commit()
    ids = await writing
    assert [(await delivery(ctx, i)).webhook_id for i in ids] == [kept]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite does not wait
async def test_postgres_a_write_cancelled_mid_statement_leaves_the_pool_clean(
    ctx: AppContext, site: SiteUsers
) -> None:
    """A request cancelled (a client gone, a timeout) while the outbox's statement runs on
    asyncpg directly: nothing is written, and the connection goes back to the pool fit for
    the next transaction, not inside the cancelled one."""
    await make_webhook(ctx, site, "https://a.example/hook")
    event = version_event(site.site_id)
    async with ctx.db.engine.connect() as holder:
        # The same event id, uncommitted: the outbox's insert waits for it.
        await holder.begin()
        await holder.execute(
            events.insert().values(
                id=event.event_id,
                site_id=site.site_id,
                event_type=str(event.event_type),
                payload={},
                created_at=ctx.now(),
            )
        )
        holder_pid = (await holder.execute(sa.select(sa.func.pg_backend_pid()))).scalar()

        async def write() -> None:
            async with ctx.db.transaction() as conn:
                await conn.execute(sa.select(1))
                await outbox.enqueue(
                    conn, event, work_group_id=None, template_id=None, now=ctx.now()
                )

        writing = asyncio.create_task(write())
        while True:
            async with ctx.db.read() as conn:
                blocked = (
                    await conn.execute(
                        sa.text(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE :pid = ANY(pg_blocking_pids(pid))"
                        ),
                        {"pid": holder_pid},
                    )
                ).scalar()
            if blocked:
                break
            await asyncio.sleep(0.01)
        writing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await writing
        await holder.rollback()
    # Every pooled connection is usable, outside any transaction, and nothing was written.
    pool_size = ctx.db.engine.pool.size()  # type: ignore[attr-defined]
    for i in range(pool_size + 1):
        async with ctx.db.transaction() as conn:
            await outbox.enqueue(
                conn,
                version_event(site.site_id, f"wi-{i}"),
                work_group_id=None,
                template_id=None,
                now=ctx.now(),
            )
    async with ctx.db.read() as conn:
        written = (await conn.execute(sa.select(events.c.id))).scalars().all()
        idle_in_transaction = (
            await conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND state LIKE 'idle in transaction%' AND pid <> pg_backend_pid()"
                )
            )
        ).scalar()
    assert event.event_id not in written and len(written) == pool_size + 1
    assert idle_in_transaction == 0
