"""The signed-in person's API tokens: the list (name, prefix, dates; never a token), a new
one (shown once, on the page that answers the form, and never again), and revoking one
after a confirmation. Each page calls the service function the API's token routes call, so
who may see and revoke what is the API's own rule: everyone lists and makes their own
tokens; a token can be revoked by its owner or a SiteAdministrator of its site."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from docuhooks.api.deps import Ctx
from docuhooks.identity import admin
from docuhooks.ui.rendering import UiRoute, redirect, render
from docuhooks.ui.session import Checked, SignedIn, UiSession

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

#: What the form offers, in days; "" is a token that never expires.
EXPIRY_CHOICES = [("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year")]
NEVER = ("", "Never (until revoked)")
DEFAULT_EXPIRY = "30"
MAX_NAME = 200


@router.get("/tokens")
async def token_list(request: Request, ctx: Ctx, session: SignedIn) -> Response:
    return await _page(request, ctx, session)


@router.post("/tokens")
async def create_token(request: Request, ctx: Ctx, session: Checked) -> Response:
    form = await request.form()
    name = str(form.get("name") or "").strip()
    expiry = str(form.get("expires_in_days") or "").strip()
    errors: dict[str, str] = {}
    if not name:
        errors["name"] = "Give the token a name, such as where it will be used."
    elif len(name) > MAX_NAME:
        errors["name"] = f"A name has at most {MAX_NAME} characters."
    days: int | None = None
    if expiry:
        days = int(expiry) if expiry.isascii() and expiry.isdecimal() else 0
        if not 1 <= days <= admin.MAX_TOKEN_DAYS:
            errors["expires_in_days"] = f"Choose from 1 to {admin.MAX_TOKEN_DAYS} days, or never."
    if not errors:
        async with ctx.db.transaction() as conn:
            made, token = await admin.create_token(
                conn, session.principal, name=name, expires_in_days=days, now=ctx.now()
            )
        # Rendered here rather than after a redirect: the token must not travel in a URL,
        # and this answer is the only place it is ever shown (pages are `no-store`).
        return await _page(request, ctx, session, new={**made, "token": token})
    return await _page(
        request,
        ctx,
        session,
        values={"name": name, "expires_in_days": expiry},
        errors=errors,
        status=422,
    )


@router.get("/tokens/{token_id}/revoke")
async def confirm_revoke(request: Request, token_id: str, ctx: Ctx, session: SignedIn) -> Response:
    async with ctx.db.read() as conn:
        token = await admin.get_revocable_token(conn, session.principal, token_id)
    return render(request, "token_revoke.html", session, token=token)


@router.post("/tokens/{token_id}/revoke")
async def revoke(request: Request, token_id: str, ctx: Ctx, session: Checked) -> Response:
    async with ctx.db.transaction() as conn:
        token_hash = await admin.revoke_token(conn, session.principal, token_id, now=ctx.now())
    ctx.tokens.forget(token_hash)  # after the commit, as the API route does
    return redirect("/ui/tokens?notice=token-revoked")


async def _page(
    request: Request,
    ctx: Ctx,
    session: UiSession,
    *,
    new: dict[str, Any] | None = None,
    values: dict[str, str] | None = None,
    errors: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    async with ctx.db.read() as conn:
        tokens = await admin.list_tokens(conn, session.principal)
    return render(
        request,
        "tokens.html",
        session,
        status_code=status,
        tokens=tokens,
        new=new,
        values=values or {"name": "", "expires_in_days": DEFAULT_EXPIRY},
        errors=errors or {},
        expiry_choices=[*EXPIRY_CHOICES, NEVER],
        now=ctx.now(),
        max_name=MAX_NAME,
    )
