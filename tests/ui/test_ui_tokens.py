"""API tokens in the admin UI over HTTP, on both stores: every signed-in person makes, lists
and revokes their own tokens; the token is shown once; nobody reaches another user's token
or another site's (the API's own rule: a SiteAdministrator may revoke their site's)."""

from __future__ import annotations

import re

import httpx
import sqlalchemy as sa
from tests.support import SiteUsers
from tests.ui.ui_support import field_error, make_user, sign_in

from docuhooks.context import AppContext
from docuhooks.store.schema import api_tokens

TOKEN = re.compile(r'id="new-token" class="secret" type="text" readonly value="(dht_[^"]+)"')


async def _count(ctx: AppContext) -> int:
    async with ctx.db.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(api_tokens)) or 0)


async def _api_tokens(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get("/api/v1/tokens", headers={"Authorization": f"Bearer {token}"})


async def test_a_person_makes_a_token_seen_once_and_revokes_it(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    login = await make_user(ctx, site.site_id, "User")
    csrf = await sign_in(client, login)
    page = await client.get("/ui/tokens")
    assert page.status_code == 200 and "You have no API tokens." in page.text
    assert '<a href="/ui/tokens">Tokens</a>' in page.text  # in the navigation

    made = await client.post(
        "/ui/tokens", data={"csrf_token": csrf, "name": "CI deploy", "expires_in_days": "30"}
    )
    assert made.status_code == 200
    assert "Copy this token now: it will not be shown again." in made.text
    found = TOKEN.search(made.text)
    assert found is not None
    token = found.group(1)
    assert made.headers["cache-control"] == "no-store"
    # It works, as its maker, and the API lists it with its prefix and expiry.
    me = await client.get("/api/v1/users/me", headers={"Authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["loginName"] == login
    (listed,) = (await _api_tokens(client, token)).json()
    assert listed["name"] == "CI deploy" and token.startswith(listed["prefix"])
    assert len(listed["prefix"]) == len("dht_") + 6 and listed["expiresDate"] is not None

    # Never shown again: the list has the name and prefix only.
    again = await client.get("/ui/tokens")
    assert token not in again.text
    assert "CI deploy" in again.text and f"<code>{listed['prefix']}…</code>" in again.text

    confirm = await client.get(f"/ui/tokens/{listed['id']}/revoke")
    assert confirm.status_code == 200 and "Revoke token CI deploy?" in confirm.text
    revoked = await client.post(f"/ui/tokens/{listed['id']}/revoke", data={"csrf_token": csrf})
    assert revoked.status_code == 303
    assert revoked.headers["location"] == "/ui/tokens?notice=token-revoked"
    assert "Token revoked" in (await client.get(revoked.headers["location"])).text
    assert (await _api_tokens(client, token)).status_code == 401


async def test_a_token_that_never_expires(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    csrf = await sign_in(client, await make_user(ctx, site.site_id, "IntegrationAdministrator"))
    made = await client.post(
        "/ui/tokens", data={"csrf_token": csrf, "name": "Archive", "expires_in_days": ""}
    )
    assert made.status_code == 200 and "It works until you revoke it." in made.text
    found = TOKEN.search(made.text)
    assert found is not None
    (listed,) = (await _api_tokens(client, found.group(1))).json()
    assert listed["expiresDate"] is None


async def test_bad_input_is_shown_at_its_field_and_makes_nothing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    csrf = await sign_in(client, await make_user(ctx, site.site_id, "User"))
    before = await _count(ctx)
    for data, field in [
        ({"name": "  ", "expires_in_days": "30"}, "name"),
        ({"name": "x" * 201, "expires_in_days": "30"}, "name"),
        ({"name": "ok", "expires_in_days": "0"}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": "3651"}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": "soon"}, "expires_in_days"),
        ({"name": "ok", "expires_in_days": "²"}, "expires_in_days"),
    ]:
        answer = await client.post("/ui/tokens", data={"csrf_token": csrf, **data})
        assert answer.status_code == 422, data
        assert field_error(answer.text, field), data
        assert "The token was not created." in answer.text
        assert TOKEN.search(answer.text) is None
    forged = await client.post("/ui/tokens", data={"name": "forged", "expires_in_days": "7"})
    assert forged.status_code == 403
    assert await _count(ctx) == before


async def test_nobody_reaches_another_users_or_another_sites_token(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    (peers,) = (await _api_tokens(client, site.tokens["IntegrationAdministrator"])).json()
    (foreign,) = (await _api_tokens(client, other_site.tokens["SiteAdministrator"])).json()
    csrf = await sign_in(client, await make_user(ctx, site.site_id, "User"))
    listed = await client.get("/ui/tokens")
    assert peers["id"] not in listed.text and foreign["id"] not in listed.text
    for token_id in (peers["id"], foreign["id"], "not-a-token-id"):
        assert (await client.get(f"/ui/tokens/{token_id}/revoke")).status_code == 404
        revoke = await client.post(f"/ui/tokens/{token_id}/revoke", data={"csrf_token": csrf})
        assert revoke.status_code == 404
    assert (await _api_tokens(client, site.tokens["IntegrationAdministrator"])).status_code == 200

    # A site administrator may revoke their own site's tokens, as over the API, and still
    # not another site's.
    csrf = await sign_in(client, await make_user(ctx, site.site_id, "SiteAdministrator"))
    foreign_revoke = await client.post(
        f"/ui/tokens/{foreign['id']}/revoke", data={"csrf_token": csrf}
    )
    assert foreign_revoke.status_code == 404
    assert (await _api_tokens(client, other_site.tokens["SiteAdministrator"])).status_code == 200
    confirm = await client.get(f"/ui/tokens/{peers['id']}/revoke")
    assert confirm.status_code == 200
    done = await client.post(f"/ui/tokens/{peers['id']}/revoke", data={"csrf_token": csrf})
    assert done.status_code == 303
    assert (await _api_tokens(client, site.tokens["IntegrationAdministrator"])).status_code == 401


async def test_tokens_made_before_prefixes_were_kept(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    login = site.login("SiteAdministrator")
    async with ctx.db.transaction() as conn:
        await conn.execute(sa.update(api_tokens).values(prefix=None))
    await sign_in(client, login, "correct horse battery")
    page = await client.get("/ui/tokens")
    assert page.status_code == 200 and "not kept" in page.text
    (listed,) = (await _api_tokens(client, site.tokens["SiteAdministrator"])).json()
    assert listed["prefix"] is None
