"""Request dependencies: the application context, a transaction, and the caller.

Callers are authenticated through the context's token cache (`identity.service.TokenCache`):
a token used within its TTL costs no query. A token revoked through the API, or its user
deactivated or given other roles there, is dropped at once in every process
(`identity.revocations`); one deleted from the store by other means keeps working for up to
that TTL (its own expiry is checked on every request)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.context import AppContext
from docuhooks.errors import Unauthorized
from docuhooks.identity import service as identity
from docuhooks.identity.models import Principal

_bearer = HTTPBearer(auto_error=False, description="An API token from POST /api/v1/auth/tokens")

Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]


async def get_ctx(request: Request) -> AppContext:
    # Async on purpose: FastAPI runs a plain `def` dependency in a worker thread.
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


async def transaction(ctx: Ctx) -> AsyncIterator[AsyncConnection]:
    async with ctx.db.transaction() as conn:
        yield conn


#: The request's unit of work. `scope="function"` commits before the response is sent, so a
#: client never sees success for a change that then fails to commit.
Conn = Annotated[AsyncConnection, Depends(transaction, scope="function")]


async def read_transaction(ctx: Ctx) -> AsyncIterator[AsyncConnection]:
    async with ctx.db.read() as conn:
        yield conn


#: A read-only unit of work, for routes that change nothing: on SQLite it takes no write
#: lock, so it neither waits for writers nor makes them wait.
ReadConn = Annotated[AsyncConnection, Depends(read_transaction, scope="function")]


def client_address(request: Request) -> str | None:
    """Where the request came from (the peer, or what a trusted proxy said it was), for
    sign-in throttling."""
    return request.client.host if request.client else None


def _token(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None:
        raise Unauthorized("this route needs an API token: Authorization: Bearer <token>")
    return credentials.credentials


def _invalid() -> Unauthorized:
    return Unauthorized("the API token is not valid (unknown, expired or revoked)")


async def caller(ctx: Ctx, conn: Conn, credentials: Credentials) -> Principal:
    who = await identity.authenticate_token(
        conn, _token(credentials), now=ctx.now(), cache=ctx.tokens
    )
    if who is None:
        raise _invalid()
    return who


#: The authenticated caller, for routes working in the request's transaction (`Conn`).
Caller = Annotated[Principal, Depends(caller)]


async def caller_outside_transaction(ctx: Ctx, credentials: Credentials) -> Principal:
    token = _token(credentials)
    who = ctx.tokens.lookup(token)
    if who is None:
        async with ctx.db.read() as conn:
            who = await identity.authenticate_token(conn, token, now=ctx.now(), cache=ctx.tokens)
    if who is None:
        raise _invalid()
    return who


#: The caller, for routes whose service runs its own transactions (because it calls
#: receivers, or must act after its commit) or that read with `ReadConn`: no transaction
#: is held for the request, and a cached token needs none at all.
StandaloneCaller = Annotated[Principal, Depends(caller_outside_transaction)]
