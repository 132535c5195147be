"""Managing a site's users and API tokens over the API: the same rules
as the `docuhooks admin` commands, for a site's own administrators."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import audit
from docuhooks.errors import Conflict, FieldError, Forbidden, NotFound, ValidationFailed
from docuhooks.identity import revocations, secrets
from docuhooks.identity import service as identity
from docuhooks.identity.models import Principal, Role
from docuhooks.identity.throttle import LoginThrottle, guarded
from docuhooks.store import pagination
from docuhooks.store.database import Database
from docuhooks.store.schema import api_tokens, sites, ui_sessions, users
from docuhooks.store.scoped import fetch_in_site, parse_id

MAX_TOKEN_DAYS = 3650
# The password rules are the identity service's, which creating a user applies too.
MIN_PASSWORD_LENGTH = identity.MIN_PASSWORD_LENGTH
MAX_PASSWORD_LENGTH = identity.MAX_PASSWORD_LENGTH
password_problem = identity.password_problem


def require_site_admin(principal: Principal, action: str) -> None:
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
        "prefix": row.prefix,
        "createdDate": row.created_at,
        "expiresDate": row.expires_at,
    }


async def list_users(
    conn: AsyncConnection, principal: Principal, *, limit: int, cursor: str | None
) -> pagination.Page[dict[str, Any]]:
    require_site_admin(principal, "listing users")
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
    conn: AsyncConnection, principal: Principal, fields: dict[str, Any], *, now: datetime
) -> dict[str, Any]:
    """A user of the caller's own site (never another's), as `docuhooks admin create-user`."""
    require_site_admin(principal, "creating users")
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
        now=now,
    )
    await audit.record(
        conn,
        principal,
        site_id=principal.site_id,
        now=now,
        action="user.created",
        object_type="user",
        object_id=user_id,
        details={"loginName": fields["loginName"], "roles": list(fields["roles"])},
    )
    return user_to_api(await fetch_in_site(conn, users, user_id, principal.site_id, "user"))


async def get_user(conn: AsyncConnection, principal: Principal, user_id: str) -> dict[str, Any]:
    require_site_admin(principal, "reading users")
    return user_to_api(await fetch_in_site(conn, users, user_id, principal.site_id, "user"))


async def own_account(conn: AsyncConnection, principal: Principal) -> dict[str, Any]:
    """The caller's own user, with their site: any role may read it (never a password hash,
    which `user_to_api` leaves out)."""
    row = await fetch_in_site(conn, users, principal.user_id, principal.site_id, "user")
    site = (
        await conn.execute(
            sa.select(sites.c.name, sites.c.base_url).where(sites.c.id == principal.site_id)
        )
    ).one()
    return {
        **user_to_api(row),
        "site": {"id": principal.site_id, "name": site.name, "baseUrl": site.base_url},
    }


async def update_user(
    conn: AsyncConnection,
    principal: Principal,
    user_id: str,
    changes: dict[str, Any],
    *,
    now: datetime,
) -> tuple[dict[str, Any], list[str]]:
    """Change a user of the caller's site (SiteAdministrator): `name`, `email`, `roles`,
    `active`. Returns the user, and the hashes of their API tokens when what a token grants
    changed (roles, or active): the caller drops those from its token cache, and the other
    processes are told when this transaction commits (`revocations`), so the change holds at
    once everywhere rather than when cached principals run out. A deactivated user's admin UI
    sessions end. Administrators cannot deactivate themselves or drop their own
    SiteAdministrator role (another administrator can), so a site keeps one."""
    require_site_admin(principal, "changing users")
    row = await fetch_in_site(conn, users, user_id, principal.site_id, "user")
    values: dict[str, Any] = {}
    errors: list[FieldError] = []
    if changes.get("name") is not None:
        name = str(changes["name"]).strip()
        if not 1 <= len(name) <= 200:
            errors.append(FieldError("name", "must be 1 to 200 characters"))
        values["name"] = name
    if changes.get("email") is not None:
        email = str(changes["email"]).strip()
        if not identity.EMAIL.match(email) or len(email) > 320:
            errors.append(FieldError("email", "must be an email address"))
        values["email"] = email
    if changes.get("roles") is not None:
        roles = list(dict.fromkeys(changes["roles"]))
        errors += identity.role_errors(roles)
        values["roles"] = roles
    if changes.get("active") is not None:
        values["active"] = bool(changes["active"])
    if errors:
        raise ValidationFailed.of(errors)
    values = {k: v for k, v in values.items() if v != getattr(row, k)}
    if row.id == principal.user_id and (
        values.get("active") is False
        or ("roles" in values and Role.SITE_ADMINISTRATOR.value not in values["roles"])
    ):
        raise Conflict(
            "you cannot deactivate yourself or drop your own SiteAdministrator role: another "
            "site administrator can"
        )
    revoked: list[str] = []
    if values:
        await conn.execute(users.update().where(users.c.id == row.id).values(**values))
        if "roles" in values or "active" in values:
            hashes = await conn.execute(
                sa.select(api_tokens.c.token_hash).where(api_tokens.c.user_id == row.id)
            )
            revoked = list(hashes.scalars())
            for token_hash in revoked:
                await revocations.announce(conn, token_hash)
        if values.get("active") is False:
            await conn.execute(ui_sessions.delete().where(ui_sessions.c.user_id == row.id))
        await audit.record(
            conn,
            principal,
            site_id=principal.site_id,
            now=now,
            action="user.updated",
            object_type="user",
            object_id=row.id,
            details={
                "changed": sorted(values),
                **{k: values[k] for k in ("roles", "active") if k in values},
            },
        )
    updated = await fetch_in_site(conn, users, row.id, principal.site_id, "user")
    return user_to_api(updated), revoked


async def list_tokens(conn: AsyncConnection, principal: Principal) -> list[dict[str, Any]]:
    """The caller's own tokens, newest first."""
    rows = await conn.execute(
        sa.select(api_tokens)
        .where(api_tokens.c.user_id == principal.user_id)
        .order_by(api_tokens.c.created_at.desc(), api_tokens.c.id.desc())
    )
    return [token_to_api(row) for row in rows]


async def create_token(
    conn: AsyncConnection,
    principal: Principal,
    *,
    name: str,
    expires_in_days: int | None,
    now: datetime,
) -> tuple[dict[str, Any], str]:
    """A new token for the caller; returned here once, stored only hashed."""
    if expires_in_days is not None and not 1 <= expires_in_days <= MAX_TOKEN_DAYS:
        raise ValidationFailed.of(
            [FieldError("expiresInDays", f"must be from 1 to {MAX_TOKEN_DAYS}")]
        )
    expires = now + timedelta(days=expires_in_days) if expires_in_days is not None else None
    token = await identity.create_token(
        conn, login_name=principal.login_name, name=name, expires_at=expires, now=now
    )
    row = (
        await conn.execute(
            sa.select(api_tokens).where(api_tokens.c.token_hash == secrets.hash_token(token))
        )
    ).one()
    return token_to_api(row), token


async def _revocable_token(
    conn: AsyncConnection, principal: Principal, token_id: str
) -> sa.Row[Any]:
    """A token the caller may revoke: their own, or (SiteAdministrator) any of the site's
    users'. Any other is a 404, as if it did not exist."""
    token_id = parse_id(token_id, "token")
    query = (
        sa.select(api_tokens)
        .join(users, users.c.id == api_tokens.c.user_id)
        .where(api_tokens.c.id == token_id, users.c.site_id == principal.site_id)
    )
    row = (await conn.execute(query)).first()
    if row is None or (row.user_id != principal.user_id and not principal.is_site_admin):
        # Another user's token is not the caller's business: as if it did not exist.
        raise NotFound(f"token {token_id} does not exist")
    return row


async def get_revocable_token(
    conn: AsyncConnection, principal: Principal, token_id: str
) -> dict[str, Any]:
    """A token as lists show it, if the caller may revoke it (see `revoke_token`)."""
    return token_to_api(await _revocable_token(conn, principal, token_id))


async def revoke_token(
    conn: AsyncConnection, principal: Principal, token_id: str, *, now: datetime
) -> str:
    """Revoke one of the caller's tokens, or (SiteAdministrator) any token of the site's
    users. Returns the revoked token's hash, for the caller to drop from caches."""
    row = await _revocable_token(conn, principal, token_id)
    await conn.execute(sa.delete(api_tokens).where(api_tokens.c.id == row.id))
    await audit.record(
        conn,
        principal,
        site_id=principal.site_id,
        now=now,
        action="token.revoked",
        object_type="token",
        object_id=row.id,
        details={"userId": row.user_id},
    )
    await revocations.announce(conn, row.token_hash)
    return str(row.token_hash)


async def current_password_matches(
    db: Database, throttle: LoginThrottle, principal: Principal, password: str, client: str | None
) -> bool:
    """Whether `password` is the caller's current one, checked as a sign-in is: a wrong one
    counts towards the sign-in throttle (TooManyRequests past it), so a stolen token or an
    unattended browser cannot be used to guess it. Call it outside any write transaction."""

    async def attempt() -> Principal | None:
        async with db.read() as conn:
            return await identity.login(conn, principal.login_name, password)

    return await guarded(throttle, db, principal.login_name, client, attempt) is not None


async def change_own_password(
    conn: AsyncConnection,
    principal: Principal,
    new_password: str,
    *,
    now: datetime,
    keep_session_id: str | None = None,
) -> None:
    """The caller's own new password, once the caller has checked the current one (through
    the sign-in throttle, outside any transaction). Their admin UI sessions end, except
    `keep_session_id` (the one changing it); API tokens are separate credentials and stay."""
    row = await fetch_in_site(conn, users, principal.user_id, principal.site_id, "user")
    await _store_password(
        conn,
        principal,
        row,
        new_password,
        action="user.password_changed",
        now=now,
        keep_session_id=keep_session_id,
    )


async def set_password(
    conn: AsyncConnection, principal: Principal, user_id: str, new_password: str, *, now: datetime
) -> None:
    """A SiteAdministrator sets a password of a user of their site, without the current one
    (a reset; their own included). The user's admin UI sessions end; API tokens stay."""
    require_site_admin(principal, "setting a password without the current one")
    row = await fetch_in_site(conn, users, user_id, principal.site_id, "user")
    await _store_password(conn, principal, row, new_password, action="user.password_set", now=now)


async def reset_password(
    conn: AsyncConnection, login_name: str, new_password: str, *, now: datetime
) -> str:
    """`docuhooks admin set-password`: the operator sets any user's password by login name
    (audited with no actor). Returns the user's id."""
    row = (
        await conn.execute(sa.select(users).where(users.c.login_name == login_name.strip().lower()))
    ).first()
    if row is None:
        raise NotFound(f"no user has the login name {login_name!r}")
    await _store_password(conn, None, row, new_password, action="user.password_set", now=now)
    return str(row.id)


async def _store_password(
    conn: AsyncConnection,
    principal: Principal | None,
    row: sa.Row[Any],
    new_password: str,
    *,
    action: str,
    now: datetime,
    keep_session_id: str | None = None,
) -> None:
    problem = password_problem(new_password)
    if problem:
        raise ValidationFailed.of([FieldError("newPassword", problem)])
    await conn.execute(
        users.update()
        .where(users.c.id == row.id)
        .values(password_hash=secrets.hash_password(new_password))
    )
    ended = ui_sessions.delete().where(ui_sessions.c.user_id == row.id)
    if keep_session_id is not None:
        ended = ended.where(ui_sessions.c.id != keep_session_id)
    await conn.execute(ended)
    await audit.record(
        conn,
        principal,
        site_id=row.site_id,
        now=now,
        action=action,
        object_type="user",
        object_id=row.id,
        details={"loginName": row.login_name},
    )
