"""Work groups, for site administrators: the list and a new one, through
`platform.workgroups` as the API's work group routes are (the API has no change or delete for
them, so neither has this page)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from docuhooks.api.deps import Ctx
from docuhooks.errors import Conflict, ValidationFailed
from docuhooks.platform import workgroups
from docuhooks.platform.access import require_site_admin
from docuhooks.store import pagination
from docuhooks.ui.rendering import UiRoute, redirect, render, sentence
from docuhooks.ui.session import Checked, SignedIn, UiSession

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

MAX_DESCRIPTION = 2000  # as the API's WorkGroupCreate


@router.get("/workgroups")
async def work_group_list(
    request: Request, ctx: Ctx, session: SignedIn, cursor: str = ""
) -> Response:
    require_site_admin(session.principal, "managing work groups")
    return await _page(request, ctx, session, cursor=cursor)


@router.post("/workgroups")
async def create_work_group(request: Request, ctx: Ctx, session: Checked) -> Response:
    require_site_admin(session.principal, "creating a work group")
    form = await request.form()
    values = {
        "name": str(form.get("name") or ""),
        "description": str(form.get("description") or ""),
    }
    errors: dict[str, list[str]] = {}
    if len(values["description"]) > MAX_DESCRIPTION:
        errors["description"] = [f"A description is at most {MAX_DESCRIPTION} characters."]
        return await _page(request, ctx, session, values=values, errors=errors, status=422)
    try:
        async with ctx.db.transaction() as conn:
            await workgroups.create(conn, session.principal, now=ctx.now(), **values)
    except ValidationFailed as exc:
        for detail in exc.details:
            errors.setdefault(detail.field, []).append(f"The name {detail.message}.")
        status = 422
    except Conflict as exc:
        errors["name"] = [sentence(exc.message)]
        status = 409
    else:
        return redirect("/ui/workgroups?notice=workgroup-created")
    return await _page(request, ctx, session, values=values, errors=errors, status=status)


async def _page(
    request: Request,
    ctx: Ctx,
    session: UiSession,
    *,
    cursor: str = "",
    values: dict[str, str] | None = None,
    errors: dict[str, list[str]] | None = None,
    status: int = 200,
) -> Response:
    async with ctx.db.read() as conn:
        page = await workgroups.list_page(
            conn, session.principal, limit=pagination.MAX_LIMIT, cursor=cursor or None
        )
    return render(
        request,
        "platform/workgroups.html",
        session,
        status_code=status,
        page=page,
        values=values or {"name": "", "description": ""},
        errors=errors or {},
    )
