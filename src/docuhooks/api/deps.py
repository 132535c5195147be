"""Request dependencies: the application context, a transaction, and the caller."""

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


def get_ctx(request: Request) -> AppContext:
    ctx: AppContext = request.app.state.ctx
    return ctx


Ctx = Annotated[AppContext, Depends(get_ctx)]


async def transaction(ctx: Ctx) -> AsyncIterator[AsyncConnection]:
    async with ctx.db.transaction() as conn:
        yield conn


#: The request's unit of work. `scope="function"` commits before the response is sent, so a
#: client never sees success for a change that then fails to commit.
Conn = Annotated[AsyncConnection, Depends(transaction, scope="function")]


async def principal(
    conn: Conn,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    if credentials is None:
        raise Unauthorized("this route needs an API token: Authorization: Bearer <token>")
    who = await identity.authenticate_token(conn, credentials.credentials)
    if who is None:
        raise Unauthorized("the API token is not valid (unknown, expired or revoked)")
    return who


Caller = Annotated[Principal, Depends(principal)]
