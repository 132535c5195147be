"""The audit log: who changed which webhook (or other object), how, and when."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.store.schema import audit_log


class Actor(Protocol):
    """Who made a change, as the log records it (an `identity.Principal`): the audit log
    sits below identity, so it names only the two attributes it writes."""

    @property
    def user_id(self) -> str: ...

    @property
    def login_name(self) -> str: ...


async def record(
    conn: AsyncConnection,
    principal: Actor | None,
    *,
    site_id: str,
    action: str,
    object_type: str,
    object_id: str,
    details: dict[str, Any] | None = None,
    now: datetime,
) -> None:
    """Written in the caller's transaction, so an entry exists exactly when the change does.
    `now` is the caller's clock reading (`ctx.now()`)."""
    await conn.execute(
        audit_log.insert().values(
            id=str(uuid.uuid4()),
            site_id=site_id,
            actor_id=principal.user_id if principal else None,
            actor_login=principal.login_name if principal else "docuhooks",
            action=action,
            object_type=object_type,
            object_id=object_id,
            details=details or {},
            created_at=now,
        )
    )


async def list_entries(
    conn: AsyncConnection,
    site_id: str,
    *,
    object_id: str | None = None,
    limit: int = 50,
    before: tuple[datetime, str] | None = None,
) -> list[dict[str, Any]]:
    query = sa.select(audit_log).where(audit_log.c.site_id == site_id)
    if object_id:
        query = query.where(audit_log.c.object_id == object_id)
    if before:
        query = query.where(sa.tuple_(audit_log.c.created_at, audit_log.c.id) < sa.tuple_(*before))
    query = query.order_by(audit_log.c.created_at.desc(), audit_log.c.id.desc()).limit(limit)
    return [
        {
            "id": row.id,
            "action": row.action,
            "objectType": row.object_type,
            "objectId": row.object_id,
            "actor": {"id": row.actor_id, "loginName": row.actor_login},
            "details": row.details,
            "createdDate": row.created_at,
        }
        for row in await conn.execute(query)
    ]
