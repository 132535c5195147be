"""Admin UI sign-in sessions: a random cookie token whose sha256 names a row of
`ui_sessions`, a CSRF token per session, and expiry after idleness or a fixed lifetime.

The cookie is `HttpOnly` (no script reads it), `SameSite=Lax` (other sites' forms do not
carry it), `Secure` when the base URL is https, and limited to `/ui`, so the API never sees
it: the API authenticates by bearer token alone and needs no CSRF defence.

Every state-changing route also checks the CSRF token, from the form's hidden field or,
for htmx requests, the `X-CSRF-Token` header, against the session's own token.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.datastructures import FormData

from docuhooks.api.deps import Ctx
from docuhooks.api.limits import takes_answer_set
from docuhooks.context import AppContext
from docuhooks.identity import service as identity
from docuhooks.identity.models import Principal
from docuhooks.identity.secrets import hash_token
from docuhooks.settings import Settings
from docuhooks.store.schema import ui_sessions, users

COOKIE = "docuhooks_session"
#: The login form's own CSRF token, before there is a session to hold one.
LOGIN_COOKIE = "docuhooks_login"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
COOKIE_PATH = "/ui"

#: A session unused this long is over.
IDLE_TIMEOUT = timedelta(hours=12)
#: ...and none lasts longer than this, however busy.
MAX_LIFETIME = timedelta(days=7)
#: `last_seen_at` is written at most this often, so reading pages costs no write each time.
TOUCH_INTERVAL = timedelta(minutes=1)


class LoginRequired(Exception):
    """No session, or one that ended: the browser is sent to the login page."""


class CsrfRefused(Exception):
    """A state-changing request without the session's CSRF token."""


@dataclass(frozen=True, slots=True)
class UiSession:
    id: str
    principal: Principal
    csrf_token: str


def new_token() -> str:
    return secrets.token_urlsafe(32)


def cookie_is_secure(ctx: AppContext) -> bool:
    return ctx.settings.base_url.lower().startswith("https://")


def set_cookie(response: Response, ctx: AppContext, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        path=COOKIE_PATH,
        httponly=True,
        samesite="lax",
        secure=cookie_is_secure(ctx),
    )


def clear_cookie(response: Response, ctx: AppContext, name: str) -> None:
    response.delete_cookie(
        name, path=COOKIE_PATH, httponly=True, samesite="lax", secure=cookie_is_secure(ctx)
    )


async def start(conn: AsyncConnection, principal: Principal, now: datetime) -> str:
    """A new session for `principal`; returns the cookie token (stored only hashed).

    Sessions that have ended are deleted here, so the table holds only live ones and a few
    idle ones, without a pruner of its own."""
    await conn.execute(
        ui_sessions.delete().where(
            sa.or_(
                ui_sessions.c.expires_at <= now, ui_sessions.c.last_seen_at <= now - IDLE_TIMEOUT
            )
        )
    )
    token = new_token()
    await conn.execute(
        ui_sessions.insert().values(
            id=hash_token(token),
            user_id=principal.user_id,
            csrf_token=new_token(),
            created_at=now,
            expires_at=now + MAX_LIFETIME,
            last_seen_at=now,
        )
    )
    return token


async def end(conn: AsyncConnection, session_id: str) -> None:
    await conn.execute(ui_sessions.delete().where(ui_sessions.c.id == session_id))


def _live(row: Any, now: datetime) -> bool:
    return bool(row.expires_at > now and row.last_seen_at > now - IDLE_TIMEOUT)


async def find(ctx: AppContext, token: str | None) -> UiSession | None:
    """The live session of a cookie token, or None; refreshes its idle time when due."""
    if not token or len(token) > 200:
        return None
    session_id = hash_token(token)
    now = ctx.now()
    query = (
        sa.select(
            users,
            ui_sessions.c.csrf_token,
            ui_sessions.c.expires_at,
            ui_sessions.c.last_seen_at,
        )
        .join(ui_sessions, ui_sessions.c.user_id == users.c.id)
        .where(ui_sessions.c.id == session_id, users.c.active.is_(True))
    )
    async with ctx.db.read() as conn:
        row = (await conn.execute(query)).first()
    if row is None or not _live(row, now):
        return None
    if now - row.last_seen_at >= TOUCH_INTERVAL:
        async with ctx.db.transaction() as conn:
            await conn.execute(
                ui_sessions.update().where(ui_sessions.c.id == session_id).values(last_seen_at=now)
            )
    # The same Principal the API builds from a token: roles and site come from the user row.
    return UiSession(session_id, identity.principal_of(row), row.csrf_token)


async def signed_in(request: Request, ctx: Ctx) -> UiSession:
    session = await find(ctx, request.cookies.get(COOKIE))
    if session is None:
        raise LoginRequired()
    return session


#: The signed-in session of a page; without one the browser goes to the login page.
SignedIn = Annotated[UiSession, Depends(signed_in)]


def tokens_match(expected: str, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(expected.encode(), (given or "").encode())


#: Fields a form may have, every page's form but the interview's: the largest is the
#: template upload's, up to 500 variable rows (`ui.routes.templates.MAX_ROWS`) of four
#: fields each. (Starlette's default, 1,000, refused the upload past 249 rows.)
FORM_MAX_FIELDS = 2100


def max_form_fields(request: Request) -> int:
    """How many fields the request's form may have. The interview's step posts every field
    it shows (a hidden `fields` input, a row count and each value), so its forms may have as
    many as the answer-set limits allow; its body is held to `max_answer_set_bytes`."""
    if not takes_answer_set(request.scope):
        return FORM_MAX_FIELDS
    settings: Settings = request.app.state.ctx.settings
    return max(FORM_MAX_FIELDS, settings.max_answer_values + 2 * settings.max_answers + 16)


async def read_form(request: Request) -> FormData:
    """The request's form, within `max_form_fields`. Starlette parses a form once and keeps
    it, so every reader of a UI form (the CSRF check first) goes through here."""
    return await request.form(max_fields=max_form_fields(request))


async def submitted_token(request: Request) -> str | None:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(("application/x-www-form-urlencoded", "multipart/form-data")):
        return None
    value = (await read_form(request)).get(CSRF_FIELD)
    return value if isinstance(value, str) else None


async def checked(request: Request, session: SignedIn) -> UiSession:
    """The session, if the request carries its CSRF token (every state-changing route)."""
    if not tokens_match(session.csrf_token, await submitted_token(request)):
        raise CsrfRefused()
    return session


#: The signed-in session of a state-changing request, its CSRF token checked.
Checked = Annotated[UiSession, Depends(checked)]
