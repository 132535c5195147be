"""The site's audit log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from docuhooks import audit
from docuhooks.api.deps import Caller, Conn
from docuhooks.api.models import ERRORS
from docuhooks.api.routes.webhooks import AuditEntry
from docuhooks.store import pagination
from docuhooks.webhooks.service import require_admin

router = APIRouter(prefix="/api/v1/audit", tags=["audit"], responses=ERRORS)


@router.get("", response_model=list[AuditEntry])
async def list_audit(
    conn: Conn,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_LIMIT)] = 50,
    objectId: Annotated[str | None, Query(max_length=36)] = None,
) -> list[dict[str, Any]]:
    """Who changed what and when in this site, newest first."""
    require_admin(who)
    return await audit.list_entries(conn, who.site_id, object_id=objectId, limit=limit)
