"""A webhook deactivated or deleted sends nothing more once the change has committed, not
even what a worker claimed ahead of its senders before it; one changed meanwhile sends what
it is now."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta

import pytest
from tests.delivery.delivery_support import admin_of, make_webhook, queue_event
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock
from docuhooks.core.retry import RetrySchedule
from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery.transport import MockTransport, TransportResult
from docuhooks.delivery.worker import Worker, WorkerOptions
from docuhooks.webhooks import service

URL = "https://receiver.example/hook"
MOVED = "https://receiver.example/moved"


@pytest.mark.parametrize("change", ["deactivate", "delete", "change"])
async def test_what_was_claimed_ahead_is_not_sent_after_the_webhook_stops(
    ctx: AppContext, site: SiteUsers, change: str
) -> None:
    clock = FakeClock(datetime.now(UTC) + timedelta(seconds=1))
    hook_id, _ = await make_webhook(ctx, site, URL, name="stops")
    for version in (1, 2, 3):
        await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"w{version}")
    calls: list[str] = []
    urls: list[str] = []
    first_call_under_way = asyncio.Event()
    go_on = asyncio.Event()

    async def receiver(request: OutboundRequest) -> TransportResult:
        calls.append(request.headers["X-Docuhooks-Delivery-Id"])
        urls.append(request.url)
        first_call_under_way.set()
        await go_on.wait()
        return TransportResult.response(200)

    ctx.transport_override = MockTransport(receiver)
    worker = Worker(
        ctx,
        # Every delivery is checked however briefly it waited (by default, one that waited
        # a second or more behind slow calls).
        WorkerOptions(
            concurrency=1,
            batch_size=10,
            schedule=RetrySchedule(delays=(0, 10)),
            recheck_after_seconds=0,
        ),
        clock=clock,
        rng=random.Random(1),
        worker_id="w1",
    )
    sending = asyncio.create_task(worker.run_once())
    await first_call_under_way.wait()
    # The admin stops the webhook while its first call is under way; the other two were
    # claimed with it and wait for the (only) sender.
    async with ctx.db.transaction() as conn:
        if change == "deactivate":
            await service.set_active(ctx, conn, admin_of(site), hook_id, False)
        elif change == "delete":
            await service.delete(ctx, conn, admin_of(site), hook_id)
        else:
            await service.update(ctx, conn, admin_of(site), hook_id, {"url": MOVED})
    stopped_at = len(calls)
    go_on.set()
    await sending
    assert calls[stopped_at:] == [], f"{change}d webhook sent {len(calls) - stopped_at} more"
    if change != "change":
        return
    # Handed back, the two are claimed again with the webhook as it is now.
    await worker.run_once()
    assert urls[stopped_at:] == [MOVED, MOVED]
    assert len(set(calls)) == 3
