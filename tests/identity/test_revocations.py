"""A token revoked through one process stops working in the others at once (PostgreSQL)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.identity import admin, revocations
from docuhooks.identity import service as identity
from docuhooks.identity.secrets import SecretBox
from docuhooks.settings import Settings
from docuhooks.store.database import Database
from docuhooks.store.notify import ChannelListener
from docuhooks.store.schema import api_tokens

pytestmark = pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)


@pytest.fixture
async def elsewhere(settings: Settings) -> AsyncIterator[AppContext]:
    """Another `serve` process on the same database: its own context and token cache."""
    db = Database.from_url(settings.resolved_database_url)
    context = AppContext(settings=settings, db=db, box=SecretBox(settings.secret_key))
    yield context
    await db.dispose()


async def listening(ctx: AppContext) -> ChannelListener:
    listener = revocations.revocation_listener(ctx)
    assert listener is not None
    listener.start()
    async with asyncio.timeout(10):
        await listener.listening.wait()
    return listener


async def authenticate_cached(ctx: AppContext, token: str) -> None:
    async with ctx.db.read() as conn:
        assert (
            await identity.authenticate_token(conn, token, cache=ctx.tokens, now=ctx.now())
            is not None
        )
    assert ctx.tokens.lookup(token) is not None, "the other process now has it cached"


async def test_a_revocation_reaches_the_other_processes_caches_at_once(
    ctx: AppContext, elsewhere: AppContext, site: SiteUsers
) -> None:
    token = site.tokens["User"]
    listener = await listening(elsewhere)
    try:
        await authenticate_cached(elsewhere, token)
        async with ctx.db.read() as conn:
            user = await identity.authenticate_token(conn, token, now=ctx.now())
        assert user is not None
        async with ctx.db.transaction() as conn:
            rows = await admin_token_ids(conn, user.user_id)
            await admin.revoke_token(conn, user, rows[0], now=ctx.now())
        async with asyncio.timeout(5):
            while elsewhere.tokens.lookup(token) is not None:  # noqa: ASYNC110 (a cache, no event)
                await asyncio.sleep(0.02)
        async with elsewhere.db.read() as conn:
            assert (
                await identity.authenticate_token(
                    conn, token, cache=elsewhere.tokens, now=elsewhere.now()
                )
                is None
            )
    finally:
        await listener.stop()


async def test_a_revocation_rolled_back_is_never_announced(
    ctx: AppContext, elsewhere: AppContext, site: SiteUsers
) -> None:
    token = site.tokens["User"]
    listener = await listening(elsewhere)
    try:
        marker = site.tokens["SiteAdministrator"]
        await authenticate_cached(elsewhere, token)
        await authenticate_cached(elsewhere, marker)
        async with ctx.db.read() as conn:
            user = await identity.authenticate_token(conn, token, now=ctx.now())
            marker_user = await identity.authenticate_token(conn, marker, now=ctx.now())
        assert user is not None and marker_user is not None
        with pytest.raises(RuntimeError):
            async with ctx.db.transaction() as conn:
                rows = await admin_token_ids(conn, user.user_id)
                await admin.revoke_token(conn, user, rows[0], now=ctx.now())
                raise RuntimeError("the request fails after all")
        # A revocation that commits afterwards: announcements arrive in commit order, so
        # once this one has reached the other process, the rolled-back one never will.
        async with ctx.db.transaction() as conn:
            rows = await admin_token_ids(conn, marker_user.user_id)
            await admin.revoke_token(conn, marker_user, rows[0], now=ctx.now())
        async with asyncio.timeout(5):
            while elsewhere.tokens.lookup(marker) is not None:  # noqa: ASYNC110 (a cache, no event)
                await asyncio.sleep(0.02)
        assert elsewhere.tokens.lookup(token) is not None, "nothing was revoked"
    finally:
        await listener.stop()


async def test_a_listener_that_reconnects_forgets_every_cached_token(
    elsewhere: AppContext, site: SiteUsers
) -> None:
    """Revocations sent while it was not listening are lost: it trusts none of its cache."""
    await authenticate_cached(elsewhere, site.tokens["User"])
    listener = await listening(elsewhere)
    try:
        assert len(elsewhere.tokens) == 0
    finally:
        await listener.stop()


async def admin_token_ids(conn: AsyncConnection, user_id: str) -> list[str]:
    query = sa.select(api_tokens.c.id).where(api_tokens.c.user_id == user_id)
    return [str(token_id) for token_id in (await conn.execute(query)).scalars()]
