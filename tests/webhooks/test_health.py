"""A webhook's `health` in `GET /webhooks/{id}` and the list, on both stores: calls in flight,
the effective limit, the destination's breaker and pause, and the capped due backlog."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.delivery.delivery_support import make_webhook, queue_event
from tests.support import MovedClock, SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.destinations import state_key
from docuhooks.delivery import health
from docuhooks.store.schema import deliveries, destinations, flights, webhooks

URL = "https://receiver.example/hook"
ORIGIN = "https://receiver.example:443"
API = "/api/v1/webhooks"


async def read(client: httpx.AsyncClient, site: SiteUsers, hook: str) -> dict[str, Any]:
    response = await client.get(f"{API}/{hook}", headers=site.auth())
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def listed(client: httpx.AsyncClient, site: SiteUsers) -> dict[str, dict[str, Any]]:
    response = await client.get(API, headers=site.auth())
    assert response.status_code == 200, response.text
    return {item["id"]: item["health"] for item in response.json()["items"]}


def stamp(value: datetime) -> datetime:
    return value.replace(microsecond=0)


async def test_a_fresh_webhook_is_closed_idle_and_has_no_backlog(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook, _ = await make_webhook(ctx, site, URL, maxConcurrency=7)

    body = await read(client, site, hook)

    assert body["maxConcurrency"] == 7
    assert body["health"] == {
        "destination": ORIGIN,
        "inFlight": 0,
        "concurrencyLimit": 7,
        "breaker": {
            "state": "closed",
            "since": None,
            "nextProbeAt": None,
            "consecutiveFailures": 0,
        },
        "pausedUntil": None,
        "dueBacklog": 0,
        "dueBacklogCapped": False,
        "oldestDueAgeSeconds": None,
    }
    assert (await listed(client, site))[hook] == body["health"]


async def arrange_trouble(ctx: AppContext, site: SiteUsers) -> tuple[str, str, datetime]:
    """A webhook with 6 pending deliveries (5 due, 1 scheduled later), 2 of them in flight
    and one lapsed flight, whose destination's breaker is open and paused; and a healthy
    webhook elsewhere with one due delivery. Returns (troubled, healthy, now)."""
    start = stamp(ctx.now())
    troubled, _ = await make_webhook(ctx, site, URL)
    for version in range(6):
        await queue_event(ctx, site.site_id, now=start, version=version + 1)
    healthy, _ = await make_webhook(ctx, site, "http://other.example:8080/h")
    async with ctx.db.transaction() as conn:
        # The next event is the healthy webhook's alone.
        await conn.execute(webhooks.update().where(webhooks.c.id == troubled).values(active=False))
    await queue_event(ctx, site.site_id, now=start + timedelta(seconds=30), version=9)
    now = start + timedelta(seconds=90)
    async with ctx.db.transaction() as conn:
        await conn.execute(webhooks.update().where(webhooks.c.id == troubled).values(active=True))
        ids = list(
            (
                await conn.execute(
                    sa.select(deliveries.c.id)
                    .where(deliveries.c.webhook_id == troubled)
                    .order_by(deliveries.c.created_at, deliveries.c.id)
                )
            ).scalars()
        )
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.id == ids[-1])
            .values(next_attempt_at=now + timedelta(minutes=10))
        )
        await conn.execute(
            flights.insert(),
            [
                {
                    "delivery_id": delivery_id,
                    "webhook_id": troubled,
                    "site_id": site.site_id,
                    "destination": ORIGIN,
                    "owner": "w1",
                    "expires_at": now + expires,
                }
                for delivery_id, expires in zip(
                    ids[:3],
                    (timedelta(seconds=60), timedelta(seconds=5), -timedelta(seconds=1)),
                    strict=True,
                )
            ],
        )
        await conn.execute(
            destinations.insert().values(
                origin=state_key(site.site_id, ORIGIN),
                state="open",
                failures=5,
                since=start + timedelta(seconds=60),
                next_probe_at=start + timedelta(seconds=120),
                concurrency=1,
                paused_until=now + timedelta(seconds=20),
                updated_at=now,
            )
        )
    ctx.clock = MovedClock(now)
    return troubled, healthy, now


async def test_in_flight_breaker_pause_and_backlog_are_reported(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    troubled, healthy, now = await arrange_trouble(ctx, site)
    start = now - timedelta(seconds=90)

    body = (await read(client, site, troubled))["health"]

    assert body["destination"] == ORIGIN
    assert body["inFlight"] == 2, "the lapsed flight is not a call in flight"
    assert body["concurrencyLimit"] == 1, "the destination's adaptive limit is below 10"
    breaker = body["breaker"]
    assert breaker["state"] == "open" and breaker["consecutiveFailures"] == 5
    assert datetime.fromisoformat(breaker["since"]) == start + timedelta(seconds=60)
    assert datetime.fromisoformat(breaker["nextProbeAt"]) == start + timedelta(seconds=120)
    assert datetime.fromisoformat(body["pausedUntil"]) == now + timedelta(seconds=20)
    assert body["dueBacklog"] == 3, "5 due, 2 of them in flight; the scheduled one is not due"
    assert body["dueBacklogCapped"] is False
    assert body["oldestDueAgeSeconds"] == pytest.approx(90)

    other = (await read(client, site, healthy))["health"]
    assert other["destination"] == "http://other.example:8080"
    assert other["breaker"]["state"] == "closed" and other["inFlight"] == 0
    assert other["concurrencyLimit"] == 10 and other["dueBacklog"] == 1
    assert other["oldestDueAgeSeconds"] == pytest.approx(60)

    page = await listed(client, site)
    assert page[troubled] == body and page[healthy] == other

    ctx.clock = MovedClock(now + timedelta(seconds=61))
    later = (await read(client, site, troubled))["health"]
    assert later["pausedUntil"] is None, "a pause that has ended is not reported"
    assert later["inFlight"] == 0 and later["dueBacklog"] == 5


async def test_the_due_count_stops_at_its_cap(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    troubled, _, now = await arrange_trouble(ctx, site)
    async with ctx.db.read() as conn:
        row = (await conn.execute(sa.select(webhooks).where(webhooks.c.id == troubled))).one()
        capped = (await health.of_webhooks(conn, [row], now=now, due_cap=4))[troubled]
        uncapped = (await health.of_webhooks(conn, [row], now=now, due_cap=5 + 1))[troubled]

    assert (capped.due_backlog, capped.due_backlog_capped) == (4, True)
    assert capped.oldest_due_age_seconds(now) == pytest.approx(90), "the age is exact"
    assert (uncapped.due_backlog, uncapped.due_backlog_capped) == (3, False)

    monkeypatch.setattr(health, "LIST_DUE_CAP", 2)
    item = (await listed(client, site))[troubled]
    assert (item["dueBacklog"], item["dueBacklogCapped"]) == (2, True)
    one = (await read(client, site, troubled))["health"]
    assert (one["dueBacklog"], one["dueBacklogCapped"]) == (3, False), "one webhook: 100,000"


async def test_a_page_of_webhooks_costs_the_same_statements_as_one(
    ctx: AppContext, site: SiteUsers
) -> None:
    for n in range(12):
        await make_webhook(ctx, site, f"https://r{n % 3}.example/h", name=f"hook {n}")
    start = ctx.now()
    await queue_event(ctx, site.site_id, now=start)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    async with ctx.db.read() as conn:
        rows = (await conn.execute(sa.select(webhooks))).all()
        engine = conn.sync_engine
        sa.event.listen(engine, "before_cursor_execute", count)
        try:
            one = await health.of_webhooks(conn, rows[:1], now=start)
            single = len(statements)
            statements.clear()
            many = await health.of_webhooks(conn, rows, now=start)
        finally:
            sa.event.remove(engine, "before_cursor_execute", count)

    assert len(statements) == single == 3
    assert len(many) == 12 and set(one) <= set(many)
    assert sum(h.due_backlog for h in many.values()) == 12, "every webhook matched the event"


async def test_the_limit_shown_counts_the_installations_cap_on_one_destination(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A webhook may allow 100 calls, but no destination gets more than
    `destination_max_in_flight` (by default `connections_per_host`, 20) from the claim."""
    hook, _ = await make_webhook(ctx, site, URL, maxConcurrency=100)
    assert (await read(client, site, hook))["health"]["concurrencyLimit"] == 20
    assert (await listed(client, site))[hook]["concurrencyLimit"] == 20
