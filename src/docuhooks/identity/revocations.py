"""Revoked API tokens stop working in every process at once, not when a cache runs out.

Each process keeps the tokens that worked for a while (`TokenCache`), so that an API call
costs no query to authenticate. The process that revokes a token drops it from its own
cache; on PostgreSQL, where several processes serve the API, it also notifies the
`docuhooks_tokens` channel in the revoking transaction, and every `serve` process listens
there and drops the token too. A process that lost its listening connection forgets every
cached token when it listens again, since a revocation may have gone by meanwhile. The
cache's TTL remains the bound when the database cannot deliver notifications at all.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.identity.interfaces import IdentityContext
from docuhooks.store.notify import ChannelListener, notify

log = structlog.get_logger(__name__)

CHANNEL = "docuhooks_tokens"


async def announce(conn: AsyncConnection, token_hash: str) -> None:
    """Tell the other processes, when `conn`'s transaction commits, that the token is gone."""
    await notify(conn, CHANNEL, token_hash)


def revocation_listener(ctx: IdentityContext) -> ChannelListener | None:
    """The listener that drops revoked tokens from `ctx`'s cache; None on SQLite, and
    behind a pooler in transaction mode without a direct URL to listen on (then the cache's
    TTL bounds how long another process accepts a revoked token)."""
    listen = ctx.db.listen_dsn()
    if listen is None:
        if ctx.db.dialect == "postgresql":
            log.warning(
                "tokens.not_listening",
                reason="database_pooler = transaction and no database_listen_url: other "
                "processes' revocations take effect here when the token cache expires",
                fix="set DOCUHOOKS_DATABASE_LISTEN_URL to a direct postgresql:// URL",
            )
        return None
    return ChannelListener(
        listen,
        CHANNEL,
        on_notify=ctx.tokens.forget,
        on_connect=ctx.tokens.clear,
    )


async def start_revocation_listener(ctx: IdentityContext) -> Callable[[], Awaitable[None]]:
    """The app component that drops tokens other processes revoke (PostgreSQL)."""
    listener = revocation_listener(ctx)
    if listener is None:

        async def nothing_to_stop() -> None:
            return None

        return nothing_to_stop
    listener.start()
    return listener.stop
