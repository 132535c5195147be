"""Helpers the delivery tests share: webhooks made through the real service, events queued
through the real outbox, and reads of what the worker wrote."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock, utcnow
from docuhooks.core.events import Actor, Event, EventType
from docuhooks.delivery import claims, outbox, queries
from docuhooks.identity.models import Principal, Role
from docuhooks.store.schema import attempts, deliveries, webhooks
from docuhooks.webhooks import service

ACTOR = Actor(id="user-1", login_name="ann@example.com", name="Ann Lee", email="ann@example.com")


def admin_of(site: SiteUsers) -> Principal:
    return Principal(
        user_id=site.user_ids["SiteAdministrator"],
        site_id=site.site_id,
        login_name="admin@example.com",
        name="Admin",
        email="admin@example.com",
        account_type="UserAccount",
        roles=frozenset({Role.SITE_ADMINISTRATOR}),
    )


async def make_webhook(
    ctx: AppContext, site: SiteUsers, url: str, **fields: Any
) -> tuple[str, str | None]:
    """A NewWorkItemVersionComplete webhook; returns (id, secret)."""
    body = {
        "name": fields.pop("name", f"hook {url}"),
        "url": url,
        "eventType": "NewWorkItemVersionComplete",
        **fields,
    }
    async with ctx.db.transaction() as conn:
        created, secret = await service.create(ctx, conn, admin_of(site), body)
    return created["id"], secret


def version_event(site_id: str, work_item_id: str = "wi-1", version: int = 1) -> Event:
    return Event(
        event_type=EventType.NEW_WORK_ITEM_VERSION_COMPLETE,
        site_id=site_id,
        created_by=ACTOR,
        data={"workItemId": work_item_id, "versionNumber": version, "documents": []},
        created_date=utcnow(),
    )


async def queue_event(
    ctx: AppContext,
    site_id: str,
    *,
    now: datetime,
    work_item_id: str = "wi-1",
    version: int | None = None,
) -> tuple[Event, list[str]]:
    event = version_event(site_id, work_item_id, version or 1)
    async with ctx.db.transaction() as conn:
        ids = await outbox.enqueue(
            conn,
            event,
            work_group_id=None,
            template_id=None,
            work_item_id=work_item_id,
            ordering_seq=version,
            now=now,
        )
    ctx.events_committed()
    return event, ids


async def delivery(ctx: AppContext, delivery_id: str) -> sa.Row[Any]:
    async with ctx.db.read() as conn:
        return (
            await conn.execute(sa.select(deliveries).where(deliveries.c.id == delivery_id))
        ).one()


async def webhook(ctx: AppContext, webhook_id: str) -> sa.Row[Any]:
    async with ctx.db.read() as conn:
        return (await conn.execute(sa.select(webhooks).where(webhooks.c.id == webhook_id))).one()


async def attempts_of(ctx: AppContext, delivery_id: str) -> list[sa.Row[Any]]:
    async with ctx.db.read() as conn:
        return list(
            (
                await conn.execute(
                    sa.select(attempts)
                    .where(attempts.c.delivery_id == delivery_id)
                    .order_by(attempts.c.attempt_number)
                )
            ).all()
        )


async def a_lock_is_awaited(ctx: AppContext, *, by: int = 1) -> None:
    """PostgreSQL: return once a connection to the test database waits for a lock (`by`:
    at least that many connections; a test's way to see that a transaction it started has
    reached the lock another one holds). The bound only turns a hang into a failure."""
    async with asyncio.timeout(30), ctx.db.engine.connect() as conn:
        while True:
            # The server's activity view is read once per transaction: without a fresh
            # snapshot each time, a connection that began waiting after the first read (one
            # the pool opened meanwhile) would never be seen.
            await conn.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            waiting = await conn.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            if waiting.scalar_one() >= by:
                return
            await asyncio.sleep(0.01)


async def claim_directly(
    ctx: AppContext, clock: FakeClock, owner: str, *, limit: int = 4, ended: list[str] | None = None
) -> list[queries.Job]:
    """`claims.claim` with the default caps, as the worker runs it (outside a transaction on
    PostgreSQL)."""
    async with ctx.db.autocommit() as conn:
        return await claims.claim(
            conn,
            owner=owner,
            now=clock.now(),
            lease=timedelta(seconds=30),
            limit=limit,
            probe_interval=timedelta(seconds=30),
            caps=claims.Caps(),
            ended=ended or [],
        )


async def event_in_bulk(conn: Any, site_id: str) -> None:
    """PostgreSQL: the event `e`, with nothing in it, for `pending_in_bulk`'s deliveries."""
    await conn.execute(
        sa.text(
            "INSERT INTO events (id, site_id, event_type, payload, created_at) "
            "VALUES ('e', :site, 'NewWorkItemVersionComplete', '{}', now())"
        ),
        {"site": site_id},
    )


async def pending_in_bulk(
    conn: Any,
    *,
    site_id: str,
    hook: str,
    n: int,
    prefix: str,
    since: timedelta,
    step: timedelta,
) -> None:
    """PostgreSQL: `n` pending deliveries of the event `e` to `hook`, made `since` ago and
    due from then on, `step` apart; their ids `prefix` and a number."""
    await conn.execute(
        sa.text(
            "INSERT INTO deliveries (id, event_id, webhook_id, site_id, status, attempts, "
            "next_attempt_at, created_at) "
            "SELECT :prefix || lpad(i::text, 7, '0'), 'e', :hook, :site, 'pending', 0, "
            "  now() - CAST(:since AS interval) + i * CAST(:step AS interval), "
            "  now() - CAST(:since AS interval) "
            "FROM generate_series(1, :n) AS i"
        ),
        {"prefix": prefix, "hook": hook, "site": site_id, "n": n, "since": since, "step": step},
    )
