"""Post-processing survives its process, on both stores: a call a stopped or crashed process
left behind is made again from the original documents, and two drivers never call the same
version twice."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web
from tests.platform.platform_client import DOCX
from tests.platform.post_processing_support import (
    PDF,
    Receiver,
    finish,
    local,
    post_processing_webhook,
    same_kind,
    version_of,
    work_item,
)
from tests.support import MovedClock, SiteUsers

from docuhooks.context import AppContext
from docuhooks.platform.postprocessing import claiming, driver
from docuhooks.receiver import PostProcessingEvent, PostProcessingResult
from docuhooks.store.database import Database
from docuhooks.store.schema import events


@pytest.fixture
def idle_driver(ctx: AppContext) -> Iterator[None]:
    """A driver registered but not yet running: finishing leaves versions to it, as in a
    process that has not taken them yet."""
    ctx.post_processor = driver.PostProcessor(ctx)
    yield
    ctx.post_processor = None


async def completion_count(ctx: AppContext) -> int:
    async with ctx.db.read() as conn:
        count = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(events)
            .where(events.c.event_type == "NewWorkItemVersionComplete")
        )
    return int(count or 0)


async def until_completed(
    client: httpx.AsyncClient, site: SiteUsers, item: dict[str, Any], version_id: str
) -> dict[str, Any]:
    async with asyncio.timeout(10):
        while True:
            version = await version_of(client, site, item, version_id)
            if version["status"] == "Completed":
                return version
            await asyncio.sleep(0.05)


async def sign(event: PostProcessingEvent) -> web.StreamResponse:
    (letter,) = event.documents
    result = PostProcessingResult().replace(
        letter.id, "Signed", "signed.pdf", "application/pdf", PDF
    )
    return web.json_response(result.to_dict())


async def test_a_call_a_crashed_process_left_is_made_again(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    receiver: Receiver,
    idle_driver: None,
) -> None:
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])
    receiver.reply = sign
    version = (await finish(client, site, item)).json()
    assert version["postProcessing"]["status"] == "pending"
    # The crashed process claimed the version, then died before calling.
    (crashed,) = await claiming.claim_due(ctx)
    assert await driver.drive_due(ctx) == 0, "claimed: nobody else calls it"
    ctx.post_processor = None

    ctx.clock = MovedClock(shift=timedelta(seconds=5 + claiming.LEASE_MARGIN_SECONDS + 1))
    stop = await driver.start_post_processor(ctx)
    try:
        done = await until_completed(client, site, item, version["id"])
    finally:
        await stop()
    (event,) = receiver.events
    assert event.complete_url != crashed.event["data"]["completeUrl"]
    assert [d["fileName"] for d in done["documents"]] == ["signed.pdf"]
    assert (done["postProcessing"]["status"], done["postProcessing"]["calls"]) == ("completed", 2)
    assert await completion_count(ctx) == 1
    stale = await client.put(local(crashed.event["data"]["completeUrl"]), headers=site.auth())
    assert stale.status_code == 409


async def test_stopping_mid_call_hands_the_version_to_the_next_driver(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])
    called, let_go = asyncio.Event(), asyncio.Event()

    async def stuck(event: PostProcessingEvent) -> web.StreamResponse:
        called.set()
        await let_go.wait()
        return web.Response(status=202)

    receiver.reply = stuck
    monkeypatch.setattr(driver, "STOP_TIMEOUT_SECONDS", 0.2)
    stop = await driver.start_post_processor(ctx)
    version = (await finish(client, site, item)).json()
    await asyncio.wait_for(called.wait(), 10)
    await stop()
    let_go.set()  # too late: the caller has gone
    handed_back = await version_of(client, site, item, version["id"])
    assert handed_back["status"] == "PostProcessing"
    assert handed_back["postProcessing"]["status"] == "pending"

    receiver.reply = sign
    stop = await driver.start_post_processor(ctx)
    try:
        done = await until_completed(client, site, item, version["id"])
    finally:
        await stop()
    assert len(receiver.events) == 2
    first, second = receiver.events
    assert first.documents[0].sha256 == second.documents[0].sha256
    assert first.documents[0].content_type == DOCX
    assert done["documents"][0]["fileName"] == "signed.pdf"
    assert await completion_count(ctx) == 1


async def test_two_drivers_never_call_one_version_twice(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    receiver: Receiver,
    idle_driver: None,
) -> None:
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])

    async def slow_keep(event: PostProcessingEvent) -> web.StreamResponse:
        await asyncio.sleep(0.2)
        return web.json_response({"documents": []})

    receiver.reply = slow_keep
    items = [item] + [await same_kind(client, site, item) for _ in range(3)]
    versions = [(await finish(client, site, each)).json()["id"] for each in items]
    # A second process: its own store connections, the same database.
    other = AppContext(
        settings=ctx.settings,
        db=Database.from_url(ctx.settings.resolved_database_url),
        box=ctx.box,
    )
    try:
        # One version per claim, so the two drivers take turns and race for each.
        made = await asyncio.gather(
            driver.drive_due(ctx, limit=1), driver.drive_due(other, limit=1)
        )
    finally:
        await other.close()
    assert sum(made) == 4 and min(made) >= 1, made
    assert receiver.most_at_once == 2, "the two drivers called at the same time"
    called = Counter(event.work_item.version_id for event in receiver.events)
    assert called == Counter(versions), "each version called once"
    for each, version_id in zip(items, versions, strict=True):
        version = await version_of(client, site, each, version_id)
        assert version["postProcessing"]["status"] == "completed"
    assert await completion_count(ctx) == 4


async def test_editing_again_during_post_processing_starts_from_the_finished_answers(
    client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver, idle_driver: None
) -> None:
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])
    first = (await finish(client, site, item)).json()
    assert first["status"] == "PostProcessing"
    reopened = await client.post(
        f"/api/v1/workitems/{item['id']}/interviews", headers=site.auth("User")
    )
    assert reopened.status_code == 201, reopened.text
    assert reopened.json()["versionNumber"] == first["versionNumber"] + 1
    names = {answer["name"]: answer["value"] for answer in reopened.json()["answers"]["answers"]}
    assert names["Client Name"] == "Jane Doe"
