"""Document-platform routes: work groups, templates, work items and versions.

Documents and interviews have routers of their own. Every platform route is also served
under the source platform's spelling (`/WorkItems/{id}/Versions/{vid}/…`), so receivers
written for it work unchanged.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile
from pydantic import Field

from docuhooks.api.deps import Caller, Conn, Ctx, StandaloneCaller
from docuhooks.api.models import ERRORS, STORAGE_QUOTA, ErrorResponse, Input, Output, Page
from docuhooks.api.responses import FastJSONResponse
from docuhooks.api.routes.documents import Document
from docuhooks.api.routes.platform_support import add_source_platform_aliases, attachment
from docuhooks.platform import catalog, completion, deletion, quick, workgroups, workitems
from docuhooks.store import pagination

router = APIRouter(prefix="/api/v1", responses=ERRORS)

Limit = Annotated[int, Query(ge=1, le=pagination.MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=500)]


class WorkGroupCreate(Input):
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)


class WorkGroup(Output):
    id: str
    name: str
    description: str
    createdDate: datetime


class Variable(Output):
    name: str
    type: str = Field(description="text, number, date, truefalse or multiplechoice")
    repeatDepth: int = Field(description="0 for a single value, up to 4 nested repeats")
    options: list[str] = Field(description="The choices of a multiplechoice variable")


class Template(Output):
    id: str
    name: str
    fileName: str
    size: int
    sha256: str
    variables: list[Variable] = Field(
        default_factory=list,
        description="The declared variables; left out of a list asked for `variables=false`",
    )
    variableCount: int = Field(description="How many variables the template declares")
    eventElements: list[str] = Field(description="Interview event element names")
    createdDate: datetime
    createdBy: str | None
    warnings: list[str] = Field(description="Only on upload: declarations the document ignores")


class WorkItemCreate(Input):
    workGroupId: str = Field(max_length=64)
    templateId: str = Field(max_length=64)
    name: str = Field(min_length=1, max_length=200)


class WorkItem(Output):
    id: str
    name: str
    workGroupId: str
    templateId: str
    createdDate: datetime
    createdBy: str | None


class VersionSummary(Output):
    """A version as the versions list shows it: its answers are read from the version."""

    id: str
    workItemId: str
    versionNumber: int
    status: str = Field(description="InProgress, PostProcessing, Completed or Failed")
    postProcessing: dict[str, Any] | None
    createdDate: datetime
    createdBy: str | None
    completedDate: datetime | None


class Version(VersionSummary):
    answers: dict[str, Any] = Field(description="Canonical answer JSON")
    documents: list[Document] | None = None


# --- work groups ----------------------------------------------------------------------------


@router.get("/workgroups", response_model=Page[WorkGroup], tags=["platform"])
async def list_work_groups(
    conn: Conn, who: Caller, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    page = await workgroups.list_page(conn, who, limit=limit, cursor=cursor)
    return {"items": page.items, "nextCursor": page.next_cursor}


@router.post("/workgroups", status_code=201, response_model=WorkGroup, tags=["platform"])
async def create_work_group(
    body: WorkGroupCreate, ctx: Ctx, conn: Conn, who: Caller
) -> dict[str, Any]:
    """SiteAdministrator only."""
    return await workgroups.create(
        conn, who, name=body.name, description=body.description, now=ctx.now()
    )


@router.get("/workgroups/{work_group_id}", response_model=WorkGroup, tags=["platform"])
async def get_work_group(work_group_id: str, conn: Conn, who: Caller) -> dict[str, Any]:
    return workgroups.to_api(await workgroups.get_row(conn, who, work_group_id))


# --- templates ------------------------------------------------------------------------------


@router.get("/templates", response_model=Page[Template], tags=["platform"])
async def list_templates(
    conn: Conn,
    who: Caller,
    limit: Limit = 50,
    cursor: Cursor = None,
    variables: Annotated[
        bool,
        Query(
            description="`false`: each template without its `variables` (its "
            "`variableCount` says how many): a lighter list, for picking a template"
        ),
    ] = True,
) -> Response:
    """The site's templates, newest first. Each template's variables are written out as
    stored; a list of large templates is lighter without them (`variables=false`)."""
    page = await catalog.list_page(conn, who, limit=limit, cursor=cursor, variables=variables)
    return FastJSONResponse({"items": page.items, "nextCursor": page.next_cursor})


@router.post(
    "/templates",
    status_code=201,
    response_model=Template,
    responses=STORAGE_QUOTA,
    tags=["platform"],
)
async def upload_template(
    ctx: Ctx,
    who: StandaloneCaller,
    file: Annotated[UploadFile, File(description="The template, a .docx with Jinja placeholders")],
    definition: Annotated[
        str,
        Form(
            description='JSON: {"name", "variables": [{"name", "type", "repeatDepth", '
            '"options"}], "eventElements": [names]}'
        ),
    ],
) -> Response:
    """Upload a DOCX template with its variable declarations (SiteAdministrator only).

    Refused with the reason when the file is not a DOCX, a placeholder cannot be parsed, or
    a placeholder matches no declared variable; a DOCX over the `docx_*` limits, or whose
    inspection passes the render limits, with 413 or 422 naming the limit; a template that
    would take the site past its storage quota, with 422 `storage_quota_exceeded`."""
    created = await catalog.create(
        ctx,
        who,
        file_name=file.filename or "template.docx",
        content=await file.read(),
        definition=await catalog.read_definition(ctx, who, definition),
    )
    # Built by the service in the model's shape: 5,000 variables are not validated again.
    return FastJSONResponse(created, status_code=201)


@router.get("/templates/{template_id}", response_model=Template, tags=["platform"])
async def get_template(template_id: str, conn: Conn, who: Caller) -> Response:
    # Its variables are written out as stored: a large template's are not decoded,
    # validated and encoded again on the event loop.
    return FastJSONResponse(await catalog.get_stored(conn, who, template_id))


@router.delete(
    "/templates/{template_id}",
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "Deleted: its room under the storage quota is free at once"},
        409: {
            "model": ErrorResponse,
            "description": "Work items use the template, or webhooks name it in their "
            "`templateIds`; the message says which. Nothing was deleted",
        },
    },
    tags=["platform"],
)
async def delete_template(template_id: str, ctx: Ctx, who: StandaloneCaller) -> Response:
    """Delete a template (SiteAdministrator only), which frees its room under the site's
    storage quota at once.

    Refused with 409 while work items use it (a work item reads its template whenever an
    interview opens or finishes: delete them first) or while webhooks name it in their
    `templateIds` (change or delete them first). Recorded in the audit log."""
    async with ctx.db.transaction() as conn:
        await deletion.delete_template(conn, who, template_id, now=ctx.now())
    return Response(status_code=204)


@router.get(
    "/templates/{template_id}/content",
    response_class=Response,
    responses={200: {"content": {catalog.DOCX_CONTENT_TYPE: {}}}},
    tags=["platform"],
)
async def get_template_content(template_id: str, conn: Conn, who: Caller) -> Response:
    row = await catalog.get_document(conn, who, template_id)
    return Response(
        row.content,
        media_type=catalog.DOCX_CONTENT_TYPE,
        headers={"Content-Disposition": attachment(row.file_name)},
    )


@router.post(
    "/templates/{template_id}/assemble",
    response_class=Response,
    responses={200: {"content": {catalog.DOCX_CONTENT_TYPE: {}}}},
    tags=["platform"],
)
async def assemble_quick_document(
    template_id: str, request: Request, ctx: Ctx, who: StandaloneCaller
) -> Response:
    """A quick document: assemble the template from an answer set (JSON or HotDocs XML by
    Content-Type) without a work item. Nothing is stored and no webhook fires.

    The answer set is held to the answer-set limits, and the render is bounded (`render_*`
    settings): past a limit the answer is 413 or 422 naming it (`render_time_limit`,
    `render_memory_limit`, `render_output_too_large`). No transaction is held meanwhile."""
    document = await quick.assemble_quick_document(
        ctx,
        who,
        template_id,
        body=await request.body(),
        content_type=request.headers.get("content-type", "application/json"),
    )
    headers = {"Content-Disposition": attachment(document.file_name)}
    if document.warnings:
        # The body is the document, so answers left out are reported in a header (ASCII JSON,
        # capped: the first warnings and how many more).
        headers["X-Docuhooks-Warnings"] = quick.warnings_header(document.warnings)
    return Response(document.content, media_type=catalog.DOCX_CONTENT_TYPE, headers=headers)


# --- work items and versions --------------------------------------------------------------


@router.get("/workitems", response_model=Page[WorkItem], tags=["platform"])
async def list_work_items(
    conn: Conn,
    who: Caller,
    limit: Limit = 50,
    cursor: Cursor = None,
    workGroupId: Annotated[str | None, Query(max_length=64)] = None,
    templateId: Annotated[str | None, Query(max_length=64)] = None,
) -> dict[str, Any]:
    page = await workitems.list_page(
        conn,
        who,
        limit=limit,
        cursor=cursor,
        work_group_id=workGroupId,
        template_id=templateId,
    )
    return {"items": page.items, "nextCursor": page.next_cursor}


@router.post("/workitems", status_code=201, response_model=WorkItem, tags=["platform"])
async def create_work_item(
    body: WorkItemCreate, ctx: Ctx, conn: Conn, who: Caller
) -> dict[str, Any]:
    return await workitems.create(
        conn,
        who,
        work_group_id=body.workGroupId,
        template_id=body.templateId,
        name=body.name,
        now=ctx.now(),
    )


@router.get("/workitems/{work_item_id}", response_model=WorkItem, tags=["platform"])
async def get_work_item(work_item_id: str, conn: Conn, who: Caller) -> dict[str, Any]:
    return workitems.to_api(await workitems.get_row(conn, who, work_item_id))


@router.delete(
    "/workitems/{work_item_id}",
    status_code=204,
    response_class=Response,
    responses={
        204: {"description": "Deleted: its documents' room under the storage quota is free"},
        403: {
            "model": ErrorResponse,
            "description": "The caller is neither a SiteAdministrator nor the work item's creator",
        },
        409: {
            "model": ErrorResponse,
            "description": "One of its versions is in PostProcessing (until its deadline at "
            "the latest); nothing was deleted",
        },
    },
    tags=["platform"],
)
async def delete_work_item(work_item_id: str, ctx: Ctx, who: StandaloneCaller) -> Response:
    """Delete a work item with its versions, their documents and its interviews (open ones
    too), which frees their room under the site's storage quota at once. A
    SiteAdministrator may delete any work item of the site, anyone else those they created.

    Refused with 409 while one of its versions is in PostProcessing: its receiver may still
    return documents; the version's deadline bounds the wait. The events its versions fired
    and their deliveries stay (the webhook log): a receiver fetching a document of a
    deleted version gets 404. Recorded in the audit log."""
    # Run again should PostgreSQL abort it to end a deadlock (`platform.deletion`).
    await ctx.db.retried(
        lambda conn: deletion.delete_work_item(conn, who, work_item_id, now=ctx.now())
    )
    return Response(status_code=204)


@router.get(
    "/workitems/{work_item_id}/versions", response_model=Page[VersionSummary], tags=["platform"]
)
async def list_versions(
    work_item_id: str, conn: Conn, who: Caller, limit: Limit = 50, cursor: Cursor = None
) -> dict[str, Any]:
    """The versions, newest first, without their answers (read them from the version)."""
    page = await workitems.list_versions(conn, who, work_item_id, limit=limit, cursor=cursor)
    return {"items": page.items, "nextCursor": page.next_cursor}


@router.get(
    "/workitems/{work_item_id}/versions/{version_id}", response_model=Version, tags=["platform"]
)
async def get_version(work_item_id: str, version_id: str, conn: Conn, who: Caller) -> Response:
    """One version with its answers and documents; `active` names the version in progress.
    The answers are written out as stored: nothing to decode or encode, however large."""
    item, version = await workitems.get_version_row(
        conn, who, work_item_id, version_id, answers=False
    )
    body = await completion.version_with_documents(conn, who, item, version.id, as_stored=True)
    return FastJSONResponse(body)


@router.put(
    "/workitems/{work_item_id}/versions/{version_id}/complete",
    response_model=Version,
    tags=["platform"],
)
async def complete_version(
    work_item_id: str,
    version_id: str,
    ctx: Ctx,
    who: StandaloneCaller,
    token: Annotated[
        str | None,
        Query(description="The one-time token of the post-processing `completeUrl`"),
    ] = None,
) -> dict[str, Any]:
    """Complete a version with the documents it has; fires NewWorkItemVersionComplete.

    A version InProgress needs only the API token. A version in PostProcessing is completed
    through the `completeUrl` of its PostProcessingEvent, which carries `?token=`: the
    receiver also needs an API token of the site (403 without the right `token`)."""
    return await completion.complete(ctx, who, work_item_id, version_id, token=token)


add_source_platform_aliases(router)
