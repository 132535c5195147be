"""Work groups: named groups of work items, one site each."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.errors import FieldError, ValidationFailed
from docuhooks.identity.models import Principal
from docuhooks.platform.access import require_site_admin
from docuhooks.store import pagination
from docuhooks.store.schema import work_groups
from docuhooks.store.scoped import fetch_in_site, insert_named


def to_api(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "description": row.description,
        "createdDate": row.created_at,
    }


async def create(
    conn: AsyncConnection,
    principal: Principal,
    *,
    name: str,
    now: datetime,
    description: str = "",
) -> dict[str, Any]:
    require_site_admin(principal, "creating a work group")
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise ValidationFailed.of([FieldError("name", "must be 1 to 200 characters")])
    row_id = str(uuid.uuid4())
    values = {
        "id": row_id,
        "site_id": principal.site_id,
        "name": name,
        "description": description,
        "created_at": now,
    }
    await insert_named(conn, work_groups, values, "work group")
    return to_api(await get_row(conn, principal, row_id))


async def get_row(conn: AsyncConnection, principal: Principal, work_group_id: str) -> sa.Row[Any]:
    """The work group, if it is in the caller's site; another site's does not exist."""
    return await fetch_in_site(conn, work_groups, work_group_id, principal.site_id, "work group")


async def list_page(
    conn: AsyncConnection, principal: Principal, *, limit: int, cursor: str | None
) -> pagination.Page[dict[str, Any]]:
    query = pagination.apply(
        sa.select(work_groups).where(work_groups.c.site_id == principal.site_id),
        work_groups.c.created_at,
        work_groups.c.id,
        limit=limit,
        cursor=cursor,
    )
    rows = list((await conn.execute(query)).all())
    return pagination.page_of(rows, limit, to_api)
