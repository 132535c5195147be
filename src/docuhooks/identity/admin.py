"""Managing a site's users and API tokens over the API (SPEC §11 "admin"): the same rules
as the `docuhooks admin` commands, for a site's own administrators."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import audit
from docuhooks.errors import FieldError, Forbidden, NotFound, ValidationFailed
from docuhooks.identity import revocations, secrets
from docuhooks.identity import service as identity
from docuhooks.identity.models import Principal
from docuhooks.store import pagination
from docuhooks.store.schema import api_tokens, users
from docuhooks.store.scoped import fetch_in_site, parse_id

MAX_TOKEN_DAYS = 3650


def _require_site_admin(principal: Principal, action: str) -> None:
    if not principal.is_site_admin:
        raise Forbidden(f"{action} needs the SiteAdministrator role")


def user_to_api(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "loginName": row.login_name,
        "name": row.name,
        "email": row.email,
        "accountType": row.account_type,
        "clientName": row.client_name,
        "roles": list(row.roles),
        "active": row.active,
        "createdDate": row.created_at,
    }


def token_to_api(row: sa.Row[Any]) -> dict[str, Any]:
    """A token as lists show it: never the token itself, which exists only in its creator's
    hands."""
    return {
        "id": row.id,
        "userId": row.user_id,
        "name": row.name,
        "createdDate": row.created_at,
        "expiresDate": row.expires_at,
    }


async def list_users(
    conn: AsyncConnection, principal: Principal, *, limit: int, cursor: str | None
) -> pagination.Page[dict[str, Any]]:
    _require_site_admin(principal, "listing users")
    query = pagination.apply(
        sa.select(users).where(users.c.site_id == principal.site_id),
        users.c.created_at,
        users.c.id,
        limit=limit,
        cursor=cursor,
        newest_first=False,
    )
    return pagination.page_of(list((await conn.execute(query)).all()), limit, user_to_api)


async def create_user(
    conn: AsyncConnection, principal: Principal, fields: dict[str, Any]
) -> dict[str, Any]:
    """A user of the caller's own site (never another's), as `docuhooks admin create-user`."""
    _require_site_admin(principal, "creating users")
    user_id = await identity.create_user(
        conn,
        site_id=principal.site_id,
        login_name=fields["loginName"],
        name=fields["name"],
        email=fields.get("email"),
        roles=list(fields["roles"]),
        password=fields.get("password"),
        account_type=fields.get("accountType") or "UserAccount",
        client_name=fields.get("clientName"),
    )
    await audit.record(
        conn,
        principal,
        site_id=principal.site_id,
        action="user.created",
        object_type="user",
        object_id=user_id,
        details={"loginName": fields["loginName"], "roles": list(fields["roles"])},
    )
    return user_to_api(await fetch_in_site(conn, users, user_id, principal.site_id, "user"))


async def list_tokens(conn: AsyncConnection, principal: Principal) -> list[dict[str, Any]]:
    """The caller's own tokens, newest first."""
    rows = await conn.execute(
        sa.select(api_tokens)
        .where(api_tokens.c.user_id == principal.user_id)
        .order_by(api_tokens.c.created_at.desc(), api_tokens.c.id.desc())
    )
    return [token_to_api(row) for row in rows]


async def create_token(
    conn: AsyncConnection, principal: Principal, *, name: str, expires_in_days: int | None
) -> tuple[dict[str, Any], str]:
    """A new token for the caller; returned here once, stored only hashed."""
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise ValidationFailed.of(
            [FieldError("expiresInDays", f"must be from 1 to {MAX_TOKEN_DAYS}")]
        )
    expires = (
        datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days is not None else None
    )
    token = await identity.create_token(
        conn, login_name=principal.login_name, name=name, expires_at=expires
    )
    row = (
        await conn.execute(
            sa.select(api_tokens).where(api_tokens.c.token_hash == secrets.hash_token(token))
        )
    ).one()
    return token_to_api(row), token


async def revoke_token(conn: AsyncConnection, principal: Principal, token_id: str) -> str:
    """Revoke one of the caller's tokens, or (SiteAdministrator) any token of the site's
    users. Returns the revoked token's hash, for the caller to drop from caches."""
    token_id = parse_id(token_id, "token")
    query = (
        sa.select(api_tokens.c.id, api_tokens.c.user_id, api_tokens.c.token_hash)
        .join(users, users.c.id == api_tokens.c.user_id)
        .where(api_tokens.c.id == token_id, users.c.site_id == principal.site_id)
    )
    row = (await conn.execute(query)).first()
    if row is None or (row.user_id != principal.user_id and not principal.is_site_admin):
        # Another user's token is not the caller's business: as if it did not exist.
        raise NotFound(f"token {token_id} does not exist")
    await conn.execute(sa.delete(api_tokens).where(api_tokens.c.id == row.id))
    await audit.record(
        conn,
        principal,
        site_id=principal.site_id,
        action="token.revoked",
        object_type="token",
        object_id=row.id,
        details={"userId": row.user_id},
    )
    await revocations.announce(conn, row.token_hash)
    return str(row.token_hash)
