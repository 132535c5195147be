"""The admin UI over HTTP on both stores: signing in and out, sessions that end, CSRF refusal,
roles and sites, the webhook form's errors, the one-time secret, and every action, checked
through the API afterwards (the UI and the API share their services)."""

from __future__ import annotations

import dataclasses
import random
import re
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.delivery.delivery_support import queue_event
from tests.support import MovedClock, SiteUsers
from tests.ui.ui_support import PASSWORD, csrf_of, field_error, make_user, sign_in

from docuhooks.context import AppContext
from docuhooks.core.destinations import state_key
from docuhooks.core.retry import RetrySchedule
from docuhooks.delivery import recorder_queries
from docuhooks.delivery.recovery import RecoveryRunner
from docuhooks.delivery.transport import MockTransport, TransportResult
from docuhooks.delivery.worker import Worker, WorkerOptions
from docuhooks.store.schema import destinations, ui_sessions, webhooks
from docuhooks.ui import session as sessions

HOOK = {
    "name": "Orders",
    "url": "https://receiver.example/hook",
    "eventType": "NewWorkItemVersionComplete",
}
FORM = {
    "name": "Archive",
    "url": "https://receiver.example/archive",
    "eventType": "NewWorkItemVersionComplete",
    "authenticationMethod": "HMAC",
    "requestVerb": "",
    "order": "0",
    "timeoutSeconds": "",
    "active": "true",
}


async def api_hook(client: httpx.AsyncClient, site: SiteUsers, **fields: Any) -> dict[str, Any]:
    created = await client.post("/api/v1/webhooks", json={**HOOK, **fields}, headers=site.auth())
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def api_read(client: httpx.AsyncClient, site: SiteUsers, webhook_id: str) -> httpx.Response:
    return await client.get(f"/api/v1/webhooks/{webhook_id}", headers=site.auth())


async def admin(ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers) -> str:
    return await sign_in(client, await make_user(ctx, site.site_id, "SiteAdministrator"))


# --- signing in and out ------------------------------------------------------------------------


async def test_sign_in_and_out(ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers) -> None:
    first = await client.get("/ui/webhooks/new")
    assert first.status_code == 303
    assert first.headers["location"] == "/ui/login?next=%2Fui%2Fwebhooks%2Fnew"

    login = await make_user(ctx, site.site_id, "IntegrationAdministrator")
    form = await client.get(first.headers["location"])
    assert 'value="/ui/webhooks/new"' in form.text
    done = await client.post(
        "/ui/login",
        data={
            "csrf_token": csrf_of(form.text),
            "login_name": login.upper(),
            "password": PASSWORD,
            "next": "/ui/webhooks/new",
        },
    )
    assert done.status_code == 303 and done.headers["location"] == "/ui/webhooks/new"
    cookie = next(c for c in done.headers.get_list("set-cookie") if "docuhooks_session=" in c)
    assert "HttpOnly" in cookie and "Path=/ui" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie  # the base URL is http
    page = await client.get("/ui/")
    assert page.status_code == 200 and login in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]

    out = await client.post("/ui/logout", data={"csrf_token": csrf_of(page.text)})
    assert out.status_code == 303 and out.headers["location"].startswith("/ui/login")
    assert (await client.get("/ui/")).status_code == 303
    async with ctx.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(ui_sessions)) == 0


async def test_next_never_leaves_the_ui(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    login = await make_user(ctx, site.site_id, "SiteAdministrator")
    for target in (
        "https://evil.example/",
        "//evil.example/ui/",
        "/ui//evil.example",
        "/api/v1",
        "/ui/../../x",
        "/ui/%2e%2e/api/v1",
        "/ui/\\evil.example",
    ):
        client.cookies.clear()
        form = await client.get("/ui/login")
        done = await client.post(
            "/ui/login",
            data={
                "csrf_token": csrf_of(form.text),
                "login_name": login,
                "password": PASSWORD,
                "next": target,
            },
        )
        assert done.headers["location"] == "/ui/", target


async def test_wrong_password_and_unknown_user(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    login = await make_user(ctx, site.site_id, "SiteAdministrator")
    for name, password in ((login, "not the password"), ("nobody@example.com", PASSWORD)):
        form = await client.get("/ui/login")
        refused = await client.post(
            "/ui/login",
            data={"csrf_token": csrf_of(form.text), "login_name": name, "password": password},
        )
        assert refused.status_code == 401
        assert "The login name or password is wrong." in refused.text
        assert "docuhooks_session=" not in refused.headers.get("set-cookie", "")
        assert (await client.get("/ui/")).status_code == 303
    async with ctx.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(ui_sessions)) == 0


async def test_login_form_needs_its_own_token(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Another site cannot sign this browser in to an account of its choosing."""
    login = await make_user(ctx, site.site_id, "SiteAdministrator")
    forged = await client.post("/ui/login", data={"login_name": login, "password": PASSWORD})
    assert forged.status_code == 403
    assert (await client.get("/ui/")).status_code == 303


async def test_session_ends_after_idle_time_and_lifetime(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    start = ctx.now()
    ctx.clock = MovedClock(start)
    await admin(ctx, client, site)

    # Each visit within the idle time keeps the session going...
    for hours in (11, 22, 33):
        ctx.clock = MovedClock(start + timedelta(hours=hours))
        assert (await client.get("/ui/")).status_code == 200, hours
    # ...until it is left idle longer than that.
    ctx.clock = MovedClock(start + timedelta(hours=33) + sessions.IDLE_TIMEOUT)
    assert (await client.get("/ui/")).status_code == 303

    # A busy session still ends at its lifetime.
    ctx.clock = MovedClock(start)
    await admin(ctx, client, site)
    step = sessions.IDLE_TIMEOUT - timedelta(hours=1)
    moment = start
    while moment + step < start + sessions.MAX_LIFETIME:
        moment += step
        ctx.clock = MovedClock(moment)
        assert (await client.get("/ui/")).status_code == 200
    ctx.clock = MovedClock(start + sessions.MAX_LIFETIME)
    htmx = await client.post("/ui/logout", headers={"HX-Request": "true"})
    assert htmx.status_code == 401 and htmx.headers["HX-Redirect"] == "/ui/login"


async def test_secure_cookie_when_the_base_url_is_https(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, base_url="https://docs.example")
    form = await client.get("/ui/login")
    assert "Secure" in form.headers["set-cookie"]


async def test_deactivated_user_is_signed_out(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    from docuhooks.store.schema import users

    login = await make_user(ctx, site.site_id, "SiteAdministrator")
    await sign_in(client, login)
    async with ctx.db.transaction() as conn:
        await conn.execute(users.update().where(users.c.login_name == login).values(active=False))
    assert (await client.get("/ui/")).status_code == 303


# --- CSRF, roles, sites ------------------------------------------------------------------------


async def test_state_changes_without_the_csrf_token_change_nothing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await api_hook(client, site)
    other_csrf = await admin(ctx, client, site)  # a token of another session of this user
    csrf = await admin(ctx, client, site)
    assert other_csrf != csrf
    base = f"/ui/webhooks/{hook['id']}"
    for path, data in (
        (f"{base}/deactivate", {}),
        (f"{base}/delete", {}),
        (f"{base}/regenerate-secret", {"graceHours": "1"}),
        (f"{base}/edit", {**FORM, "name": "Renamed"}),
        ("/ui/webhooks", {**FORM, "name": "Forged"}),
        ("/ui/logout", {}),
    ):
        for token in (None, "wrong", other_csrf):
            body = data if token is None else {**data, "csrf_token": token}
            refused = await client.post(path, data=body)
            assert refused.status_code == 403, (path, token)
            assert "security token" in refused.text
        header = await client.post(path, data=data, headers={"X-CSRF-Token": "wrong"})
        assert header.status_code == 403
    after = await api_read(client, site, hook["id"])
    read = after.json()
    assert read["name"] == "Orders" and read["status"] == "active"
    assert read["secretId"] == hook["secretId"]
    listed = (await client.get("/api/v1/webhooks", headers=site.auth())).json()["items"]
    assert [w["name"] for w in listed] == ["Orders"]
    assert (await client.get("/ui/")).status_code == 200  # still signed in

    # The same request with the session's token, as htmx sends it, goes through.
    done = await client.post(
        f"{base}/deactivate", headers={"X-CSRF-Token": csrf, "HX-Request": "true"}
    )
    assert done.status_code == 200 and "Activate webhook" in done.text
    assert (await api_read(client, site, hook["id"])).json()["status"] == "inactive"


async def test_user_role_gets_a_403_page(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await api_hook(client, site)
    csrf = await sign_in(client, await make_user(ctx, site.site_id, "User"))
    # The UI's root is their home's way in (work items); the webhook pages proper say 403.
    assert (await client.get("/ui/")).headers["location"] == "/ui/workitems"
    for path in (f"/ui/webhooks/{hook['id']}", "/ui/webhooks/new", "/ui/events"):
        page = await client.get(path)
        assert page.status_code == 403, path
        assert "SiteAdministrator or IntegrationAdministrator" in page.text
        assert "Sign out" in page.text
        # The way back is to where a User starts, not to another 403.
        assert '<a href="/ui/workitems">Back to the work items</a>' in page.text
        assert "Back to the webhooks" not in page.text
    refused = await client.post(f"/ui/webhooks/{hook['id']}/deactivate", data={"csrf_token": csrf})
    assert refused.status_code == 403
    created = await client.post("/ui/webhooks", data={**FORM, "csrf_token": csrf})
    assert created.status_code == 403
    assert (await api_read(client, site, hook["id"])).json()["status"] == "active"
    listed = (await client.get("/api/v1/webhooks", headers=site.auth())).json()["items"]
    assert len(listed) == 1


async def test_another_sites_objects_are_404(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    foreign = await api_hook(client, other_site)
    test = await client.post(f"/api/v1/webhooks/{foreign['id']}/test", headers=other_site.auth())
    foreign_delivery = test.json()["deliveryId"]
    csrf = await admin(ctx, client, site)
    base = f"/ui/webhooks/{foreign['id']}"
    for path in (base, f"{base}/edit", f"{base}/audit", f"{base}/deliveries", f"{base}/delete"):
        page = await client.get(path)
        assert page.status_code == 404, path
        assert "does not exist" in page.text
        assert '<a href="/ui/">Back to the webhooks</a>' in page.text  # an administrator's start
    assert (await client.get(f"/ui/deliveries/{foreign_delivery}")).status_code == 404
    for path in (f"{base}/deactivate", f"{base}/delete", f"{base}/test", f"{base}/resume"):
        assert (await client.post(path, data={"csrf_token": csrf})).status_code == 404, path
    redeliver = await client.post(
        f"/ui/deliveries/{foreign_delivery}/redeliver", data={"csrf_token": csrf}
    )
    assert redeliver.status_code == 404
    read = await api_read(client, other_site, foreign["id"])
    assert read.status_code == 200 and read.json()["status"] == "active"


# --- the webhook form --------------------------------------------------------------------------


async def test_create_with_errors_shows_them_at_their_fields_and_writes_nothing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    csrf = await admin(ctx, client, site)
    bad = {
        **FORM,
        "csrf_token": csrf,
        "url": "ftp://user:pw@receiver.example/",
        "eventType": "CustomInterviewEvent",
        "timeoutSeconds": "500",
        "order": "first",
    }
    page = await client.post("/ui/webhooks", data=bad)
    assert page.status_code == 422
    assert field_error(page.text, "order") == "must be a whole number"
    # The number problem is found first; fix it and the configuration rules speak.
    page = await client.post("/ui/webhooks", data={**bad, "order": "2"})
    assert page.status_code == 422
    assert field_error(page.text, "url") == "must be an absolute http or https URL"
    assert "is required for CustomInterviewEvent" in field_error(page.text, "interviewEventName")
    assert field_error(page.text, "timeoutSeconds") == "must be a whole number from 1 to 120"
    assert 'aria-invalid="true"' in page.text and 'role="alert"' in page.text
    # What was typed is kept (the URL, the chosen type), so it can be corrected.
    assert 'value="ftp://user:pw@receiver.example/"' in page.text
    assert "<option selected>CustomInterviewEvent</option>" in page.text

    token = await client.post(
        "/ui/webhooks",
        data={**FORM, "csrf_token": csrf, "authenticationMethod": "AccessToken"},
    )
    assert field_error(token.text, "accessToken") == "is required for AccessToken authentication"

    await api_hook(client, site, name="Archive")
    duplicate = await client.post("/ui/webhooks", data={**FORM, "csrf_token": csrf})
    assert duplicate.status_code == 422
    assert "a webhook named &#39;Archive&#39; already exists" in duplicate.text
    listed = (await client.get("/api/v1/webhooks", headers=site.auth())).json()["items"]
    assert [w["name"] for w in listed] == ["Archive"]


async def test_create_shows_the_secret_once(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    csrf = await admin(ctx, client, site)
    created = await client.post(
        "/ui/webhooks",
        data={**FORM, "csrf_token": csrf, "timeoutSeconds": "30", "orderedDelivery": "true"},
    )
    assert created.status_code == 200
    assert "it will not be shown again" in created.text
    assert created.headers["cache-control"] == "no-store"
    secret = re.search(
        r'id="secret" class="secret" type="text" readonly value="([^"]+)"', created.text
    )
    assert secret is not None
    webhook_id = re.search(r"/ui/webhooks/([0-9a-f-]{36})", created.text)
    assert webhook_id is not None
    # It is the webhook's real secret, as stored (encrypted) for signing.
    async with ctx.db.read() as conn:
        row = (
            await conn.execute(sa.select(webhooks).where(webhooks.c.id == webhook_id.group(1)))
        ).one()
    assert ctx.box.decrypt(row.secret_enc) == secret.group(1)

    read = (await api_read(client, site, row.id)).json()
    assert read["timeoutSeconds"] == 30 and read["orderedDelivery"] is True
    assert read["requestVerb"] == "POST" and read["active"] is True
    base = f"/ui/webhooks/{row.id}"
    for path in ("/ui/", base, f"{base}/edit", f"{base}/audit", f"{base}/regenerate-secret"):
        page = await client.get(path)
        assert page.status_code == 200, path
        assert secret.group(1) not in page.text, path


async def test_access_token_webhook_needs_no_secret_page(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    csrf = await admin(ctx, client, site)
    created = await client.post(
        "/ui/webhooks",
        data={
            **FORM,
            "csrf_token": csrf,
            "authenticationMethod": "AccessToken",
            "accessToken": "legacy-token-123",
        },
    )
    assert created.status_code == 303
    page = await client.get(created.headers["location"])
    assert "Webhook created." in page.text and "set (write-only)" in page.text
    assert "legacy-token-123" not in page.text
    edit = await client.get(created.headers["location"].split("?")[0] + "/edit")
    assert "legacy-token-123" not in edit.text
    regenerate = await client.get(created.headers["location"].split("?")[0] + "/regenerate-secret")
    assert regenerate.status_code == 409


# --- actions, read back through the API -------------------------------------------------------


async def test_edit_changes_what_the_api_reads(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await api_hook(client, site)
    csrf = await admin(ctx, client, site)
    edit = await client.get(f"/ui/webhooks/{hook['id']}/edit")
    assert 'value="Orders"' in edit.text and 'value="15"' in edit.text
    saved = await client.post(
        f"/ui/webhooks/{hook['id']}/edit",
        data={
            **FORM,
            "csrf_token": csrf,
            "name": "Orders v2",
            "requestVerb": "POST",
            "timeoutSeconds": "45",
        },
    )
    assert saved.status_code == 303
    read = (await api_read(client, site, hook["id"])).json()
    assert read["name"] == "Orders v2" and read["timeoutSeconds"] == 45
    assert read["secretId"] == hook["secretId"]  # unchanged method: no new secret

    switched = await client.post(
        f"/ui/webhooks/{hook['id']}/edit",
        data={**FORM, "csrf_token": csrf, "authenticationMethod": "StandardWebhooks"},
    )
    assert switched.status_code == 200 and "it will not be shown again" in switched.text
    assert "whsec_" in switched.text
    assert (await api_read(client, site, hook["id"])).json()["authenticationMethod"] == (
        "StandardWebhooks"
    )

    bad = await client.post(
        f"/ui/webhooks/{hook['id']}/edit",
        data={**FORM, "csrf_token": csrf, "eventType": "PostProcessingEvent", "requestVerb": "GET"},
    )
    assert bad.status_code == 422
    assert "always POST" in field_error(bad.text, "requestVerb")
    assert (await api_read(client, site, hook["id"])).json()["eventType"] == (
        "NewWorkItemVersionComplete"
    )


async def test_activation_in_place_and_without_javascript(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await api_hook(client, site)
    csrf = await admin(ctx, client, site)
    base = f"/ui/webhooks/{hook['id']}"
    htmx = {"HX-Request": "true", "X-CSRF-Token": csrf}

    off = await client.post(f"{base}/deactivate", headers=htmx)
    assert off.status_code == 200 and off.text.lstrip().startswith('<section id="status-panel"')
    assert "status-inactive" in off.text and "Activate webhook" in off.text
    read = (await api_read(client, site, hook["id"])).json()
    assert read["status"] == "inactive" and read["statusReason"].startswith("deactivated by")

    on = await client.post(f"{base}/activate", data={"csrf_token": csrf})
    assert on.status_code == 303 and on.headers["location"] == f"{base}?notice=activated"
    assert "Webhook activated." in (await client.get(on.headers["location"])).text
    assert (await api_read(client, site, hook["id"])).json()["status"] == "active"

    # A refusal from the service reaches an htmx caller as a message in the page.
    await client.post(f"{base}/deactivate", headers=htmx)
    test = await client.post(f"{base}/test", headers=htmx)
    assert test.status_code == 409 and test.headers["HX-Retarget"] == "#flash"
    assert "inactive" in test.text

    audit = await client.get(f"{base}/audit")
    assert audit.text.count("webhook.deactivated") == 2 and "webhook.activated" in audit.text


async def test_resume_a_suspended_webhook(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await api_hook(client, site)
    now = ctx.now()
    async with ctx.db.transaction() as conn:
        await recorder_queries.suspend(
            conn,
            hook["id"],
            now=now,
            next_probe_at=now + timedelta(minutes=10),
            reason="20 failed attempts in a row since yesterday",
        )
    csrf = await admin(ctx, client, site)
    listing = await client.get("/ui/?status=suspended")
    assert "Orders" in listing.text and "20 failed attempts in a row" in listing.text
    page = await client.get(f"/ui/webhooks/{hook['id']}")
    assert "status-suspended" in page.text and "Resume delivery" in page.text

    resumed = await client.post(
        f"/ui/webhooks/{hook['id']}/resume", headers={"HX-Request": "true", "X-CSRF-Token": csrf}
    )
    assert resumed.status_code == 200 and "status-active" in resumed.text
    read = (await api_read(client, site, hook["id"])).json()
    assert read["status"] == "active" and read["statusReason"] is None


async def test_regenerate_secret_with_grace(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await api_hook(client, site)
    csrf = await admin(ctx, client, site)
    path = f"/ui/webhooks/{hook['id']}/regenerate-secret"
    bad = await client.post(path, data={"csrf_token": csrf, "graceHours": "500"})
    assert bad.status_code == 422 and "0 to 168 hours" in bad.text
    assert (await api_read(client, site, hook["id"])).json()["secretId"] == hook["secretId"]

    done = await client.post(path, data={"csrf_token": csrf, "graceHours": "2"})
    assert done.status_code == 200 and "it will not be shown again" in done.text
    secret = re.search(r'readonly value="([^"]+)"', done.text)
    assert secret is not None and secret.group(1) != hook["secret"]
    read = (await api_read(client, site, hook["id"])).json()
    assert read["secretRotation"]["previousSecretId"] == hook["secretId"]
    page = await client.get(f"/ui/webhooks/{hook['id']}")
    assert secret.group(1) not in page.text and hook["secretId"] in page.text


async def test_delete_after_confirmation(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await api_hook(client, site)
    csrf = await admin(ctx, client, site)
    confirm = await client.get(f"/ui/webhooks/{hook['id']}/delete")
    assert "Delete webhook Orders" in confirm.text and "cannot be undone" in confirm.text
    assert (await api_read(client, site, hook["id"])).status_code == 200  # asking deletes nothing
    done = await client.post(f"/ui/webhooks/{hook['id']}/delete", data={"csrf_token": csrf})
    assert done.status_code == 303 and done.headers["location"] == "/ui/?notice=deleted"
    assert (await api_read(client, site, hook["id"])).status_code == 404
    assert (await client.get(f"/ui/webhooks/{hook['id']}")).status_code == 404


async def test_test_event_delivery_attempts_and_redelivery(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await api_hook(client, site)
    csrf = await admin(ctx, client, site)
    base = f"/ui/webhooks/{hook['id']}"
    sent = await client.post(f"{base}/test", headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    assert sent.status_code == 200 and "Test event queued" in sent.text
    assert sent.headers["HX-Trigger"] == "deliveries-changed"
    delivery_id = re.search(r"/ui/deliveries/([0-9a-f-]{36})", sent.text)
    assert delivery_id is not None

    ctx.transport_override = MockTransport(
        lambda _request: TransportResult.response(503, b"receiver down for maintenance")
    )
    worker = Worker(
        ctx,
        WorkerOptions(schedule=RetrySchedule(delays=(0,))),
        rng=random.Random(1),
        worker_id="ui-test",
    )
    assert await worker.run_once() == [delivery_id.group(1)]

    listed = await client.get(f"{base}/deliveries", headers={"HX-Request": "true"})
    assert listed.text.lstrip().startswith('<div id="deliveries"')
    assert "delivery-failed" in listed.text and "http_status" in listed.text
    assert 'hx-trigger="every 5s, deliveries-changed from:body"' in listed.text
    page = await client.get(f"/ui/deliveries/{delivery_id.group(1)}")
    assert page.status_code == 200
    assert "HTTP 503" in page.text and "receiver down for maintenance" in page.text
    assert "http_status" in page.text and "Redeliver event" in page.text
    assert hook["secret"] not in page.text
    assert "X-Docuhooks-Signature" in page.text or "x-docuhooks" in page.text.lower()

    again = await client.post(
        f"/ui/deliveries/{delivery_id.group(1)}/redeliver", data={"csrf_token": csrf}
    )
    assert again.status_code == 303
    new_id = again.headers["location"].split("/")[-1].split("?")[0]
    assert new_id != delivery_id.group(1)
    api = await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=site.auth())
    items = api.json()["items"]
    assert [d["id"] for d in items] == [new_id, delivery_id.group(1)]
    assert items[0]["status"] == "pending" and items[0]["eventId"] == items[1]["eventId"]

    # Redelivering the pending one in place (htmx) makes it due now instead of a third copy.
    in_place = await client.post(
        f"/ui/deliveries/{new_id}/redeliver", headers={"HX-Request": "true", "X-CSRF-Token": csrf}
    )
    assert in_place.status_code == 200 and "due now" in in_place.text
    api = await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=site.auth())
    assert len(api.json()["items"]) == 2


async def test_failed_deliveries_since_a_time_are_sent_again(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await api_hook(client, site)
    csrf = await admin(ctx, client, site)
    base = f"/ui/webhooks/{hook['id']}"
    assert 'action="' + base + '/recover"' in (await client.get(base)).text
    await client.post(f"{base}/test", headers={"HX-Request": "true", "X-CSRF-Token": csrf})
    ctx.transport_override = MockTransport(lambda _request: TransportResult.response(500))
    worker = Worker(
        ctx,
        WorkerOptions(schedule=RetrySchedule(delays=(0,))),
        rng=random.Random(1),
        worker_id="ui-recover",
    )
    (failed,) = await worker.run_once()

    later = await client.post(
        f"{base}/recover", data={"csrf_token": csrf, "since": "2999-01-01T00:00"}
    )
    assert later.status_code == 303 and "/recoveries/" in later.headers["location"]
    waiting = await client.get(later.headers["location"])
    assert "Waiting to start" in waiting.text and 'hx-trigger="every 1s"' in waiting.text
    assert await RecoveryRunner(ctx).run_once() == 1
    done = await client.get(later.headers["location"], headers={"HX-Request": "true"})
    assert "nothing to re-send" in done.text and "hx-trigger" not in done.text
    sent = await client.post(
        f"{base}/recover", data={"csrf_token": csrf, "since": "2000-01-01T00:00"}
    )
    assert sent.status_code == 303 and "/recoveries/" in sent.headers["location"]
    assert await RecoveryRunner(ctx).run_once() == 1
    page = await client.get(sent.headers["location"])
    assert "Done: 1 event whose delivery failed is queued to be sent again" in page.text
    api = await client.get(f"/api/v1/webhooks/{hook['id']}/deliveries", headers=site.auth())
    statuses = {d["id"]: d["status"] for d in api.json()["items"]}
    assert statuses.pop(failed) == "failed" and list(statuses.values()) == ["pending"]
    garbage = await client.post(f"{base}/recover", data={"csrf_token": csrf, "since": "soon"})
    assert garbage.status_code == 422 and "give a date and time" in garbage.text
    forged = await client.post(f"{base}/recover", data={"since": "2000-01-01T00:00"})
    assert forged.status_code == 403


async def test_root_redirects_and_ui_stays_out_of_openapi(client: httpx.AsyncClient) -> None:
    root = await client.get("/")
    assert root.status_code == 303 and root.headers["location"] == "/ui/"
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert not [p for p in paths if p == "/" or p.startswith("/ui")]
    htmx = await client.get("/ui/static/htmx.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text[:200]


@pytest.mark.parametrize("path", ["/ui/webhooks/not-a-uuid", "/ui/deliveries/not-a-uuid"])
async def test_malformed_ids_are_404_pages(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, path: str
) -> None:
    await admin(ctx, client, site)
    page = await client.get(path)
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")


async def test_change_your_own_password(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    login = await make_user(ctx, site.site_id, "IntegrationAdministrator")
    csrf = await sign_in(client, login)
    elsewhere = httpx.AsyncClient(transport=client._transport, base_url="http://testserver")
    try:
        await sign_in(elsewhere, login)  # the same person in another browser
        page = await client.get("/ui/account")
        assert page.status_code == 200 and login in page.text
        assert 'href="/ui/account"' in page.text, "the header links to the account"

        async def change(current: str, new: str, again: str | None = None) -> httpx.Response:
            fields = {
                "csrf_token": csrf,
                "current_password": current,
                "new_password": new,
                "confirm_password": new if again is None else again,
            }
            return await client.post("/ui/account/password", data=fields)

        wrong = await change("not my password", "a brand new password")
        assert wrong.status_code == 422
        assert field_error(wrong.text, "current_password") == "The current password is wrong."
        short = await change(PASSWORD, "short")
        assert field_error(short.text, "new_password") == "A password needs at least 8 characters."
        differ = await change(PASSWORD, "a brand new password", "a brand new passw0rd")
        assert field_error(differ.text, "confirm_password") == "The two new passwords differ."
        for refused in (wrong, short, differ):
            assert "a brand new" not in refused.text and PASSWORD not in refused.text
        no_csrf = await client.post(
            "/ui/account/password",
            data={
                "current_password": PASSWORD,
                "new_password": "x" * 12,
                "confirm_password": "x" * 12,
            },
        )
        assert no_csrf.status_code == 403

        done = await change(PASSWORD, "a brand new password")
        assert (done.status_code, done.headers["location"]) == (
            303,
            "/ui/account?notice=password-changed",
        )
        assert "Your password is changed" in (await client.get(done.headers["location"])).text
        assert (await elsewhere.get("/ui/")).status_code in (303, 307), "the other browser is out"
        assert (await client.get("/ui/")).status_code == 200, "this browser stays in"
        await sign_in(elsewhere, login, "a brand new password")
    finally:
        await elsewhere.aclose()


# --- events ------------------------------------------------------------------------------------


async def test_the_sites_events_and_where_each_went(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    hook = await api_hook(client, site)
    sent = await client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=site.auth())
    event_id = (
        await client.get(f"/api/v1/deliveries/{sent.json()['deliveryId']}", headers=site.auth())
    ).json()["eventId"]
    foreign = await api_hook(client, other_site)
    await client.post(f"/api/v1/webhooks/{foreign['id']}/test", headers=other_site.auth())
    await admin(ctx, client, site)

    listed = await client.get("/ui/events")
    assert listed.status_code == 200
    assert f'href="/ui/events/{event_id}"' in listed.text
    assert listed.text.count('href="/ui/events/') == 1, "only this site's events"
    assert 'href="/ui/events"' in listed.text, "the header links to the events"
    other_type = await client.get("/ui/events", params={"type": "InterviewLoadEvent"})
    assert "No events of type InterviewLoadEvent" in other_type.text
    later = await client.get("/ui/events", params={"since": "2999-01-01T00:00"})
    assert later.status_code == 200 and "No events" in later.text
    for params, message in (
        ({"since": "last tuesday"}, "Enter a date and time"),
        ({"type": "NoSuchEvent"}, "Choose an event type"),
    ):
        refused = await client.get("/ui/events", params=params)
        assert refused.status_code == 422 and message in refused.text

    page = await client.get(f"/ui/events/{event_id}")
    assert page.status_code == 200
    assert f'href="/ui/webhooks/{hook["id"]}">Orders</a>' in page.text
    assert f'href="/ui/deliveries/{sent.json()["deliveryId"]}"' in page.text
    assert f"&#34;eventId&#34;: &#34;{event_id}&#34;" in page.text, "the payload, escaped"
    foreign_events = (await client.get("/api/v1/events", headers=other_site.auth())).json()
    foreign_id = foreign_events["items"][0]["id"]
    assert (await client.get(f"/ui/events/{foreign_id}")).status_code == 404
    assert (await client.get("/ui/events/not-an-id")).status_code == 404

    await sign_in(client, await make_user(ctx, site.site_id, "User"))
    assert (await client.get("/ui/events")).status_code == 403


# --- users -------------------------------------------------------------------------------------


async def test_site_administrators_manage_their_sites_users(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    admin_login = await make_user(ctx, site.site_id, "SiteAdministrator")
    csrf = await sign_in(client, admin_login)
    home = await client.get("/ui/")
    assert 'href="/ui/users"' in home.text, "site administrators see the users link"
    listed = await client.get("/ui/users")
    assert listed.status_code == 200
    user_id = site.user_ids["User"]
    assert f'href="/ui/users/{user_id}"' in listed.text
    assert other_site.user_ids["User"] not in listed.text
    page = await client.get(f"/ui/users/{user_id}")
    assert page.status_code == 200 and site.login("User") in page.text

    form = {"csrf_token": csrf, "name": "Ann Lee", "email": "ann@example.com"}
    saved = await client.post(
        f"/ui/users/{user_id}",
        data={**form, "roles": ["User", "IntegrationAdministrator"], "active": "true"},
    )
    assert (saved.status_code, saved.headers["location"]) == (
        303,
        f"/ui/users/{user_id}?notice=user-saved",
    )
    read = (await client.get(f"/api/v1/users/{user_id}", headers=site.auth())).json()
    assert (read["name"], sorted(read["roles"]), read["active"]) == (
        "Ann Lee",
        ["IntegrationAdministrator", "User"],
        True,
    )
    # Unticking Active deactivates: the user's API token stops at once.
    await client.post(f"/ui/users/{user_id}", data={**form, "roles": ["User"]})
    assert (await client.get("/api/v1/tokens", headers=site.auth("User"))).status_code == 401

    no_roles = await client.post(f"/ui/users/{user_id}", data={**form, "active": "true"})
    assert no_roles.status_code == 422 and "Nothing was changed" in no_roles.text
    me = (await client.get("/api/v1/users", headers=site.auth())).json()["items"]
    my_id = next(u["id"] for u in me if u["loginName"] == admin_login)
    locked_out = await client.post(
        f"/ui/users/{my_id}", data={**form, "roles": ["SiteAdministrator"]}
    )
    assert locked_out.status_code == 409 and "another site administrator" in locked_out.text

    short = await client.post(
        f"/ui/users/{user_id}/password", data={"csrf_token": csrf, "new_password": "short"}
    )
    assert short.status_code == 422
    assert field_error(short.text, "new_password") == "A password needs at least 8 characters."
    reset = await client.post(
        f"/ui/users/{user_id}/password",
        data={"csrf_token": csrf, "new_password": "a reset password"},
    )
    assert reset.headers["location"] == f"/ui/users/{user_id}?notice=password-set"
    no_csrf = await client.post(f"/ui/users/{user_id}/password", data={"new_password": "x" * 9})
    assert no_csrf.status_code == 403
    assert (await client.get(f"/ui/users/{other_site.user_ids['User']}")).status_code == 404

    await sign_in(client, await make_user(ctx, site.site_id, "IntegrationAdministrator"))
    assert 'href="/ui/users"' not in (await client.get("/ui/")).text
    assert (await client.get("/ui/users")).status_code == 403
    assert (await client.get(f"/ui/users/{user_id}")).status_code == 403


async def test_site_administrators_create_users_who_can_then_sign_in(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    csrf = await sign_in(client, await make_user(ctx, site.site_id, "SiteAdministrator"))
    assert 'href="/ui/users/new"' in (await client.get("/ui/users")).text
    form = await client.get("/ui/users/new")
    assert form.status_code == 200 and 'action="/ui/users"' in form.text
    person = {
        "csrf_token": csrf,
        "accountType": "UserAccount",
        "loginName": "New.Person@Example.com",
        "name": "New Person",
        "roles": ["IntegrationAdministrator"],
        "password": "their first password",
    }
    created = await client.post("/ui/users", data=person)
    assert created.status_code == 303, created.text
    location = created.headers["location"]
    assert re.fullmatch(r"/ui/users/[0-9a-f-]{36}\?notice=user-created", location), location
    page = await client.get(location)
    assert "User created." in page.text and "new.person@example.com" in page.text
    users = (await client.get("/api/v1/users", headers=site.auth())).json()["items"]
    made = next(u for u in users if u["loginName"] == "new.person@example.com")
    assert (made["roles"], made["email"], made["accountType"]) == (
        ["IntegrationAdministrator"],
        "new.person@example.com",
        "UserAccount",
    )
    theirs = (await client.get("/api/v1/users", headers=other_site.auth())).json()["items"]
    assert made["id"] not in [u["id"] for u in theirs], "made in the administrator's own site"

    # Bad input: every problem named at its field; nothing made; the password not echoed.
    bad = await client.post(
        "/ui/users",
        data={**person, "loginName": "not an email", "roles": [], "password": "short"},
    )
    assert bad.status_code == 422
    assert field_error(bad.text, "loginName").startswith("Must be an email address")
    assert field_error(bad.text, "password") == "A password needs at least 8 characters."
    assert field_error(bad.text, "roles")
    assert 'value="not an email"' in bad.text and "short" not in bad.text.split("<form", 1)[1]
    again = await client.post("/ui/users", data=person)
    assert again.status_code == 409
    assert "This login name is not available: choose another." in again.text
    robot = await client.post(
        "/ui/users",
        data={**person, "accountType": "ServicePrincipal", "loginName": "robot@example.com"},
    )
    assert robot.status_code == 422 and field_error(robot.text, "clientName")
    after = (await client.get("/api/v1/users", headers=site.auth())).json()["items"]
    assert len(after) == len(users), "nothing made by the refused forms"
    no_csrf = await client.post(
        "/ui/users", data={k: v for k, v in person.items() if k != "csrf_token"}
    )
    assert no_csrf.status_code == 403

    # The new person signs in with the password they were given.
    await sign_in(client, "new.person@example.com", "their first password")
    assert (await client.get("/ui/")).status_code == 200
    # Not a site administrator: no users pages, no creating.
    assert (await client.get("/ui/users/new")).status_code == 403


# --- isolation: health at a glance, the concurrency limit -------------------------------------


async def test_an_open_breaker_is_obvious_in_the_list_and_on_the_page(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    broken = await api_hook(client, site, url="https://down.example/hook")
    healthy = await api_hook(client, site, name="Healthy", url="https://up.example/hook")
    start = ctx.now().replace(microsecond=0)
    probe_at = start + timedelta(seconds=25)
    async with ctx.db.transaction() as conn:
        await conn.execute(
            destinations.insert().values(
                origin=state_key(site.site_id, "https://down.example:443"),
                state="open",
                failures=6,
                since=start,
                next_probe_at=probe_at,
                concurrency=1,
                updated_at=start,
            )
        )
    await queue_event(ctx, site.site_id, now=start)
    await admin(ctx, client, site)

    listing = await client.get("/ui/")
    assert listing.status_code == 200
    rows = {
        name: row
        for row in listing.text.split("<tr>")[2:]
        for name in ("Orders", "Healthy")
        if f">{name}</a>" in row
    }
    assert 'class="badge breaker-open">breaker open</span>' in rows["Orders"]
    assert f"next probe {probe_at:%Y-%m-%d %H:%M:%S} UTC" in rows["Orders"]
    assert "0/1 in flight · 1 due" in rows["Orders"], "the destination's limit on open is 1"
    assert "breaker" not in rows["Healthy"]
    assert "0/10 in flight · 1 due" in rows["Healthy"]

    page = await client.get(f"/ui/webhooks/{broken['id']}")
    assert page.status_code == 200
    assert "Delivery health" in page.text and "breaker open" in page.text
    assert "https://down.example:443 failed 6 times in a row" in page.text
    assert "spending no retries" in page.text
    assert "the destination's limit; the webhook allows 10" in page.text
    calm = await client.get(f"/ui/webhooks/{healthy['id']}")
    assert "Delivery health" in calm.text and "breaker open" not in calm.text
    assert "<dt>Circuit breaker</dt><dd>closed</dd>" in calm.text


async def test_max_concurrency_in_the_webhook_form(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    csrf = await admin(ctx, client, site)
    new = await client.get("/ui/webhooks/new")
    assert 'id="maxConcurrency"' in new.text and "1 to 100." in new.text
    created = await client.post("/ui/webhooks", data={**FORM, "csrf_token": csrf})
    assert created.status_code == 200
    listed = (await client.get("/api/v1/webhooks", headers=site.auth())).json()["items"]
    assert listed[0]["maxConcurrency"] == 10, "empty means the default"
    base = f"/ui/webhooks/{listed[0]['id']}"

    saved = await client.post(
        f"{base}/edit", data={**FORM, "csrf_token": csrf, "maxConcurrency": "25"}
    )
    assert saved.status_code == 303
    assert (await api_read(client, site, listed[0]["id"])).json()["maxConcurrency"] == 25
    edit = (await client.get(f"{base}/edit")).text
    assert re.search(r'name="maxConcurrency" type="number" min="1" max="100"[^>]* value="25"', edit)
    assert "<dt>Concurrent calls at most</dt><dd>25</dd>" in (await client.get(base)).text

    for typed, problem in (
        ("0", "must be a whole number from 1 to 100"),
        ("101", "must be a whole number from 1 to 100"),
        ("many", "must be a whole number"),
    ):
        refused = await client.post(
            f"{base}/edit", data={**FORM, "csrf_token": csrf, "maxConcurrency": typed}
        )
        assert refused.status_code == 422, typed
        assert field_error(refused.text, "maxConcurrency") == problem
    kept = await client.post(f"{base}/edit", data={**FORM, "csrf_token": csrf, "name": "Again"})
    assert kept.status_code == 303
    assert (await api_read(client, site, listed[0]["id"])).json()["maxConcurrency"] == 25


async def test_an_address_no_ui_page_answers_is_a_ui_page_not_json(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    await sign_in(client, await make_user(ctx, site.site_id, "SiteAdministrator"))
    missing = await client.get("/ui/nope")
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("text/html")
    assert "There is no page at this address." in missing.text and "Sign out" in missing.text
    assert "frame-ancestors 'none'" in missing.headers["content-security-policy"]
    # A form's target, opened as a page (the account page holds the form).
    form_only = await client.get("/ui/account/password")
    assert form_only.status_code == 405
    assert "it only takes a form" in form_only.text
    # The API and the UI's files keep their own answers.
    api = await client.get("/api/v1/nope", headers=site.auth())
    assert api.status_code == 404 and api.json()["error"]["code"] == "not_found"
    asset = await client.get("/ui/static/nope.js")
    assert asset.status_code == 404 and not asset.headers["content-type"].startswith("text/html")


# --- operational webhooks ----------------------------------------------------------------


async def test_the_form_offers_operational_events_to_site_administrators_only(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    operational = {**FORM, "name": "Ops", "eventType": "WebhookSuspended"}
    integration = await make_user(ctx, site.site_id, "IntegrationAdministrator")
    csrf = await sign_in(client, integration)
    form = (await client.get("/ui/webhooks/new")).text
    for event_type in ("WebhookSuspended", "DestinationBreakerClosed"):
        assert f"<option>{event_type}</option>" in form, event_type
    assert '<optgroup label="Operational events (site administrators only)">' in form
    refused = await client.post("/ui/webhooks", data={**operational, "csrf_token": csrf})
    assert refused.status_code == 403
    assert "SiteAdministrators only" in field_error(refused.text, "eventType")
    assert (await client.get("/api/v1/webhooks", headers=site.auth())).json()["items"] == []

    csrf = await admin(ctx, client, site)
    created = await client.post("/ui/webhooks", data={**operational, "csrf_token": csrf})
    assert created.status_code == 200, created.text  # the secret's page
    (hook,) = (await client.get("/api/v1/webhooks", headers=site.auth())).json()["items"]
    assert (hook["eventType"], hook["requestVerb"]) == ("WebhookSuspended", "POST")

    csrf = await sign_in(client, integration)
    edited = await client.post(
        f"/ui/webhooks/{hook['id']}/edit",
        data={**operational, "name": "Renamed", "csrf_token": csrf},
    )
    assert edited.status_code == 403
    assert "SiteAdministrators only" in field_error(edited.text, "eventType")
    assert (await api_read(client, site, hook["id"])).json()["name"] == "Ops"


async def test_the_webhook_list_answers_where_a_person_would_type_it(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    await admin(ctx, client, site)
    await api_hook(client, site, name="Typed address")
    for path in ("/ui/webhooks", "/ui/"):
        page = await client.get(path)
        assert page.status_code == 200, (path, page.status_code)
        assert "Typed address" in page.text
    # A trailing slash a person adds still leads to the page.
    slashed = await client.get("/ui/dashboard/")
    assert slashed.status_code in (303, 307) and slashed.headers["location"].endswith(
        "/ui/dashboard"
    )
