"""`GET /metrics`: Prometheus text with delivery outcomes, latency, queue depth and workers."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta

import httpx
import pytest
import sqlalchemy as sa
from prometheus_client import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from tests.delivery.delivery_support import make_webhook, queue_event
from tests.support import MovedClock, SiteUsers

from docuhooks.context import AppContext
from docuhooks.delivery import health, metrics, upkeep_queries
from docuhooks.delivery.transport import MockTransport, TransportResult
from docuhooks.delivery.worker import Worker
from docuhooks.store.schema import deliveries, destinations, flights


async def scrape(client: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


async def test_queue_depth_and_the_age_of_the_oldest_due_delivery(
    ctx: AppContext, site: SiteUsers, client: httpx.AsyncClient
) -> None:
    await make_webhook(ctx, site, "https://receiver.example/hook")
    start = ctx.now()
    for _ in range(3):
        await queue_event(ctx, site.site_id, now=start)
    ctx.clock = MovedClock(start + timedelta(seconds=90))

    samples = await scrape(client)

    assert samples[("docuhooks_deliveries_due", ())] == 3
    assert 89 <= samples[("docuhooks_oldest_due_delivery_age_seconds", ())] <= 91


async def test_a_running_worker_is_counted_and_its_outcomes_too(
    ctx: AppContext, site: SiteUsers, client: httpx.AsyncClient
) -> None:
    await make_webhook(ctx, site, "https://receiver.example/hook")
    before = await scrape(client)
    delivered = asyncio.Event()

    def receiver(_: object) -> TransportResult:
        delivered.set()
        return TransportResult.response(200, duration_ms=12.0)

    ctx.transport_override = MockTransport(receiver)
    worker = Worker(ctx)
    await worker.start()
    try:
        await queue_event(ctx, site.site_id, now=ctx.now())
        await asyncio.wait_for(delivered.wait(), 10)
        for _ in range(100):
            during = await scrape(client)
            if (
                during[("docuhooks_deliveries_total", (("outcome", "succeeded"),))]
                > before[("docuhooks_deliveries_total", (("outcome", "succeeded"),))]
            ):
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
    after = await scrape(client)

    assert during[("docuhooks_workers_alive", ())] == 1
    assert after[("docuhooks_workers_alive", ())] == 0, "a stopped worker leaves the fleet"
    succeeded = ("docuhooks_deliveries_total", (("outcome", "succeeded"),))
    assert after[succeeded] == before[succeeded] + 1
    latency = ("docuhooks_delivery_attempt_duration_seconds_count", ())
    assert after[latency] == before[latency] + 1
    assert after[("docuhooks_deliveries_due", ())] == 0


async def arrange_backlog(ctx: AppContext, site: SiteUsers) -> tuple[str, str]:
    """Webhook A: 4 pending (3 due, one of them in flight, and 1 scheduled later); webhook B:
    none. Destinations: one open, one half open, one closed with a failure run. Returns the
    two webhooks' ids."""
    hook_a, _ = await make_webhook(ctx, site, "https://a.example/hook")
    start = ctx.now()
    for _ in range(4):
        await queue_event(ctx, site.site_id, now=start)
    hook_b, _ = await make_webhook(ctx, site, "https://b.example/hook")
    async with ctx.db.transaction() as conn:
        ids = list(
            (
                await conn.execute(
                    sa.select(deliveries.c.id).where(deliveries.c.webhook_id == hook_a)
                )
            ).scalars()
        )
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.id == ids[0])
            .values(next_attempt_at=start + timedelta(hours=1))
        )
        await conn.execute(
            flights.insert().values(
                delivery_id=ids[1],
                webhook_id=hook_a,
                site_id=site.site_id,
                destination="https://a.example:443",
                owner="w1",
                expires_at=start + timedelta(minutes=5),
            )
        )
        for origin, state in (
            ("https://x.example:443", "open"),
            ("https://y.example:443", "half_open"),
            ("https://z.example:443", "closed"),
        ):
            await conn.execute(
                destinations.insert().values(
                    origin=origin, state=state, failures=2, concurrency=1, updated_at=start
                )
            )
    return hook_a, hook_b


async def test_backlog_by_state_and_destinations_by_breaker_state(
    ctx: AppContext, site: SiteUsers, client: httpx.AsyncClient
) -> None:
    await arrange_backlog(ctx, site)

    samples = await scrape(client)

    assert samples[("docuhooks_deliveries_backlog", (("state", "due"),))] == 2
    assert samples[("docuhooks_deliveries_backlog", (("state", "scheduled"),))] == 1
    assert samples[("docuhooks_deliveries_backlog", (("state", "in_flight"),))] == 1
    assert samples[("docuhooks_deliveries_due", ())] == 3, "in flight and still due"
    for state in ("open", "half_open", "closed"):
        assert samples[("docuhooks_destinations", (("state", state),))] == 1
    assert not any(name.startswith("docuhooks_webhook_") for name, _ in samples), (
        "per-webhook series only when an operator turns them on"
    )


async def test_counts_stop_at_the_cap(
    ctx: AppContext, site: SiteUsers, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    await arrange_backlog(ctx, site)
    monkeypatch.setattr(health, "DUE_CAP", 2)

    samples = await scrape(client)

    assert samples[("docuhooks_deliveries_due", ())] == 2
    assert samples[("docuhooks_deliveries_backlog", (("state", "due"),))] == 2, (
        "a capped count means at least that many: nothing is taken off it"
    )
    assert samples[("docuhooks_deliveries_backlog", (("state", "scheduled"),))] == 1


async def test_per_webhook_series_when_turned_on_and_gone_with_their_webhook(
    ctx: AppContext, site: SiteUsers, client: httpx.AsyncClient
) -> None:
    hook_a, hook_b = await arrange_backlog(ctx, site)
    ctx.settings = dataclasses.replace(ctx.settings, metrics_per_webhook=True)

    samples = await scrape(client)

    assert samples[("docuhooks_webhook_in_flight", (("webhook_id", hook_a),))] == 1
    assert samples[("docuhooks_webhook_due_backlog", (("webhook_id", hook_a),))] == 2
    assert samples[("docuhooks_webhook_in_flight", (("webhook_id", hook_b),))] == 0
    assert samples[("docuhooks_webhook_due_backlog", (("webhook_id", hook_b),))] == 0

    deleted = await client.delete(f"/api/v1/webhooks/{hook_b}", headers=site.auth())
    assert deleted.status_code == 204
    after = await scrape(client)
    assert ("docuhooks_webhook_in_flight", (("webhook_id", hook_b),)) not in after
    assert after[("docuhooks_webhook_due_backlog", (("webhook_id", hook_a),))] == 2


async def test_a_workers_own_metrics_server_reads_the_fleet_gauges_when_scraped(
    ctx: AppContext, site: SiteUsers
) -> None:
    """`docuhooks worker --metrics-port` serves the registry from a thread of its own: each
    scrape has the worker's loop read the queue and the fleet first, so a worker reports the
    values the API server does (it reported 0 workers alive beside two)."""
    scraped = metrics.RefreshedOnScrape(
        lease_seconds=ctx.settings.worker_lease_seconds, per_webhook=False
    )
    await make_webhook(ctx, site, "https://receiver.example/hook")
    for _ in range(2):
        await queue_event(ctx, site.site_id, now=ctx.now())
    async with ctx.db.transaction() as conn:
        for worker_id in ("w1", "w2"):
            await upkeep_queries.heartbeat(
                conn, worker_id=worker_id, hostname="host", pid=1, now=ctx.now()
            )

    def samples_from_another_thread() -> dict[str, float]:
        text = generate_latest(scraped).decode()
        return {
            sample.name: sample.value
            for family in text_string_to_metric_families(text)
            for sample in family.samples
            if not sample.labels
        }

    metrics.WORKERS_ALIVE.set(0)
    metrics.DUE.set(0)
    before = await asyncio.to_thread(samples_from_another_thread)
    assert before["docuhooks_workers_alive"] == 0, "nothing read before the worker started"
    scraped.attach(asyncio.get_running_loop(), ctx.db, ctx.now)
    samples = await asyncio.to_thread(samples_from_another_thread)
    assert samples["docuhooks_workers_alive"] == 2
    assert samples["docuhooks_deliveries_due"] == 2
