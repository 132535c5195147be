"""A site's quota lock (`store.scoped.lock_site`, held by an upload, a new webhook or a test
send while it counts and writes) never holds up a worker's claim. On PostgreSQL every claim
locks its candidates' site rows; a quota lock on the same rows, held while a large upload
was written, held up the deliveries of every site in that claim."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from tests.delivery.delivery_support import make_webhook, queue_event
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock
from docuhooks.core.retry import RetrySchedule
from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery.transport import MockTransport, TransportResult
from docuhooks.delivery.worker import Worker, WorkerOptions
from docuhooks.store.scoped import lock_site

URL = "https://receiver.example/hook"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
async def test_a_claim_goes_on_while_the_site_is_locked_for_counting(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock(datetime.now(UTC) + timedelta(seconds=1))
    await make_webhook(ctx, site, URL, name="goes on")
    await queue_event(ctx, site.site_id, now=clock.now(), work_item_id="w1")
    received: list[str] = []

    async def receiver(request: OutboundRequest) -> TransportResult:
        received.append(request.headers["X-Docuhooks-Delivery-Id"])
        return TransportResult.response(200)

    ctx.transport_override = MockTransport(receiver)
    worker = Worker(
        ctx,
        WorkerOptions(concurrency=1, batch_size=10, schedule=RetrySchedule(delays=(0, 10))),
        clock=clock,
        rng=random.Random(1),
        worker_id="w1",
    )
    async with ctx.db.transaction() as conn:
        # As an upload holds it while it writes its document.
        await lock_site(conn, site.site_id)
        # The bound only turns a claim that waits for the lock into a failure, not a hang.
        async with asyncio.timeout(30):
            await worker.run_once()
        assert len(received) == 1, "the delivery reached its receiver while the lock was held"
