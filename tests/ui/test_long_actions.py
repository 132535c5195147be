"""Long actions in the admin UI over HTTP: each form names what it is doing while its request
runs, the recovery starts in place for htmx, and a test call's outcome is worded once."""

from __future__ import annotations

import re

import httpx
from tests.support import SiteUsers
from tests.ui.ui_support import make_user, sign_in

from docuhooks.context import AppContext
from docuhooks.delivery.transport import ErrorClass, MockTransport, TransportResult


async def _hook(client: httpx.AsyncClient, site: SiteUsers, **fields: object) -> str:
    body = {"name": "Lookup", "url": "https://receiver.example/lookup", **fields}
    created = await client.post("/api/v1/webhooks", json=body, headers=site.auth())
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


async def test_each_long_action_names_its_progress(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await _hook(client, site, eventType="NewWorkItemVersionComplete")
    csrf = await sign_in(client, await make_user(ctx, site.site_id, "IntegrationAdministrator"))
    queued = await client.post(
        f"/ui/webhooks/{hook}/test", headers={"HX-Request": "true", "X-CSRF-Token": csrf}
    )
    delivery = re.search(r"/ui/deliveries/([0-9a-f-]{36})", queued.text)
    assert delivery is not None
    hook_page = (await client.get(f"/ui/webhooks/{hook}")).text
    delivery_page = (await client.get(f"/ui/deliveries/{delivery.group(1)}")).text
    for page, action, indicator, text in [
        (hook_page, f"webhooks/{hook}/test", "test-progress", "Sending test event…"),
        (hook_page, f"webhooks/{hook}/recover", "recover-progress", "Starting the re-send…"),
        (
            delivery_page,
            f"deliveries/{delivery.group(1)}/redeliver",
            "redeliver-progress",
            "Queuing the event again…",
        ),
    ]:
        # Inside the htmx form, whose `htmx-request` class shows it while the request runs.
        inside = re.search(rf'<form[^>]*hx-post="/ui/{action}"[^>]*>(.*?)</form>', page, re.S)
        assert inside is not None, action
        assert f'<span id="{indicator}" class="progress">{text}</span>' in inside.group(1)


async def test_recovery_starts_in_place(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await _hook(client, site, eventType="NewWorkItemVersionComplete")
    csrf = await sign_in(client, await make_user(ctx, site.site_id, "IntegrationAdministrator"))
    started = await client.post(
        f"/ui/webhooks/{hook}/recover",
        data={"since": "2000-01-01T00:00"},
        headers={"HX-Request": "true", "X-CSRF-Token": csrf},
    )
    assert started.status_code == 200
    assert started.text.lstrip().startswith('<div id="recovery"')
    assert 'hx-trigger="every 1s"' in started.text and "Waiting to start" in started.text
    jobs = re.search(rf'hx-get="/ui/webhooks/{hook}/recoveries/([0-9a-f-]{{36}})"', started.text)
    assert jobs is not None
    followed = await client.get(f"/ui/webhooks/{hook}/recoveries/{jobs.group(1)}")
    assert followed.status_code == 200


async def test_a_timed_out_test_call_is_worded_once(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await _hook(client, site, eventType="InterviewLoadEvent")
    csrf = await sign_in(client, await make_user(ctx, site.site_id, "IntegrationAdministrator"))
    ctx.transport_override = MockTransport(
        lambda _request: TransportResult.failure(
            ErrorClass.TIMEOUT, "timed out", duration_ms=5000.2
        )
    )
    sent = await client.post(
        f"/ui/webhooks/{hook}/test", headers={"HX-Request": "true", "X-CSRF-Token": csrf}
    )
    assert sent.status_code == 200
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", sent.text)).strip()
    assert text == "Test call failed: no answer within 5000 ms (timeout)."
    # Without JavaScript: the same sentence on a page of its own.
    page = await client.post(f"/ui/webhooks/{hook}/test", data={"csrf_token": csrf})
    assert page.text.count("Test call failed: no answer within 5000 ms (timeout).") == 1
    assert "timed out" not in page.text
