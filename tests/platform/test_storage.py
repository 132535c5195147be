"""A site's storage quota, on both stores: every way bytes are stored for a site is held to
it (documents added and replaced through the API, templates, the document an interview
assembles, a post-processing receiver's returned documents), a refusal stores nothing and
names the setting, and two uploads racing for the last room store one."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import httpx
import pytest
from aiohttp import web
from tests.platform.docx_factory import make_docx
from tests.platform.platform_client import upload_template, work_item
from tests.platform.post_processing_support import (
    API,
    Receiver,
    finish,
    local,
    post_processing_webhook,
    same_kind,
    version_of,
)
from tests.support import SiteUsers, racing_at_the_site_lock

from docuhooks.context import AppContext
from docuhooks.platform import storage
from docuhooks.receiver import PostProcessingEvent, PostProcessingResult

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"
QUOTA_BYTES = "site_storage_quota_bytes"
QUOTA_FILES = "site_storage_quota_files"


async def kept(ctx: AppContext, site: SiteUsers) -> storage.Usage:
    async with ctx.db.read() as conn:
        return await storage.usage(conn, site.site_id)


async def room_for(ctx: AppContext, site: SiteUsers, more: int) -> None:
    """Set the byte quota to what the site keeps now and `more`."""
    used = await kept(ctx, site)
    ctx.settings = dataclasses.replace(ctx.settings, site_storage_quota_bytes=used.bytes + more)


async def in_progress(client: httpx.AsyncClient, site: SiteUsers, item: dict[str, Any]) -> str:
    """The path of `item`'s version in progress, opened by its interview."""
    opened = await client.post(f"{API}/workitems/{item['id']}/interviews", headers=site.auth())
    assert opened.status_code == 201, opened.text
    return f"{API}/workitems/{item['id']}/versions/{opened.json()['workItemVersionId']}"


async def version_in_progress(client: httpx.AsyncClient, site: SiteUsers) -> str:
    """A version in progress of a new work item (on the standard template, uploaded now)."""
    return await in_progress(client, site, await work_item(client, site.auth()))


async def two_versions_in_progress(client: httpx.AsyncClient, site: SiteUsers) -> list[str]:
    """Versions in progress of two work items: their uploads lock a version each."""
    item = await work_item(client, site.auth())
    return [
        await in_progress(client, site, item),
        await in_progress(client, site, await same_kind(client, site, item)),
    ]


async def deliveries_of(
    client: httpx.AsyncClient, site: SiteUsers, hook: dict[str, Any]
) -> list[dict[str, Any]]:
    response = await client.get(f"{API}/webhooks/{hook['id']}/deliveries", headers=site.auth())
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


async def add_pdf(
    client: httpx.AsyncClient, site: SiteUsers, version: str, content: bytes = PDF
) -> httpx.Response:
    return await client.post(
        f"{version}/documents",
        params={"fileName": "letter.pdf"},
        content=content,
        headers={**site.auth("User"), "Content-Type": "application/pdf"},
    )


def refused_by(response: httpx.Response, setting: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "storage_quota_exceeded", error
    assert setting in error["message"] and "nothing was stored" in error["message"], error


async def test_an_upload_past_the_quota_is_refused_and_stores_nothing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    version = await version_in_progress(client, site)
    await room_for(ctx, site, len(PDF) + len(PDF) // 2)
    first = await add_pdf(client, site, version)
    assert first.status_code == 201, first.text
    before = await kept(ctx, site)
    refused_by(await add_pdf(client, site, version), QUOTA_BYTES)
    # As a multipart form too.
    form = await client.post(
        f"{version}/documents",
        files={"file": ("cover.pdf", PDF, "application/pdf")},
        headers=site.auth("User"),
    )
    refused_by(form, QUOTA_BYTES)
    listed = (await client.get(f"{version}/documents", headers=site.auth("User"))).json()
    assert [d["id"] for d in listed] == [first.json()["id"]]
    assert await kept(ctx, site) == before
    # Another site keeps its own room.
    elsewhere = await version_in_progress(client, other_site)
    assert (await add_pdf(client, other_site, elsewhere)).status_code == 201


async def test_a_replacement_counts_by_what_it_adds(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    version = await version_in_progress(client, site)
    added = await add_pdf(client, site, version, PDF + b"%" + b"x" * 100 + b"\n")
    assert added.status_code == 201, added.text
    document = f"{version}/documents/{added.json()['id']}/content"
    await room_for(ctx, site, 0)  # full to the byte
    auth = {**site.auth("User"), "Content-Type": "application/pdf"}
    smaller = await client.put(document, content=PDF, headers=auth)
    assert smaller.status_code == 200, smaller.text
    assert smaller.json()["size"] == len(PDF)
    # Back to what it was: the room the smaller one freed, and not a byte more.
    same = await client.put(document, content=PDF + b"%" + b"x" * 100 + b"\n", headers=auth)
    assert same.status_code == 200, same.text
    refused_by(
        await client.put(document, content=PDF + b"%" + b"x" * 101 + b"\n", headers=auth),
        QUOTA_BYTES,
    )
    # A PUT to an id the version does not have adds a document: counted whole.
    new_id = "0b6f8d1c-2a44-4b6e-9b0e-6b1d8f1f0a11"
    refused_by(
        await client.put(
            f"{version}/documents/{new_id}/content",
            params={"fileName": "extra.pdf"},
            content=b"%PDF",
            headers=auth,
        ),
        QUOTA_BYTES,
    )
    fetched = await client.get(document, headers=site.auth("User"))
    assert fetched.content == PDF + b"%" + b"x" * 100 + b"\n"


async def test_the_file_limit_counts_documents_and_templates_together(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    version = await version_in_progress(client, site)
    used = await kept(ctx, site)
    assert used.files == 1  # the template
    ctx.settings = dataclasses.replace(ctx.settings, site_storage_quota_files=2)
    assert (await add_pdf(client, site, version)).status_code == 201
    refused_by(await add_pdf(client, site, version), QUOTA_FILES)
    template = await upload_template(
        client,
        site.auth(),
        content=make_docx(["A letter without placeholders"]),
        definition={"name": "Another letter", "variables": [], "eventElements": []},
    )
    refused_by(template, QUOTA_FILES)
    assert "template 'engagement.docx'" in template.json()["error"]["message"]
    listed = await client.get(f"{API}/templates", headers=site.auth())
    assert [t["name"] for t in listed.json()["items"]] == ["Engagement letter"]
    assert await kept(ctx, site) == storage.Usage(used.bytes + len(PDF), 2)


async def test_a_template_past_the_byte_quota_is_refused(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    await room_for(ctx, site, 1000)  # a DOCX is some kilobytes
    refused = await upload_template(client, site.auth())
    refused_by(refused, QUOTA_BYTES)
    assert (await client.get(f"{API}/templates", headers=site.auth())).json()["items"] == []


async def test_finishing_past_the_quota_keeps_the_interview_open_with_its_answers(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """The assembled document is stored like an upload: past the quota the finish is
    refused and changes nothing, and once there is room the same interview finishes."""
    item = await work_item(client, site.auth())
    user = site.auth("User")
    opened = (await client.post(f"{API}/workitems/{item['id']}/interviews", headers=user)).json()
    interview = f"{API}/interviews/{opened['id']}"
    answered = await client.put(f"{interview}/answers", json={"Client Name": "Jane"}, headers=user)
    assert answered.status_code == 200, answered.text

    await room_for(ctx, site, 100)  # room, but not for a DOCX: refused once assembled
    refused_by(await client.post(f"{interview}/finish", headers=user), QUOTA_BYTES)
    await room_for(ctx, site, 0)  # full: refused before anything is assembled
    full = await client.post(f"{interview}/finish", headers=user)
    assert full.status_code == 422, full.text
    assert full.json()["error"]["code"] == "storage_quota_exceeded"
    assert "fill its storage quota" in full.json()["error"]["message"]

    still = (await client.get(interview, headers=user)).json()
    assert still["status"] == "open" and still["workItemVersionId"] == opened["workItemVersionId"]
    version = await version_of(client, site, item, opened["workItemVersionId"])
    assert version["status"] == "InProgress" and version["documents"] == []
    assert {a["name"]: a["value"] for a in still["answers"]["answers"]}["Client Name"] == "Jane"

    await room_for(ctx, site, 1024 * 1024)
    done = await client.post(f"{interview}/finish", headers=user)
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "Completed" and len(done.json()["documents"]) == 1


async def test_a_post_processing_reply_past_the_quota_keeps_the_assembled_documents(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    """The documents a receiver returns are refused whole, as an unreadable reply is: the
    version completes with what was assembled, and its record and the log say why."""
    item = await work_item(client, site.auth())
    hook = await post_processing_webhook(client, site, receiver, template_ids=[])
    appendix = PDF + b"%" + b"a" * 300_000 + b"\n"

    async def add_appendix(event: PostProcessingEvent) -> web.StreamResponse:
        result = PostProcessingResult()
        result.add("Appendix", "appendix.pdf", "application/pdf", appendix)
        return web.json_response(result.to_dict())

    receiver.reply = add_appendix
    await room_for(ctx, site, 200_000)  # the assembled letter fits; the appendix does not
    response = await finish(client, site, item)
    assert response.status_code == 200, response.text
    version = response.json()
    assert version["status"] == "Completed", version
    (letter,) = version["documents"]
    assert letter["sha256"] == receiver.events[0].documents[0].sha256
    post = version["postProcessing"]
    assert post["status"] == "failed" and QUOTA_BYTES in post["error"], post
    assert post["error"].startswith("the reply was refused and the documents kept")
    (delivery,) = await deliveries_of(client, site, hook)
    assert delivery["status"] == "failed" and delivery["lastError"] == post["error"]
    assert (await kept(ctx, site)).files == 2  # the template and the letter

    # With room, the same reply is taken.
    await room_for(ctx, site, 10 * 1024 * 1024)
    again = (await finish(client, site, item)).json()
    assert again["postProcessing"]["status"] == "completed", again
    assert [d["fileName"] for d in again["documents"]] == ["engagement.docx", "appendix.pdf"]


async def test_two_uploads_at_once_for_the_last_room_store_one(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    first, second = await two_versions_in_progress(client, site)
    await room_for(ctx, site, len(PDF))
    results = await asyncio.gather(add_pdf(client, site, first), add_pdf(client, site, second))
    assert sorted(r.status_code for r in results) == [201, 422], [r.text for r in results]
    assert (await kept(ctx, site)).bytes == ctx.settings.site_storage_quota_bytes


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
async def test_postgres_uploads_racing_for_the_last_room_are_counted_in_turn(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Both uploads have read their bodies and reached the site's lock before either
    counts: the second counts the first and is refused, over any number of processes."""
    first, second = await two_versions_in_progress(client, site)
    await room_for(ctx, site, len(PDF) + len(PDF) // 2)
    results = await racing_at_the_site_lock(
        ctx,
        site.site_id,
        lambda: add_pdf(client, site, first),
        lambda: add_pdf(client, site, second),
    )
    assert sorted(r.status_code for r in results) == [201, 422], [r.text for r in results]
    assert (await kept(ctx, site)).bytes <= ctx.settings.site_storage_quota_bytes


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_openapi_document_names_the_quota_where_bytes_are_stored(
    client: httpx.AsyncClient,
) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    documents = "/api/v1/workitems/{work_item_id}/versions/{version_id}/documents"
    for path, method in (
        (documents, "post"),
        (documents + "/{document_id}/content", "put"),
        ("/api/v1/templates", "post"),
        ("/api/v1/interviews/{interview_id}/finish", "post"),
        ("/api/v1/workitems/{work_item_id}/interviews", "post"),
        ("/api/v1/interviews/{interview_id}/answers", "put"),
        ("/api/v1/interviews/{interview_id}/events/{event_name}", "post"),
    ):
        refused = paths[path][method]["responses"]["422"]["description"]
        assert "storage_quota_exceeded" in refused, (path, refused)


async def test_a_failed_post_processing_puts_back_no_more_than_the_quota_allows(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    """While a version is post-processed its documents may be replaced by smaller ones,
    freeing room; if the originals are then put back, the room they take must not have been
    given to another upload meanwhile, or each failed post-processing stores a version's
    documents twice over the quota."""
    item = await work_item(client, site.auth())
    elsewhere = await in_progress(client, site, await same_kind(client, site, item))
    await post_processing_webhook(client, site, receiver, template_ids=[])
    auth = {**site.auth("User"), "Content-Type": "application/pdf"}
    filler = PDF + b"%" + b"f" * 30_000 + b"\n"
    moved: list[int] = []

    async def shrink_then_fail(event: PostProcessingEvent) -> web.StreamResponse:
        (letter,) = event.documents
        shrunk = await client.put(local(letter.url), content=PDF, headers=auth)
        moved.append(shrunk.status_code)
        moved.append((await add_pdf(client, site, elsewhere, filler)).status_code)
        return web.Response(status=500)

    receiver.reply = shrink_then_fail
    await room_for(ctx, site, 40_000)  # the letter (some 37 kB) or the filler, not both
    response = await finish(client, site, item)
    assert response.status_code == 200, response.text
    assert response.json()["postProcessing"]["status"] == "failed"
    assert ctx.settings.site_storage_quota_bytes >= (await kept(ctx, site)).bytes, moved
