"""A version's documents: stored bytes with their metadata, listed in
assembled order, fetched, replaced and added through the REST API.

Assembled order counts from 0, as the source platform's does: adding a document at order
`n` moves the documents at `n` and after one place on; an order past the end appends.
Documents change only while their version is InProgress or PostProcessing: once a version
is Completed, the documents its NewWorkItemVersionComplete event announced (with their
sha256) are what a receiver will download.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.errors import (
    Conflict,
    FieldError,
    LimitExceeded,
    NotFound,
    PayloadTooLarge,
    ValidationFailed,
)
from docuhooks.identity import service as identity
from docuhooks.identity.models import Principal
from docuhooks.platform import storage, workitems
from docuhooks.platform.access import parse_id
from docuhooks.platform.catalog import DOCX_CONTENT_TYPE
from docuhooks.platform.docxcheck import DocxLimitExceeded, DocxLimits
from docuhooks.platform.templates import TemplateError, check_docx

if TYPE_CHECKING:
    from docuhooks.platform.renderpool import RenderPool
from docuhooks.store.schema import documents, post_processing_originals

DOCX = DOCX_CONTENT_TYPE
PDF = "application/pdf"
MAX_DOCUMENT_BYTES = 50 * 1024 * 1024
_MEDIA_TYPE = re.compile(r"^[\w!#$&^.+-]+/[\w!#$&^.+-]+$")
#: Every column but the bytes: listings and metadata never read the content.
_METADATA = [c for c in documents.c if c.name != "content"]


@dataclass(frozen=True, slots=True)
class NewDocument:
    """A document about to be stored (assembled, uploaded, or returned by post-processing)."""

    name: str
    file_name: str
    content_type: str
    content: bytes


def media_type(content_type: str) -> str:
    """A content type as stored: the media type in lower case, its parameters (a text
    document's charset) kept. Refuses what is not a media type."""
    base, _, parameters = content_type.partition(";")
    value = base.strip().lower()
    if not _MEDIA_TYPE.match(value):
        raise ValidationFailed.of(
            [FieldError("Content-Type", f"{content_type!r} is not a media type such as {PDF}")]
        )
    return f"{value}; {parameters.strip()}" if parameters.strip() else value


def check_content(content_type: str, content: bytes, docx_limits: DocxLimits | None = None) -> None:
    """The bytes must be what the content type says and at most 50 MiB.

    A DOCX must be a zip holding the DOCX parts, a PDF must start with `%PDF`; other types
    are taken as given. Without `docx_limits`, only the DOCX's zip directory is read here:
    its expansion is checked first, in the render pool (`verify_content`), by every caller.
    With them (in a render worker), the DOCX is checked in full against them, the directory
    read no further than `max_entries` (`LimitExceeded` naming the limit).
    """
    content_type = content_type.partition(";")[0].strip().lower()
    if len(content) > MAX_DOCUMENT_BYTES:
        raise PayloadTooLarge(f"a document may be at most {MAX_DOCUMENT_BYTES} bytes")
    if not content:
        raise ValidationFailed.of([FieldError("content", "the document is empty")])
    if content_type == DOCX:
        try:
            if docx_limits is None:
                check_docx(content, inflate=False)
            else:
                check_docx(content, docx_limits)
        except DocxLimitExceeded as exc:
            raise LimitExceeded(exc.code, str(exc), status=exc.status) from None
        except TemplateError as exc:
            raise ValidationFailed.of(
                [FieldError("content", f"Content-Type is DOCX, but {exc}")]
            ) from None
    elif content_type == PDF and not content.startswith(b"%PDF"):
        raise ValidationFailed.of(
            [FieldError("content", "Content-Type is application/pdf, but it does not start %PDF")]
        )


async def verify_content(
    pool: RenderPool, content_type: str, content: bytes, *, site_id: str
) -> None:
    """A DOCX is checked against the `docx_*` limits, in the render pool (in `site_id`'s
    share of it), before anything stores it (or holds a transaction for it): inflating it
    there costs the event loop nothing, whatever the archive claims. Over a limit: 413/422
    naming it."""
    if (
        content_type.partition(";")[0].strip().lower() == DOCX
        and len(content) <= MAX_DOCUMENT_BYTES
    ):
        await pool.verify_docx(content, site_id=site_id)


def clean_file_name(file_name: str, field: str = "fileName") -> str:
    """The last path component only: a file name never names a directory."""
    name = PurePath(file_name.replace("\\", "/")).name.strip()
    if not name or len(name) > 255:
        raise ValidationFailed.of([FieldError(field, "must be a file name of 1 to 255 characters")])
    return name


def content_url(base_url: str, work_item_id: str, version_id: str, document_id: str) -> str:
    """Where a receiver holding an API token downloads the document."""
    return (
        f"{base_url.rstrip('/')}/api/v1/workitems/{work_item_id}"
        f"/versions/{version_id}/documents/{document_id}/content"
    )


def to_api(row: sa.Row[Any], base_url: str, work_item_id: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "fileName": row.file_name,
        "contentType": row.content_type,
        "size": row.size,
        "sha256": row.sha256,
        "assembledOrder": row.assembled_order,
        "createdDate": row.created_at,
        "url": content_url(base_url, work_item_id, row.version_id, row.id),
    }


async def site_base_url(conn: AsyncConnection, site_id: str) -> str:
    site = await identity.get_site(conn, site_id)
    base_url: str = site.base_url
    return base_url


async def rows_of_version(conn: AsyncConnection, version_id: str) -> list[sa.Row[Any]]:
    """The version's documents (metadata only), in assembled order."""
    return list(
        (
            await conn.execute(
                sa.select(*_METADATA)
                .where(documents.c.version_id == version_id)
                .order_by(documents.c.assembled_order, documents.c.created_at)
            )
        ).all()
    )


async def list_for_version(
    conn: AsyncConnection, principal: Principal, work_item_id: str, version_id: str
) -> list[dict[str, Any]]:
    item, version = await workitems.get_version_row(conn, principal, work_item_id, version_id)
    base_url = await site_base_url(conn, principal.site_id)
    return [to_api(row, base_url, item.id) for row in await rows_of_version(conn, version.id)]


async def _document_row(
    conn: AsyncConnection, version_id: str, document_id: str, *, content: bool
) -> sa.Row[Any] | None:
    columns = list(documents.c) if content else _METADATA
    return (
        await conn.execute(
            sa.select(*columns).where(
                documents.c.version_id == version_id, documents.c.id == document_id
            )
        )
    ).first()


async def get(
    conn: AsyncConnection,
    principal: Principal,
    work_item_id: str,
    version_id: str,
    document_id: str,
    *,
    content: bool = False,
) -> tuple[sa.Row[Any], dict[str, Any]]:
    """The document row (with its bytes when `content`) and its API form."""
    item, version = await workitems.get_version_row(conn, principal, work_item_id, version_id)
    document_id = parse_id(document_id, "document")
    row = await _document_row(conn, version.id, document_id, content=content)
    if row is None:
        raise NotFound(f"version {version.id} has no document {document_id}")
    return row, to_api(row, await site_base_url(conn, principal.site_id), item.id)


def _require_open(version: sa.Row[Any]) -> None:
    if version.status not in workitems.OPEN_STATUSES:
        raise Conflict(
            f"version {version.version_number} is {version.status}; its documents can no "
            "longer change"
        )


async def put_content(
    conn: AsyncConnection,
    principal: Principal,
    work_item_id: str,
    version_id: str,
    document_id: str,
    *,
    content_type: str,
    content: bytes,
    name: str | None = None,
    file_name: str | None = None,
    assembled_order: int | None = None,
    now: datetime,
    quota: storage.StorageQuota,
) -> tuple[dict[str, Any], bool]:
    """Replace a document's bytes; returns (document, created).

    As on the source platform, a PUT to a document id the version does not have adds the
    document under that id, when a file name says what it is called (`fileName`).
    Held to the site's storage `quota` for what it adds (a replacement: its growth).
    """
    item, version = await workitems.get_version_row(
        conn, principal, work_item_id, version_id, lock=True
    )
    document_id = parse_id(document_id, "document")
    _require_open(version)
    kind = media_type(content_type)
    check_content(kind, content)
    existing = await _document_row(conn, version.id, document_id, content=False)
    base_url = await site_base_url(conn, principal.site_id)
    if existing is None:
        if not file_name:
            raise NotFound(
                f"version {version.id} has no document {document_id}; to add one under this "
                "id, give its file name (?fileName=…)"
            )
        new = NewDocument(name or PurePath(file_name).stem, file_name, kind, content)
        await storage.admit(
            conn,
            quota,
            version.site_id,
            more_bytes=len(content),
            more_files=1,
            what=f"document {file_name!r}",
        )
        row = await _insert(conn, version, new, assembled_order, now=now, document_id=document_id)
        return to_api(row, base_url, item.id), True
    await storage.admit(
        conn,
        quota,
        version.site_id,
        more_bytes=len(content) - existing.size,
        what=f"the new content of document {existing.file_name!r}",
    )
    changes: dict[str, Any] = {
        "content": content,
        "content_type": kind,
        "size": len(content),
        "sha256": hashlib.sha256(content).hexdigest(),
    }
    if name:
        changes["name"] = _clean_name(name)
    if file_name:
        changes["file_name"] = clean_file_name(file_name)
    await conn.execute(documents.update().where(documents.c.id == existing.id).values(**changes))
    replaced = await _document_row(conn, version.id, existing.id, content=False)
    assert replaced is not None
    return to_api(replaced, base_url, item.id), False


async def add(
    conn: AsyncConnection,
    principal: Principal,
    work_item_id: str,
    version_id: str,
    document: NewDocument,
    *,
    assembled_order: int | None = None,
    now: datetime,
    quota: storage.StorageQuota,
) -> dict[str, Any]:
    """Add a document at `assembled_order` (default: the end); later ones move on one place.
    Refused (`StorageQuotaExceeded`) when it would take the site past its storage `quota`."""
    item, version = await workitems.get_version_row(
        conn, principal, work_item_id, version_id, lock=True
    )
    _require_open(version)
    kind = media_type(document.content_type)
    check_content(kind, document.content)
    await storage.admit(
        conn,
        quota,
        version.site_id,
        more_bytes=len(document.content),
        more_files=1,
        what=f"document {document.file_name!r}",
    )
    row = await _insert(
        conn,
        version,
        NewDocument(document.name, document.file_name, kind, document.content),
        assembled_order,
        now=now,
    )
    return to_api(row, await site_base_url(conn, principal.site_id), item.id)


async def store_assembled(
    conn: AsyncConnection,
    version: sa.Row[Any],
    new_documents: list[NewDocument],
    *,
    now: datetime,
    quota: storage.StorageQuota,
) -> list[sa.Row[Any]]:
    """Store freshly assembled documents at the end of the version, in the order given;
    refused (`StorageQuotaExceeded`, nothing stored) past the site's storage `quota`."""
    await storage.admit(
        conn,
        quota,
        version.site_id,
        more_bytes=sum(len(document.content) for document in new_documents),
        more_files=len(new_documents),
        what="the assembled document" if len(new_documents) == 1 else "the assembled documents",
    )
    for document in new_documents:
        await _insert(conn, version, document, None, now=now)
    return await rows_of_version(conn, version.id)


def _clean_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 255:
        raise ValidationFailed.of([FieldError("name", "must be 1 to 255 characters")])
    return name


async def _insert(
    conn: AsyncConnection,
    version: sa.Row[Any],
    document: NewDocument,
    assembled_order: int | None,
    *,
    now: datetime,
    document_id: str | None = None,
) -> sa.Row[Any]:
    if assembled_order is not None and assembled_order < 0:
        raise ValidationFailed.of([FieldError("assembledOrder", "must be 0 or more")])
    count = (
        await conn.execute(sa.select(sa.func.count()).where(documents.c.version_id == version.id))
    ).scalar_one()
    order = count if assembled_order is None else min(assembled_order, count)
    if order < count:
        await conn.execute(
            documents.update()
            .where(documents.c.version_id == version.id, documents.c.assembled_order >= order)
            .values(assembled_order=documents.c.assembled_order + 1)
        )
    if document_id is not None:
        taken = (
            await conn.execute(sa.select(documents.c.id).where(documents.c.id == document_id))
        ).first()
        if taken is not None:
            raise Conflict(f"document id {document_id} is already used by another version")
    row_id = document_id or str(uuid.uuid4())
    await conn.execute(
        documents.insert().values(
            id=row_id,
            version_id=version.id,
            site_id=version.site_id,
            name=_clean_name(document.name),
            file_name=clean_file_name(document.file_name),
            content_type=document.content_type,
            size=len(document.content),
            sha256=hashlib.sha256(document.content).hexdigest(),
            content=document.content,
            assembled_order=order,
            created_at=now,
        )
    )
    row = await _document_row(conn, version.id, row_id, content=False)
    assert row is not None
    return row


# --- post-processing --------------------------------------------------------------

#: The columns a snapshot of the original documents keeps (all of them).
_SNAPSHOT = [c.name for c in documents.c]


async def keep_originals(conn: AsyncConnection, version_id: str) -> None:
    """Keep the version's documents as they are now, to put back if post-processing fails."""
    await conn.execute(
        post_processing_originals.insert().from_select(
            _SNAPSHOT,
            sa.select(*(documents.c[name] for name in _SNAPSHOT)).where(
                documents.c.version_id == version_id
            ),
        )
    )


async def restore_originals(conn: AsyncConnection, version_id: str) -> None:
    """Put back the documents kept by `keep_originals`, under their ids, whatever was
    replaced, added or renamed meanwhile. The kept copy stays until `drop_originals`."""
    await conn.execute(documents.delete().where(documents.c.version_id == version_id))
    await conn.execute(
        documents.insert().from_select(
            _SNAPSHOT,
            sa.select(*(post_processing_originals.c[name] for name in _SNAPSHOT)).where(
                post_processing_originals.c.version_id == version_id
            ),
        )
    )


async def drop_originals(conn: AsyncConnection, version_id: str) -> None:
    await conn.execute(
        post_processing_originals.delete().where(
            post_processing_originals.c.version_id == version_id
        )
    )


async def rows_for_event(
    conn: AsyncConnection, version_id: str, *, content_up_to: int
) -> list[sa.Row[Any]]:
    """The version's documents in assembled order, each with its bytes when it has at most
    `content_up_to` of them (else `content` is None): what a PostProcessingEvent carries."""
    content = sa.case((documents.c.size <= content_up_to, documents.c.content), else_=sa.null())
    return list(
        (
            await conn.execute(
                sa.select(*_METADATA)
                .add_columns(content.label("content"))
                .where(documents.c.version_id == version_id)
                .order_by(documents.c.assembled_order, documents.c.created_at)
            )
        ).all()
    )


async def apply_returned(
    conn: AsyncConnection,
    version: sa.Row[Any],
    replacements: Mapping[str, NewDocument],
    arranged: Sequence[str | NewDocument],
    *,
    now: datetime,
    quota: storage.StorageQuota,
) -> None:
    """Write a checked inline post-processing reply: each of `replacements` (by document
    id) takes over its document's bytes, type and names; `arranged` is the version's new
    assembled order, an existing document by its id and an added one as itself.

    Refused whole (`StorageQuotaExceeded`, before anything is written) when what it adds,
    replacements counted by their growth, would take the site past its storage `quota`."""
    added = [entry for entry in arranged if not isinstance(entry, str)]
    replaced_sizes = {row.id: row.size for row in await rows_of_version(conn, version.id)}
    await storage.admit(
        conn,
        quota,
        version.site_id,
        more_bytes=sum(len(entry.content) for entry in added)
        + sum(
            len(new.content) - replaced_sizes.get(document_id, 0)
            for document_id, new in replacements.items()
        ),
        more_files=len(added),
        what="the documents the post-processing receiver returned",
    )
    for document_id, new in replacements.items():
        await conn.execute(
            documents.update()
            .where(documents.c.version_id == version.id, documents.c.id == document_id)
            .values(
                name=new.name,
                file_name=new.file_name,
                content_type=new.content_type,
                content=new.content,
                size=len(new.content),
                sha256=hashlib.sha256(new.content).hexdigest(),
            )
        )
    for order, entry in enumerate(arranged):
        if isinstance(entry, str):
            await conn.execute(
                documents.update()
                .where(documents.c.version_id == version.id, documents.c.id == entry)
                .values(assembled_order=order)
            )
            continue
        await conn.execute(
            documents.insert().values(
                id=str(uuid.uuid4()),
                version_id=version.id,
                site_id=version.site_id,
                name=entry.name,
                file_name=entry.file_name,
                content_type=entry.content_type,
                size=len(entry.content),
                sha256=hashlib.sha256(entry.content).hexdigest(),
                content=entry.content,
                assembled_order=order,
                created_at=now,
            )
        )
