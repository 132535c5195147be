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

**Running totals.** Counting is on the path of every such write, under the site's lock (on
SQLite, on the event loop every site's requests share), so it must not grow with what the
site keeps: interviews are never pruned, and summing every answer set of a site of 200,000
interviews took 30–40 ms a write. What a site keeps is therefore kept as it changes, in
`storage_usage`: a row for each change, the bytes and files it added (or, negative, freed),
and the site's usage is the sum of its rows, read from their index alone
(`ix_storage_usage_site`). Triggers in the database write those rows (migration 0035), for
every insert, delete and change of size of a document, template, version's or interview's
answers: whatever writes them (the API, the web UI, post-processing, a delete, a foreign
key's cascade), so no code path can forget one, and a write refused or rolled back takes its
rows with it. (Not SQLite's `INSERT OR REPLACE`: the row it replaces is deleted without
firing a trigger. No code uses it on these tables.) Rows are only ever added, so writers of
a site never wait for one another there (a single row of totals, updated by every write,
would make each wait for the one before to commit).

So that a sum stays a few rows, a write whose site has more than `FOLD_AFTER` rows folds
them into one (`fold`), in the write's transaction (rolled back with it, its rows given
back): it deletes the site's rows, returning them, and adds one row of exactly their sum. It
needs no lock and waits for no one. On PostgreSQL (READ COMMITTED) the delete sees only the
rows committed when it starts: a row another writer adds meanwhile is not taken, and counts
as it is once committed. It takes only rows no other fold holds (`FOR UPDATE SKIP LOCKED`):
two folds of a site never take a row twice, nor wait for each other. On SQLite writers take
turns. Every write through `admit` checks, also those it does not count (one that adds
nothing, every write of an installation without a quota), so that no site's rows grow for
good. The room to put back (`_put_back`) is read live, as before: a few versions at most.
`recount` sums every row as counting did before, to check the totals against.

Refusing is `StorageQuotaExceeded`, a 422 `storage_quota_exceeded` naming the setting. 422,
as for the other limits (`LimitExceeded`): not 507 Insufficient Storage (WebDAV's, which Box
and OneDrive answer), a 5xx that HTTP clients retry and monitoring counts as the server's
fault; not 413 (this request alone is not too large, a site with room takes it); not 403
(here that means a role is missing).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.errors import LimitExceeded
from docuhooks.settings import Settings
from docuhooks.store.prepared import Prepared
from docuhooks.store.schema import (
    documents,
    interviews,
    post_processing_originals,
    storage_usage,
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


#: A site's rows of `storage_usage` past which a write folds them into one.
FOLD_AFTER = 100

_SITE = sa.bindparam("site_id", type_=sa.String)


def _put_back() -> sa.Select[Any]:
    """What putting back the originals of the site's versions in post-processing would add:
    for each, by how much its kept originals exceed its documents now (0 when they do not).
    The site's originals are read from their index by site, each version's documents from
    theirs by version: a handful of versions, however much the site keeps."""
    kept = (
        sa.select(
            post_processing_originals.c.version_id,
            sa.func.sum(post_processing_originals.c.size).label("bytes"),
            sa.func.count().label("files"),
        )
        .where(post_processing_originals.c.site_id == _SITE)
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
    return sa.select(
        sa.func.coalesce(
            sa.func.sum(sa.case((kept.c.bytes > now_bytes, kept.c.bytes - now_bytes), else_=0)),
            0,
        ).label("bytes"),
        sa.func.coalesce(
            sa.func.sum(sa.case((kept.c.files > now_files, kept.c.files - now_files), else_=0)),
            0,
        ).label("files"),
    )


_TOTALS = (
    sa.select(
        sa.func.coalesce(sa.func.sum(storage_usage.c.bytes), 0).label("bytes"),
        sa.func.coalesce(sa.func.sum(storage_usage.c.files), 0).label("files"),
        sa.func.count().label("rows"),
    )
    .where(storage_usage.c.site_id == _SITE)
    .subquery("totals")
)
_PUT_BACK = _put_back().subquery("put_back")
#: What the site keeps, its room to put back and how many rows its totals are in, in one
#: round trip: a sum of the site's few rows of `storage_usage` from its index alone.
_KEPT = Prepared(
    sa.select(
        (_TOTALS.c.bytes + _PUT_BACK.c.bytes).label("bytes"),
        (_TOTALS.c.files + _PUT_BACK.c.files).label("files"),
        _TOTALS.c.rows,
    ).select_from(_TOTALS.join(_PUT_BACK, sa.true()))
)
#: A row of the site's past the first `FOLD_AFTER`, if it has one: whether to fold, read
#: from the index without counting further.
_PAST_FOLD = Prepared(
    sa.select(storage_usage.c.id)
    .where(storage_usage.c.site_id == _SITE)
    .limit(1)
    .offset(FOLD_AFTER)
)
#: Takes the site's rows away, returning them. PostgreSQL: only the rows no other fold
#: holds (`SKIP LOCKED`), so two folds of a site never wait for each other, and neither
#: sees the rows a writer has added but not committed: those stay, counted as they were.
_TAKE = (
    storage_usage.delete()
    .where(
        storage_usage.c.site_id == _SITE,
        storage_usage.c.id.in_(
            sa.select(storage_usage.c.id)
            .where(storage_usage.c.site_id == _SITE)
            .with_for_update(skip_locked=True)
        ),
    )
    .returning(storage_usage.c.bytes, storage_usage.c.files)
)


async def usage(conn: AsyncConnection, site_id: str) -> Usage:
    """What the site keeps (its running totals, `storage_usage`), with the room its
    versions in post-processing would take back (`_put_back`): about the same few rows
    read however much the site keeps."""
    kept = await _KEPT.one(conn, {"site_id": site_id})
    return Usage(bytes=int(kept.bytes), files=int(kept.files))


async def fold(conn: AsyncConnection, site_id: str) -> None:
    """Replace the site's rows of `storage_usage` by one of their sum, in the caller's
    transaction. It waits for no one and no one waits for it: a writer's row added
    meanwhile is left as it is (on PostgreSQL it was not visible to the delete; on SQLite
    writers take turns), and on PostgreSQL rows another fold holds are skipped."""
    taken = (await conn.execute(_TAKE, {"site_id": site_id})).all()
    total_bytes = sum(int(row.bytes) for row in taken)
    total_files = sum(int(row.files) for row in taken)
    if total_bytes or total_files:
        await conn.execute(
            storage_usage.insert().values(site_id=site_id, bytes=total_bytes, files=total_files)
        )


async def recount(conn: AsyncConnection, site_id: str) -> Usage:
    """What the site keeps, summed from every document, template and answer set it has
    (from indexes by site), with the room to put back: what `usage` reads from the running
    totals, counted again from the rows themselves, however long that takes (it grows with
    the site). For checking the totals, not for a write's path."""
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
    in_answers = (
        await conn.execute(
            sa.select(
                *(
                    sa.select(sa.func.coalesce(sa.func.sum(table.c.answers_size), 0))
                    .where(table.c.site_id == _SITE)
                    .scalar_subquery()
                    for table in (work_item_versions, interviews)
                )
            ),
            {"site_id": site_id},
        )
    ).one()
    put_back = (await conn.execute(_put_back(), {"site_id": site_id})).one()
    return Usage(
        bytes=int(in_documents[0])
        + int(in_templates[0])
        + sum(int(size) for size in in_answers)
        + int(put_back.bytes),
        files=int(in_documents[1]) + int(in_templates[1]) + int(put_back.files),
    )


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
    one. `what` names what was to be stored, for the message.

    Either way, the site's running totals are folded into one row when they have grown
    past `FOLD_AFTER` rows, so that the next count reads a few rows again: also where
    nothing is counted (a write that adds nothing, or an installation without a quota),
    which would otherwise add a row with every write for good."""
    counts_bytes = bool(quota.bytes) and more_bytes > 0
    counts_files = bool(quota.files) and more_files > 0
    if not counts_bytes and not counts_files:
        # Nothing added that a limit counts: allowed whatever the site holds, and without
        # its lock (a fold needs none).
        if await _PAST_FOLD.first(conn, {"site_id": site_id}) is not None:
            await fold(conn, site_id)
        return
    await lock_site(conn, site_id)
    row = await _KEPT.one(conn, {"site_id": site_id})
    kept = Usage(bytes=int(row.bytes), files=int(row.files))
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
    if row.rows > FOLD_AFTER:
        await fold(conn, site_id)


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
