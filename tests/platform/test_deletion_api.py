"""Deleting templates and work items over the API, on both stores: what goes with them and
what stays, roles and the site boundary, the conflicts that refuse a delete and leave
everything as it was, and the room under the storage quota freed at once."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, cast

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.interview_hooks.hooks_support import hook_over_api, serve
from tests.platform.docx_factory import make_docx
from tests.platform.platform_client import open_interview, upload_template, work_item
from tests.platform.post_processing_support import (
    API,
    Receiver,
    finish,
    local,
    post_processing_webhook,
    same_kind,
)
from tests.support import SiteUsers, until_waiting_for_locks

from docuhooks.answers import AnswerSet, VariableDef
from docuhooks.context import AppContext
from docuhooks.identity import service as identity
from docuhooks.identity.models import Principal
from docuhooks.platform import deletion, storage, workitems
from docuhooks.platform.postprocessing import driver as post_processing_driver
from docuhooks.platform.renderpool import RenderPool
from docuhooks.receiver import PostProcessingEvent
from docuhooks.store.schema import (
    audit_log,
    deliveries,
    documents,
    events,
    interviews,
    post_processing_originals,
    work_item_versions,
    work_items,
)

PDF = b"%PDF-1.7\n1 0 obj <<>> endobj\ntrailer <<>>\n%%EOF\n"


async def kept(ctx: AppContext, site: SiteUsers) -> storage.Usage:
    async with ctx.db.read() as conn:
        return await storage.usage(conn, site.site_id)


async def answers_of(ctx: AppContext, item_id: str) -> int:
    """The bytes of the answer sets the work item's versions and interviews keep, which the
    storage quota counts with its documents (and a delete frees with them)."""
    total = 0
    async with ctx.db.read() as conn:
        for table in (work_item_versions, interviews):
            summed = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(table.c.answers_size), 0)).where(
                    table.c.work_item_id == item_id
                )
            )
            total += int(summed or 0)
    return total


async def rows_of(ctx: AppContext, table: sa.Table, column: str, value: str) -> int:
    async with ctx.db.read() as conn:
        found = await conn.scalar(
            sa.select(sa.func.count()).select_from(table).where(table.c[column] == value)
        )
    return int(found or 0)


async def audit_entries(ctx: AppContext, object_id: str) -> list[Any]:
    async with ctx.db.read() as conn:
        return list(
            (await conn.execute(sa.select(audit_log).where(audit_log.c.object_id == object_id)))
            .mappings()
            .all()
        )


async def completed_item(
    client: httpx.AsyncClient, site: SiteUsers, item: dict[str, Any] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A work item (a new one on the standard template, or `item`) with version 1 finished:
    the work item and the version with its document."""
    item = item or await work_item(client, site.auth())
    response = await finish(client, site, item)
    assert response.status_code == 200, response.text
    version: dict[str, Any] = response.json()
    assert version["status"] == "Completed" and len(version["documents"]) == 1, version
    return item, version


def conflict(response: httpx.Response, *words: str) -> str:
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "conflict", error
    message: str = error["message"]
    assert "nothing was deleted" in message, message
    for word in words:
        assert word in message, message
    return message


# --- templates ------------------------------------------------------------------------------


async def test_a_template_is_deleted_and_its_room_freed(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    template = (await upload_template(client, site.auth())).json()
    before = await kept(ctx, site)
    assert before == storage.Usage(template["size"], 1)
    deleted = await client.delete(f"{API}/templates/{template['id']}", headers=site.auth())
    assert deleted.status_code == 204, deleted.text
    assert deleted.content == b""
    assert await kept(ctx, site) == storage.Usage(0, 0)
    for path in (f"{API}/templates/{template['id']}", f"{API}/templates/{template['id']}/content"):
        assert (await client.get(path, headers=site.auth())).status_code == 404, path
    assert (await client.get(f"{API}/templates", headers=site.auth())).json()["items"] == []
    again = await client.delete(f"{API}/templates/{template['id']}", headers=site.auth())
    assert again.status_code == 404
    (entry,) = await audit_entries(ctx, template["id"])
    assert entry["action"] == "template.deleted" and entry["object_type"] == "template"
    assert entry["actor_id"] == site.user_ids["SiteAdministrator"]
    assert entry["details"] == {
        "name": "Engagement letter",
        "fileName": "engagement.docx",
        "size": template["size"],
        "sha256": template["sha256"],
    }
    # The name is free again.
    assert (await upload_template(client, site.auth())).status_code == 201


async def test_a_template_work_items_use_is_not_deleted(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item = await work_item(client, site.auth())
    await same_kind(client, site, item)
    path = f"{API}/templates/{item['templateId']}"
    conflict(
        await client.delete(path, headers=site.auth()),
        "used by 2 work items",
        f"/api/v1/workitems?templateId={item['templateId']}",
    )
    assert (await client.get(path, headers=site.auth())).status_code == 200
    listed = await client.get(
        f"{API}/workitems", params={"templateId": item["templateId"]}, headers=site.auth()
    )
    assert len(listed.json()["items"]) == 2
    for each in listed.json()["items"]:
        gone = await client.delete(f"{API}/workitems/{each['id']}", headers=site.auth())
        assert gone.status_code == 204, gone.text
    assert (await client.delete(path, headers=site.auth())).status_code == 204


async def test_a_template_webhooks_name_is_not_deleted(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Taking it out of a webhook's `templateIds` could widen the webhook to every template;
    leaving it would make every later change of the webhook refused. So: 409, naming them."""
    template = (await upload_template(client, site.auth())).json()
    other = await upload_template(
        client,
        site.auth(),
        content=make_docx(["A letter without placeholders"]),
        definition={"name": "Another letter", "variables": [], "eventElements": []},
    )
    hook = await client.post(
        f"{API}/webhooks",
        json={
            "name": "Archive letters",
            "url": "https://receiver.example/hook",
            "eventType": "NewWorkItemVersionComplete",
            "templateIds": [template["id"], other.json()["id"]],
        },
        headers=site.auth(),
    )
    assert hook.status_code == 201, hook.text
    path = f"{API}/templates/{template['id']}"
    conflict(await client.delete(path, headers=site.auth()), "webhook 'Archive letters'")
    # Used by a work item too: one answer says both.
    group = await client.post(f"{API}/workgroups", json={"name": "Clients"}, headers=site.auth())
    made = await client.post(
        f"{API}/workitems",
        json={"workGroupId": group.json()["id"], "templateId": template["id"], "name": "Letter"},
        headers=site.auth(),
    )
    assert made.status_code == 201, made.text
    conflict(
        await client.delete(path, headers=site.auth()),
        "used by 1 work item;",
        "; and it is named in the templateIds of webhook 'Archive letters'",
    )
    gone = await client.delete(f"{API}/workitems/{made.json()['id']}", headers=site.auth())
    assert gone.status_code == 204
    assert (await client.get(path, headers=site.auth())).status_code == 200
    changed = await client.patch(
        f"{API}/webhooks/{hook.json()['id']}",
        json={"templateIds": [other.json()["id"]]},
        headers=site.auth(),
    )
    assert changed.status_code == 200, changed.text
    assert (await client.delete(path, headers=site.auth())).status_code == 204
    # The webhook is still for the other template alone, and can still be changed.
    renamed = await client.patch(
        f"{API}/webhooks/{hook.json()['id']}", json={"name": "Renamed"}, headers=site.auth()
    )
    assert renamed.status_code == 200 and renamed.json()["templateIds"] == [other.json()["id"]]


async def test_only_site_administrators_delete_templates_of_their_own_site(
    client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    template = (await upload_template(client, site.auth())).json()
    path = f"{API}/templates/{template['id']}"
    for role in ("IntegrationAdministrator", "User"):
        refused = await client.delete(path, headers=site.auth(role))
        assert refused.status_code == 403, refused.text
        assert "SiteAdministrator" in refused.json()["error"]["message"]
    elsewhere = await client.delete(path, headers=other_site.auth())
    assert elsewhere.status_code == 404 and "does not exist" in elsewhere.text
    assert (await client.delete(path)).status_code == 401
    for bad in ("not-a-uuid", "12345", "00000000-0000-0000-0000-000000000000"):
        missing = await client.delete(f"{API}/templates/{bad}", headers=site.auth())
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    assert (await client.get(path, headers=site.auth())).status_code == 200


# --- work items -----------------------------------------------------------------------------


async def test_a_work_item_goes_with_everything_it_holds_and_its_events_stay(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item, version = await completed_item(client, site)
    # Version 2 in progress with an uploaded document, and its interview left open.
    interview = await open_interview(client, site, item)
    in_progress = f"{API}/workitems/{item['id']}/versions/{interview['workItemVersionId']}"
    added = await client.post(
        f"{in_progress}/documents",
        params={"fileName": "cover.pdf"},
        content=PDF,
        headers={**site.auth("User"), "Content-Type": "application/pdf"},
    )
    assert added.status_code == 201, added.text
    # A work item beside it, untouched by the delete.
    beside, beside_version = await completed_item(client, site, await same_kind(client, site, item))
    before = await kept(ctx, site)
    answers = await answers_of(ctx, item["id"])
    assert answers > 0
    async with ctx.db.read() as conn:
        fired = await conn.scalar(sa.select(sa.func.count()).select_from(events))

    deleted = await client.delete(f"{API}/workitems/{item['id']}", headers=site.auth())
    assert deleted.status_code == 204, deleted.text

    letter = version["documents"][0]
    assert await kept(ctx, site) == storage.Usage(
        before.bytes - letter["size"] - len(PDF) - answers, before.files - 2
    )
    for path in (
        f"{API}/workitems/{item['id']}",
        f"{API}/workitems/{item['id']}/versions",
        f"{API}/workitems/{item['id']}/versions/{version['id']}",
        local(letter["url"]),
        f"{in_progress}/documents",
        f"{API}/interviews/{interview['id']}",
    ):
        assert (await client.get(path, headers=site.auth())).status_code == 404, path
    step = await client.put(
        f"{API}/interviews/{interview['id']}/answers",
        json={"Client Name": "Late"},
        headers=site.auth("User"),
    )
    assert step.status_code == 404, step.text
    for table, column in (
        (work_item_versions, "work_item_id"),
        (interviews, "work_item_id"),
    ):
        assert await rows_of(ctx, table, column, item["id"]) == 0, table.name
    for version_id in (version["id"], interview["workItemVersionId"]):
        assert await rows_of(ctx, documents, "version_id", version_id) == 0
        assert await rows_of(ctx, post_processing_originals, "version_id", version_id) == 0
    # The webhook log stays: the completion event is still there, naming the work item.
    async with ctx.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(events)) == fired
        assert await conn.scalar(
            sa.select(sa.func.count()).where(events.c.work_item_id == item["id"])
        )
    (entry,) = await audit_entries(ctx, item["id"])
    assert entry["action"] == "workitem.deleted" and entry["object_type"] == "workitem"
    assert entry["details"] == {
        "name": item["name"],
        "templateId": item["templateId"],
        "workGroupId": item["workGroupId"],
        "versions": 2,
        "documents": 2,
        "bytes": letter["size"] + len(PDF),
    }
    # The other work item is whole.
    still = await client.get(local(beside_version["documents"][0]["url"]), headers=site.auth())
    assert still.status_code == 200
    versions = await client.get(f"{API}/workitems/{beside['id']}/versions", headers=site.auth())
    assert [v["id"] for v in versions.json()["items"]] == [beside_version["id"]]


async def test_who_may_delete_a_work_item(
    client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    """A SiteAdministrator any of the site's; anyone else the ones they created."""
    by_admin = await work_item(client, site.auth())
    by_user = await same_kind(client, site, by_admin)  # made by the SiteAdministrator too
    made = await client.post(
        f"{API}/workitems",
        json={
            "workGroupId": by_admin["workGroupId"],
            "templateId": by_admin["templateId"],
            "name": "The user's own",
        },
        headers=site.auth("User"),
    )
    assert made.status_code == 201, made.text
    own = made.json()
    for role in ("IntegrationAdministrator", "User"):
        refused = await client.delete(f"{API}/workitems/{by_user['id']}", headers=site.auth(role))
        assert refused.status_code == 403, (role, refused.text)
        assert "created it" in refused.json()["error"]["message"]
    refused = await client.delete(
        f"{API}/workitems/{own['id']}", headers=site.auth("IntegrationAdministrator")
    )
    assert refused.status_code == 403
    for item in (by_admin, by_user, own):
        elsewhere = await client.delete(f"{API}/workitems/{item['id']}", headers=other_site.auth())
        assert elsewhere.status_code == 404 and "does not exist" in elsewhere.text
        assert (await client.get(f"{API}/workitems/{item['id']}", headers=site.auth())).is_success
    assert (await client.delete(f"{API}/workitems/{own['id']}")).status_code == 401
    for bad in ("not-a-uuid", "00000000-0000-0000-0000-000000000000"):
        missing = await client.delete(f"{API}/workitems/{bad}", headers=site.auth())
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"

    mine = await client.delete(f"{API}/workitems/{own['id']}", headers=site.auth("User"))
    assert mine.status_code == 204, mine.text
    # Under the source platform's spelling too.
    theirs = await client.delete(f"{API}/WorkItems/{by_user['id']}", headers=site.auth())
    assert theirs.status_code == 204, theirs.text
    gone = await client.get(f"{API}/workitems/{by_user['id']}", headers=site.auth())
    assert gone.status_code == 404
    listed = await client.get(f"{API}/workitems", headers=site.auth())
    assert [w["id"] for w in listed.json()["items"]] == [by_admin["id"]]


async def test_a_work_item_is_not_deleted_while_a_version_is_post_processed(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    item = await work_item(client, site.auth())
    await post_processing_webhook(client, site, receiver, template_ids=[])

    async def later(event: PostProcessingEvent) -> web.StreamResponse:
        return web.Response(status=202)  # callback mode: the receiver completes it later

    receiver.reply = later
    waiting = (await finish(client, site, item)).json()
    assert waiting["status"] == "PostProcessing", waiting
    before = await kept(ctx, site)
    path = f"{API}/workitems/{item['id']}"
    conflict(
        await client.delete(path, headers=site.auth()),
        "version 1 of the work item is in post-processing",
        "at the latest",
    )
    assert await kept(ctx, site) == before
    assert await rows_of(ctx, post_processing_originals, "version_id", waiting["id"]) == 1
    (letter,) = receiver.events[0].documents
    assert (await client.get(local(letter.url), headers=site.auth("User"))).status_code == 200
    assert await audit_entries(ctx, item["id"]) == []

    done = await client.put(local(receiver.events[0].complete_url), headers=site.auth("User"))
    assert done.status_code == 200 and done.json()["status"] == "Completed", done.text
    answers = await answers_of(ctx, item["id"])
    assert (await client.delete(path, headers=site.auth())).status_code == 204
    assert await kept(ctx, site) == storage.Usage(
        before.bytes - letter.size - answers, before.files - 1
    )


async def test_a_reply_for_a_version_completed_and_deleted_meanwhile_is_logged_not_applied(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, receiver: Receiver
) -> None:
    """The receiver completes the version through its completeUrl during the call, the work
    item is deleted, then the reply arrives: nothing is applied or lost, the call is in the
    webhook log, and the finish (which drives the call itself here) is told the work item
    is gone (404), not a 500."""
    item = await work_item(client, site.auth())
    hook = await post_processing_webhook(client, site, receiver, template_ids=[])
    answered: list[int] = []

    async def complete_delete_then_reply(event: PostProcessingEvent) -> web.StreamResponse:
        done = await client.put(local(event.complete_url), headers=site.auth("User"))
        answered.append(done.status_code)
        gone = await client.delete(f"{API}/workitems/{item['id']}", headers=site.auth())
        answered.append(gone.status_code)
        return web.json_response({"documents": []})

    receiver.reply = complete_delete_then_reply
    finished = await finish(client, site, item)
    assert answered == [200, 204]
    assert finished.status_code == 404, finished.text
    assert f"work item {item['id']} does not exist" in finished.json()["error"]["message"]
    assert await rows_of(ctx, work_item_versions, "work_item_id", item["id"]) == 0
    async with ctx.db.read() as conn:
        logged = (
            await conn.execute(
                sa.select(events.c.event_type, deliveries.c.status)
                .join(deliveries, deliveries.c.event_id == events.c.id)
                .where(deliveries.c.webhook_id == hook["id"])
            )
        ).all()
    assert [tuple(row) for row in logged] == [("PostProcessingEvent", "succeeded")]


class ActingWhileRendering(RenderPool):
    """The render pool, whose assembly runs `during` (a delete, a completion) before it
    returns: the document is rendered, and its interview not yet locked to store it."""

    during: Callable[[], Awaitable[httpx.Response]] | None = None
    answered: list[int]

    async def assemble(
        self,
        content: bytes,
        answers: AnswerSet,
        variables: Sequence[VariableDef],
        *,
        site_id: str,
        field: str = "answers",
    ) -> bytes:
        assembled = await super().assemble(
            content, answers, variables, site_id=site_id, field=field
        )
        if self.during is not None:
            self.answered.append((await self.during()).status_code)
        return assembled


async def test_a_delete_while_the_document_is_assembled_wins_and_nothing_is_stored(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item = await work_item(client, site.auth())
    interview = await open_interview(client, site, item)
    pool = ActingWhileRendering.from_settings(ctx.settings)
    assert isinstance(pool, ActingWhileRendering)
    pool.answered = []
    pool.during = lambda: client.delete(f"{API}/workitems/{item['id']}", headers=site.auth())
    ctx.render_pool_override = pool
    before = await kept(ctx, site)
    answers = await answers_of(ctx, item["id"])

    finished = await client.post(
        f"{API}/interviews/{interview['id']}/finish", headers=site.auth("User")
    )
    assert pool.answered == [204]
    assert finished.status_code == 404, finished.text
    message = finished.json()["error"]["message"]
    assert "deleted, with its work item, while its document was being assembled" in message
    assert "nothing was stored" in message
    # Its answers went with the work item; nothing the finish assembled was stored.
    assert await kept(ctx, site) == storage.Usage(before.bytes - answers, before.files)
    assert await rows_of(ctx, work_item_versions, "work_item_id", item["id"]) == 0


async def test_a_delete_while_interview_webhooks_run_keeps_none_of_their_answers(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """The webhooks an opening asks run outside any transaction; their answers are written
    after. The work item deleted meanwhile: the opening is told so, and nothing is written."""
    item = await work_item(client, site.auth())
    deleted: list[int] = []

    async def delete_then_answer(request: web.Request) -> web.Response:
        gone = await client.delete(f"{API}/workitems/{item['id']}", headers=site.auth())
        deleted.append(gone.status_code)
        return web.json_response({"Client Name": "Jane Doe"})

    async with serve() as hooks:
        await hook_over_api(client, site, hooks.route("/load", None, delete_then_answer))
        opened = await client.post(
            f"{API}/workitems/{item['id']}/interviews", headers=site.auth("User")
        )
    await ctx.close_transports()
    assert deleted == [204]
    assert opened.status_code == 404, opened.text
    assert "while its webhooks ran; their answers were not saved" in opened.text
    assert await rows_of(ctx, interviews, "work_item_id", item["id"]) == 0
    assert await rows_of(ctx, work_item_versions, "work_item_id", item["id"]) == 0


async def test_a_site_at_its_quota_stores_again_once_it_deletes(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item, _ = await completed_item(client, site)
    ctx.settings = dataclasses.replace(ctx.settings, site_storage_quota_bytes=0)
    spare = await upload_template(
        client,
        site.auth(),
        content=make_docx(["A letter without placeholders"]),
        definition={"name": "Another letter", "variables": [], "eventElements": []},
    )
    assert spare.status_code == 201, spare.text
    # Another work item's interview, answered: its answers are stored, its document is not.
    other = await same_kind(client, site, item)
    answering = await open_interview(client, site, other)
    answered = await client.put(
        f"{API}/interviews/{answering['id']}/answers",
        json={"Client Name": "Jane Doe"},
        headers=site.auth("User"),
    )
    assert answered.status_code == 200, answered.text
    # Full to the byte and to the file: nothing more fits, of either kind.
    used = await kept(ctx, site)
    ctx.settings = dataclasses.replace(
        ctx.settings, site_storage_quota_bytes=used.bytes, site_storage_quota_files=used.files
    )
    refused = await client.post(
        f"{API}/interviews/{answering['id']}/finish", headers=site.auth("User")
    )
    assert refused.status_code == 422 and "storage_quota_exceeded" in refused.text
    # The refusal says how the site makes room itself.
    assert "deleting work items or templates" in refused.json()["error"]["message"]
    letter = {"name": "Third letter", "variables": [], "eventElements": []}
    refused = await upload_template(
        client, site.auth(), content=make_docx(["x"]), definition=letter
    )
    assert refused.status_code == 422 and "storage_quota_exceeded" in refused.text
    assert "DELETE /api/v1/workitems/{id}" in refused.json()["error"]["message"]

    # Deleting the completed work item frees its document's room: the next finish fits.
    assert (await client.delete(f"{API}/workitems/{item['id']}", headers=site.auth())).is_success
    again = await client.post(
        f"{API}/interviews/{(await open_interview(client, site, other))['id']}/finish",
        headers=site.auth("User"),
    )
    assert again.status_code == 200, again.text
    # Deleting the spare template frees a file and its bytes: a template of no larger fits.
    gone = await client.delete(f"{API}/templates/{spare.json()['id']}", headers=site.auth())
    assert gone.status_code == 204
    replaced = await upload_template(
        client,
        site.auth(),
        content=make_docx(["A letter without placeholders"]),
        definition={"name": "Third letter", "variables": [], "eventElements": []},
    )
    assert replaced.status_code == 201, replaced.text
    assert (await kept(ctx, site)).files == used.files


# --- PostgreSQL: deletes beside the writes they meet ------------------------------------------


async def principal_of(ctx: AppContext, site: SiteUsers, role: str) -> Principal:
    async with ctx.db.read() as conn:
        who = await identity.authenticate_token(conn, site.tokens[role], now=ctx.now())
    assert who is not None
    return who


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
async def test_postgres_a_work_item_made_while_its_template_is_deleted(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A work item created for a template while the template is being deleted: either the
    delete counts it (409, both kept) or the creation does not find the template (422);
    never a work item deleted by the template's cascade, never a 500."""
    item = await work_item(client, site.auth())
    assert (await client.delete(f"{API}/workitems/{item['id']}", headers=site.auth())).is_success
    template_id = item["templateId"]
    who = await principal_of(ctx, site, "SiteAdministrator")
    async with ctx.db.engine.connect() as holder:
        # A creation under way: it found the template and holds a share of its row.
        await holder.begin()
        made = await workitems.create(
            holder,
            who,
            work_group_id=item["workGroupId"],
            template_id=template_id,
            name="Made first",
            now=ctx.now(),
        )
        deleting = asyncio.create_task(
            client.delete(f"{API}/templates/{template_id}", headers=site.auth())
        )
        await until_waiting_for_locks(ctx, [deleting])
        await holder.commit()
    conflict(await deleting, "used by 1 work item;")
    assert (await client.get(f"{API}/workitems/{made['id']}", headers=site.auth())).is_success

    # The other way round: the delete holds the template; a creation waits, then is told.
    assert (await client.delete(f"{API}/workitems/{made['id']}", headers=site.auth())).is_success
    body = {"workGroupId": item["workGroupId"], "templateId": template_id, "name": "Late"}
    async with ctx.db.engine.connect() as holder:
        await holder.begin()
        await deletion.delete_template(holder, who, template_id, now=ctx.now())
        creating = asyncio.create_task(
            client.post(f"{API}/workitems", json=body, headers=site.auth())
        )
        await until_waiting_for_locks(ctx, [creating])
        await holder.commit()
    created = await creating
    assert created.status_code == 422, created.text
    assert [d["field"] for d in created.json()["error"]["details"]] == ["templateId"]
    assert (await client.get(f"{API}/workitems", headers=site.auth())).json()["items"] == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
async def test_postgres_a_version_completed_while_its_work_item_is_deleted(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Completing a version locks it, then its open interview; the delete locks the work
    item, its versions, then its interviews: the same order. A completion that comes once
    the delete holds the version waits for it, then finds the version gone (404), never a
    500; and nothing of the work item is left."""
    item = await work_item(client, site.auth())
    interview = await open_interview(client, site, item)
    path = f"{API}/workitems/{item['id']}/versions/{interview['workItemVersionId']}/complete"
    who = await principal_of(ctx, site, "SiteAdministrator")
    completing: list[asyncio.Task[httpx.Response]] = []

    async def complete_meanwhile() -> None:
        # The delete holds the work item and its version: the completion waits for the
        # version.
        completing.append(asyncio.create_task(client.put(path, headers=site.auth("User"))))
        await until_waiting_for_locks(ctx, completing)

    async with ctx.db.engine.connect() as holder:
        await holder.begin()
        paused = PausedBeforeLocking(holder, interviews, complete_meanwhile)
        await deletion.delete_work_item(
            cast(AsyncConnection, paused), who, item["id"], now=ctx.now()
        )
        await holder.commit()
    completed = await completing[0]
    assert completed.status_code == 404, completed.text
    assert completed.json()["error"]["code"] == "not_found"
    assert await rows_of(ctx, work_item_versions, "work_item_id", item["id"]) == 0
    assert await rows_of(ctx, interviews, "work_item_id", item["id"]) == 0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
async def test_postgres_a_finish_in_flight_is_waited_for_by_a_delete(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A finish holds its version and interview and has written the version once when the
    delete locks the work item; writing the version again, PostgreSQL checks the version's
    reference to the work item (a key share of its row). That check must not wait for the
    delete, which is about to wait for the finish's version: the finish completes the
    version, and the delete, once it has it, deletes the work item with it."""
    item = await work_item(client, site.auth())
    interview = await open_interview(client, site, item)
    who = await principal_of(ctx, site, "SiteAdministrator")
    before = await kept(ctx, site)
    answers = await answers_of(ctx, item["id"])
    inside = asyncio.Event()
    go_on = asyncio.Event()
    begin = post_processing_driver.begin

    async def begin_once_the_delete_holds_the_work_item(*args: Any, **kwargs: Any) -> bool:
        inside.set()
        await go_on.wait()
        return await begin(*args, **kwargs)

    monkeypatch.setattr(post_processing_driver, "begin", begin_once_the_delete_holds_the_work_item)
    finishing = asyncio.create_task(
        client.post(f"{API}/interviews/{interview['id']}/finish", headers=site.auth("User"))
    )
    await inside.wait()

    async def finish_meanwhile() -> None:
        # The delete holds the work item: the finish goes on, and either commits or waits.
        go_on.set()
        await until_waiting_for_locks_or_done(ctx, finishing)

    async with ctx.db.engine.connect() as holder:
        await holder.begin()
        paused = PausedBeforeLocking(holder, work_item_versions, finish_meanwhile)
        deleted = await deletion.delete_work_item(
            cast(AsyncConnection, paused), who, item["id"], now=ctx.now()
        )
        await holder.commit()
    finished = await finishing
    assert finished.status_code == 200, finished.text
    assert finished.json()["status"] == "Completed"
    assert (deleted.versions, deleted.documents) == (1, 1)
    assert await rows_of(ctx, work_item_versions, "work_item_id", item["id"]) == 0
    # The document the finish stored went with the work item, and so did its answers.
    assert await kept(ctx, site) == storage.Usage(before.bytes - answers, before.files)


async def until_waiting_for_locks_or_done(ctx: AppContext, task: asyncio.Task[Any]) -> None:
    """PostgreSQL: return once a connection of the test's database waits for a lock, or
    `task` is done."""
    async with asyncio.timeout(30), ctx.db.engine.connect() as watcher:
        while not task.done():
            await watcher.execute(sa.text("SELECT pg_stat_clear_snapshot()"))
            waiting = await watcher.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            if waiting:
                return
            await asyncio.sleep(0.01)


class PausedBeforeLocking:
    """A connection for `deletion.delete_work_item` that runs `meanwhile` once, just before
    the delete locks rows of `table`."""

    def __init__(
        self, conn: AsyncConnection, table: sa.Table, meanwhile: Callable[[], Awaitable[None]]
    ) -> None:
        self._conn = conn
        self._table = table
        self._meanwhile: Callable[[], Awaitable[None]] | None = meanwhile

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)

    async def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        locking = getattr(statement, "_for_update_arg", None) is not None
        if self._meanwhile is not None and locking and self._table in statement.get_final_froms():
            meanwhile, self._meanwhile = self._meanwhile, None
            await meanwhile()
        return await self._conn.execute(statement, *args, **kwargs)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_openapi_document_describes_the_deletes(client: httpx.AsyncClient) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path, conflicts in (
        ("/api/v1/templates/{template_id}", "templateIds"),
        ("/api/v1/workitems/{work_item_id}", "PostProcessing"),
    ):
        responses = paths[path]["delete"]["responses"]
        assert {"204", "403", "404", "409"} <= set(responses), (path, responses)
        assert conflicts in responses["409"]["description"], responses["409"]
        assert "storage quota" in responses["204"]["description"]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_whether_a_template_is_in_use_is_read_from_its_index(ctx: AppContext) -> None:
    """The count of the work items that use a template (a delete's first question) seeks
    `ix_work_items_template` rather than reading every work item."""
    query = sa.select(sa.func.count()).where(
        work_items.c.site_id == "s", work_items.c.template_id == "t"
    )
    async with ctx.db.read() as conn:
        compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
        rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
        plan = " ".join(str(tuple(row)[3]) for row in rows.all())
    assert "ix_work_items_template (template_id=?)" in plan, plan
