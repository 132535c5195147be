"""What every page shares, over HTTP: the header's links follow the roles, and lists show the
part of an id that tells it apart (UUIDv7 ids made together share their first characters)."""

from __future__ import annotations

import httpx
from tests.support import SiteUsers
from tests.ui.test_ui_routes import api_hook
from tests.ui.ui_support import make_user, sign_in

from docuhooks.context import AppContext


async def test_lists_show_the_end_of_long_ids(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook = await api_hook(client, site)
    for _ in range(2):
        sent = await client.post(f"/api/v1/webhooks/{hook['id']}/test", headers=site.auth())
        assert sent.status_code in (200, 202), sent.text
    events = (await client.get("/api/v1/events", headers=site.auth())).json()["items"]
    first, second = (event["id"] for event in events[:2])
    assert first[-12:] != second[-12:]

    await sign_in(client, await make_user(ctx, site.site_id, "IntegrationAdministrator"))
    for path in ("/ui/events", f"/ui/webhooks/{hook['id']}"):
        page = (await client.get(path)).text
        for event_id in (first, second):
            assert f'title="{event_id}"' in page, path
            assert f'<span aria-hidden="true">…{event_id[-12:]}</span>' in page, path
            assert f">{event_id[:8]}<" not in page, path


async def test_the_header_links_follow_the_roles(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    site_only = ('href="/ui/templates"', 'href="/ui/workgroups"', 'href="/ui/users"')
    await sign_in(client, await make_user(ctx, site.site_id, "SiteAdministrator"))
    header = (await client.get("/ui/")).text.split("</header>")[0]
    assert all(link in header for link in site_only)
    assert '<nav aria-label="Main">' in header

    await sign_in(client, await make_user(ctx, site.site_id, "IntegrationAdministrator"))
    header = (await client.get("/ui/")).text.split("</header>")[0]
    assert not any(link in header for link in site_only)
    assert 'href="/ui/events"' in header and "Sign out" in header

    # A User is shown no link to a page that would only answer 403.
    await sign_in(client, await make_user(ctx, site.site_id, "User"))
    header = (await client.get("/ui/account")).text.split("</header>")[0]
    assert not any(link in header for link in (*site_only, 'href="/ui/events"'))
    assert '<li><a href="/ui/">Webhooks</a></li>' not in header and "Sign out" in header
