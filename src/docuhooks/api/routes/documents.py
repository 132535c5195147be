"""The document REST API: what receivers use to fetch, replace and add a
version's documents. `{version_id}` may be `active` (the version in progress), and the
source platform's spellings (`/WorkItems/{id}/Versions/{vid}/Documents/{docId}/Content`)
are served too, so its receivers work unchanged."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import Field
from starlette.datastructures import UploadFile

from docuhooks.api.deps import Caller, Conn, Ctx, StandaloneCaller
from docuhooks.api.models import ERRORS, STORAGE_QUOTA, Output
from docuhooks.api.routes.platform_support import (
    add_source_platform_aliases,
    attachment,
    int_param,
    query_param,
)
from docuhooks.errors import BadRequest, FieldError, ValidationFailed
from docuhooks.platform import documents
from docuhooks.platform.storage import StorageQuota

router = APIRouter(
    prefix="/api/v1",
    tags=["documents"],
    responses=ERRORS,
)

DOCUMENTS = "/workitems/{work_item_id}/versions/{version_id}/documents"
_BYTES = {
    "content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}
}


class Document(Output):
    id: str
    name: str
    fileName: str
    contentType: str
    size: int
    sha256: str
    assembledOrder: int = Field(description="Position in the version, counting from 0")
    createdDate: datetime
    url: str = Field(description="GET this with an API token for the document's bytes")


@router.get(DOCUMENTS, response_model=list[Document])
async def list_documents(
    work_item_id: str, version_id: str, conn: Conn, who: Caller
) -> list[dict[str, Any]]:
    """The version's documents in assembled order (metadata; the bytes are at each `url`)."""
    return await documents.list_for_version(conn, who, work_item_id, version_id)


@router.post(
    DOCUMENTS,
    status_code=201,
    response_model=Document,
    responses=STORAGE_QUOTA,
    openapi_extra={"requestBody": _BYTES},
)
async def add_document(
    work_item_id: str, version_id: str, request: Request, ctx: Ctx, who: StandaloneCaller
) -> dict[str, Any]:
    """Add a document at `assembledOrder` (from 0; default and past the end: last); the
    documents at that position and after move on one place.

    Send either `multipart/form-data` with a `file` part (and optional `name`, `fileName`,
    `assembledOrder` fields), or the raw bytes with their `Content-Type` and the same names
    as query parameters (`fileName` is then required).

    A DOCX over the `docx_*` limits is refused (413 or 422) naming the limit; a document
    that would take the site past its storage quota, with 422 `storage_quota_exceeded`."""
    new, order = await _incoming_document(request)
    # Checked before the transaction: no lock is held while the archive is inflated.
    await documents.verify_content(
        ctx.render_pool, new.content_type, new.content, site_id=who.site_id
    )
    async with ctx.db.transaction() as conn:
        return await documents.add(
            conn,
            who,
            work_item_id,
            version_id,
            new,
            assembled_order=order,
            now=ctx.now(),
            quota=StorageQuota.from_settings(ctx.settings),
        )


@router.get(DOCUMENTS + "/{document_id}", response_model=Document)
async def get_document(
    work_item_id: str, version_id: str, document_id: str, conn: Conn, who: Caller
) -> dict[str, Any]:
    _, body = await documents.get(conn, who, work_item_id, version_id, document_id)
    return body


@router.get(DOCUMENTS + "/{document_id}/content", response_class=Response, responses={200: _BYTES})
async def get_document_content(
    work_item_id: str, version_id: str, document_id: str, conn: Conn, who: Caller
) -> Response:
    """The document's bytes, with its content type and file name."""
    row, _ = await documents.get(conn, who, work_item_id, version_id, document_id, content=True)
    return Response(
        row.content,
        media_type=row.content_type,
        headers={"Content-Disposition": attachment(row.file_name), "ETag": f'"{row.sha256}"'},
    )


@router.put(
    DOCUMENTS + "/{document_id}/content",
    response_model=Document,
    responses=STORAGE_QUOTA,
    openapi_extra={"requestBody": _BYTES},
)
async def put_document_content(
    work_item_id: str,
    version_id: str,
    document_id: str,
    request: Request,
    response: Response,
    ctx: Ctx,
    who: StandaloneCaller,
) -> dict[str, Any]:
    """Replace the document's bytes with the request body (its `Content-Type` is the new
    content type); `name` and `fileName` query parameters rename it.

    A document id the version does not have is added under that id when `fileName` is given
    (at `assembledOrder`), as the source platform's API does: the reply is then 201.

    What it adds (a replacement: its growth) is held to the site's storage quota: past it,
    422 `storage_quota_exceeded`; a replacement no larger is always taken."""
    content_type = request.headers.get("content-type")
    if not content_type:
        raise BadRequest("send the document's Content-Type (e.g. application/pdf)")
    content = await request.body()
    await documents.verify_content(ctx.render_pool, content_type, content, site_id=who.site_id)
    async with ctx.db.transaction() as conn:
        body, created = await documents.put_content(
            conn,
            who,
            work_item_id,
            version_id,
            document_id,
            content_type=content_type,
            content=content,
            name=query_param(request, "name"),
            file_name=query_param(request, "fileName"),
            assembled_order=int_param(query_param(request, "assembledOrder"), "assembledOrder"),
            now=ctx.now(),
            quota=StorageQuota.from_settings(ctx.settings),
        )
    if created:
        response.status_code = 201
    return body


async def _incoming_document(request: Request) -> tuple[documents.NewDocument, int | None]:
    """A document from a multipart form or a raw body with query parameters."""
    content_type = request.headers.get("content-type", "")
    if content_type.lower().startswith("multipart/form-data"):
        form = await request.form()
        upload = form.get("file")
        if not isinstance(upload, UploadFile):
            raise ValidationFailed.of([FieldError("file", "the form needs a file part")])

        def field(name: str) -> str | None:
            value = form.get(name) or query_param(request, name)
            return value if isinstance(value, str) else None

        file_name = field("fileName") or upload.filename or ""
        return (
            documents.NewDocument(
                name=field("name") or _stem(file_name),
                file_name=file_name,
                content_type=upload.content_type or "application/octet-stream",
                content=await upload.read(),
            ),
            int_param(field("assembledOrder"), "assembledOrder"),
        )
    if not content_type:
        raise BadRequest("send the document's Content-Type, or a multipart/form-data form")
    raw_name = query_param(request, "fileName")
    if not raw_name:
        raise ValidationFailed.of([FieldError("fileName", "is required (query parameter)")])
    return (
        documents.NewDocument(
            name=query_param(request, "name") or _stem(raw_name),
            file_name=raw_name,
            content_type=content_type,
            content=await request.body(),
        ),
        int_param(query_param(request, "assembledOrder"), "assembledOrder"),
    )


def _stem(file_name: str) -> str:
    return file_name.rsplit(".", 1)[0] if "." in file_name else file_name


add_source_platform_aliases(router)
