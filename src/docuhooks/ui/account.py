"""The signed-in person's account: who they are, and a new password (the current one is
checked, and counted by the sign-in throttle as a sign-in is)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from docuhooks.api.deps import Ctx, client_address
from docuhooks.errors import TooManyRequests
from docuhooks.identity import admin
from docuhooks.ui.rendering import UiRoute, redirect, render, sentence
from docuhooks.ui.session import Checked, SignedIn, UiSession

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


@router.get("/account")
async def account(request: Request, session: SignedIn) -> Response:
    return _page(request, session)


@router.post("/account/password")
async def change_password(request: Request, ctx: Ctx, session: Checked) -> Response:
    form = await request.form()
    current = str(form.get("current_password") or "")
    new = str(form.get("new_password") or "")
    confirmation = str(form.get("confirm_password") or "")
    if not current or len(current) > admin.MAX_PASSWORD_LENGTH:
        return _page(request, session, current_error="Enter your current password.")
    problem = admin.password_problem(new)
    if problem:
        return _page(request, session, new_error=sentence(problem))
    if new != confirmation:
        return _page(request, session, confirm_error="The two new passwords differ.")
    who = session.principal
    try:
        matches = await admin.current_password_matches(
            ctx.db, ctx.login_throttle, who, current, client_address(request)
        )
    except TooManyRequests as exc:
        return _page(request, session, current_error=sentence(exc.message), status_code=429)
    if not matches:
        return _page(request, session, current_error="The current password is wrong.")
    async with ctx.db.transaction() as conn:
        await admin.change_own_password(conn, who, new, now=ctx.now(), keep_session_id=session.id)
    return redirect("/ui/account?notice=password-changed")


def _page(
    request: Request, session: UiSession, *, status_code: int | None = None, **errors: str
) -> Response:
    """The account page; with an error, a 422 (or the given status) naming the field."""
    code = status_code or (422 if errors else 200)
    fields: dict[str, Any] = {"current_error": "", "new_error": "", "confirm_error": "", **errors}
    return render(request, "account.html", session, status_code=code, **fields)
