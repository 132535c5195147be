"""API tokens are cached per process (`identity.service.TokenCache`): a token ended in the
store stops working within the TTL, an expired one at once, and a new one on first use.
Both ways a route authenticates are covered: in the request's transaction (`Caller`, the
webhook list) and outside any (`StandaloneCaller`, the interview routes)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock
from docuhooks.identity import secrets
from docuhooks.identity import service as identity
from docuhooks.identity.models import Principal, Role
from docuhooks.store.schema import api_tokens, users

#: A route authenticating in the request's transaction, and one outside it. A missing
#: interview is a 404 for a valid token, so 404 means "authenticated".
ROUTES = {
    "in transaction": ("/api/v1/webhooks", 200),
    "outside": (f"/api/v1/interviews/{uuid.uuid4()}", 404),
}


def Clocks() -> FakeClock:
    return FakeClock(datetime.now(UTC))


def cached(ctx: AppContext) -> FakeClock:
    """The app's clock, which the token cache and token expiry read, made a fake one."""
    clocks = Clocks()
    ctx.clock = clocks
    ctx.tokens = identity.TokenCache(ttl_seconds=30.0, clock=clocks)
    return clocks


async def status(client: httpx.AsyncClient, route: str, token: str) -> int:
    path, _ = ROUTES[route]
    response = await client.get(path, headers={"Authorization": f"Bearer {token}"})
    return response.status_code


@pytest.mark.parametrize("route", ROUTES)
async def test_a_deleted_token_stops_working_within_the_ttl(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, route: str
) -> None:
    clocks = cached(ctx)
    token = site.tokens["SiteAdministrator"]
    ok = ROUTES[route][1]
    assert await status(client, route, token) == ok
    async with ctx.db.transaction() as conn:
        await conn.execute(
            api_tokens.delete().where(api_tokens.c.token_hash == secrets.hash_token(token))
        )
    clocks.advance(29.0)
    assert await status(client, route, token) == ok  # the documented bound, not sooner
    clocks.advance(1.0)
    assert await status(client, route, token) == 401


@pytest.mark.parametrize("route", ROUTES)
async def test_a_deactivated_user_stops_within_the_ttl(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, route: str
) -> None:
    clocks = cached(ctx)
    token = site.tokens["SiteAdministrator"]
    assert await status(client, route, token) == ROUTES[route][1]
    async with ctx.db.transaction() as conn:
        await conn.execute(
            users.update()
            .where(users.c.id == site.user_ids["SiteAdministrator"])
            .values(active=False)
        )
    clocks.advance(30.0)
    assert await status(client, route, token) == 401


@pytest.mark.parametrize("route", ROUTES)
async def test_an_expired_token_stops_at_once(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, route: str
) -> None:
    clocks = cached(ctx)
    async with ctx.db.transaction() as conn:
        token = await identity.create_token(
            conn,
            login_name=await login_of(ctx, site, "SiteAdministrator"),
            expires_at=clocks.now() + timedelta(seconds=5),
            now=clocks.now(),
        )
    assert await status(client, route, token) == ROUTES[route][1]
    assert len(ctx.tokens) == 1
    # Expiry is checked on every use: no waiting for the TTL.
    clocks.advance(5)
    assert await status(client, route, token) == 401
    assert len(ctx.tokens) == 0


async def test_only_tokens_that_worked_are_kept(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    cached(ctx)
    unknown = secrets.new_api_token()
    assert await status(client, "outside", unknown) == 401
    assert len(ctx.tokens) == 0
    async with ctx.db.transaction() as conn:
        fresh = await identity.create_token(
            conn, login_name=await login_of(ctx, site, "User"), name="new", now=ctx.now()
        )
    assert await status(client, "outside", fresh) == 404  # works on its first use


def test_the_cache_stays_bounded() -> None:
    cache = identity.TokenCache(max_entries=2)
    who = _principal()
    for index in range(3):
        cache.remember(f"{secrets.TOKEN_PREFIX}{index}", who, None)
    assert len(cache) == 2
    assert cache.lookup(f"{secrets.TOKEN_PREFIX}0") is None  # the oldest went
    assert cache.lookup(f"{secrets.TOKEN_PREFIX}2") is who


async def login_of(ctx: AppContext, site: SiteUsers, role: str) -> str:
    async with ctx.db.read() as conn:
        login = await conn.scalar(
            sa.select(users.c.login_name).where(users.c.id == site.user_ids[role])
        )
    assert isinstance(login, str)
    return login


def _principal() -> Principal:
    return Principal(
        user_id="u",
        site_id="s",
        login_name="a@example.com",
        name="A",
        email="a@example.com",
        account_type="UserAccount",
        roles=frozenset({Role.USER}),
    )
