"""Work items and their versions.

A version's status moves InProgress → (PostProcessing) → Completed, or to Failed; version
numbers count 1, 2, 3… per work item. The version a receiver is working on can be named
`active` in a URL, as the source platform's API allows: the newest version not yet
Completed or Failed.

**Lock order.** Every transaction that writes a work item's rows takes their locks in one
order, so that no two of them each hold a row the other waits for. On PostgreSQL such a
cycle is a deadlock, which it ends by aborting one of the two (40P01): its caller's 500.

1. The work item's row, `FOR NO KEY UPDATE` (`get_row(lock=True)`): opening an interview
   (so that two opens cannot both number a version) and deleting the work item.
2. Its version's row, `FOR UPDATE` (`get_version_row(lock=True)`): before any of the
   version's interviews, documents, or the originals kept for its post-processing, which
   only a transaction holding their version writes. A delete holds all the work item's
   versions, by number.
3. The version's interviews. An interview's version never changes: saving its answers,
   writing its webhooks' answers and finishing it find the version and hold it before the
   interview (`platform.interviews`); completing a version closes its open interviews
   once it holds it (`platform.completion`); opening an interview holds the version before
   it replaces the open one.
4. The site's lock (`store.scoped.lock_site`, taken by `storage.admit`), just before the
   write it counts. (Beneath a version held, the order of its interviews and this lock
   could not close a cycle anyway, as no one else writes those interviews; a
   post-processing driver closes them after it.)
5. The work item's order lock (`ORDER_LOCK_PREFIX` in `platform.completion`), last of all:
   a completion takes it after its event is written, when its version's deliveries to
   `orderedDelivery` webhooks may have to wait for an earlier version or it may let later
   ones go, so that two such completions read each other's deliveries, not miss them. Its
   holder only reads and writes the work item's deliveries, which no one holds while waiting
   for it, and commits. Except a post-processing driver's claim (`claim_due`), which
   completes several versions in one transaction and goes on after one's order lock to the
   next: it holds all of them from its start (`FOR UPDATE SKIP LOCKED`, waiting for none),
   takes no site lock (putting the originals back counts nothing), and completes them by
   work item, so two drivers take these locks in one order. A claim that took the site's
   lock, or waited for a version, after an order lock would wait for a finish that holds
   them while it waits for that order lock.

So the paths are: finishing an interview, version → interview → site → its document and
completion event → order; completing through the API, version → interviews → event →
order; saving answers, version → interview → site; opening, work item → version (one it
starts: site → new version) → interviews → site; a document upload, version → site; a
post-processing driver, version (a claim skips those held, `FOR UPDATE SKIP LOCKED`;
settling a call waits for it) → site → documents → interviews → event → order; deleting,
work item → versions → interviews.

Two locks fall outside the list. Writing a version (or an interview) a second time in one
transaction has PostgreSQL check its reference to the work item again, a key share of the
work item's row taken late: `FOR NO KEY UPDATE` does not keep it out (only removing the row
does, and the delete holds every version first), so it closes no cycle. And a version's
event reaches its webhooks' rows and their deliveries', which the delivery workers and
administrators' changes take in their own order (a webhook's delete takes its deliveries,
then its row; a completion key-share-locks the webhook rows its event's deliveries name, then
lets go the deliveries held behind it): the finish, the completion, and a post-processing
driver's claim and settle run in `Database.retried`, so that should PostgreSQL end such a
cycle by aborting one, it runs again rather than answer 500 or leave its versions to the
next sweep.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.answers import AnswerSet, parse_stored
from docuhooks.core import jsontext
from docuhooks.errors import FieldError, NotFound, ValidationFailed
from docuhooks.identity.models import Principal
from docuhooks.platform import catalog, storage, workgroups
from docuhooks.platform.access import parse_id
from docuhooks.store import pagination
from docuhooks.store.schema import templates, work_groups, work_item_versions, work_items

ACTIVE = "active"


class VersionStatus(StrEnum):
    IN_PROGRESS = "InProgress"
    POST_PROCESSING = "PostProcessing"
    COMPLETED = "Completed"
    FAILED = "Failed"


#: Statuses in which a version's answers and documents may still change.
OPEN_STATUSES = (VersionStatus.IN_PROGRESS, VersionStatus.POST_PROCESSING)


def to_api(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "workGroupId": row.work_group_id,
        "templateId": row.template_id,
        "createdDate": row.created_at,
        "createdBy": row.created_by,
    }


def version_summary(row: sa.Row[Any]) -> dict[str, Any]:
    """A version as lists show it: without its answers, which may be megabytes each (a
    version's answers are read from the version itself, `version_to_api`)."""
    return {
        "id": row.id,
        "workItemId": row.work_item_id,
        "versionNumber": row.version_number,
        "status": row.status,
        "postProcessing": row.post_processing,
        "createdDate": row.created_at,
        "createdBy": row.created_by,
        "completedDate": row.completed_at,
    }


def version_to_api(
    row: sa.Row[Any], documents: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body = version_summary(row)
    body["answers"] = row.answers
    if documents is not None:
        body["documents"] = documents
    return body


#: Every column of a version but its answers: what lists and interview steps that do not
#: show the answers read, so megabytes of stored answers are not decoded for nothing.
SUMMARY_COLUMNS = [column for column in work_item_versions.c if column.name != "answers"]
#: Every column, the answers as their stored JSON text, to be passed on as they are.
TEXT_COLUMNS = [
    *SUMMARY_COLUMNS,
    sa.cast(work_item_versions.c.answers, sa.Text).label("answers"),
]


def answers_of(row: sa.Row[Any]) -> AnswerSet:
    """The answer set stored on a version or an interview (canonical answer JSON)."""
    return parse_stored(row.answers)


async def create(
    conn: AsyncConnection,
    principal: Principal,
    *,
    work_group_id: str,
    template_id: str,
    name: str,
    now: datetime,
) -> dict[str, Any]:
    name = name.strip()
    errors: list[FieldError] = []
    if not 1 <= len(name) <= 200:
        errors.append(FieldError("name", "must be 1 to 200 characters"))
    for field, table, value in (
        ("workGroupId", work_groups, work_group_id),
        ("templateId", templates, template_id),
    ):
        try:
            canonical = parse_id(value, field)
        except NotFound:
            errors.append(FieldError(field, f"{value!r} is not an id"))
            continue
        # A share of its row: a template being deleted (`platform.deletion`) is waited
        # for, and then is not found, rather than failing the insert.
        found = (
            await conn.execute(
                sa.select(table.c.id)
                .where(table.c.id == canonical, table.c.site_id == principal.site_id)
                .with_for_update(read=True, key_share=True)
            )
        ).first()
        if found is None:
            errors.append(FieldError(field, f"no such object in this site: {canonical}"))
    if errors:
        raise ValidationFailed.of(errors)
    row_id = str(uuid.uuid4())
    await conn.execute(
        work_items.insert().values(
            id=row_id,
            site_id=principal.site_id,
            work_group_id=parse_id(work_group_id, "work group"),
            template_id=parse_id(template_id, "template"),
            name=name,
            created_at=now,
            created_by=principal.user_id,
        )
    )
    return to_api(await get_row(conn, principal, row_id))


async def get_row(
    conn: AsyncConnection, principal: Principal, work_item_id: str, *, lock: bool = False
) -> sa.Row[Any]:
    """The work item, if it is in the caller's site. `lock` holds it (PostgreSQL) for the
    rest of the transaction against another such lock (a delete's, an interview opening's).
    It is `FOR NO KEY UPDATE`: a transaction that changes a version of the work item twice
    (finishing an interview does) has PostgreSQL check the version's reference to it again,
    which takes a key share of its row; a `FOR UPDATE` held here would make that check
    wait, a deadlock when the holder then waits for the finish's version (the module's lock
    order)."""
    work_item_id = parse_id(work_item_id, "work item")
    query = sa.select(work_items).where(
        work_items.c.id == work_item_id, work_items.c.site_id == principal.site_id
    )
    if lock:
        query = query.with_for_update(key_share=True)
    row = (await conn.execute(query)).first()
    if row is None:
        raise NotFound(f"work item {work_item_id} does not exist")
    return row


async def list_page(
    conn: AsyncConnection,
    principal: Principal,
    *,
    limit: int,
    cursor: str | None,
    work_group_id: str | None = None,
    template_id: str | None = None,
    name_contains: str | None = None,
) -> pagination.Page[dict[str, Any]]:
    """Newest first; `name_contains` keeps the work items whose name holds it, in any
    letter case (`%` and `_` are plain characters)."""
    query = sa.select(work_items).where(work_items.c.site_id == principal.site_id)
    if name_contains:
        query = query.where(
            sa.func.lower(work_items.c.name).contains(name_contains.lower(), autoescape=True)
        )
    if work_group_id is not None:
        group = await workgroups.get_row(conn, principal, work_group_id)
        query = query.where(work_items.c.work_group_id == group.id)
    if template_id is not None:
        template_id = await catalog.get_id(conn, principal, template_id)
        query = query.where(work_items.c.template_id == template_id)
    query = pagination.apply(
        query, work_items.c.created_at, work_items.c.id, limit=limit, cursor=cursor
    )
    rows = list((await conn.execute(query)).all())
    return pagination.page_of(rows, limit, to_api)


async def list_versions(
    conn: AsyncConnection,
    principal: Principal,
    work_item_id: str,
    *,
    limit: int,
    cursor: str | None,
) -> pagination.Page[dict[str, Any]]:
    """The work item's versions, newest first, a page at a time, without their answers: a
    work item edited many times holds many versions, each with up to a whole answer set."""
    item = await get_row(conn, principal, work_item_id)
    query = pagination.apply(
        sa.select(*SUMMARY_COLUMNS).where(work_item_versions.c.work_item_id == item.id),
        work_item_versions.c.created_at,
        work_item_versions.c.id,
        limit=limit,
        cursor=cursor,
    )
    rows = list((await conn.execute(query)).all())
    return pagination.page_of(rows, limit, version_summary)


async def get_version_row(
    conn: AsyncConnection,
    principal: Principal,
    work_item_id: str,
    version_id: str,
    *,
    lock: bool = False,
    answers: bool = True,
    text: bool = False,
) -> tuple[sa.Row[Any], sa.Row[Any]]:
    """The work item and its version `version_id` (or `active`); 404 for anything else.
    Without `answers`, the version's row has no `answers` (nor their cost); with `text`,
    they are the stored JSON text, not decoded."""
    item = await get_row(conn, principal, work_item_id)
    columns = SUMMARY_COLUMNS if not answers else TEXT_COLUMNS if text else work_item_versions.c
    query = sa.select(*columns).where(work_item_versions.c.work_item_id == item.id)
    if version_id.lower() == ACTIVE:
        query = query.where(work_item_versions.c.status.in_(list(OPEN_STATUSES))).order_by(
            work_item_versions.c.version_number.desc()
        )
        missing = f"work item {item.id} has no active version (none is in progress)"
    else:
        version_id = parse_id(version_id, "version")
        query = query.where(work_item_versions.c.id == version_id)
        missing = f"work item {item.id} has no version {version_id}"
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query.limit(1))).first()
    if row is None:
        raise NotFound(missing)
    return item, row


async def version_in_progress(conn: AsyncConnection, work_item_id: str) -> sa.Row[Any] | None:
    return (
        await conn.execute(
            sa.select(work_item_versions)
            .where(
                work_item_versions.c.work_item_id == work_item_id,
                work_item_versions.c.status == VersionStatus.IN_PROGRESS,
            )
            .order_by(work_item_versions.c.version_number.desc())
            .limit(1)
        )
    ).first()


async def start_version(
    conn: AsyncConnection,
    principal: Principal,
    work_item: sa.Row[Any],
    *,
    now: datetime,
    quota: storage.StorageQuota,
) -> sa.Row[Any]:
    """A new InProgress version, numbered after the last one, starting from the answers of
    the newest finished version, Completed or still in PostProcessing (editing a work item
    continues from where it was; post-processing changes documents, never answers).

    The answers are copied by the database, with their size: up to a whole answer set is
    neither decoded nor encoded again to be written. The copy counts towards the site's
    storage quota (`StorageQuotaExceeded`: nothing is written).

    The caller holds the work item locked (`get_row(..., lock=True)`)."""
    newest = (
        await conn.execute(
            sa.select(work_item_versions.c.version_number)
            .where(work_item_versions.c.work_item_id == work_item.id)
            .order_by(work_item_versions.c.version_number.desc())
            .limit(1)
        )
    ).scalar()
    finished = (
        await conn.execute(
            sa.select(work_item_versions.c.id, work_item_versions.c.answers_size)
            .where(
                work_item_versions.c.work_item_id == work_item.id,
                work_item_versions.c.status.in_(
                    (VersionStatus.COMPLETED, VersionStatus.POST_PROCESSING)
                ),
            )
            .order_by(work_item_versions.c.version_number.desc())
            .limit(1)
        )
    ).first()
    version_id = str(uuid.uuid4())
    values = {
        "id": version_id,
        "work_item_id": work_item.id,
        "site_id": work_item.site_id,
        "version_number": (newest or 0) + 1,
        "status": VersionStatus.IN_PROGRESS.value,
        "created_at": now,
        "created_by": principal.user_id,
    }
    await storage.admit(
        conn,
        quota,
        work_item.site_id,
        more_bytes=finished.answers_size if finished is not None else len(_NO_ANSWERS),
        what=f"the answers version {values['version_number']} starts from",
    )
    if finished is None:
        await conn.execute(
            work_item_versions.insert().values(
                **values, answers=orjson.Fragment(_NO_ANSWERS), answers_size=len(_NO_ANSWERS)
            )
        )
    else:
        source = work_item_versions.alias("finished")
        await conn.execute(
            work_item_versions.insert().from_select(
                [*values, "answers", "answers_size"],
                sa.select(
                    *(
                        sa.literal(value, type_=work_item_versions.c[name].type).label(name)
                        for name, value in values.items()
                    ),
                    source.c.answers,
                    source.c.answers_size,
                ).where(source.c.id == finished.id),
            )
        )
    return (
        await conn.execute(
            sa.select(work_item_versions).where(work_item_versions.c.id == version_id)
        )
    ).one()


#: The answers of a version that starts from none, as stored.
_NO_ANSWERS = jsontext.dumpb(AnswerSet().to_json())
