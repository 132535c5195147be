"""Signing in and out of the admin UI with a login name and password.

The login form has its own CSRF token in a short cookie (there is no session yet), so
another site cannot sign a browser in to an account of its choosing."""

from __future__ import annotations

import posixpath
import re
from urllib.parse import quote, unquote, urlsplit

from fastapi import APIRouter, Request, Response

from docuhooks.api.deps import Ctx, client_address
from docuhooks.errors import TooManyRequests
from docuhooks.identity import service as identity
from docuhooks.identity.models import Principal
from docuhooks.identity.throttle import guarded
from docuhooks.ui import session as sessions
from docuhooks.ui.rendering import UiRoute, redirect, render, sentence
from docuhooks.ui.session import Checked

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

HOME = "/ui/"
WORK_ITEMS = "/ui/workitems"


def safe_next(target: str | None) -> str:
    """Where to go after signing in: `target` normalised, if it stays inside the UI; else home.

    A `next` pointing elsewhere would make the login page an open redirect, and a browser
    resolves what it is given: `..` segments, percent-encoded dots and slashes, backslashes
    (read as slashes), tabs and line breaks (dropped) could all lead a path that starts with
    `/ui/` out of it. So the path is decoded once, resolved as the browser would resolve it,
    and judged as resolved; anything doubtful (another scheme or host, a backslash, an empty
    segment, a control or non-ASCII character, an encoding within an encoding) falls back to
    the UI's home.
    """
    if not target or len(target) > _MAX_NEXT or not _VISIBLE_ASCII.fullmatch(target):
        return HOME
    if "\\" in target:
        return HOME
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return HOME
    decoded = unquote(parts.path)
    if not _VISIBLE_ASCII.fullmatch(decoded) or any(c in decoded for c in ("%", "\\", "//")):
        return HOME
    resolved = posixpath.normpath(decoded)
    if decoded.endswith("/") and not resolved.endswith("/"):
        resolved += "/"
    if not resolved.startswith("/ui/") or resolved.startswith("//"):
        return HOME
    query = f"?{parts.query}" if parts.query else ""
    return quote(resolved, safe="/-._~!$&'()*+,;=:@") + query


_MAX_NEXT = 2048
_VISIBLE_ASCII = re.compile(r"[!-~]+")


async def _login_page(
    request: Request, ctx: Ctx, *, status_code: int = 200, error: str = "", login_name: str = ""
) -> Response:
    token = sessions.new_token()
    async with ctx.db.read() as conn:
        # A new installation: nobody can sign in until the operator makes an administrator.
        no_user_yet = not await identity.has_users(conn)
    response = render(
        request,
        "login.html",
        status_code=status_code,
        login_csrf=token,
        error=error,
        login_name=login_name,
        no_user_yet=no_user_yet,
        next=safe_next(request.query_params.get("next") or None),
    )
    sessions.set_cookie(response, ctx, sessions.LOGIN_COOKIE, token)
    return response


@router.get("/login")
async def login_form(request: Request, ctx: Ctx) -> Response:
    if await sessions.find(ctx, request.cookies.get(sessions.COOKIE)) is not None:
        return redirect(HOME)
    return await _login_page(request, ctx)


@router.post("/login")
async def login(request: Request, ctx: Ctx) -> Response:
    form = await request.form()
    login_name = str(form.get("login_name") or "").strip()
    password = str(form.get("password") or "")
    if not sessions.tokens_match(
        request.cookies.get(sessions.LOGIN_COOKIE, ""), str(form.get(sessions.CSRF_FIELD) or "")
    ):
        return await _login_page(
            request,
            ctx,
            status_code=403,
            error="The sign-in form expired or cookies are off. Try again (cookies are needed).",
            login_name=login_name,
        )
    if not login_name or not password or len(login_name) > 320 or len(password) > 1024:
        return await _login_page(
            request,
            ctx,
            status_code=422,
            error="Enter your login name and password.",
            login_name=login_name,
        )

    async def attempt() -> Principal | None:
        async with ctx.db.read() as conn:
            return await identity.login(conn, login_name, password)

    client = client_address(request)
    try:
        who = await guarded(ctx.login_throttle, ctx.db, login_name, client, attempt)
    except TooManyRequests as exc:
        return await _login_page(request, ctx, status_code=429, error=sentence(exc.message))
    if who is None:
        return await _login_page(
            request,
            ctx,
            status_code=401,
            error="The login name or password is wrong.",
            login_name=login_name,
        )
    async with ctx.db.transaction() as conn:
        token = await sessions.start(conn, who, ctx.now())
    target = safe_next(str(form.get("next") or "") or None)
    if target == HOME and not who.can_admin_webhooks:
        # The webhook pages are not theirs: people who assemble documents start at their
        # work items.
        target = WORK_ITEMS
    response = redirect(target)
    sessions.set_cookie(response, ctx, sessions.COOKIE, token)
    sessions.clear_cookie(response, ctx, sessions.LOGIN_COOKIE)
    return response


@router.post("/logout")
async def logout(ctx: Ctx, session: Checked) -> Response:
    async with ctx.db.transaction() as conn:
        await sessions.end(conn, session.id)
    response = redirect("/ui/login?notice=signed-out")
    sessions.clear_cookie(response, ctx, sessions.COOKIE)
    return response
