"""Post-processing against a real receiver on a loopback socket, on both stores:
inline replies applied or refused whole, the callback mode through the REST API and
`completeUrl`, failures and the deadline restoring the originals, and
NewWorkItemVersionComplete written exactly once, after post-processing."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import socket
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web
from tests.platform.docx_factory import make_docx
from tests.platform.hostile_docx import directory_only
from tests.platform.platform_client import DOCX
from tests.platform.post_processing_support import (
    API,
    PDF,
    Receiver,
    content_of,
    finish,
    gated_judge_reply_job,
    local,
    post_processing_webhook,
    returned,
    same_kind,
    second_template,
    version_of,
    work_item,
)
from tests.support import MovedClock, SiteUsers

from docuhooks.context import AppContext
from docuhooks.platform.postprocessing import driver, replies
from docuhooks.receiver import PostProcessingEvent, PostProcessingResult
from docuhooks.store.schema import deliveries, events, post_processing_originals


async def completions(ctx: AppContext) -> list[dict[str, Any]]:
    async with ctx.db.read() as conn:
        rows = await conn.execute(
            sa.select(events.c.payload).where(events.c.event_type == "NewWorkItemVersionComplete")
        )
        return [row.payload for row in rows]


async def logged(client: httpx.AsyncClient, site: SiteUsers, hook: dict[str, Any]) -> list[Any]:
    response = await client.get(f"{API}/webhooks/{hook['id']}/deliveries", headers=site.auth())
    assert response.status_code == 200, response.text
    items: list[Any] = response.json()["items"]
    return items


async def test_inline_reply_replaces_and_adds_in_the_given_order(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    item = await work_item(client, site.auth())
    hook = await post_processing_webhook(client, site, receiver, template_ids=[item["templateId"]])
    signed = make_docx(["Signed by the receiver"])

    async def stamp(event: PostProcessingEvent) -> web.StreamResponse:
        (letter,) = event.documents
        result = PostProcessingResult()
        result.add("Appendix", "appendix.pdf", "application/pdf", PDF)
        result.replace(letter.id, "Signed letter", "signed.docx", DOCX, signed)
        result.add("Cover", "cover.pdf", "application/pdf", PDF + b"%cover\n", order=0)
        return web.json_response(result.to_dict())

    receiver.reply = stamp
    response = await finish(client, site, item)
    assert response.status_code == 200, response.text
    version = response.json()
    assert version["status"] == "Completed", version
    assert [d["fileName"] for d in version["documents"]] == [
        "cover.pdf",
        "signed.docx",
        "appendix.pdf",
    ]
    assert [d["assembledOrder"] for d in version["documents"]] == [0, 1, 2]
    assert await content_of(client, site, version["documents"][1]["url"]) == signed
    post = version["postProcessing"]
    assert (post["status"], post["mode"], post["error"], post["calls"]) == (
        "completed",
        "inline",
        None,
        1,
    )

    (event,) = receiver.events
    (sent,) = event.documents
    assert sent.content is not None and sent.id == version["documents"][1]["id"]
    assert hashlib.sha256(sent.content).hexdigest() == sent.sha256
    assert event.complete_url.startswith(
        f"https://{event.complete_url.split('/')[2]}/api/v1/workitems/{item['id']}/"
    )
    assert "?token=dhc_" in event.complete_url
    # The deadline runs from finishing, the event from the call just after.
    assert event.created_date is not None
    deadline = event.callback_deadline - event.created_date
    assert timedelta(minutes=9, seconds=50) < deadline <= timedelta(minutes=10)

    (completed,) = await completions(ctx)
    announced = {d["id"]: d["sha256"] for d in completed["data"]["documents"]}
    assert announced == {d["id"]: d["sha256"] for d in version["documents"]}
    assert completed["createdBy"]["id"] == site.user_ids["User"]
    (delivery,) = await logged(client, site, hook)
    assert delivery["status"] == "succeeded" and delivery["id"] == post["deliveryId"]
    async with ctx.db.read() as conn:
        stored = (
            await conn.execute(
                sa.select(events.c.payload).where(events.c.event_type == "PostProcessingEvent")
            )
        ).scalar_one()
        kept = await conn.scalar(sa.select(sa.func.count()).select_from(post_processing_originals))
    # The log keeps neither the completion token nor the documents' bytes.
    assert "dhc_" not in str(stored) and "content" not in stored["data"]["documents"][0]
    assert kept == 0


async def test_a_reply_with_one_bad_document_is_refused_whole(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    item = await work_item(client, site.auth())
    hook = await post_processing_webhook(client, site, receiver, template_ids=[])

    async def bad(event: PostProcessingEvent) -> web.StreamResponse:
        (letter,) = event.documents
        return web.json_response(
            {
                "documents": [
                    returned(
                        "replace", "Letter", "letter.pdf", "application/pdf", PDF, id=letter.id
                    ),
                    returned("add", "Not a docx", "fake.docx", DOCX, b"PK but not a zip"),
                    returned("add", "Not a pdf", "fake.pdf", "application/pdf", b"<html>"),
                ]
            }
        )

    receiver.reply = bad
    version = (await finish(client, site, item)).json()
    assert version["status"] == "Completed"
    (document,) = version["documents"]
    assert document["contentType"] == DOCX and document["fileName"] == "engagement.docx"
    assert document["sha256"] == receiver.events[0].documents[0].sha256
    post = version["postProcessing"]
    assert (post["status"], post["errorClass"]) == ("failed", "invalid_response")
    assert "documents[1]: fake.docx" in post["error"] and "documents[2]: fake.pdf" in post["error"]
    assert "%PDF" in post["error"]
    (delivery,) = await logged(client, site, hook)
    assert delivery["status"] == "failed" and delivery["lastError"] == post["error"]
    (completed,) = await completions(ctx)
    assert completed["data"]["documents"][0]["sha256"] == document["sha256"]


async def test_a_reply_of_100_000_zip_entries_is_refused_off_the_loop(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    other_site: SiteUsers,
    receiver: Receiver,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A DOCX of 100,001 bare zip-directory entries is refused naming docx_max_entries; it
    is judged in a render worker (held there by a gate) while the server answers others."""
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])

    async def directory(event: PostProcessingEvent) -> web.StreamResponse:
        document = returned("add", "Signed", "signed.docx", DOCX, directory_only(100_001))
        return web.json_response({"documents": [document]})

    receiver.reply = directory
    gate = tmp_path / "gate"
    monkeypatch.setattr(
        replies, "judge_reply_job", functools.partial(gated_judge_reply_job, str(gate))
    )
    pool = ctx.render_pool
    finishing = asyncio.create_task(finish(client, site, item))
    for _ in range(3000):
        if (site.site_id, "partial") in pool.started and pool.busy:
            break
        await asyncio.sleep(0.01)
    assert pool.started[-1] == (site.site_id, "partial") and pool.busy == 1
    # Proven by order: answered while the reply's judging is held in the worker.
    assert (await client.get("/healthz")).status_code == 200
    listing = await client.get(f"{API}/templates", headers=other_site.auth())
    assert listing.status_code == 200
    assert not finishing.done()
    gate.touch()
    version = (await finishing).json()
    assert version["status"] == "Completed"
    post = version["postProcessing"]
    assert (post["status"], post["errorClass"]) == ("failed", "invalid_response")
    assert "documents[0]: signed.docx" in post["error"]
    assert "docx_max_entries" in post["error"]
    (document,) = version["documents"]
    assert document["fileName"] == "engagement.docx"


@pytest.mark.parametrize("failure", ["down", "500", "timeout"])
async def test_a_failed_call_keeps_the_originals_and_completes(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    receiver: Receiver,
    failure: str,
) -> None:
    item = await work_item(client, site.auth())
    hook = await post_processing_webhook(
        client, site, receiver, template_ids=[item["templateId"]], timeout_seconds=1
    )

    async def misbehave(event: PostProcessingEvent) -> web.StreamResponse:
        if failure == "timeout":
            await asyncio.sleep(3)
        return web.Response(status=500, text="stamp service broken")

    receiver.reply = misbehave
    if failure == "down":
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            closed = probe.getsockname()[1]
        moved = await client.patch(
            f"{API}/webhooks/{hook['id']}",
            json={"url": f"http://127.0.0.1:{closed}/hook"},
            headers=site.auth(),
        )
        assert moved.status_code == 200, moved.text
    version = (await finish(client, site, item)).json()
    assert version["status"] == "Completed"
    assert len(version["documents"]) == 1
    expected = {"down": "connect", "500": "http_status", "timeout": "timeout"}[failure]
    assert version["postProcessing"]["status"] == "failed"
    assert version["postProcessing"]["errorClass"] == expected
    (delivery,) = await logged(client, site, hook)
    assert (delivery["status"], delivery["lastErrorClass"]) == ("failed", expected)
    assert len(await completions(ctx)) == 1


async def test_callback_mode_uploads_through_the_api_then_completes_once(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    item = await work_item(client, site.auth())
    other = await same_kind(client, site, item)
    await post_processing_webhook(client, site, receiver, template_ids=[])

    async def later(event: PostProcessingEvent) -> web.StreamResponse:
        return web.Response(status=202)

    receiver.reply = later
    waiting = (await finish(client, site, item)).json()
    assert waiting["status"] == "PostProcessing"
    assert waiting["postProcessing"]["status"] == "waiting"
    assert waiting["postProcessing"]["mode"] == "callback"
    assert (await finish(client, site, other)).json()["status"] == "PostProcessing"
    event, other_event = receiver.events
    (letter,) = event.documents
    receiver_auth = site.auth("User")

    replaced = await client.put(
        local(letter.url),
        params={"fileName": "signed.pdf"},
        content=PDF,
        headers={**receiver_auth, "Content-Type": "application/pdf"},
    )
    assert replaced.status_code == 200, replaced.text
    added = await client.post(
        local(letter.url).rsplit("/", 2)[0],
        params={"fileName": "receipt.pdf", "assembledOrder": "0"},
        content=PDF + b"%receipt\n",
        headers={**receiver_auth, "Content-Type": "application/pdf"},
    )
    assert added.status_code == 201, added.text

    path = local(event.complete_url)
    bare = path.split("?")[0]
    refused = await client.put(bare, headers=receiver_auth)
    assert refused.status_code == 403 and "completeUrl" in refused.json()["error"]["message"]
    token = other_event.complete_url.split("token=")[1]
    foreign = await client.put(bare, params={"token": token}, headers=receiver_auth)
    assert foreign.status_code == 403, foreign.text
    assert (await client.put(path)).status_code == 401, "the API token is needed too"
    assert (await completions(ctx)) == []

    done = await client.put(path, headers=receiver_auth)
    assert done.status_code == 200, done.text
    version = done.json()
    assert version["status"] == "Completed"
    assert [d["fileName"] for d in version["documents"]] == ["receipt.pdf", "signed.pdf"]
    assert version["postProcessing"]["status"] == "completed"
    again = await client.put(path, headers=receiver_auth)
    assert again.status_code == 409, again.text
    (completed,) = await completions(ctx)
    announced = [d["sha256"] for d in completed["data"]["documents"]]
    assert announced[1] == hashlib.sha256(PDF).hexdigest()
    assert completed["createdBy"]["id"] == site.user_ids["User"]


async def test_the_deadline_restores_the_originals_after_a_partial_callback(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    item = await work_item(client, site.auth())
    hook = await post_processing_webhook(client, site, receiver, template_ids=[])

    async def later(event: PostProcessingEvent) -> web.StreamResponse:
        return web.Response(status=202)

    receiver.reply = later
    waiting = (await finish(client, site, item)).json()
    (event,) = receiver.events
    (letter,) = event.documents
    replaced = await client.put(
        local(letter.url),
        content=PDF,
        headers={**site.auth("User"), "Content-Type": "application/pdf"},
    )
    assert replaced.status_code == 200
    assert await driver.drive_due(ctx) == 0, "not due before its deadline"

    ctx.clock = MovedClock(shift=timedelta(minutes=10, seconds=1))
    assert await driver.drive_due(ctx) == 0
    version = await version_of(client, site, item, waiting["id"])
    assert version["status"] == "Completed"
    (document,) = version["documents"]
    assert document["sha256"] == letter.sha256 and document["contentType"] == DOCX
    restored = await content_of(client, site, document["url"])
    assert restored == letter.content
    assert version["postProcessing"]["status"] == "timed_out"
    (completed,) = await completions(ctx)
    assert completed["data"]["documents"][0]["sha256"] == letter.sha256
    late = await client.put(local(event.complete_url), headers=site.auth("User"))
    assert late.status_code == 409
    (delivery,) = await logged(client, site, hook)
    assert delivery["status"] == "succeeded", "the call itself was answered (202)"


async def test_no_call_when_the_webhook_does_not_select_the_template_or_is_inactive(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    item = await work_item(client, site.auth())
    elsewhere = await second_template(client, site)
    hook = await post_processing_webhook(client, site, receiver, template_ids=[elsewhere])
    version = (await finish(client, site, item)).json()
    assert (version["status"], version["postProcessing"]) == ("Completed", None)

    await client.patch(
        f"{API}/webhooks/{hook['id']}", json={"templateIds": []}, headers=site.auth()
    )
    deactivated = await client.post(f"{API}/webhooks/{hook['id']}/deactivate", headers=site.auth())
    assert deactivated.status_code == 200, deactivated.text
    version = (await finish(client, site, item)).json()
    assert (version["status"], version["postProcessing"]) == ("Completed", None)
    assert receiver.events == []
    assert len(await completions(ctx)) == 2
    async with ctx.db.read() as conn:
        # No call was logged (and no notification webhook exists to deliver the two events).
        assert await conn.scalar(sa.select(sa.func.count()).select_from(deliveries)) == 0


async def test_finishing_with_the_driver_running_returns_before_the_receiver_answers(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])
    answer, called = asyncio.Event(), asyncio.Event()

    async def slow(event: PostProcessingEvent) -> web.StreamResponse:
        called.set()
        await answer.wait()
        return web.json_response({"documents": []})

    receiver.reply = slow
    stop = await driver.start_post_processor(ctx)
    try:
        version = (await finish(client, site, item)).json()
        assert version["status"] == "PostProcessing"
        assert version["postProcessing"]["status"] == "pending"
        await asyncio.wait_for(called.wait(), 10)
        interview_done = await client.get(
            f"{API}/workitems/{item['id']}/versions/{version['id']}", headers=site.auth()
        )
        assert interview_done.json()["postProcessing"]["status"] == "calling"
        answer.set()
        async with asyncio.timeout(10):
            while (  # noqa: ASYNC110 (polling the API, as a client does)
                await version_of(client, site, item, version["id"])
            )["status"] != "Completed":
                await asyncio.sleep(0.05)
    finally:
        await stop()
    assert len(await completions(ctx)) == 1
