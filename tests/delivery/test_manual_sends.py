"""The limits on a site's manual sends, on both stores: test sends (`webhook_tests_per_minute`)
and redeliveries of real deliveries (`redeliveries_per_minute`). Past one, a 429 with
`Retry-After` until the oldest send of its kind leaves the minute, and nothing sent; counted
per site whichever webhook, each kind apart, together by every process on the database, and
two sends racing for the last turn send one."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.delivery.delivery_support import a_lock_is_awaited, queue_event
from tests.support import MovedClock, SiteUsers, racing_at_the_site_lock

from docuhooks.app import create_app
from docuhooks.context import AppContext
from docuhooks.identity.secrets import SecretBox
from docuhooks.store.database import Database
from docuhooks.store.schema import deliveries

API = "/api/v1/webhooks"
T0 = datetime(2026, 12, 7, 9, 0, tzinfo=UTC)


async def hook(
    client: httpx.AsyncClient, site: SiteUsers, name: str = "orders", **fields: Any
) -> str:
    created = await client.post(
        API,
        json={
            "name": name,
            "url": f"https://receiver.example/{name}",
            "eventType": "NewWorkItemVersionComplete",
            **fields,
        },
        headers=site.auth(),
    )
    assert created.status_code == 201, created.text
    webhook_id: str = created.json()["id"]
    return webhook_id


async def send(client: httpx.AsyncClient, site: SiteUsers, webhook_id: str) -> httpx.Response:
    return await client.post(f"{API}/{webhook_id}/test", headers=site.auth())


def per_minute(ctx: AppContext, sends: int) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, webhook_tests_per_minute=sends)


def limited(
    response: httpx.Response, retry_after: int, setting: str = "webhook_tests_per_minute"
) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["Retry-After"] == str(retry_after)
    error = response.json()["error"]
    assert error["code"] == "too_many_requests", error
    assert setting in error["message"], error
    assert f"try again in {retry_after} second(s)" in error["message"], error
    if setting == "webhook_tests_per_minute":
        # Nothing sends many tests at once: no other way is offered.
        assert "/recover" not in error["message"], error


async def queued(ctx: AppContext, webhook_id: str) -> int:
    async with ctx.db.read() as conn:
        return (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(deliveries)
                .where(deliveries.c.webhook_id == webhook_id)
            )
        ).scalar_one()


@asynccontextmanager
async def another_process(ctx: AppContext) -> AsyncIterator[httpx.AsyncClient]:
    """A client of another API process on the same database: its own engine, pool, app and
    settings, so that whatever it counts it counts in the database, not in memory."""
    db = Database.from_url(ctx.settings.resolved_database_url)
    other = AppContext(settings=ctx.settings, db=db, box=SecretBox(ctx.settings.secret_key))
    transport = httpx.ASGITransport(app=create_app(other, migrate=False))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            yield client
    finally:
        await db.dispose()


async def test_past_the_limit_a_429_until_the_oldest_send_leaves_the_minute(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    clock = ctx.clock = MovedClock(T0)
    per_minute(ctx, 2)
    orders = await hook(client, site)
    assert (await send(client, site, orders)).status_code == 202
    clock.at = T0 + timedelta(seconds=10)
    assert (await send(client, site, orders)).status_code == 202
    limited(await send(client, site, orders), 50)
    assert await queued(ctx, orders) == 2
    # Another site has its own turns.
    elsewhere = await hook(client, other_site)
    assert (await send(client, other_site, elsewhere)).status_code == 202

    clock.at = T0 + timedelta(seconds=59)
    limited(await send(client, site, orders), 1)
    clock.at = T0 + timedelta(seconds=60)  # the first send has left the minute
    assert (await send(client, site, orders)).status_code == 202
    limited(await send(client, site, orders), 10)
    assert await queued(ctx, orders) == 3

    per_minute(ctx, 0)  # no limit
    for _ in range(3):
        assert (await send(client, site, orders)).status_code == 202


async def test_the_limit_is_the_sites_whichever_webhook_or_kind_of_send(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    ctx.clock = MovedClock(T0)
    per_minute(ctx, 2)
    orders = await hook(client, site)
    # An interview webhook's test is a call made at once (here to a port nobody listens
    # on: it fails), and takes its turn as a queued one does.
    lookup = await hook(
        client, site, "lookup", eventType="InterviewLoadEvent", url="http://127.0.0.1:9/load"
    )
    called = await send(client, site, lookup)
    assert called.status_code == 200 and called.json()["status"] == "failed", called.text
    assert (await send(client, site, orders)).status_code == 202
    limited(await send(client, site, lookup), 60)
    limited(await send(client, site, orders), 60)
    assert await queued(ctx, orders) == 1


async def test_every_process_counts_the_same_sends(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    per_minute(ctx, 2)
    orders = await hook(client, site)
    async with another_process(ctx) as second:
        assert (await send(client, site, orders)).status_code == 202
        assert (await send(second, site, orders)).status_code == 202
        for either in (client, second):
            refused = await send(either, site, orders)
            assert refused.status_code == 429, refused.text
    assert await queued(ctx, orders) == 2


async def test_two_sends_at_once_for_the_last_turn_send_one(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    per_minute(ctx, 1)
    orders = await hook(client, site)
    results = await asyncio.gather(send(client, site, orders), send(client, site, orders))
    assert sorted(r.status_code for r in results) == [202, 429], [r.text for r in results]
    assert await queued(ctx, orders) == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
async def test_postgres_sends_racing_for_the_last_turn_are_counted_in_turn(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    per_minute(ctx, 1)
    orders = await hook(client, site)
    results = await racing_at_the_site_lock(
        ctx, site.site_id, lambda: send(client, site, orders), lambda: send(client, site, orders)
    )
    assert sorted(r.status_code for r in results) == [202, 429], [r.text for r in results]
    assert await queued(ctx, orders) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_openapi_document_gives_the_429_and_its_retry_after(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    limited = spec["paths"]["/api/v1/webhooks/{webhook_id}/test"]["post"]["responses"]["429"]
    assert "webhook_tests_per_minute" in limited["description"]
    assert limited["headers"]["Retry-After"]["schema"] == {"type": "integer"}


async def test_sending_a_test_delivery_again_is_a_test_send(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Redelivering a finished test delivery made a new delivery each time without a turn:
    one test a minute became as many deliveries to the webhook's URL as the site asked for.
    A real event's delivery is sent again whatever the site's tests."""
    clock = ctx.clock = MovedClock(T0)
    per_minute(ctx, 2)
    orders = await hook(client, site)
    assert (await send(client, site, orders)).status_code == 202
    async with ctx.db.transaction() as conn:  # as a worker records a failed attempt
        await conn.execute(deliveries.update().values(status="failed"))
        (test_delivery,) = (await conn.execute(sa.select(deliveries.c.id))).scalars()

    async def again(delivery_id: str) -> httpx.Response:
        return await client.post(f"/api/v1/deliveries/{delivery_id}/redeliver", headers=site.auth())

    clock.at = T0 + timedelta(seconds=5)
    assert (await again(test_delivery)).status_code == 202  # the site's second turn
    async with ctx.db.transaction() as conn:
        await conn.execute(deliveries.update().values(status="failed"))
    limited(await again(test_delivery), 55)
    assert await queued(ctx, orders) == 2

    await queue_event(ctx, site.site_id, now=clock.now(), work_item_id="w1")
    async with ctx.db.transaction() as conn:
        real = (
            await conn.execute(sa.select(deliveries.c.id).where(deliveries.c.status == "pending"))
        ).scalar_one()
        await conn.execute(deliveries.update().values(status="failed"))
    assert (await again(real)).status_code == 202
    assert await queued(ctx, orders) == 4


# --- redeliveries of real deliveries ----------------------------------------------------------


def redeliveries_per_minute(ctx: AppContext, redeliveries: int) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, redeliveries_per_minute=redeliveries)


async def redeliver(client: httpx.AsyncClient, site: SiteUsers, delivery_id: str) -> httpx.Response:
    return await client.post(f"/api/v1/deliveries/{delivery_id}/redeliver", headers=site.auth())


async def real_delivery(
    ctx: AppContext, site: SiteUsers, work_item_id: str, *, failed: bool = True
) -> str:
    """A delivery of a real event to the site's one webhook: failed, as a worker records
    one that used up its attempts, or still pending."""
    _, (delivery_id,) = await queue_event(
        ctx, site.site_id, now=ctx.now(), work_item_id=work_item_id
    )
    if failed:
        async with ctx.db.transaction() as conn:
            await conn.execute(
                deliveries.update()
                .where(deliveries.c.id == delivery_id)
                .values(status="failed", completed_at=ctx.now())
            )
    return delivery_id


def redeliveries_limited(response: httpx.Response, retry_after: int, webhook_id: str) -> None:
    """Refused, and pointed at the recovery of the delivery's own webhook, by its real path
    (it said `/webhooks/{id}/recover`, for the caller to fill in)."""
    limited(response, retry_after, "redeliveries_per_minute")
    message = response.json()["error"]["message"]
    assert "too many redeliveries" in message, message
    assert f"POST /api/v1/webhooks/{webhook_id}/recover" in message, message
    assert "{" not in message, message


async def test_redeliveries_past_the_limit_a_429_until_the_oldest_leaves_the_minute(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    """A site re-sent the same real event to its URL as often as it asked, each finished
    delivery making a new one: now `redeliveries_per_minute` within any minute."""
    clock = ctx.clock = MovedClock(T0)
    redeliveries_per_minute(ctx, 2)
    orders = await hook(client, site)
    failed = await real_delivery(ctx, site, "w1")
    assert (await redeliver(client, site, failed)).status_code == 202
    clock.at = T0 + timedelta(seconds=10)
    assert (await redeliver(client, site, failed)).status_code == 202
    redeliveries_limited(await redeliver(client, site, failed), 50, orders)
    assert await queued(ctx, orders) == 3, "the original and two redeliveries"
    # Another site has its own turns.
    await hook(client, other_site)
    elsewhere = await real_delivery(ctx, other_site, "w2")
    assert (await redeliver(client, other_site, elsewhere)).status_code == 202

    clock.at = T0 + timedelta(seconds=59)
    redeliveries_limited(await redeliver(client, site, failed), 1, orders)
    clock.at = T0 + timedelta(seconds=60)  # the first redelivery has left the minute
    assert (await redeliver(client, site, failed)).status_code == 202
    redeliveries_limited(await redeliver(client, site, failed), 10, orders)
    assert await queued(ctx, orders) == 4

    redeliveries_per_minute(ctx, 0)  # no limit
    for _ in range(3):
        assert (await redeliver(client, site, failed)).status_code == 202
    assert await queued(ctx, orders) == 7


async def test_retry_after_is_the_wait_rounded_up_and_waiting_it_is_enough(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A wait of 50.0005 s was a `Retry-After` of 50 while the message said 51: a client
    that waited what the header said was refused again."""
    clock = ctx.clock = MovedClock(T0 + timedelta(microseconds=500))
    redeliveries_per_minute(ctx, 1)
    orders = await hook(client, site)
    failed = await real_delivery(ctx, site, "w1")
    assert (await redeliver(client, site, failed)).status_code == 202
    clock.at = T0 + timedelta(seconds=10)
    refused = await redeliver(client, site, failed)
    redeliveries_limited(refused, 51, orders)
    clock.at += timedelta(seconds=int(refused.headers["Retry-After"]))
    assert (await redeliver(client, site, failed)).status_code == 202
    assert await queued(ctx, orders) == 3


async def test_a_pending_delivery_made_due_takes_a_turn_and_a_refused_redelivery_none(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Making a pending delivery due calls the receiver now, as a new delivery would: it
    counts. A redelivery refused for another reason (no such delivery; one being sent right
    now) is rolled back with its turn."""
    ctx.clock = MovedClock(T0)
    redeliveries_per_minute(ctx, 1)
    orders = await hook(client, site)
    pending = await real_delivery(ctx, site, "w1", failed=False)
    missing = await redeliver(client, site, "0190c0de-0000-7000-8000-000000000000")
    assert missing.status_code == 404, missing.text
    async with ctx.db.transaction() as conn:  # a worker has it in hand
        await conn.execute(
            deliveries.update().values(
                lease_owner="elsewhere", lease_expires_at=T0 + timedelta(minutes=1)
            )
        )
    in_flight = await redeliver(client, site, pending)
    assert in_flight.status_code == 409 and "being sent" in in_flight.text, in_flight.text
    async with ctx.db.transaction() as conn:
        await conn.execute(deliveries.update().values(lease_owner=None, lease_expires_at=None))

    made_due = await redeliver(client, site, pending)
    assert made_due.status_code == 202 and made_due.json()["id"] == pending, made_due.text
    failed = await real_delivery(ctx, site, "w2")
    redeliveries_limited(await redeliver(client, site, failed), 60, orders)
    assert await queued(ctx, orders) == 2, "no new delivery"


async def test_test_sends_and_redeliveries_take_turns_of_their_own(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    ctx.clock = MovedClock(T0)
    per_minute(ctx, 1)
    redeliveries_per_minute(ctx, 1)
    orders = await hook(client, site)
    assert (await send(client, site, orders)).status_code == 202
    failed = await real_delivery(ctx, site, "w1")
    assert (await redeliver(client, site, failed)).status_code == 202
    limited(await send(client, site, orders), 60)
    redeliveries_limited(await redeliver(client, site, failed), 60, orders)


async def test_a_refused_redelivery_names_the_recovery_of_its_own_webhook(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """The limit is the site's, whichever webhook: past it, each refusal names the recovery
    of the webhook its delivery went to, not the first webhook's nor a placeholder."""
    ctx.clock = MovedClock(T0)
    redeliveries_per_minute(ctx, 1)
    orders = await hook(client, site)
    invoices = await hook(client, site, "invoices")
    _, ids = await queue_event(ctx, site.site_id, now=ctx.now(), work_item_id="w1")
    async with ctx.db.transaction() as conn:
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(ids))
            .values(status="failed", completed_at=ctx.now())
        )
        rows = await conn.execute(
            sa.select(deliveries.c.webhook_id, deliveries.c.id).where(deliveries.c.id.in_(ids))
        )
        of_webhook = {row.webhook_id: row.id for row in rows}
    assert (await redeliver(client, site, of_webhook[orders])).status_code == 202
    redeliveries_limited(await redeliver(client, site, of_webhook[invoices]), 60, invoices)
    redeliveries_limited(await redeliver(client, site, of_webhook[orders]), 60, orders)


async def test_every_process_counts_the_same_redeliveries(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    redeliveries_per_minute(ctx, 2)
    orders = await hook(client, site)
    failed = await real_delivery(ctx, site, "w1")
    async with another_process(ctx) as second:
        assert (await redeliver(client, site, failed)).status_code == 202
        assert (await redeliver(second, site, failed)).status_code == 202
        for either in (client, second):
            refused = await redeliver(either, site, failed)
            assert refused.status_code == 429, refused.text
    assert await queued(ctx, orders) == 3


async def test_two_redeliveries_at_once_for_the_last_turn_send_one(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    redeliveries_per_minute(ctx, 1)
    orders = await hook(client, site)
    failed = await real_delivery(ctx, site, "w1")
    results = await asyncio.gather(redeliver(client, site, failed), redeliver(client, site, failed))
    assert sorted(r.status_code for r in results) == [202, 429], [r.text for r in results]
    assert await queued(ctx, orders) == 2


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
async def test_postgres_redeliveries_racing_for_the_last_turn_are_counted_in_turn(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    redeliveries_per_minute(ctx, 1)
    orders = await hook(client, site)
    failed = await real_delivery(ctx, site, "w1")
    results = await racing_at_the_site_lock(
        ctx,
        site.site_id,
        lambda: redeliver(client, site, failed),
        lambda: redeliver(client, site, failed),
    )
    assert sorted(r.status_code for r in results) == [202, 429], [r.text for r in results]
    assert await queued(ctx, orders) == 2


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
async def test_postgres_two_redeliveries_of_one_pending_delivery_go_one_after_the_other(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Each took the delivery's row (a share lock, against retention), then waited for the
    other's to make it due: a deadlock, and one of them failed. The site's lock comes first
    now, so the second waits for the first before it takes the row.

    Another share of the row, held here, keeps the first from making it due until the second
    has come as far as it can."""
    redeliveries_per_minute(ctx, 0)
    orders = await hook(client, site)
    pending = await real_delivery(ctx, site, "w1", failed=False)
    async with ctx.db.engine.connect() as holder:
        await holder.begin()
        await holder.execute(
            sa.select(deliveries.c.id).where(deliveries.c.id == pending).with_for_update(read=True)
        )
        both = [asyncio.create_task(redeliver(client, site, pending)) for _ in range(2)]
        await a_lock_is_awaited(ctx, by=2)
        await holder.commit()
    results = await asyncio.gather(*both)
    assert [r.status_code for r in results] == [202, 202], [r.text for r in results]
    assert {r.json()["id"] for r in results} == {pending}
    assert await queued(ctx, orders) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_openapi_document_gives_the_redeliveries_429_and_its_retry_after(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    route = spec["paths"]["/api/v1/deliveries/{delivery_id}/redeliver"]["post"]
    limited = route["responses"]["429"]
    assert "redeliveries_per_minute" in limited["description"]
    assert "webhook_tests_per_minute" in limited["description"]
    assert limited["headers"]["Retry-After"]["schema"] == {"type": "integer"}
