"""Each site's storage quota: the bytes of the documents, templates and answer sets it keeps,
and the number of its documents and templates.

Sites share one database, and so one disk: without a quota one site could upload 50 MiB
documents (or assemble 64 MiB ones) until the disk is full, and every site stops. So every
write that stores bytes for a site, however they come, is held to the site's quota first:

* uploads: a document added or replaced through the document API (`POST …/documents`,
  `PUT …/documents/{id}/content`) and a template, through the API or the web UI;
* what the platform makes: the document finishing an interview assembles, and the
  documents a post-processing receiver returns in its reply;
* answer sets: an interview's answers, saved through the API or the web UI or changed by
  interview webhooks, are kept on the interview and on its version, both counted; opening
  an interview keeps a copy of its version's answers, and a new version starts from a copy
  of the last one's (`platform.interviews`, `platform.workitems.start_version`).

The check and the write are one transaction, under the site's lock (`store.scoped.
lock_site`): two uploads racing are counted one after the other, never both against the
same total, so together they never pass the quota. A write that adds nothing (a document
replaced by one no larger, answers by ones no larger) is never refused, even above the
quota; neither is putting back a version's original documents when its post-processing
fails, the one write that must not fail.

What is counted is what the site keeps for good: its documents, templates and answer sets.
Answer sets count in bytes (each kept with its size, `answers_size`, the bytes of its stored
JSON), not as files: they are parts of a version or an interview, not files a site uploads
or downloads, and a site that keeps many documents is not kept from running interviews by
the file count. The copy of a version's documents kept while it is post-processed (to put
back if that fails) counts only for the room it would take back: by what the version's
documents now are smaller than it (or fewer). Otherwise a receiver could shrink them, the
room freed would go to another upload, and putting the originals back (never refused) would
take the site past its quota, by as much again each time.

Refusing is `StorageQuotaExceeded`, a 422 `storage_quota_exceeded` naming the setting. 422,
as for the other limits (`LimitExceeded`): not 507 Insufficient Storage (WebDAV's, which Box
and OneDrive answer), a 5xx that HTTP clients retry and monitoring counts as the server's
fault; not 413 (this request alone is not too large, a site with room takes it); not 403
(here that means a role is missing).
"""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.errors import LimitExceeded
from docuhooks.settings import Settings
from docuhooks.store.schema import (
    documents,
    interviews,
    post_processing_originals,
    templates,
    work_item_versions,
)
from docuhooks.store.scoped import lock_site

#: What a refusal tells the site to do.
MAKE_ROOM = (
    "The site makes room by deleting work items or templates it no longer needs "
    "(DELETE /api/v1/workitems/{id} or /api/v1/templates/{id}, or Delete in the web UI), "
    "or the installation's operator can raise the quota"
)


class StorageQuotaExceeded(LimitExceeded):
    """Storing this would take the site past its storage quota; nothing was stored."""

    def __init__(self, message: str) -> None:
        super().__init__("storage_quota_exceeded", message, status=422)


@dataclass(frozen=True, slots=True)
class StorageQuota:
    """The most one site may keep; 0 means no limit."""

    bytes: int = 0
    files: int = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> StorageQuota:
        return cls(settings.site_storage_quota_bytes, settings.site_storage_quota_files)


@dataclass(frozen=True, slots=True)
class Usage:
    """What a site keeps: the bytes of its documents, templates and answer sets together,
    and the number of its documents and templates."""

    bytes: int
    files: int


#: The bytes of the site's answer sets, on its versions and its interviews, each summed
#: from an index of its table by site and size alone.
_ANSWER_BYTES = sa.select(
    *(
        sa.select(sa.func.coalesce(sa.func.sum(table.c.answers_size), 0))
        .where(table.c.site_id == sa.bindparam("site_id"))
        .scalar_subquery()
        for table in (work_item_versions, interviews)
    )
)


async def usage(conn: AsyncConnection, site_id: str) -> Usage:
    """The site's documents, templates and answer sets, summed (documents and answer sets
    from indexes alone), and the room its versions in post-processing would take back
    (`_to_put_back`)."""
    in_documents = (
        await conn.execute(
            sa.select(sa.func.coalesce(sa.func.sum(documents.c.size), 0), sa.func.count()).where(
                documents.c.site_id == site_id
            )
        )
    ).one()
    in_templates = (
        await conn.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(sa.func.length(templates.c.content)), 0),
                sa.func.count(),
            ).where(templates.c.site_id == site_id)
        )
    ).one()
    in_answers = (await conn.execute(_ANSWER_BYTES, {"site_id": site_id})).one()
    to_put_back = await _to_put_back(conn, site_id)
    return Usage(
        bytes=int(in_documents[0])
        + int(in_templates[0])
        + sum(int(size) for size in in_answers)
        + to_put_back.bytes,
        files=int(in_documents[1]) + int(in_templates[1]) + to_put_back.files,
    )


async def _to_put_back(conn: AsyncConnection, site_id: str) -> Usage:
    """What putting back the originals of the site's versions in post-processing would add:
    for each, by how much its kept originals exceed its documents now (0 when they do not)."""
    kept = (
        sa.select(
            post_processing_originals.c.version_id,
            sa.func.sum(post_processing_originals.c.size).label("bytes"),
            sa.func.count().label("files"),
        )
        .where(post_processing_originals.c.site_id == site_id)
        .group_by(post_processing_originals.c.version_id)
        .subquery()
    )
    now_bytes = sa.func.coalesce(
        sa.select(sa.func.sum(documents.c.size))
        .where(documents.c.version_id == kept.c.version_id)
        .scalar_subquery(),
        0,
    )
    now_files = (
        sa.select(sa.func.count())
        .where(documents.c.version_id == kept.c.version_id)
        .scalar_subquery()
    )
    row = (
        await conn.execute(
            sa.select(
                sa.func.coalesce(
                    sa.func.sum(
                        sa.case((kept.c.bytes > now_bytes, kept.c.bytes - now_bytes), else_=0)
                    ),
                    0,
                ),
                sa.func.coalesce(
                    sa.func.sum(
                        sa.case((kept.c.files > now_files, kept.c.files - now_files), else_=0)
                    ),
                    0,
                ),
            )
        )
    ).one()
    return Usage(bytes=int(row[0]), files=int(row[1]))


async def admit(
    conn: AsyncConnection,
    quota: StorageQuota,
    site_id: str,
    *,
    more_bytes: int,
    more_files: int = 0,
    what: str = "this",
) -> None:
    """Take the site's lock and refuse (`StorageQuotaExceeded`) a write that would add
    `more_bytes` and `more_files` (either may be negative: a replacement) and take the site
    past its quota. Call it in the transaction that writes, after its other locks (for a work
    item's rows: its version's and its interviews', `platform.workitems`) and just before
    the write: the lock holds until the write commits, so the site's next write counts this
    one. `what` names what was to be stored, for the message."""
    counts_bytes = bool(quota.bytes) and more_bytes > 0
    counts_files = bool(quota.files) and more_files > 0
    if not counts_bytes and not counts_files:
        return  # nothing added that a limit counts: allowed whatever the site holds
    await lock_site(conn, site_id)
    kept = await usage(conn, site_id)
    if counts_bytes and kept.bytes + more_bytes > quota.bytes:
        raise StorageQuotaExceeded(
            f"storing {what} ({more_bytes} bytes more) would take the site past its storage "
            f"quota (site_storage_quota_bytes: {quota.bytes} bytes; its documents, templates "
            f"and answer sets would take {kept.bytes + more_bytes}); nothing was stored. "
            f"{MAKE_ROOM}"
        )
    if counts_files and kept.files + more_files > quota.files:
        raise StorageQuotaExceeded(
            f"storing {what} would take the site past the {quota.files} documents and "
            f"templates it may keep (site_storage_quota_files; it keeps {kept.files}); "
            f"nothing was stored. {MAKE_ROOM}"
        )


async def room_left(conn: AsyncConnection, quota: StorageQuota, site_id: str, *, what: str) -> None:
    """Refuse (`StorageQuotaExceeded`) at once when the site has no room for another file
    or byte, before work whose result would then be refused (an assembly): without the
    site's lock, so another write may still take the room meanwhile; `admit`, when the
    result is stored, decides."""
    if not quota.bytes and not quota.files:
        return
    kept = await usage(conn, site_id)
    if (quota.bytes and kept.bytes >= quota.bytes) or (quota.files and kept.files >= quota.files):
        raise StorageQuotaExceeded(
            "the site's documents, templates and answer sets fill its storage quota "
            f"({kept.bytes} of {quota.bytes or 'unlimited'} bytes, site_storage_quota_bytes; "
            f"{kept.files} of {quota.files or 'unlimited'} documents and templates, "
            f"site_storage_quota_files), so {what} cannot be stored; nothing was changed. "
            f"{MAKE_ROOM}"
        )
