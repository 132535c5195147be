"""Deleting a template and a work item from the web UI, over HTTP on both stores: the page
that asks first (and changes nothing), the page that says what keeps an object when
something does, who sees the button, the site boundary and the CSRF check. What the pages
did is read back through the API, which shares their service."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import httpx
import sqlalchemy as sa
from tests.platform.docx_factory import make_docx
from tests.platform.platform_client import upload_template, work_item
from tests.platform.post_processing_support import finish
from tests.support import SiteUsers
from tests.ui.ui_support import make_user, sign_in

from docuhooks.context import AppContext
from docuhooks.store.schema import work_item_versions

API = "/api/v1"


async def signed_in(ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, role: str) -> str:
    return await sign_in(client, await make_user(ctx, site.site_id, role))


async def api_status(client: httpx.AsyncClient, site: SiteUsers, path: str) -> int:
    return (await client.get(f"{API}{path}", headers=site.auth())).status_code


def has_delete_button(html: str, what: str) -> bool:
    return re.search(rf'<button type="submit" class="danger">Delete {what}', html) is not None


async def test_a_template_is_deleted_after_asking(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    template = (await upload_template(client, site.auth())).json()
    csrf = await signed_in(ctx, client, site, "SiteAdministrator")
    page = await client.get(f"/ui/templates/{template['id']}")
    assert f'href="/ui/templates/{template["id"]}/delete">Delete template</a>' in page.text
    confirm = await client.get(f"/ui/templates/{template['id']}/delete")
    assert confirm.status_code == 200
    assert "Delete Engagement letter?" in confirm.text and "cannot be undone" in confirm.text
    assert has_delete_button(confirm.text, "template Engagement letter")
    assert await api_status(client, site, f"/templates/{template['id']}") == 200  # asking is all

    done = await client.post(f"/ui/templates/{template['id']}/delete", data={"csrf_token": csrf})
    assert done.status_code == 303
    assert done.headers["location"] == "/ui/templates?notice=template-deleted"
    listing = await client.get(done.headers["location"])
    assert "Template deleted" in listing.text and "No templates yet." in listing.text
    assert await api_status(client, site, f"/templates/{template['id']}") == 404
    assert (await client.get(f"/ui/templates/{template['id']}/delete")).status_code == 404


async def test_a_template_in_use_says_by_what_and_is_kept(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item = await work_item(client, site.auth())
    hook = await client.post(
        f"{API}/webhooks",
        json={
            "name": "Archive letters",
            "url": "https://receiver.example/hook",
            "eventType": "NewWorkItemVersionComplete",
            "templateIds": [item["templateId"]],
        },
        headers=site.auth(),
    )
    assert hook.status_code == 201, hook.text
    csrf = await signed_in(ctx, client, site, "SiteAdministrator")
    path = f"/ui/templates/{item['templateId']}/delete"
    confirm = await client.get(path)
    assert confirm.status_code == 200
    assert "cannot be deleted yet" in confirm.text
    assert "1 work item uses it" in confirm.text
    assert f'href="/ui/workitems?template={item["templateId"]}"' in confirm.text
    assert not has_delete_button(confirm.text, "template")

    # The link lists exactly the work items using it.
    other = await upload_template(
        client,
        site.auth(),
        content=make_docx(["A letter without placeholders"]),
        definition={"name": "Other letter", "variables": []},
    )
    assert other.status_code == 201, other.text
    elsewhere = await client.post(
        f"{API}/workitems",
        json={
            "workGroupId": item["workGroupId"],
            "templateId": other.json()["id"],
            "name": "On the other letter",
        },
        headers=site.auth(),
    )
    assert elsewhere.status_code == 201, elsewhere.text
    listed = await client.get("/ui/workitems", params={"template": item["templateId"]})
    assert listed.status_code == 200 and "Jane&#39;s engagement" in listed.text
    assert "On the other letter" not in listed.text
    assert f'<option value="{item["templateId"]}" selected>' in listed.text

    # Posted anyway (the page was open before the work item was made): refused, the same
    # explanation, nothing deleted.
    refused = await client.post(path, data={"csrf_token": csrf})
    assert refused.status_code == 409 and "1 work item uses it" in refused.text
    assert await api_status(client, site, f"/templates/{item['templateId']}") == 200

    # Without the work item, the webhook naming it keeps it, linked by name.
    gone = await client.delete(f"{API}/workitems/{item['id']}", headers=site.auth())
    assert gone.status_code == 204
    confirm = await client.get(path)
    assert "This webhook names it" in confirm.text
    assert f'<a href="/ui/webhooks/{hook.json()["id"]}">Archive letters</a>' in confirm.text
    assert not has_delete_button(confirm.text, "template")


async def test_only_site_administrators_of_its_site_delete_a_template(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    template = (await upload_template(client, site.auth())).json()
    path = f"/ui/templates/{template['id']}/delete"
    for role in ("IntegrationAdministrator", "User"):
        csrf = await signed_in(ctx, client, site, role)
        assert (await client.get(path)).status_code == 403, role
        assert (await client.post(path, data={"csrf_token": csrf})).status_code == 403, role
    csrf = await signed_in(ctx, client, other_site, "SiteAdministrator")
    assert (await client.get(path)).status_code == 404
    assert (await client.post(path, data={"csrf_token": csrf})).status_code == 404
    csrf = await signed_in(ctx, client, site, "SiteAdministrator")
    for token in (None, "wrong"):
        forged = await client.post(path, data={} if token is None else {"csrf_token": token})
        assert forged.status_code == 403 and "security token" in forged.text
    assert await api_status(client, site, f"/templates/{template['id']}") == 200


async def test_a_work_item_is_deleted_after_asking_by_its_creator(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item = await work_item(client, site.auth())
    csrf = await signed_in(ctx, client, site, "User")
    made = await client.post(
        "/ui/workitems",
        data={
            "csrf_token": csrf,
            "name": "Mine to delete",
            "templateId": item["templateId"],
            "workGroupId": item["workGroupId"],
        },
    )
    assert made.status_code == 303, made.text
    own = made.headers["location"].split("?")[0]
    own_id = own.rsplit("/", 1)[1]

    # Someone else's: no button, and the pages refuse.
    theirs = await client.get(f"/ui/workitems/{item['id']}")
    assert theirs.status_code == 200 and "Delete work item" not in theirs.text
    assert (await client.get(f"/ui/workitems/{item['id']}/delete")).status_code == 403
    refused = await client.post(f"/ui/workitems/{item['id']}/delete", data={"csrf_token": csrf})
    assert refused.status_code == 403 and "created it" in refused.text

    # Their own, with a version completed.
    response = await finish(client, site, {"id": own_id})
    assert response.status_code == 200, response.text
    (letter,) = response.json()["documents"]
    page = await client.get(own)
    assert f'href="{own}/delete">Delete work item</a>' in page.text
    confirm = await client.get(f"{own}/delete")
    assert confirm.status_code == 200 and "Delete Mine to delete?" in confirm.text
    assert "1 version with its answers" in confirm.text
    assert f"1 document ({letter['size']:,} bytes)" in confirm.text
    assert "open interview" not in confirm.text
    assert has_delete_button(confirm.text, "work item Mine to delete")
    forged = await client.post(f"{own}/delete", data={"csrf_token": "wrong"})
    assert forged.status_code == 403
    assert await api_status(client, site, f"/workitems/{own_id}") == 200

    done = await client.post(f"{own}/delete", data={"csrf_token": csrf})
    assert done.status_code == 303
    assert done.headers["location"] == "/ui/workitems?notice=work-item-deleted"
    listing = await client.get(done.headers["location"])
    assert "Work item deleted" in listing.text and "Mine to delete" not in listing.text
    assert await api_status(client, site, f"/workitems/{own_id}") == 404
    assert await api_status(client, site, f"/workitems/{item['id']}") == 200

    # A SiteAdministrator may delete anyone's; another site's does not exist.
    csrf = await signed_in(ctx, client, site, "SiteAdministrator")
    assert "Delete work item" in (await client.get(f"/ui/workitems/{item['id']}")).text
    open_one = await client.post(f"{API}/workitems/{item['id']}/interviews", headers=site.auth())
    assert open_one.status_code == 201
    confirm = await client.get(f"/ui/workitems/{item['id']}/delete")
    assert "1 open interview: whoever is in it cannot save or finish it" in confirm.text


async def test_another_sites_work_item_is_404(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    item = await work_item(client, other_site.auth())
    csrf = await signed_in(ctx, client, site, "SiteAdministrator")
    path = f"/ui/workitems/{item['id']}/delete"
    assert (await client.get(path)).status_code == 404
    assert (await client.post(path, data={"csrf_token": csrf})).status_code == 404
    assert await api_status(client, other_site, f"/workitems/{item['id']}") == 200


async def test_a_work_item_post_processed_says_until_when_and_is_kept(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """The API's tests take a version through real post-processing; here its status is set
    to see what the pages say."""
    item: dict[str, Any] = await work_item(client, site.auth())
    version = (await finish(client, site, item)).json()
    deadline = ctx.now() + timedelta(minutes=5)
    async with ctx.db.transaction() as conn:
        await conn.execute(
            work_item_versions.update()
            .where(work_item_versions.c.id == version["id"])
            .values(status="PostProcessing", post_processing_deadline=deadline)
        )
    csrf = await signed_in(ctx, client, site, "SiteAdministrator")
    path = f"/ui/workitems/{item['id']}/delete"
    confirm = await client.get(path)
    assert confirm.status_code == 200 and "cannot be deleted yet" in confirm.text
    assert "Version 1 is being post-processed, until" in confirm.text
    assert not has_delete_button(confirm.text, "work item")
    refused = await client.post(path, data={"csrf_token": csrf})
    assert refused.status_code == 409 and "Version 1 is being post-processed" in refused.text
    async with ctx.db.read() as conn:
        kept = await conn.scalar(
            sa.select(sa.func.count()).where(work_item_versions.c.work_item_id == item["id"])
        )
    assert kept == 1
