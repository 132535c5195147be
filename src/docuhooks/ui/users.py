"""The site's users, for its administrators: the list, a new user, and one user's name,
email, roles and whether they are active, and a new password for them. Each page calls the
service function the API's user routes call, so the rules (SiteAdministrator only, own site,
no locking oneself out) are the API's own."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from docuhooks.api.deps import Ctx
from docuhooks.errors import Conflict, ValidationFailed
from docuhooks.identity import admin
from docuhooks.identity.models import Role
from docuhooks.store import pagination
from docuhooks.ui.rendering import UiRoute, redirect, render, sentence
from docuhooks.ui.session import Checked, SignedIn, UiSession

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

ROLES = [role.value for role in Role]


@router.get("/users")
async def user_list(request: Request, ctx: Ctx, session: SignedIn, cursor: str = "") -> Response:
    async with ctx.db.read() as conn:
        page = await admin.list_users(
            conn, session.principal, limit=pagination.MAX_LIMIT, cursor=cursor or None
        )
    return render(request, "users.html", session, page=page)


# Before /users/{user_id}, which would otherwise take "new" for an id.
@router.get("/users/new")
async def new_user(request: Request, session: SignedIn) -> Response:
    admin.require_site_admin(session.principal, "creating users")
    return _new_page(request, session, {"accountType": "UserAccount", "roles": ["User"]})


@router.post("/users")
async def create_user(request: Request, ctx: Ctx, session: Checked) -> Response:
    admin.require_site_admin(session.principal, "creating users")
    form = await request.form()
    service_principal = form.get("accountType") == "ServicePrincipal"
    fields: dict[str, Any] = {
        "loginName": str(form.get("loginName") or ""),
        "name": str(form.get("name") or ""),
        "email": str(form.get("email") or "").strip() or None,
        "roles": [str(role) for role in form.getlist("roles")],
        "password": str(form.get("password") or ""),
        "accountType": "ServicePrincipal" if service_principal else "UserAccount",
        "clientName": str(form.get("clientName") or "") if service_principal else None,
    }
    errors: dict[str, list[str]] = {}
    problem = ""
    try:
        async with ctx.db.transaction() as conn:
            created = await admin.create_user(conn, session.principal, fields, now=ctx.now())
    except ValidationFailed as exc:
        for error in exc.details:
            errors.setdefault(error.field, []).append(sentence(error.message))
    except Conflict as exc:
        problem = sentence(exc.message)
    else:
        return redirect(f"/ui/users/{created['id']}?notice=user-created")
    return _new_page(
        request,
        session,
        {**fields, "password": ""},  # never sent back to the browser
        errors=errors,
        problem=problem,
        status_code=409 if problem else 422,
    )


@router.get("/users/{user_id}")
async def user_page(request: Request, user_id: str, ctx: Ctx, session: SignedIn) -> Response:
    async with ctx.db.read() as conn:
        user = await admin.get_user(conn, session.principal, user_id)
    return _page(request, session, user)


@router.post("/users/{user_id}")
async def update_user(request: Request, user_id: str, ctx: Ctx, session: Checked) -> Response:
    form = await request.form()
    changes: dict[str, Any] = {
        "name": str(form.get("name") or ""),
        "email": str(form.get("email") or ""),
        "roles": [str(role) for role in form.getlist("roles")],
        "active": form.get("active") == "true",
    }
    try:
        async with ctx.db.transaction() as conn:
            _, revoked = await admin.update_user(
                conn, session.principal, user_id, changes, now=ctx.now()
            )
    except (ValidationFailed, Conflict) as exc:
        async with ctx.db.read() as conn:
            user = await admin.get_user(conn, session.principal, user_id)
        problems = "; ".join(f"{e.field}: {e.message}" for e in exc.details) or exc.message
        return _page(request, session, {**user, **changes}, error=problems, status_code=exc.status)
    for token_hash in revoked:
        ctx.tokens.forget(token_hash)
    return redirect(f"/ui/users/{user_id}?notice=user-saved")


@router.post("/users/{user_id}/password")
async def set_password(request: Request, user_id: str, ctx: Ctx, session: Checked) -> Response:
    form = await request.form()
    password = str(form.get("new_password") or "")
    try:
        async with ctx.db.transaction() as conn:
            await admin.set_password(conn, session.principal, user_id, password, now=ctx.now())
    except ValidationFailed as exc:
        async with ctx.db.read() as conn:
            user = await admin.get_user(conn, session.principal, user_id)
        message = exc.details[0].message if exc.details else exc.message
        return _page(request, session, user, password_error=sentence(message), status_code=422)
    return redirect(f"/ui/users/{user_id}?notice=password-set")


def _page(
    request: Request,
    session: UiSession,
    user: dict[str, Any],
    *,
    error: str = "",
    password_error: str = "",
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "user.html",
        session,
        status_code=status_code,
        person=user,
        roles=ROLES,
        error=error,
        password_error=password_error,
    )


def _new_page(
    request: Request,
    session: UiSession,
    values: dict[str, Any],
    *,
    errors: dict[str, list[str]] | None = None,
    problem: str = "",
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "user_new.html",
        session,
        status_code=status_code,
        values=values,
        roles=ROLES,
        errors=errors or {},
        problem=problem,
        min_password=admin.MIN_PASSWORD_LENGTH,
    )
