"""Identity services: sites, users and tokens; a token or a password becomes a Principal."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.clock import Clock, SystemClock
from docuhooks.errors import Conflict, FieldError, NotFound, ValidationFailed
from docuhooks.identity import secrets
from docuhooks.identity.models import Principal, Role
from docuhooks.store.schema import api_tokens, sites, users

#: An email address, in ASCII: an internationalised domain in its `xn--` form. Non-ASCII
#: letters would let `vıc@x.com` (a dotless i) or an invisible character pass for another
#: person's login name.
EMAIL = re.compile(r"^[!-?A-~]+@[!-?A-~]+\.[!-?A-~]+$")


def validate_base_url(value: str, field: str = "baseUrl") -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed.of([FieldError(field, "must be an absolute http or https URL")])
    return value.rstrip("/")


async def create_site(conn: AsyncConnection, *, name: str, base_url: str, now: datetime) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ValidationFailed.of([FieldError("name", "must be 1 to 200 characters")])
    site_id = str(uuid.uuid4())
    await conn.execute(
        sites.insert().values(
            id=site_id, name=name, base_url=validate_base_url(base_url), created_at=now
        )
    )
    return site_id


async def set_site_base_url(conn: AsyncConnection, site_id: str, base_url: str) -> None:
    """Move a site to another address (its JWT issuer and the host of its document URLs)."""
    await get_site(conn, site_id)
    await conn.execute(
        sites.update().where(sites.c.id == site_id).values(base_url=validate_base_url(base_url))
    )


async def has_users(conn: AsyncConnection) -> bool:
    """Whether anyone can sign in yet: a new installation has no user until an operator
    makes the first administrator (`docuhooks admin create-user`)."""
    return (await conn.execute(sa.select(users.c.id).limit(1))).first() is not None


async def get_site(conn: AsyncConnection, site_id: str) -> sa.Row[Any]:
    row = (await conn.execute(sa.select(sites).where(sites.c.id == site_id))).first()
    if row is None:
        raise NotFound(f"site {site_id} does not exist")
    return row


def role_errors(roles: list[str]) -> list[FieldError]:
    """A problem for each of `roles` that is not a role, or for naming none."""
    if not roles:
        return [FieldError("roles", "must name at least one role")]
    known = {r.value for r in Role}
    allowed = ", ".join(sorted(known))
    return [
        FieldError(f"roles.{i}", f"must be one of {allowed}")
        for i, role in enumerate(roles)
        if role not in known
    ]


#: New passwords: as long as people choose, within reason.
MIN_PASSWORD_LENGTH = 8
MAX_PASSWORD_LENGTH = 1024


def password_problem(password: str) -> str | None:
    """What is wrong with `password` as a new password, or None."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return f"a password needs at least {MIN_PASSWORD_LENGTH} characters"
    if len(password) > MAX_PASSWORD_LENGTH:
        return f"a password has at most {MAX_PASSWORD_LENGTH} characters"
    return None


async def create_user(
    conn: AsyncConnection,
    *,
    site_id: str,
    login_name: str,
    name: str,
    roles: list[str],
    now: datetime,
    email: str | None = None,
    password: str | None = None,
    account_type: str = "UserAccount",
    client_name: str | None = None,
) -> str:
    await get_site(conn, site_id)
    errors: list[FieldError] = []
    login_name = login_name.strip().lower()
    if not EMAIL.match(login_name) or len(login_name) > 320:
        errors.append(
            FieldError(
                "loginName",
                "must be an email address in ASCII (an internationalised domain in its xn-- form)",
            )
        )
    email = (email or login_name).strip()
    if not EMAIL.match(email):
        errors.append(FieldError("email", "must be an email address"))
    if not 1 <= len(name.strip()) <= 200:
        errors.append(FieldError("name", "must be 1 to 200 characters"))
    errors += role_errors(roles)
    if account_type not in ("UserAccount", "ServicePrincipal"):
        errors.append(FieldError("accountType", "must be UserAccount or ServicePrincipal"))
    client_name = (client_name or "").strip() or None
    if account_type == "ServicePrincipal" and client_name is None:
        # It signs in with its client's name (`POST /auth/service-principal-login`).
        errors.append(FieldError("clientName", "a service principal needs its client's name"))
    if password is not None and (problem := password_problem(password)):
        errors.append(FieldError("password", problem))
    if errors:
        raise ValidationFailed.of(errors)
    existing = await conn.scalar(sa.select(users.c.id).where(users.c.login_name == login_name))
    if existing:
        # Login names are unique across the installation (sign-in by login name must find one
        # user), so the name may be taken on another site. One message for both cases, naming
        # no site, so an administrator learns nothing about other sites' users.
        raise Conflict(
            "this login name is not available: choose another",
            details=[FieldError("loginName", "is not available")],
        )
    user_id = str(uuid.uuid4())
    await conn.execute(
        users.insert().values(
            id=user_id,
            site_id=site_id,
            login_name=login_name,
            name=name.strip(),
            email=email,
            account_type=account_type,
            client_name=client_name,
            password_hash=secrets.hash_password(password) if password else None,
            roles=sorted(set(roles)),
            active=True,
            created_at=now,
        )
    )
    return user_id


async def create_token(
    conn: AsyncConnection,
    *,
    login_name: str,
    now: datetime,
    name: str = "",
    expires_at: datetime | None = None,
) -> str:
    """A new API token for the user; the token is returned here once and stored only hashed."""
    user_id = await conn.scalar(
        sa.select(users.c.id).where(users.c.login_name == login_name.strip().lower())
    )
    if user_id is None:
        raise NotFound(f"no user with login name {login_name}")
    token = secrets.new_api_token()
    await conn.execute(
        api_tokens.insert().values(
            id=str(uuid.uuid4()),
            user_id=user_id,
            token_hash=secrets.hash_token(token),
            prefix=secrets.token_prefix(token),
            name=name,
            created_at=now,
            expires_at=expires_at,
        )
    )
    return token


def principal_of(row: sa.Row[Any]) -> Principal:
    """The Principal of a `users` row: how the API and the admin UI both see a user."""
    return Principal(
        user_id=row.id,
        site_id=row.site_id,
        login_name=row.login_name,
        name=row.name,
        email=row.email,
        account_type=row.account_type,
        roles=frozenset(Role(r) for r in row.roles),
    )


#: How long a token's principal is used without asking the store: a token revoked (or its
#: user deactivated, or given other roles) through the store keeps working this long.
TOKEN_TTL_SECONDS = 30.0
MAX_CACHED_TOKENS = 10_000


@dataclass(frozen=True, slots=True)
class _CachedToken:
    principal: Principal
    expires_at: datetime | None
    stored_at: float


class TokenCache:
    """The principals of recently used API tokens, by token hash, for `ttl_seconds`.

    A token's own expiry is checked on every use, so an expired token stops at once. A
    token revoked, or its user deactivated or given other roles, through the API is dropped
    at once (`identity.revocations`); done in the store by other means, it is seen within
    `ttl_seconds`. Only tokens that worked are kept: a new token works on its first use.
    `clock` reads monotonic seconds for the TTL and the wall clock for expiry."""

    def __init__(
        self,
        ttl_seconds: float = TOKEN_TTL_SECONDS,
        *,
        max_entries: int = MAX_CACHED_TOKENS,
        clock: Clock | None = None,
    ) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self.clock: Clock = clock or SystemClock()
        self._entries: dict[str, _CachedToken] = {}

    def lookup(self, token: str) -> Principal | None:
        """The token's principal if it was seen within the TTL and has not expired."""
        key = secrets.hash_token(token)
        entry = self._entries.get(key)
        if entry is None:
            return None
        expired = entry.expires_at is not None and entry.expires_at <= self.clock.now()
        if expired or self.clock.monotonic() - entry.stored_at >= self.ttl_seconds:
            del self._entries[key]
            return None
        return entry.principal

    def remember(self, token: str, principal: Principal, expires_at: datetime | None) -> None:
        if len(self._entries) >= self.max_entries:
            del self._entries[next(iter(self._entries))]
        self._entries[secrets.hash_token(token)] = _CachedToken(
            principal, expires_at, self.clock.monotonic()
        )

    def forget(self, token_hash: str) -> None:
        """Drop a revoked token at once (`identity.revocations` tells the other processes)."""
        self._entries.pop(token_hash, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


async def authenticate_token(
    conn: AsyncConnection, token: str, *, now: datetime, cache: TokenCache | None = None
) -> Principal | None:
    """The principal of an API token, or None (unknown, expired at `now`, user inactive).
    With `cache`, a token used within its TTL needs no query."""
    if not token.startswith(secrets.TOKEN_PREFIX) or len(token) > 200:
        return None
    if cache is not None:
        known = cache.lookup(token)
        if known is not None:
            return known
    query = (
        sa.select(users, api_tokens.c.expires_at)
        .join(api_tokens, api_tokens.c.user_id == users.c.id)
        .where(api_tokens.c.token_hash == secrets.hash_token(token), users.c.active.is_(True))
    )
    row = (await conn.execute(query)).first()
    if row is None or (row.expires_at is not None and row.expires_at <= now):
        return None
    principal = principal_of(row)
    if cache is not None:
        cache.remember(token, principal, row.expires_at)
    return principal


async def login(conn: AsyncConnection, login_name: str, password: str) -> Principal | None:
    row = (
        await conn.execute(
            sa.select(users).where(
                users.c.login_name == login_name.strip().lower(), users.c.active.is_(True)
            )
        )
    ).first()
    if not secrets.verify_password(row.password_hash if row else None, password) or row is None:
        return None
    return principal_of(row)


def _service_principals_named(principal_name: str) -> sa.Select[Any]:
    return (
        sa.select(users, sites.c.name.label("site_name"))
        .join(sites, sites.c.id == users.c.site_id)
        .where(
            users.c.account_type == "ServicePrincipal",
            users.c.active.is_(True),
            sa.or_(
                users.c.login_name == principal_name.strip().lower(),
                users.c.name == principal_name.strip(),
            ),
        )
    )


async def service_principal_login_names(conn: AsyncConnection, principal_name: str) -> list[str]:
    """The login names of the service principals a sign-in naming `principal_name` (by login
    name or display name) may be for, sorted: the accounts its wrong passwords count
    against, however the names are spelled, so that respelling one cannot reset the count."""
    rows = await conn.execute(
        _service_principals_named(principal_name).with_only_columns(users.c.login_name)
    )
    return sorted(rows.scalars())


async def service_principal_login(
    conn: AsyncConnection, client_name: str, principal_name: str, password: str
) -> Principal | None:
    """The source platform's receiver login: (tenancy/client name, principal name, password).

    The principal name may be given as the login name or as the display name; the client name
    must match the one the principal was created with (or the site's name).
    """
    rows = (await conn.execute(_service_principals_named(principal_name))).all()
    for row in rows:
        if client_name.strip() in {row.client_name, row.site_name} and secrets.verify_password(
            row.password_hash, password
        ):
            return principal_of(row)
    secrets.verify_password(None, password)
    return None


async def user_names(
    conn: AsyncConnection, site_id: str, user_ids: Iterable[str | None]
) -> dict[str, str]:
    """The names of the site's users among `user_ids`, for pages that say who did what (a
    version's author); ids of another site, or of deleted users, are left out."""
    wanted = sorted({user_id for user_id in user_ids if user_id})
    if not wanted:
        return {}
    rows = await conn.execute(
        sa.select(users.c.id, users.c.name).where(
            users.c.site_id == site_id, users.c.id.in_(wanted)
        )
    )
    return {row.id: row.name for row in rows}
