"""Deleting a template or a work item: how a site frees room under its storage quota
(`platform.storage`), which would otherwise only ever fill.

A work item goes with everything it holds: its versions, their documents, the originals
kept for a version's post-processing, and its interviews (open ones too) with the answers
stored on them and on its versions. A template goes alone. Either is one transaction, and
the room is free for the site's next write as soon as it commits: the rows deleted take
what they kept off the site's running totals in the same transaction (`platform.storage`'s
triggers, for the rows a cascade deletes too), nothing is kept aside.

A delete is refused, with a 409 `conflict` saying why and nothing deleted, when:

* the template is used by work items. A work item keeps no copy of its template: every
  interview opened or finished reads it (its document, its variables, its event
  elements), so a work item without one could never be edited again; and the database
  would delete those work items with it (`work_items.template_id` cascades). The message
  says how many, and how to list them.
* the template is named in webhooks' `templateIds`. Taking it out of a webhook's list
  would turn a webhook meant for it alone (its list then empty) into one for every
  template; leaving it would leave an id every later change of that webhook refuses (no
  such template). The message names them: change or delete them first.
* a version of the work item is in `PostProcessing`. A receiver holds its documents and may
  still return new ones, complete it through its `completeUrl`, or have the originals put
  back; its deadline bounds the wait, after which the version is Completed or Failed.

Not refused:

* an open interview. An interview someone walked away from stays open for good, so a rule
  against them would leave most work items undeletable. The person in it is told at their
  next step that it no longer exists.
* an interview being finished, its document still rendering (outside any transaction, up
  to `render_time_limit_seconds`). Whichever commits first wins: if the delete does, the
  finish finds its interview gone and stores nothing (404, the quota untouched); if the
  finish does, the delete then finds the version Completed (deleted with the rest) or in
  PostProcessing (409).

Events a work item's versions fired stay, and so do their deliveries, sent or still pending:
they are the webhook log, pruned by retention (`delivery.pruning`). A receiver that fetches
a deleted version's document gets a 404. The audit log records who deleted what.

**Locks.** No site lock (`store.scoped.lock_site`): that lock lets writes that *add* count
in turn. A delete only takes rows away, and a write counting while it runs counts them as
still there: it may refuse what would just have fit, never store past the quota. Deleting
a work item takes its rows in the order every writer of them does (`platform.workitems`):
its row (opening an interview locks it too, so no version is started under the delete;
`FOR NO KEY UPDATE`, which the key share a finish takes of it does not wait for), then its
versions, by number, then its interviews. A finish or a completion in flight holds its
version: the delete waits for it, then deletes what it wrote; one that comes after the
delete holds the versions waits, then finds them gone (404). Callers still run the delete
in `Database.retried`, should PostgreSQL abort it to end a deadlock through other rows.
Deleting a template locks its row, which the work items and webhooks naming it take a
share of (`workitems.create`, `webhooks.validation.reference_errors`), so none is made
for a template being deleted.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import audit
from docuhooks.errors import Conflict, Forbidden, NotFound
from docuhooks.identity.models import Principal
from docuhooks.platform import workitems
from docuhooks.platform.access import parse_id, require_site_admin
from docuhooks.platform.workitems import VersionStatus
from docuhooks.store.schema import (
    documents,
    interviews,
    post_processing_originals,
    templates,
    webhook_scopes,
    webhooks,
    work_item_versions,
    work_items,
)

#: Webhooks a refusal names at most; the rest are counted.
NAMED_WEBHOOKS = 5


# --- templates ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TemplateUse:
    """What refers to a template: how many work items use it, and the webhooks (id, name)
    whose `templateIds` name it, by name."""

    template_id: str
    work_items: int
    webhooks: tuple[tuple[str, str], ...]

    @property
    def blocker(self) -> str | None:
        """Why the template cannot be deleted now (see the module docstring), or None:
        every reason at once, so that one answer says all that is to be done first."""
        reasons: list[str] = []
        if self.work_items:
            reasons.append(
                f"is used by {self.work_items} work item{'s' * (self.work_items != 1)}; delete "
                f"them first (GET /api/v1/workitems?templateId={self.template_id} lists them): "
                "each reads its template whenever an interview opens or finishes"
            )
        if self.webhooks:
            names = [repr(name) for _, name in self.webhooks]
            named = ", ".join(names[:NAMED_WEBHOOKS])
            if len(names) > NAMED_WEBHOOKS:
                named += f" and {len(names) - NAMED_WEBHOOKS} more"
            reasons.append(
                f"is named in the templateIds of webhook{'s' * (len(names) != 1)} {named}; "
                "take it out of them, or delete them, first"
            )
        if not reasons:
            return None
        return f"template {self.template_id} " + "; and it ".join(reasons)


async def template_use(conn: AsyncConnection, site_id: str, template_id: str) -> TemplateUse:
    """The work items and webhooks of the site that refer to the template."""
    used_by = await conn.scalar(
        sa.select(sa.func.count()).where(
            work_items.c.site_id == site_id, work_items.c.template_id == template_id
        )
    )
    named_by = (
        await conn.execute(
            sa.select(webhooks.c.id, webhooks.c.name)
            .select_from(webhook_scopes.join(webhooks))
            .where(
                webhook_scopes.c.kind == "template",
                webhook_scopes.c.scope_id == template_id,
                webhooks.c.site_id == site_id,
            )
            .order_by(webhooks.c.name)
        )
    ).all()
    return TemplateUse(
        template_id=template_id,
        work_items=int(used_by or 0),
        webhooks=tuple((row.id, row.name) for row in named_by),
    )


async def delete_template(
    conn: AsyncConnection, principal: Principal, template_id: str, *, now: datetime
) -> None:
    """Delete the template (SiteAdministrator only): refused while work items use it or
    webhooks name it (`Conflict`), and another site's does not exist."""
    require_site_admin(principal, "deleting a template")
    template_id = parse_id(template_id, "template")
    row = (
        await conn.execute(
            sa.select(
                templates.c.id,
                templates.c.name,
                templates.c.file_name,
                templates.c.sha256,
                sa.func.length(templates.c.content).label("size"),
            )
            .where(templates.c.id == template_id, templates.c.site_id == principal.site_id)
            .with_for_update()
        )
    ).first()
    if row is None:
        raise NotFound(f"template {template_id} does not exist")
    reason = (await template_use(conn, principal.site_id, row.id)).blocker
    if reason is not None:
        raise Conflict(reason + "; nothing was deleted")
    await conn.execute(templates.delete().where(templates.c.id == row.id))
    await audit.record(
        conn,
        principal,
        site_id=principal.site_id,
        now=now,
        action="template.deleted",
        object_type="template",
        object_id=row.id,
        details={
            "name": row.name,
            "fileName": row.file_name,
            "size": int(row.size),
            "sha256": row.sha256,
        },
    )


# --- work items -----------------------------------------------------------------------------


def may_delete_work_item(principal: Principal, item: Any) -> bool:
    """A SiteAdministrator may delete any of the site's work items; anyone else the ones
    they created."""
    return principal.is_site_admin or (
        item.created_by is not None and item.created_by == principal.user_id
    )


def require_may_delete_work_item(principal: Principal, item: Any) -> None:
    if not may_delete_work_item(principal, item):
        raise Forbidden(
            "deleting a work item needs the SiteAdministrator role, or to have created it"
        )


@dataclass(frozen=True, slots=True)
class WorkItemContents:
    """What deleting a work item deletes (and frees), and what would refuse it."""

    versions: int
    documents: int
    bytes: int
    open_interviews: int
    #: The first of its versions in PostProcessing, if any: (number, deadline).
    post_processing: tuple[int, datetime | None] | None

    @property
    def blocker(self) -> str | None:
        if self.post_processing is None:
            return None
        number, deadline = self.post_processing
        until = f", until {deadline.isoformat()} at the latest" if deadline else ""
        return (
            f"version {number} of the work item is in post-processing{until}: its receiver "
            "may still return or complete its documents. Delete the work item once the "
            "version is Completed or Failed"
        )


def _versions_of(work_item_id: str) -> sa.Select[Any]:
    return sa.select(work_item_versions.c.id).where(
        work_item_versions.c.work_item_id == work_item_id
    )


async def work_item_contents(
    conn: AsyncConnection, work_item_id: str, *, lock: bool = False
) -> WorkItemContents:
    """The work item's versions, documents and open interviews, counted. `lock`: its
    versions (by number) and then its interviews are held to the end of the transaction
    first (the order the module docstring gives), so what is counted is what a delete
    removes."""
    query = sa.select(
        work_item_versions.c.version_number,
        work_item_versions.c.status,
        work_item_versions.c.post_processing_deadline,
    ).where(work_item_versions.c.work_item_id == work_item_id)
    if lock:
        query = query.order_by(work_item_versions.c.version_number).with_for_update()
    versions = (await conn.execute(query)).all()
    if lock:
        await conn.execute(
            sa.select(interviews.c.id)
            .where(interviews.c.work_item_id == work_item_id)
            .with_for_update()
        )
    busy = sorted(
        (v.version_number, v.post_processing_deadline)
        for v in versions
        if v.status == VersionStatus.POST_PROCESSING
    )
    stored = (
        await conn.execute(
            sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(documents.c.size), 0)).where(
                documents.c.version_id.in_(_versions_of(work_item_id))
            )
        )
    ).one()
    open_interviews = await conn.scalar(
        sa.select(sa.func.count()).where(
            interviews.c.work_item_id == work_item_id, interviews.c.status == "open"
        )
    )
    return WorkItemContents(
        versions=len(versions),
        documents=int(stored[0]),
        bytes=int(stored[1]),
        open_interviews=int(open_interviews or 0),
        post_processing=busy[0] if busy else None,
    )


async def delete_work_item(
    conn: AsyncConnection, principal: Principal, work_item_id: str, *, now: datetime
) -> WorkItemContents:
    """Delete the work item with everything it holds (see the module docstring); returns
    what went. Refused (`Conflict`) while one of its versions is in PostProcessing;
    `Forbidden` for a caller who is neither a SiteAdministrator nor its creator; another
    site's does not exist. Run it in `Database.retried`."""
    item = await workitems.get_row(conn, principal, work_item_id, lock=True)
    require_may_delete_work_item(principal, item)
    contents = await work_item_contents(conn, item.id, lock=True)
    if contents.blocker is not None:
        raise Conflict(contents.blocker + "; nothing was deleted")
    versions = _versions_of(item.id)
    await conn.execute(interviews.delete().where(interviews.c.work_item_id == item.id))
    await conn.execute(
        post_processing_originals.delete().where(
            post_processing_originals.c.version_id.in_(versions)
        )
    )
    await conn.execute(documents.delete().where(documents.c.version_id.in_(versions)))
    await conn.execute(
        work_item_versions.delete().where(work_item_versions.c.work_item_id == item.id)
    )
    # Its own cascade takes whatever else refers to the work item.
    await conn.execute(work_items.delete().where(work_items.c.id == item.id))
    await audit.record(
        conn,
        principal,
        site_id=principal.site_id,
        now=now,
        action="workitem.deleted",
        object_type="workitem",
        object_id=item.id,
        details={
            "name": item.name,
            "templateId": item.template_id,
            "workGroupId": item.work_group_id,
            "versions": contents.versions,
            "documents": contents.documents,
            "bytes": contents.bytes,
        },
    )
    return contents
