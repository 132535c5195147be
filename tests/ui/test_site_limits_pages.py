"""What the web UI says at a site's limits, on both stores: the webhook form past the most
webhooks, the *Send test* button past the test sends of a minute, *Redeliver event* past the
redeliveries of a minute, *Re-send failed deliveries* while a re-send is under way, the
template form and an interview's *Finish* past the storage quota. Each is said where the
person acted, with the setting or what is in the way, and changes nothing."""

from __future__ import annotations

import dataclasses
import re

import httpx
from tests.delivery.delivery_support import queue_event
from tests.interview_hooks.hooks_support import Platform, make_platform
from tests.platform.docx_factory import STANDARD_VARIABLES, standard_template
from tests.support import SiteUsers
from tests.ui.ui_support import field_error, make_user, sign_in

from docuhooks.context import AppContext
from docuhooks.delivery.recovery import RecoveryRunner
from docuhooks.platform import storage
from docuhooks.platform.catalog import DOCX_CONTENT_TYPE, variable_to_json
from docuhooks.store.schema import deliveries

HOOK = {
    "url": "https://receiver.example/hook",
    "eventType": "NewWorkItemVersionComplete",
}
FORM = {
    "url": "https://receiver.example/archive",
    "eventType": "NewWorkItemVersionComplete",
    "authenticationMethod": "HMAC",
    "requestVerb": "",
    "order": "0",
    "timeoutSeconds": "",
    "active": "true",
}


async def signed_in(ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, role: str) -> str:
    return await sign_in(client, await make_user(ctx, site.site_id, role))


async def storage_full(ctx: AppContext, site: SiteUsers, room: int = 0) -> None:
    """A quota of what the site keeps, and `room` bytes more."""
    async with ctx.db.read() as conn:
        used = await storage.usage(conn, site.site_id)
    # Of 1 byte when the site keeps nothing: 0 is no quota.
    quota = max(used.bytes + room, 1)
    ctx.settings = dataclasses.replace(ctx.settings, site_storage_quota_bytes=quota)


async def test_the_webhook_form_past_the_most_webhooks_says_so_and_keeps_the_input(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, site_max_webhooks=1)
    created = await client.post(
        "/api/v1/webhooks", json={"name": "Orders", **HOOK}, headers=site.auth()
    )
    assert created.status_code == 201, created.text
    csrf = await signed_in(ctx, client, site, "SiteAdministrator")
    refused = await client.post(
        "/ui/webhooks", data={"csrf_token": csrf, "name": "Archive", **FORM}
    )
    assert refused.status_code == 422, refused.text
    problem = re.search(r'id="form-problems">\s*<strong>([^<]*)</strong>', refused.text)
    assert problem is not None, refused.text
    assert "the site has 1 webhooks" in problem.group(1)
    assert "site_max_webhooks" in problem.group(1)
    assert 'value="https://receiver.example/archive"' in refused.text  # nothing to type again
    listed = await client.get("/api/v1/webhooks", headers=site.auth())
    assert [w["name"] for w in listed.json()["items"]] == ["Orders"]


async def test_send_test_past_the_limit_is_a_429_with_retry_after(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, webhook_tests_per_minute=1)
    created = await client.post(
        "/api/v1/webhooks", json={"name": "Orders", **HOOK}, headers=site.auth()
    )
    base = f"/ui/webhooks/{created.json()['id']}"
    csrf = await signed_in(ctx, client, site, "IntegrationAdministrator")
    htmx = {"HX-Request": "true", "X-CSRF-Token": csrf}
    sent = await client.post(f"{base}/test", headers=htmx)
    assert sent.status_code == 200 and "Test event queued" in sent.text
    again = await client.post(f"{base}/test", headers=htmx)
    assert again.status_code == 429 and again.headers["HX-Retarget"] == "#flash"
    assert 1 <= int(again.headers["Retry-After"]) <= 60
    assert "<strong>Too many requests.</strong>" in again.text
    assert "webhook_tests_per_minute" in again.text and "try again in" in again.text
    # Without script: the error page, with the same status and header.
    plain = await client.post(f"{base}/test", data={"csrf_token": csrf})
    assert plain.status_code == 429 and "Retry-After" in plain.headers
    assert '<h1 id="error-title">Too many requests</h1>' in plain.text


async def test_redeliver_past_the_limit_is_a_429_with_retry_after(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, redeliveries_per_minute=1)
    created = await client.post(
        "/api/v1/webhooks", json={"name": "Orders", **HOOK}, headers=site.auth()
    )
    _, (failed,) = await queue_event(ctx, site.site_id, now=ctx.now())
    async with ctx.db.transaction() as conn:
        await conn.execute(deliveries.update().values(status="failed", completed_at=ctx.now()))
    csrf = await signed_in(ctx, client, site, "IntegrationAdministrator")
    htmx = {"HX-Request": "true", "X-CSRF-Token": csrf}
    sent = await client.post(f"/ui/deliveries/{failed}/redeliver", headers=htmx)
    assert sent.status_code == 200 and "queued again as a new delivery" in sent.text
    again = await client.post(f"/ui/deliveries/{failed}/redeliver", headers=htmx)
    assert again.status_code == 429 and again.headers["HX-Retarget"] == "#flash"
    assert 1 <= int(again.headers["Retry-After"]) <= 60
    assert "redeliveries_per_minute" in again.text and "try again in" in again.text
    plain = await client.post(f"/ui/deliveries/{failed}/redeliver", data={"csrf_token": csrf})
    assert plain.status_code == 429 and "Retry-After" in plain.headers
    listed = await client.get(
        f"/api/v1/webhooks/{created.json()['id']}/deliveries", headers=site.auth()
    )
    assert len(listed.json()["items"]) == 2, "the original and one redelivery"


async def test_resending_failed_deliveries_while_a_resend_is_under_way_shows_that_one(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    created = await client.post(
        "/api/v1/webhooks", json={"name": "Orders", **HOOK}, headers=site.auth()
    )
    base = f"/ui/webhooks/{created.json()['id']}"
    csrf = await signed_in(ctx, client, site, "IntegrationAdministrator")
    form = {"csrf_token": csrf, "since": "2000-01-01T00:00"}
    started = await client.post(f"{base}/recover", data=form)
    assert started.status_code == 303, started.text
    running = started.headers["location"]
    job_id = running.rsplit("/", 1)[-1]

    htmx = await client.post(f"{base}/recover", data=form, headers={"HX-Request": "true"})
    assert htmx.status_code == 409 and "HX-Retarget" not in htmx.headers
    assert "already being re-sent" in htmx.text
    # The panel of the one under way, which follows it.
    assert f'hx-get="{running}"' in htmx.text and "Waiting to start" in htmx.text
    plain = await client.post(f"{base}/recover", data=form)
    assert plain.status_code == 409 and "already being re-sent" in plain.text
    assert f'hx-get="{running}"' in plain.text

    assert await RecoveryRunner(ctx).run_once() == 1
    after = await client.post(f"{base}/recover", data=form)
    assert after.status_code == 303 and job_id not in after.headers["location"]


async def test_the_template_form_past_the_storage_quota_says_so_at_the_file(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    await storage_full(ctx, site)
    csrf = await signed_in(ctx, client, site, "SiteAdministrator")
    data = {"csrf_token": csrf, "name": "Engagement letter", "events": ""}
    for index, variable in enumerate(variable_to_json(v) for v in STANDARD_VARIABLES):
        data[f"var-{index}-name"] = variable["name"]
        data[f"var-{index}-type"] = variable["type"]
        data[f"var-{index}-depth"] = str(variable["repeatDepth"])
        data[f"var-{index}-options"] = "\n".join(variable["options"])
    refused = await client.post(
        "/ui/templates",
        data=data,
        files={"file": ("engagement.docx", standard_template(), DOCX_CONTENT_TYPE)},
    )
    assert refused.status_code == 422, refused.text
    said = field_error(refused.text, "file")
    assert "site_storage_quota_bytes" in said and "nothing was stored" in said, said
    assert (await client.get("/api/v1/templates", headers=site.auth())).json()["items"] == []


async def _bytes_of_saving(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, platform: Platform
) -> int:
    """What saving `Client Name: Ann Lee` in a new interview adds to what the site keeps."""
    made = await client.post(
        "/api/v1/workitems",
        json={
            "workGroupId": platform.work_item["work_group_id"],
            "templateId": platform.template["id"],
            "name": "Another engagement",
        },
        headers=site.auth(),
    )
    assert made.status_code == 201, made.text
    user = site.auth("User")
    opened = await client.post(f"/api/v1/workitems/{made.json()['id']}/interviews", headers=user)
    assert opened.status_code == 201, opened.text
    async with ctx.db.read() as conn:
        before = await storage.usage(conn, site.site_id)
    answers = f"/api/v1/interviews/{opened.json()['id']}/answers"
    saved = await client.put(answers, json={"Client Name": "Ann Lee"}, headers=user)
    assert saved.status_code == 200, saved.text
    async with ctx.db.read() as conn:
        return (await storage.usage(conn, site.site_id)).bytes - before.bytes


async def test_finish_past_the_storage_quota_says_the_storage_is_full_and_saves_the_answers(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    platform = await make_platform(ctx, site)
    csrf = await signed_in(ctx, client, site, "User")
    page = await client.post(
        f"/ui/workitems/{platform.work_item['id']}/interview", data={"csrf_token": csrf}
    )
    found = re.search(r'data-url="(/ui/interviews/[0-9a-f-]{36})"', page.text)
    assert found, page.text
    url = found.group(1)
    # Answer sets count too: room for exactly the answers typed below, so that once they are
    # saved the site is full and Finish is refused before anything is assembled. What they
    # take is measured by saving them in another work item's interview.
    await storage_full(ctx, site, room=await _bytes_of_saving(ctx, client, site, platform))
    finish = {"csrf_token": csrf, "fields": "0", "f0": "Ann Lee", "action": "finish"}
    refused = await client.post(url, data=finish)
    assert refused.status_code == 422, refused.text
    assert '<h1 id="error-title">The site&#39;s storage is full</h1>' in refused.text
    assert "site_storage_quota_bytes" in refused.text
    htmx = await client.post(url, data=finish, headers={"HX-Request": "true"})
    assert htmx.status_code == 422 and htmx.headers["HX-Retarget"] == "#flash"
    # The answers typed before Finish are saved: the interview is there to finish later.
    assert 'value="Ann Lee"' in (await client.get(url)).text


async def test_an_answer_file_past_the_storage_quota_says_so_at_the_file(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    platform = await make_platform(ctx, site)
    csrf = await signed_in(ctx, client, site, "User")
    page = await client.post(
        f"/ui/workitems/{platform.work_item['id']}/interview", data={"csrf_token": csrf}
    )
    found = re.search(r'data-url="(/ui/interviews/[0-9a-f-]{36})"', page.text)
    assert found, page.text
    await storage_full(ctx, site)
    refused = await client.post(
        f"{found.group(1)}/answers-file",
        data={"csrf_token": csrf},
        files={"file": ("jane.json", b'{"Client Name": "Jane"}')},
        headers={"HX-Request": "true"},
    )
    assert refused.status_code == 422, refused.text
    said = re.search(r'id="answer-file-error" role="alert">Problem: ([^<]*)<', refused.text)
    assert said is not None, refused.text
    assert said.group(1).startswith("jane.json was not saved: storing these answers"), said.group(1)
    assert "site_storage_quota_bytes" in said.group(1)
    assert 'value="Jane"' not in (await client.get(found.group(1))).text
