"""A site's users and the caller's API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from pydantic import Field

from docuhooks.api.deps import Caller, Conn, Ctx, StandaloneCaller, client_address
from docuhooks.api.models import ERRORS, Input, Output, Page
from docuhooks.errors import FieldError, ValidationFailed
from docuhooks.identity import admin
from docuhooks.store import pagination

router = APIRouter(prefix="/api/v1", tags=["admin"], responses=ERRORS)

RoleName = Literal["SiteAdministrator", "IntegrationAdministrator", "User"]


class UserCreate(Input):
    loginName: str = Field(min_length=3, max_length=320, description="An email address")
    name: str = Field(min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    roles: list[RoleName] = Field(min_length=1, max_length=3)
    password: str | None = Field(default=None, min_length=8, max_length=1024)
    accountType: Literal["UserAccount", "ServicePrincipal"] = "UserAccount"
    clientName: str | None = Field(
        default=None, max_length=200, description="Service principals: the client name"
    )


class User(Output):
    id: str
    loginName: str
    name: str
    email: str
    accountType: str
    clientName: str | None
    roles: list[str]
    active: bool
    createdDate: datetime


class TokenCreate(Input):
    name: str = Field(default="", max_length=200, description="A label for the token")
    expiresInDays: int | None = Field(default=None, ge=1, le=admin.MAX_TOKEN_DAYS)


class Token(Output):
    id: str
    userId: str
    name: str
    prefix: str | None = Field(
        description="The token's first characters (`dht_` and 6 more), to tell tokens apart; "
        "null for tokens made before prefixes were kept"
    )
    createdDate: datetime
    expiresDate: datetime | None


class NewToken(Token):
    token: str = Field(description="The token itself: shown only in this response")


@router.get("/users", response_model=Page[User])
async def list_users(
    conn: Conn,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
) -> dict[str, Any]:
    """The site's users (SiteAdministrator)."""
    page = await admin.list_users(conn, who, limit=limit, cursor=cursor)
    return {"items": page.items, "nextCursor": page.next_cursor}


@router.post("/users", status_code=201, response_model=User)
async def create_user(body: UserCreate, ctx: Ctx, conn: Conn, who: Caller) -> dict[str, Any]:
    """A user or service principal of the caller's site (SiteAdministrator)."""
    return await admin.create_user(conn, who, body.model_dump(), now=ctx.now())


class UserUpdate(Input):
    name: str | None = Field(default=None, min_length=1, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    roles: list[RoleName] | None = Field(default=None, min_length=1, max_length=3)
    active: bool | None = Field(
        default=None, description="false: the user can no longer sign in or use API tokens"
    )


class SiteSummary(Output):
    id: str
    name: str
    baseUrl: str


class Me(User):
    site: SiteSummary


# Before /users/{user_id}, which would otherwise take "me" for an id.
@router.get("/users/me", response_model=Me)
async def read_own_account(conn: Conn, who: Caller) -> dict[str, Any]:
    """The caller: their user (any role, service principals included) and their site."""
    return await admin.own_account(conn, who)


@router.get("/users/{user_id}", response_model=User)
async def get_user(user_id: str, conn: Conn, who: Caller) -> dict[str, Any]:
    """One user of the caller's site (SiteAdministrator)."""
    return await admin.get_user(conn, who, user_id)


@router.patch("/users/{user_id}", response_model=User)
async def update_user(
    user_id: str, body: UserUpdate, ctx: Ctx, who: StandaloneCaller
) -> dict[str, Any]:
    """Change a user's name, email, roles or whether they are active (SiteAdministrator).
    New roles and deactivation hold at once for the user's API tokens, in every process."""
    async with ctx.db.transaction() as conn:
        user, revoked = await admin.update_user(
            conn, who, user_id, body.model_dump(exclude_unset=True), now=ctx.now()
        )
    # After the commit: dropped before it, a request in between would read the old roles and
    # cache them again for the token cache's TTL.
    for token_hash in revoked:
        ctx.tokens.forget(token_hash)
    return user


class PasswordChange(Input):
    currentPassword: str = Field(min_length=1, max_length=admin.MAX_PASSWORD_LENGTH)
    newPassword: str = Field(
        min_length=admin.MIN_PASSWORD_LENGTH, max_length=admin.MAX_PASSWORD_LENGTH
    )


class PasswordSet(Input):
    newPassword: str = Field(
        min_length=admin.MIN_PASSWORD_LENGTH, max_length=admin.MAX_PASSWORD_LENGTH
    )


# Before /users/{user_id}/password, which would otherwise take "me" for an id.
@router.put("/users/me/password", status_code=204, response_class=Response)
async def change_own_password(
    body: PasswordChange, request: Request, ctx: Ctx, who: StandaloneCaller
) -> Response:
    """Change the caller's own password. The current one must be given, and wrong ones count
    towards the sign-in throttle (429 past it), so a stolen API token cannot take over the
    account's password. The caller's admin UI sessions end; API tokens stay valid."""

    matches = await admin.current_password_matches(
        ctx.db, ctx.login_throttle, who, body.currentPassword, client_address(request)
    )
    if not matches:
        raise ValidationFailed.of([FieldError("currentPassword", "the current password is wrong")])
    async with ctx.db.transaction() as conn:
        await admin.change_own_password(conn, who, body.newPassword, now=ctx.now())
    return Response(status_code=204)


@router.put("/users/{user_id}/password", status_code=204, response_class=Response)
async def set_user_password(
    user_id: str, body: PasswordSet, ctx: Ctx, conn: Conn, who: Caller
) -> Response:
    """Set a user's password (SiteAdministrator; a user of the caller's site): for a reset,
    without the current one. The user's admin UI sessions end; API tokens stay valid."""
    await admin.set_password(conn, who, user_id, body.newPassword, now=ctx.now())
    return Response(status_code=204)


@router.get("/tokens", response_model=list[Token])
async def list_tokens(conn: Conn, who: Caller) -> list[dict[str, Any]]:
    """The caller's own API tokens (never the tokens themselves)."""
    return await admin.list_tokens(conn, who)


@router.post("/tokens", status_code=201, response_model=NewToken)
async def create_token(body: TokenCreate, ctx: Ctx, conn: Conn, who: Caller) -> dict[str, Any]:
    """A new API token for the caller, shown once."""
    listed, token = await admin.create_token(
        conn, who, name=body.name, expires_in_days=body.expiresInDays, now=ctx.now()
    )
    return {**listed, "token": token}


@router.delete("/tokens/{token_id}", status_code=204, response_class=Response)
async def revoke_token(token_id: str, ctx: Ctx, who: StandaloneCaller) -> Response:
    """Revoke a token: the caller's own, or (SiteAdministrator) any of the site's."""
    async with ctx.db.transaction() as conn:
        token_hash = await admin.revoke_token(conn, who, token_id, now=ctx.now())
    ctx.tokens.forget(token_hash)  # after the commit, as in `update_user`
    return Response(status_code=204)
