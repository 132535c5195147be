"""An ordered webhook gets a work item's versions in version order even when an earlier
version waits in post-processing (callback mode) while a later one completes first; other
webhooks get each version as it completes. On PostgreSQL, two versions completing at
once still leave nothing held behind a completed one."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import jwt
import pytest
import sqlalchemy as sa
from aiohttp import web
from tests.delivery.delivery_support import make_webhook
from tests.platform.post_processing_support import (
    API,
    Receiver,
    finish,
    local,
    post_processing_webhook,
    work_item,
)
from tests.platform.test_work_item_lock_order import POSTGRES, Pause
from tests.support import SiteUsers, until_waiting_for_locks

from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock
from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery import outbox
from docuhooks.delivery.transport import MockTransport, TransportResult
from docuhooks.delivery.worker import Worker, WorkerOptions
from docuhooks.platform.completion import ORDER_HOLD_MARGIN
from docuhooks.receiver import PostProcessingEvent
from docuhooks.store.schema import deliveries, webhooks

ORDERED = "https://ordered.example/hook"
UNORDERED = "https://unordered.example/hook"


async def test_a_version_completed_before_an_earlier_one_in_post_processing_waits_its_turn(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])
    await make_webhook(ctx, site, ORDERED, name="ordered", orderedDelivery=True)
    calls = 0

    async def first_later_then_inline(event: PostProcessingEvent) -> web.StreamResponse:
        nonlocal calls
        calls += 1
        if calls == 1:
            return web.Response(status=202)  # version 1: the receiver calls back later
        return web.json_response({"documents": []})  # version 2: done at once

    receiver.reply = first_later_then_inline
    first = await finish(client, site, item)
    assert first.json()["status"] == "PostProcessing", first.text
    second = await finish(client, site, item)
    assert second.status_code == 200, second.text
    assert second.json()["status"] == "Completed", second.text
    assert second.json()["versionNumber"] == 2
    seen: list[int] = []

    def ordered_receiver(request: OutboundRequest) -> TransportResult:
        token = request.body.decode().removeprefix("token=")  # type: ignore[union-attr]
        claims = jwt.decode(token, options={"verify_signature": False})
        seen.append(claims["data"]["versionNumber"])
        return TransportResult.response(200)

    clock = FakeClock(datetime.now(UTC) + timedelta(seconds=1))
    ctx.transport_override = MockTransport(ordered_receiver)
    worker = Worker(
        ctx, WorkerOptions(poll_seconds=0.05), clock=clock, rng=random.Random(1), worker_id="w"
    )
    # The worker runs meanwhile, as it always does: version 1 is still post-processing.
    await worker.run_once()
    clock.advance(timedelta(seconds=15))
    event_v1 = receiver.events[0]
    done = await client.put(local(event_v1.complete_url), headers=site.auth("User"))
    assert done.status_code == 200, done.text

    for _ in range(3):
        await worker.run_once()
        clock.advance(timedelta(seconds=15))
    assert seen == [1, 2], "the receiver saw a work item's versions out of order"


def _worker(ctx: AppContext, clock: FakeClock, seen: dict[str, list[int]]) -> Worker:
    def receivers(request: OutboundRequest) -> TransportResult:
        token = request.body.decode().removeprefix("token=")  # type: ignore[union-attr]
        claims = jwt.decode(token, options={"verify_signature": False})
        seen.setdefault(request.url, []).append(claims["data"]["versionNumber"])
        return TransportResult.response(200)

    ctx.transport_override = MockTransport(receivers)
    return Worker(
        ctx, WorkerOptions(poll_seconds=0.05), clock=clock, rng=random.Random(1), worker_id="w"
    )


async def _drain(worker: Worker, clock: FakeClock) -> None:
    for _ in range(3):
        await worker.run_once()
        clock.advance(timedelta(seconds=15))


async def test_versions_two_and_three_wait_for_the_ones_before_them_in_post_processing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    """Versions 1 and 2 wait in post-processing while version 3 completes; then 1, then 2
    complete. The ordered webhook gets 1, 2, 3; another webhook gets 3 at once."""
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])
    await make_webhook(ctx, site, ORDERED, name="ordered", orderedDelivery=True)
    await make_webhook(ctx, site, UNORDERED, name="unordered")
    replies = iter([web.Response(status=202), web.Response(status=202)])

    async def later_twice_then_inline(event: PostProcessingEvent) -> web.StreamResponse:
        return next(replies, None) or web.json_response({"documents": []})

    receiver.reply = later_twice_then_inline
    for expected in ("PostProcessing", "PostProcessing", "Completed"):
        finished = await finish(client, site, item)
        assert finished.json()["status"] == expected, finished.text
    seen: dict[str, list[int]] = {}
    clock = FakeClock(datetime.now(UTC) + timedelta(seconds=1))
    worker = _worker(ctx, clock, seen)
    await _drain(worker, clock)
    assert seen == {UNORDERED: [3]}

    for event, versions in zip(receiver.events[:2], ({1}, {1, 2, 3}), strict=True):
        done = await client.put(local(event.complete_url), headers=site.auth("User"))
        assert done.status_code == 200, done.text
        await _drain(worker, clock)
        assert set(seen[ORDERED]) == versions, "a version went out before an earlier one"
    assert seen[ORDERED] == [1, 2, 3]
    assert sorted(seen[UNORDERED]) == [1, 2, 3]


async def test_a_held_version_goes_out_past_the_earlier_ones_deadline_at_worst(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    """Should nothing ever complete the earlier version (no server running its drivers),
    the later one's ordered delivery is held back until past that version's deadline, not
    forever."""
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])
    await make_webhook(ctx, site, ORDERED, name="ordered", orderedDelivery=True)
    replies = iter([web.Response(status=202)])

    async def later_then_inline(event: PostProcessingEvent) -> web.StreamResponse:
        return next(replies, None) or web.json_response({"documents": []})

    receiver.reply = later_then_inline
    assert (await finish(client, site, item)).json()["status"] == "PostProcessing"
    assert (await finish(client, site, item)).json()["status"] == "Completed"
    seen: dict[str, list[int]] = {}
    clock = FakeClock(datetime.now(UTC) + timedelta(seconds=1))
    worker = _worker(ctx, clock, seen)
    await _drain(worker, clock)
    assert seen == {}
    clock.advance(
        timedelta(seconds=ctx.settings.post_processing_deadline_seconds) + ORDER_HOLD_MARGIN
    )
    await _drain(worker, clock)
    assert seen == {ORDERED: [2]}


async def _v1_in_post_processing_v2_held(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> tuple[str, dict[str, Any]]:
    """Version 1 waits in post-processing (callback), version 2 completed and is held for
    the ordered webhook; the ordered webhook's id and the work item."""
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])
    ordered_id, _ = await make_webhook(ctx, site, ORDERED, name="ordered", orderedDelivery=True)
    replies = iter([web.Response(status=202)])

    async def later_then_inline(event: PostProcessingEvent) -> web.StreamResponse:
        return next(replies, None) or web.json_response({"documents": []})

    receiver.reply = later_then_inline
    assert (await finish(client, site, item)).json()["status"] == "PostProcessing"
    assert (await finish(client, site, item)).json()["status"] == "Completed"
    return ordered_id, item


async def test_resuming_the_ordered_webhook_does_not_let_a_held_version_overtake(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    """An admin's Resume makes the webhook's pending deliveries due at once: the one held
    for an earlier version still in post-processing must stay held."""
    ordered_id, _ = await _v1_in_post_processing_v2_held(ctx, client, site, receiver)
    seen: dict[str, list[int]] = {}
    clock = FakeClock(datetime.now(UTC) + timedelta(seconds=1))
    worker = _worker(ctx, clock, seen)
    await _drain(worker, clock)
    assert seen == {}
    resumed = await client.post(f"/api/v1/webhooks/{ordered_id}/resume", headers=site.auth())
    assert resumed.status_code == 200, resumed.text
    await _drain(worker, clock)
    done = await client.put(local(receiver.events[0].complete_url), headers=site.auth("User"))
    assert done.status_code == 200, done.text
    await _drain(worker, clock)
    assert seen == {ORDERED: [1, 2]}, "the receiver saw a work item's versions out of order"


async def test_a_probe_lifting_a_suspension_does_not_let_a_held_version_overtake(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    """The ordered webhook is suspended meanwhile; its probe (another work item's
    delivery) succeeds and drains its backlog: the held version must stay held."""
    ordered_id, item = await _v1_in_post_processing_v2_held(ctx, client, site, receiver)
    created = await client.post(
        "/api/v1/workitems",
        json={k: item[k] for k in ("workGroupId", "templateId", "name")},
        headers=site.auth(),
    )
    assert created.status_code == 201, created.text
    other = created.json()
    assert (await finish(client, site, other)).json()["status"] == "Completed"
    clock = FakeClock(datetime.now(UTC) + timedelta(seconds=1))
    async with ctx.db.transaction() as conn:
        await conn.execute(
            webhooks.update()
            .where(webhooks.c.id == ordered_id)
            .values(suspended_at=clock.now(), next_probe_at=clock.now(), consecutive_failures=5)
        )
    seen: dict[str, list[int]] = {}
    worker = _worker(ctx, clock, seen)
    await _drain(worker, clock)
    async with ctx.db.read() as conn:
        suspended = (
            await conn.execute(
                sa.select(webhooks.c.suspended_at).where(webhooks.c.id == ordered_id)
            )
        ).scalar()
    assert suspended is None, "the probe did not lift the suspension"
    done = await client.put(local(receiver.events[0].complete_url), headers=site.auth("User"))
    assert done.status_code == 200, done.text
    await _drain(worker, clock)
    # The other work item's version 1 went first (the probe); then this one's 1, then 2.
    assert seen[ORDERED][1:] == [1, 2], "the receiver saw a work item's versions out of order"


async def _v1_in_post_processing_v2_open(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> tuple[str, dict[str, Any], str]:
    """Version 1 waits in post-processing (callback), version 2 is in progress; the site
    has no storage quota, so no completion takes the site's lock, which would have them
    take turns anyway. The ordered webhook's id, the work item, and the path completing
    version 2 (`PUT …/complete`, as a finish without post-processing completes it)."""
    ctx.settings = dataclasses.replace(
        ctx.settings, site_storage_quota_bytes=0, site_storage_quota_files=0
    )
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])
    ordered_id, _ = await make_webhook(ctx, site, ORDERED, name="ordered", orderedDelivery=True)

    async def later(event: PostProcessingEvent) -> web.StreamResponse:
        return web.Response(status=202)

    receiver.reply = later
    assert (await finish(client, site, item)).json()["status"] == "PostProcessing"
    opened = await client.post(
        f"{API}/workitems/{item['id']}/interviews", headers=site.auth("User")
    )
    assert opened.status_code == 201, opened.text
    version_2 = opened.json()["workItemVersionId"]
    return ordered_id, item, f"{API}/workitems/{item['id']}/versions/{version_2}/complete"


async def _ordered_due(ctx: AppContext, ordered_id: str) -> dict[int, bool]:
    """Each version's delivery to the ordered webhook: due now (not held)?"""
    now = datetime.now(UTC)
    async with ctx.db.read() as conn:
        rows = await conn.execute(
            sa.select(deliveries.c.ordering_seq, deliveries.c.next_attempt_at).where(
                deliveries.c.webhook_id == ordered_id
            )
        )
        return {row.ordering_seq: row.next_attempt_at <= now for row in rows.all()}


@POSTGRES
async def test_a_version_completing_while_the_earlier_one_commits_its_completion_is_not_held(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Version 1's completion has let go of what was held for it, not committed yet, when
    version 2 completes: version 2 waits for it (the work item's order lock), then finds
    version 1 completed and holds nothing. Without the lock it counted version 1 as still
    in post-processing and held its delivery to version 1's deadline and past it, with
    nothing left to let it go."""
    ordered_id, _, complete_2 = await _v1_in_post_processing_v2_open(ctx, client, site, receiver)
    user = site.auth("User")
    pause = Pause(monkeypatch, outbox, "release_in_order", after=True)
    settling = asyncio.create_task(client.put(local(receiver.events[0].complete_url), headers=user))
    try:
        await pause.reached.wait()
        completing = asyncio.create_task(client.put(complete_2, headers=user))
        await until_waiting_for_locks(ctx, [completing])
    finally:
        pause.go_on.set()
    settled, completed = await settling, await completing

    assert settled.status_code == 200, settled.text
    assert completed.status_code == 200, completed.text
    assert await _ordered_due(ctx, ordered_id) == {1: True, 2: True}


@POSTGRES
async def test_an_earlier_version_completing_while_a_later_one_is_held_lets_it_go(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The other way round: version 2's completion has held its delivery, not committed
    yet, when version 1 completes. Version 1 waits for it, then lets go of the delivery it
    now sees. Without the lock its release missed it, held to the deadline and past it."""
    ordered_id, _, complete_2 = await _v1_in_post_processing_v2_open(ctx, client, site, receiver)
    user = site.auth("User")
    pause = Pause(monkeypatch, outbox, "hold_in_order", after=True)
    completing = asyncio.create_task(client.put(complete_2, headers=user))
    try:
        await pause.reached.wait()
        settling = asyncio.create_task(
            client.put(local(receiver.events[0].complete_url), headers=user)
        )
        await until_waiting_for_locks(ctx, [settling])
    finally:
        pause.go_on.set()
    completed, settled = await completing, await settling

    assert completed.status_code == 200, completed.text
    assert settled.status_code == 200, settled.text
    assert await _ordered_due(ctx, ordered_id) == {1: True, 2: True}
