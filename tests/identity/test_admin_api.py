"""Users and API tokens over the API: a site administrator manages their own site's users;
everyone manages their own tokens; another site's are not found."""

from __future__ import annotations

import httpx
from tests.support import SiteUsers

API = "/api/v1"


async def test_a_site_administrator_creates_users_of_their_own_site(
    client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    body = {
        "loginName": "Robot@Example.com",
        "name": "Archive robot",
        "roles": ["User"],
        "password": "long enough password",
        "accountType": "ServicePrincipal",
        "clientName": "archive",
    }
    created = await client.post(f"{API}/users", json=body, headers=site.auth())
    assert created.status_code == 201, created.text
    user = created.json()
    assert user["loginName"] == "robot@example.com" and user["accountType"] == "ServicePrincipal"
    assert "password" not in created.text and "long enough" not in created.text
    listed = (await client.get(f"{API}/users", headers=site.auth())).json()["items"]
    assert user["id"] in [u["id"] for u in listed]
    elsewhere = (await client.get(f"{API}/users", headers=other_site.auth())).json()["items"]
    assert user["id"] not in [u["id"] for u in elsewhere]
    # The service principal logs in as the source platform's receivers do.
    login = {"clientName": "archive", "principalName": "robot@example.com"}
    token = await client.post(
        f"{API}/auth/service-principal-login", json={**login, "password": "long enough password"}
    )
    assert token.status_code == 201
    again = await client.post(f"{API}/users", json=body, headers=site.auth())
    assert again.status_code == 409
    for role in ("IntegrationAdministrator", "User"):
        refused = await client.post(
            f"{API}/users",
            json={**body, "loginName": f"x-{role}@example.com"},
            headers=site.auth(role),
        )
        assert refused.status_code == 403
    bad = await client.post(f"{API}/users", json={**body, "roles": ["Owner"]}, headers=site.auth())
    assert bad.status_code == 422


async def test_tokens_are_shown_once_listed_without_secrets_and_revoked(
    client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    me = site.auth("User")
    made = await client.post(f"{API}/tokens", json={"name": "ci", "expiresInDays": 30}, headers=me)
    assert made.status_code == 201
    new = made.json()
    fresh = {"Authorization": f"Bearer {new['token']}"}
    assert (await client.get(f"{API}/tokens", headers=fresh)).status_code == 200
    listed = (await client.get(f"{API}/tokens", headers=me)).json()
    assert new["id"] in [t["id"] for t in listed] and new["token"] not in str(listed)
    assert all("token" not in t for t in listed)
    # Nobody else's business: another site's administrator, or another user of the site.
    foreign = await client.delete(f"{API}/tokens/{new['id']}", headers=other_site.auth())
    assert foreign.status_code == 404
    peer = await client.delete(
        f"{API}/tokens/{new['id']}", headers=site.auth("IntegrationAdministrator")
    )
    assert peer.status_code == 404
    revoked = await client.delete(f"{API}/tokens/{new['id']}", headers=me)
    assert revoked.status_code == 204
    # Revoked at once in this process, cache or not.
    assert (await client.get(f"{API}/tokens", headers=fresh)).status_code == 401
    assert (await client.delete(f"{API}/tokens/{new['id']}", headers=me)).status_code == 404


async def test_a_site_administrator_revokes_any_token_of_the_site(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    user_tokens = (await client.get(f"{API}/tokens", headers=site.auth("User"))).json()
    (token,) = user_tokens
    revoked = await client.delete(f"{API}/tokens/{token['id']}", headers=site.auth())
    assert revoked.status_code == 204
    assert (await client.get(f"{API}/tokens", headers=site.auth("User"))).status_code == 401
    log = await client.get(f"{API}/audit", params={"objectId": token["id"]}, headers=site.auth())
    assert [e["action"] for e in log.json()] == ["token.revoked"]
