"""Work item pages, for every role of the site: the list (by work group or template,
searched by name, a page at a time), a new work item, one work item with its versions and
their documents, deleting one (after a page that asks first), one version followed live
while it is post-processed, and document downloads. Each calls the platform service its API
route calls, with the signed-in principal, so the site and role rules are the API's own."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.api.deps import Ctx
from docuhooks.api.routes.platform_support import attachment
from docuhooks.core.events import EventType
from docuhooks.errors import Conflict, FieldError, ValidationFailed
from docuhooks.identity import service as identity
from docuhooks.identity.models import Principal
from docuhooks.interview_hooks import match_interview_hooks
from docuhooks.platform import catalog, completion, deletion, documents, workgroups, workitems
from docuhooks.store import pagination
from docuhooks.ui.rendering import UiRoute, is_htmx, redirect, render
from docuhooks.ui.session import Checked, SignedIn, UiSession

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

LIST_SIZE = 25
VERSIONS_SHOWN = 20
#: How often a version page asks again while the version is post-processed.
POLL_SECONDS = 1


async def _choices(conn: AsyncConnection, who: Principal) -> dict[str, Any]:
    groups = await workgroups.list_page(conn, who, limit=pagination.MAX_LIMIT, cursor=None)
    templates = await catalog.list_page(conn, who, limit=pagination.MAX_LIMIT, cursor=None)
    return {"work_groups": groups.items, "templates": templates.items}


def _names(choices: dict[str, Any]) -> dict[str, str]:
    return {item["id"]: item["name"] for items in choices.values() for item in items}


@router.get("/workitems")
async def work_item_list(
    request: Request,
    ctx: Ctx,
    session: SignedIn,
    group: Annotated[str, Query(max_length=64)] = "",
    template: Annotated[str, Query(max_length=64)] = "",
    q: Annotated[str, Query(max_length=200)] = "",
    cursor: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    who = session.principal
    async with ctx.db.read() as conn:
        choices = await _choices(conn, who)
        page = await workitems.list_page(
            conn,
            who,
            limit=LIST_SIZE,
            cursor=cursor or None,
            work_group_id=group or None,
            template_id=template or None,
            name_contains=q.strip() or None,
        )
    return render(
        request,
        "platform/workitems.html",
        session,
        page=page,
        group=group,
        template_id=template,
        q=q,
        names=_names(choices),
        **choices,
    )


def _new_page(
    request: Request,
    session: UiSession,
    choices: dict[str, Any],
    values: dict[str, str],
    errors: dict[str, str] | None = None,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "platform/workitem_new.html",
        session,
        status_code=status_code,
        values=values,
        errors=errors or {},
        **choices,
    )


@router.get("/workitems/new")
async def new_work_item(
    request: Request,
    ctx: Ctx,
    session: SignedIn,
    group: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    async with ctx.db.read() as conn:
        choices = await _choices(conn, session.principal)
    values = {"name": "", "workGroupId": group, "templateId": ""}
    return _new_page(request, session, choices, values)


@router.post("/workitems")
async def create_work_item(request: Request, ctx: Ctx, session: Checked) -> Response:
    form = await request.form()
    values = {
        key: str(form.get(key) or "").strip() for key in ("name", "workGroupId", "templateId")
    }
    errors: dict[str, str] = {}
    for key, what in (("workGroupId", "a work group"), ("templateId", "a template")):
        if not values[key]:
            errors[key] = f"Choose {what}."
    if not errors:
        try:
            async with ctx.db.transaction() as conn:
                item = await workitems.create(
                    conn,
                    session.principal,
                    work_group_id=values["workGroupId"],
                    template_id=values["templateId"],
                    name=values["name"],
                    now=ctx.now(),
                )
        except ValidationFailed as exc:
            errors = _field_errors(exc.details)
        else:
            return redirect(f"/ui/workitems/{item['id']}?notice=work-item-created")
    async with ctx.db.read() as conn:
        choices = await _choices(conn, session.principal)
    return _new_page(request, session, choices, values, errors, status_code=422)


def _field_errors(details: list[FieldError]) -> dict[str, str]:
    errors: dict[str, str] = {}
    for problem in details:
        key = problem.field.split(".", 1)[0]
        message = problem.message
        errors[key] = f"{message[:1].upper()}{message[1:]}."
    return errors


async def _documents_of(
    conn: AsyncConnection, item_id: str, versions: list[dict[str, Any]]
) -> dict[str, list[dict[str, Any]]]:
    return {
        version["id"]: [
            documents.to_api(row, "", item_id)
            for row in await documents.rows_of_version(conn, version["id"])
        ]
        for version in versions
    }


@router.get("/workitems/{work_item_id}")
async def work_item_page(
    request: Request,
    work_item_id: str,
    ctx: Ctx,
    session: SignedIn,
    cursor: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    who = session.principal
    async with ctx.db.read() as conn:
        item = await workitems.get_row(conn, who, work_item_id)
        group = await workgroups.get_row(conn, who, item.work_group_id)
        template = await catalog.get_summary(conn, who, item.template_id)
        versions = await workitems.list_versions(
            conn, who, item.id, limit=VERSIONS_SHOWN, cursor=cursor or None
        )
        docs = await _documents_of(conn, item.id, versions.items)
        in_progress = await workitems.version_in_progress(conn, item.id) is not None
        people = await identity.user_names(
            conn, who.site_id, [v["createdBy"] for v in versions.items]
        )
        loads = await match_interview_hooks(
            ctx,
            conn,
            site_id=who.site_id,
            event_type=EventType.INTERVIEW_LOAD_EVENT,
            work_group_id=item.work_group_id,
            template_id=template.id,
        )
    return render(
        request,
        "platform/workitem.html",
        session,
        may_delete=deletion.may_delete_work_item(who, item),
        item=workitems.to_api(item),
        group=group,
        tmpl=template,
        versions=versions,
        documents=docs,
        in_progress=in_progress,
        load_hooks=len(loads.webhooks),
        people=people,
    )


@router.get("/workitems/{work_item_id}/delete")
async def confirm_work_item_delete(
    request: Request, work_item_id: str, ctx: Ctx, session: SignedIn
) -> Response:
    """Asks first, saying what goes with it; or, while a version is post-processed, says so
    instead of offering the button."""
    return await _delete_page(request, ctx, session, work_item_id)


@router.post("/workitems/{work_item_id}/delete")
async def delete_work_item(
    request: Request, work_item_id: str, ctx: Ctx, session: Checked
) -> Response:
    try:
        # Run again should PostgreSQL abort it to end a deadlock (`platform.deletion`).
        await ctx.db.retried(
            lambda conn: deletion.delete_work_item(
                conn, session.principal, work_item_id, now=ctx.now()
            )
        )
    except Conflict:
        # A version entered post-processing since the page was shown: the page again.
        return await _delete_page(request, ctx, session, work_item_id, status_code=409)
    return redirect("/ui/workitems?notice=work-item-deleted")


async def _delete_page(
    request: Request, ctx: Ctx, session: UiSession, work_item_id: str, *, status_code: int = 200
) -> Response:
    who = session.principal
    async with ctx.db.read() as conn:
        item = await workitems.get_row(conn, who, work_item_id)
        deletion.require_may_delete_work_item(who, item)
        contents = await deletion.work_item_contents(conn, item.id)
    return render(
        request,
        "platform/workitem_delete.html",
        session,
        status_code=status_code,
        item=workitems.to_api(item),
        contents=contents,
    )


async def _version(ctx: Ctx, who: Principal, work_item_id: str, version_id: str) -> dict[str, Any]:
    async with ctx.db.read() as conn:
        item = await workitems.get_row(conn, who, work_item_id)
        version = await completion.version_with_documents(conn, who, item, version_id)
        version["workItem"] = workitems.to_api(item)
        names = await identity.user_names(conn, who.site_id, [version["createdBy"]])
        version["createdByName"] = names.get(version["createdBy"] or "", "")
    return version


@router.get("/workitems/{work_item_id}/versions/{version_id}")
async def version_page(
    request: Request, work_item_id: str, version_id: str, ctx: Ctx, session: SignedIn
) -> Response:
    version = await _version(ctx, session.principal, work_item_id, version_id)
    return render(
        request,
        "platform/version.html",
        session,
        version=version,
        poll_seconds=POLL_SECONDS,
        following=False,
    )


@router.get("/workitems/{work_item_id}/versions/{version_id}/status")
async def version_status(
    request: Request, work_item_id: str, version_id: str, ctx: Ctx, session: SignedIn
) -> Response:
    """The version's status panel: what the version page polls while post-processing runs."""
    version = await _version(ctx, session.principal, work_item_id, version_id)
    if not is_htmx(request):
        return redirect(f"/ui/workitems/{work_item_id}/versions/{version['id']}")
    return render(
        request,
        "platform/_version_status.html",
        session,
        version=version,
        poll_seconds=POLL_SECONDS,
        following=True,
    )


@router.get("/workitems/{work_item_id}/versions/{version_id}/documents/{document_id}")
async def download_document(
    work_item_id: str, version_id: str, document_id: str, ctx: Ctx, session: SignedIn
) -> Response:
    async with ctx.db.read() as conn:
        row, _ = await documents.get(
            conn, session.principal, work_item_id, version_id, document_id, content=True
        )
    return Response(
        row.content,
        media_type=row.content_type,
        headers={"Content-Disposition": attachment(row.file_name)},
    )
