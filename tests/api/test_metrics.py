"""`GET /metrics`: Prometheus text with delivery outcomes, latency, queue depth and workers."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from prometheus_client.parser import text_string_to_metric_families
from tests.delivery.delivery_support import make_webhook, queue_event
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.delivery.transport import MockTransport, TransportResult
from docuhooks.delivery.worker import Worker


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
    ctx.now = lambda: start + timedelta(seconds=90)

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

    ctx.transport_override = MockTransport(receiver)  # type: ignore[arg-type]
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
