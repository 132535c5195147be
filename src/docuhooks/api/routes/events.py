"""Event routes: what the platform emitted, and where each event went."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import Field

from docuhooks.api.deps import Caller, Conn, Ctx
from docuhooks.api.models import ERRORS, EventTypeName, Output, Page
from docuhooks.api.routes.deliveries import Delivery
from docuhooks.delivery import log
from docuhooks.store import pagination

router = APIRouter(prefix="/api/v1/events", tags=["events"], responses=ERRORS)


class EventSummary(Output):
    id: str
    eventType: str
    createdDate: datetime
    workItemId: str | None
    test: bool = Field(description="A sample sent by POST /webhooks/{id}/test")


class EventDelivery(Delivery):
    webhookName: str | None


class EventDetail(EventSummary):
    payload: dict[str, Any] = Field(description="The event object exactly as receivers get it")
    deliveries: list[EventDelivery]


@router.get("", response_model=Page[EventSummary])
async def list_events(
    conn: Conn,
    who: Caller,
    limit: Annotated[int, Query(ge=1, le=pagination.MAX_LIMIT)] = 50,
    cursor: Annotated[str | None, Query(max_length=500)] = None,
    eventType: EventTypeName | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """The site's events, newest first (payloads on the event itself)."""
    page = await log.list_events(
        conn, who, limit=limit, cursor=cursor, event_type=eventType, since=since, until=until
    )
    return {"items": page.items, "nextCursor": page.next_cursor}


@router.get("/{event_id}", response_model=EventDetail)
async def get_event(event_id: str, ctx: Ctx, conn: Conn, who: Caller) -> dict[str, Any]:
    return await log.get_event(
        conn, who, event_id, now=ctx.now(), kept_days=ctx.settings.kept_delivery_days
    )
