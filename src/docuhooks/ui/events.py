"""Event pages: every event the site emitted, newest first, and one event with its payload
(exactly as receivers get it) and where it went, through `delivery.log` as the API's event
routes are."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from docuhooks.api.deps import Ctx
from docuhooks.delivery import log
from docuhooks.ui.forms import EVENT_TYPES
from docuhooks.ui.rendering import UiRoute, render
from docuhooks.ui.session import SignedIn

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)

LIST_SIZE = 50


@router.get("/events")
async def event_list(
    request: Request,
    ctx: Ctx,
    session: SignedIn,
    event_type: Annotated[str, Query(alias="type", max_length=100)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    cursor: Annotated[str, Query(max_length=500)] = "",
) -> Response:
    problem = ""
    since_at: datetime | None = None
    if event_type and event_type not in EVENT_TYPES:
        problem = "Choose an event type from the list."
    elif since:
        try:
            parsed = datetime.fromisoformat(since)
        except ValueError:
            problem = "Enter a date and time (UTC) to show events since, or leave it empty."
        else:
            since_at = (
                parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
            )
    if problem:
        page = None
    else:
        async with ctx.db.read() as conn:
            page = await log.list_events(
                conn,
                session.principal,
                limit=LIST_SIZE,
                cursor=cursor or None,
                event_type=event_type or None,
                since=since_at,
            )
    return render(
        request,
        "events.html",
        session,
        status_code=422 if problem else 200,
        page=page,
        event_types=EVENT_TYPES,
        event_type=event_type,
        since=since,
        problem=problem,
    )


@router.get("/events/{event_id}")
async def event_page(request: Request, event_id: str, ctx: Ctx, session: SignedIn) -> Response:
    async with ctx.db.read() as conn:
        event = await log.get_event(
            conn,
            session.principal,
            event_id,
            now=ctx.now(),
            kept_days=ctx.settings.kept_delivery_days,
        )
    payload = json.dumps(event["payload"], indent=2, ensure_ascii=False)
    return render(request, "event.html", session, event=event, payload=payload)
