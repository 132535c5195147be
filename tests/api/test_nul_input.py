"""A NUL character anywhere in a request body is the sender's error (422 naming the field),
never a database error: PostgreSQL's text columns refuse NUL, so it must be stopped before a
query carries it (schemathesis found it in a login name, a client name, a work group name)."""

from __future__ import annotations

import httpx
from tests.support import SiteUsers

from docuhooks.context import AppContext


async def test_a_nul_in_a_login_is_a_422_naming_the_field(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    login = {"loginName": site.login("SiteAdministrator") + "\x00", "password": "x"}
    answer = await client.post("/api/v1/auth/tokens", json=login)
    assert answer.status_code == 422, answer.text
    (detail,) = answer.json()["error"]["details"]
    assert "loginName" in detail["field"] and "NUL" in detail["message"]


async def test_a_nul_in_a_name_is_a_422_and_nothing_is_made(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    answer = await client.post(
        "/api/v1/workgroups", json={"name": "Leases\x00"}, headers=site.auth()
    )
    assert answer.status_code == 422, answer.text
    listed = await client.get("/api/v1/workgroups", headers=site.auth())
    assert all("Leases" not in group["name"] for group in listed.json()["items"])
