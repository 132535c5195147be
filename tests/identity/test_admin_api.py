"""Users and API tokens over the API: a site administrator manages their own site's users;
everyone manages their own tokens; another site's are not found."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from tests.support import SiteUsers

from docuhooks import cli
from docuhooks.context import AppContext
from docuhooks.identity import service as identity
from docuhooks.identity.throttle import LoginThrottle
from docuhooks.store.database import Database
from docuhooks.store.schema import audit_log, ui_sessions
from docuhooks.ui import session as sessions

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
    # Taken here or on another site: the same words, naming no site, so an administrator learns
    # nothing about another site's users beyond the name being unavailable.
    elsewhere_too = await client.post(
        f"{API}/users", json={**body, "loginName": "ROBOT@example.com"}, headers=other_site.auth()
    )
    assert elsewhere_too.status_code == 409
    for refusal in (again.json()["error"], elsewhere_too.json()["error"]):
        assert refusal["message"] == "this login name is not available: choose another"
        assert refusal["details"] == [{"field": "loginName", "message": "is not available"}]
        assert site.site_id not in str(refusal) and other_site.site_id not in str(refusal)
        assert "exist" not in str(refusal) and "site" not in str(refusal)
    for role in ("IntegrationAdministrator", "User"):
        refused = await client.post(
            f"{API}/users",
            json={**body, "loginName": f"x-{role}@example.com"},
            headers=site.auth(role),
        )
        assert refused.status_code == 403
    bad = await client.post(f"{API}/users", json={**body, "roles": ["Owner"]}, headers=site.auth())
    assert bad.status_code == 422
    # Lookalikes of a taken name: an invisible character, a dotless i, a Cyrillic a.
    for lookalike in (
        "robot@example.com\u200b",
        "r\u200bobot@example.com",
        "robot@ex\u0430mple.com",
        "rob\u0131t@example.com",
    ):
        refused = await client.post(
            f"{API}/users", json={**body, "loginName": lookalike}, headers=other_site.auth()
        )
        assert refused.status_code == 422, (lookalike, refused.text)
        assert "ASCII" in refused.json()["error"]["details"][0]["message"]


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


async def test_every_caller_reads_their_own_account(
    client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    for role in ("User", "IntegrationAdministrator", "SiteAdministrator"):
        me = await client.get(f"{API}/users/me", headers=site.auth(role))
        assert me.status_code == 200, me.text
        body = me.json()
        assert body["id"] == site.user_ids[role] and body["loginName"] == site.logins[role]
        assert body["roles"] == [role] and body["active"] is True
        assert body["site"]["id"] == site.site_id and body["site"]["name"].startswith("Acme")
        assert not any("password" in key.lower() for key in body)
        assert "correct horse" not in me.text and "argon2" not in me.text
    theirs = (await client.get(f"{API}/users/me", headers=other_site.auth("User"))).json()
    assert theirs["id"] == other_site.user_ids["User"]
    assert theirs["site"]["id"] == other_site.site_id
    assert (await client.get(f"{API}/users/me")).status_code == 401
    # Another user's record stays the site administrator's business.
    peer = await client.get(f"{API}/users/{site.user_ids['User']}", headers=site.auth("User"))
    assert peer.status_code == 403


# --- passwords ---------------------------------------------------------------------------------

ADMIN_PASSWORD = "correct horse battery"


async def _sign_in(client: httpx.AsyncClient, login: str, password: str) -> int:
    body = {"loginName": login, "password": password}
    return (await client.post(f"{API}/auth/tokens", json=body)).status_code


async def _audit_actions(ctx: AppContext, user_id: str) -> list[str]:
    async with ctx.db.read() as conn:
        rows = await conn.execute(
            sa.select(audit_log.c.action).where(audit_log.c.object_id == user_id)
        )
        return list(rows.scalars())


async def test_a_user_changes_their_own_password_given_the_current_one(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    login, me = site.login("SiteAdministrator"), site.auth()
    url = f"{API}/users/me/password"
    wrong = await client.put(
        url, json={"currentPassword": "not it", "newPassword": "a new long password"}, headers=me
    )
    assert wrong.status_code == 422
    assert wrong.json()["error"]["details"][0]["field"] == "currentPassword"
    short = await client.put(
        url, json={"currentPassword": ADMIN_PASSWORD, "newPassword": "short"}, headers=me
    )
    assert short.status_code == 422
    assert "newPassword" in short.text
    assert await _sign_in(client, login, ADMIN_PASSWORD) == 201, "nothing changed yet"

    changed = await client.put(
        url,
        json={"currentPassword": ADMIN_PASSWORD, "newPassword": "a new long password"},
        headers=me,
    )
    assert changed.status_code == 204, changed.text
    assert await _sign_in(client, login, ADMIN_PASSWORD) == 401
    assert await _sign_in(client, login, "a new long password") == 201
    assert (await client.get(f"{API}/tokens", headers=me)).status_code == 200, "tokens stay"
    assert "user.password_changed" in await _audit_actions(ctx, site.user_ids["SiteAdministrator"])
    assert (await client.put(url, json={"newPassword": "x" * 10}, headers=me)).status_code == 422
    assert (await client.put(url, json={})).status_code == 401


async def test_wrong_current_passwords_count_towards_the_sign_in_throttle(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """A stolen API token cannot be used to guess the account's password."""
    ctx.login_throttle = LoginThrottle(max_failures=2, window_seconds=600)
    body = {"currentPassword": "a guess", "newPassword": "a new long password"}
    statuses = [
        (await client.put(f"{API}/users/me/password", json=body, headers=site.auth())).status_code
        for _ in range(3)
    ]
    assert statuses == [422, 422, 429]
    assert await _sign_in(client, site.login("SiteAdministrator"), ADMIN_PASSWORD) == 429


async def test_a_site_administrator_sets_a_password_of_their_own_sites_users(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    user_id, login = site.user_ids["User"], site.login("User")
    url = f"{API}/users/{user_id}/password"
    async with ctx.db.transaction() as conn:
        who = await identity.login(conn, site.login("SiteAdministrator"), ADMIN_PASSWORD)
        assert who is not None
        # The user has an admin UI session open somewhere: a reset ends it.
        user = dataclasses.replace(who, user_id=user_id, login_name=login)
        await sessions.start(conn, user, ctx.now())
    assert await _sign_in(client, login, "a password set by the admin") == 401

    for role in ("IntegrationAdministrator", "User"):
        refused = await client.put(
            url, json={"newPassword": "a password set by them"}, headers=site.auth(role)
        )
        assert refused.status_code == 403
    elsewhere = await client.put(
        url, json={"newPassword": "a password set elsewhere"}, headers=other_site.auth()
    )
    assert elsewhere.status_code == 404
    missing = await client.put(
        f"{API}/users/not-an-id/password", json={"newPassword": "long enough"}, headers=site.auth()
    )
    assert missing.status_code == 404

    done = await client.put(
        url, json={"newPassword": "a password set by the admin"}, headers=site.auth()
    )
    assert done.status_code == 204, done.text
    assert await _sign_in(client, login, "a password set by the admin") == 201
    async with ctx.db.read() as conn:
        left = await conn.execute(sa.select(ui_sessions).where(ui_sessions.c.user_id == user_id))
        assert left.all() == [], "the user's admin UI sessions ended"
    assert "user.password_set" in await _audit_actions(ctx, user_id)


def test_the_operator_sets_a_password_from_the_command_line(tmp_path: Path) -> None:
    env = {
        "DOCUHOOKS_DATA_DIR": str(tmp_path),
        "DOCUHOOKS_SECRET_KEY": "cli-test-key-0123456789abcdef",
    }
    runner = CliRunner()

    def run(*args: str, input: str | None = None) -> str:
        result = runner.invoke(cli.main, list(args), env=env, input=input)
        assert result.exit_code == 0, result.output
        return result.output.strip().splitlines()[-1]

    run("db", "upgrade")  # admin commands never create an installation
    site_id = run("admin", "create-site", "Acme", "--base-url", "https://acme.example")
    user_id = run(
        "admin", "create-user", "--site", site_id, "--login", "ann@example.com",
        "--name", "Ann", "--role", "User", "--password", "the first password",
    )  # fmt: skip
    other_site = run("admin", "create-site", "Other", "--base-url", "https://other.example")
    taken = runner.invoke(
        cli.main,
        ["admin", "create-user", "--site", other_site, "--login", "ANN@example.com",
         "--name", "Ann", "--role", "User"],
        env=env,
    )  # fmt: skip
    assert taken.exit_code != 0 and "this login name is not available" in taken.output
    assert site_id not in taken.output and "exist" not in taken.output
    assert run("admin", "set-password", "--login", "Ann@Example.com", "--password", "x" * 12) == (
        user_id
    )
    # Asked for, unseen and twice, when not on the command line.
    assert (
        run(
            "admin",
            "set-password",
            "--login",
            "ann@example.com",
            input="y" * 12 + "\n" + "y" * 12 + "\n",
        )
        == user_id
    )
    refused = runner.invoke(
        cli.main,
        ["admin", "set-password", "--login", "ann@example.com", "--password", "short"],
        env=env,
    )
    assert refused.exit_code != 0 and "at least 8 characters" in refused.output
    unknown = runner.invoke(
        cli.main,
        ["admin", "set-password", "--login", "bob@example.com", "--password", "long enough"],
        env=env,
    )
    assert unknown.exit_code != 0 and "no user has the login name" in unknown.output

    async def signs_in(password: str) -> bool:
        db = Database.from_url(f"sqlite:///{tmp_path / 'docuhooks.db'}")
        try:
            async with db.read() as conn:
                return await identity.login(conn, "ann@example.com", password) is not None
        finally:
            await db.dispose()

    assert asyncio.run(signs_in("y" * 12))
    assert not asyncio.run(signs_in("the first password"))


async def test_a_service_principal_needs_its_client_name(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """It signs in with its client's name; made without one, it could never sign in."""
    body = {
        "loginName": "nameless-robot@example.com",
        "name": "Robot",
        "roles": ["User"],
        "password": "long enough password",
        "accountType": "ServicePrincipal",
    }
    for missing in ({}, {"clientName": "  "}):
        refused = await client.post(f"{API}/users", json={**body, **missing}, headers=site.auth())
        assert refused.status_code == 422, refused.text
        assert "clientName" in refused.text
    made = await client.post(
        f"{API}/users", json={**body, "clientName": " archive "}, headers=site.auth()
    )
    assert made.status_code == 201 and made.json()["clientName"] == "archive"


# --- changing users ----------------------------------------------------------------------------


async def test_new_roles_and_deactivation_hold_at_once_for_cached_tokens(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    user_id, theirs = site.user_ids["User"], site.auth("User")
    assert (await client.get(f"{API}/webhooks", headers=theirs)).status_code == 403  # cached now
    url = f"{API}/users/{user_id}"
    promoted = await client.patch(
        url, json={"roles": ["IntegrationAdministrator"]}, headers=site.auth()
    )
    assert promoted.status_code == 200, promoted.text
    assert promoted.json()["roles"] == ["IntegrationAdministrator"]
    assert (await client.get(f"{API}/webhooks", headers=theirs)).status_code == 200

    off = await client.patch(url, json={"active": False}, headers=site.auth())
    assert off.status_code == 200 and off.json()["active"] is False
    assert (await client.get(f"{API}/tokens", headers=theirs)).status_code == 401
    back = await client.patch(url, json={"active": True}, headers=site.auth())
    assert back.json()["active"] is True
    assert (await client.get(f"{API}/tokens", headers=theirs)).status_code == 200
    assert (await client.get(url, headers=site.auth())).json()["roles"] == [
        "IntegrationAdministrator"
    ]
    assert (await _audit_actions(ctx, user_id)).count("user.updated") == 3


async def test_cached_tokens_are_dropped_only_once_the_change_has_committed(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Dropped while the change is still uncommitted, a request in between would read the old
    roles and cache them again for the whole TTL: the cache must be told after the commit."""
    open_writes = 0
    transaction = ctx.db.transaction

    @contextlib.asynccontextmanager
    async def counted(**kwargs: Any) -> AsyncIterator[Any]:
        nonlocal open_writes
        open_writes += 1
        try:
            async with transaction(**kwargs) as conn:
                yield conn
        finally:  # after the commit (or the rollback)
            open_writes -= 1

    forgotten_while_open: list[int] = []
    forget = ctx.tokens.forget

    def forget_and_note(token_hash: str) -> None:
        forgotten_while_open.append(open_writes)
        forget(token_hash)

    monkeypatch.setattr(ctx.db, "transaction", counted)
    monkeypatch.setattr(ctx.tokens, "forget", forget_and_note)
    user_id, theirs = site.user_ids["User"], site.auth("User")
    changed = await client.patch(
        f"{API}/users/{user_id}", json={"roles": ["IntegrationAdministrator"]}, headers=site.auth()
    )
    assert changed.status_code == 200, changed.text
    token = await client.post(f"{API}/tokens", json={"name": "short-lived"}, headers=theirs)
    assert token.status_code == 201, token.text
    revoked = await client.delete(f"{API}/tokens/{token.json()['id']}", headers=theirs)
    assert revoked.status_code == 204
    assert len(forgotten_while_open) == 2 and set(forgotten_while_open) == {0}


async def test_changing_users_is_for_their_sites_administrators_and_checked(
    client: httpx.AsyncClient, site: SiteUsers, other_site: SiteUsers
) -> None:
    user_id = site.user_ids["User"]
    url = f"{API}/users/{user_id}"
    renamed = await client.patch(
        url, json={"name": "Ann Lee", "email": "ann.lee@example.com"}, headers=site.auth()
    )
    assert renamed.status_code == 200
    assert (renamed.json()["name"], renamed.json()["email"]) == ("Ann Lee", "ann.lee@example.com")
    for role in ("IntegrationAdministrator", "User"):
        refused = await client.patch(url, json={"name": "X"}, headers=site.auth(role))
        assert refused.status_code == 403
        assert (await client.get(url, headers=site.auth(role))).status_code == 403
    assert (
        await client.patch(url, json={"name": "X"}, headers=other_site.auth())
    ).status_code == 404
    assert (await client.get(url, headers=other_site.auth())).status_code == 404
    bad: dict[str, Any]
    for bad in ({"roles": []}, {"roles": ["Owner"]}, {"email": "not an email"}, {"name": ""}):
        assert (await client.patch(url, json=bad, headers=site.auth())).status_code == 422, bad
    assert (
        await client.patch(url, json={"loginName": "x@example.com"}, headers=site.auth())
    ).status_code == 422
    assert (await client.get(url, headers=site.auth())).json()["name"] == "Ann Lee"


async def test_administrators_cannot_lock_themselves_out(
    client: httpx.AsyncClient, site: SiteUsers
) -> None:
    me = f"{API}/users/{site.user_ids['SiteAdministrator']}"
    for change in ({"active": False}, {"roles": ["IntegrationAdministrator"]}):
        refused = await client.patch(me, json=change, headers=site.auth())
        assert refused.status_code == 409, change
        assert "another site administrator" in refused.json()["error"]["message"]
    kept = await client.patch(
        me, json={"roles": ["SiteAdministrator", "User"], "name": "Boss"}, headers=site.auth()
    )
    assert kept.status_code == 200
    assert (await client.get(f"{API}/users", headers=site.auth())).status_code == 200
