"""The site's dashboard: delivery health over time and now, for webhook administrators
(`delivery.stats.site_summary`, the summary `GET /stats` returns)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from docuhooks.api.deps import Ctx
from docuhooks.delivery import stats
from docuhooks.delivery.claims import Caps
from docuhooks.ui.rendering import UiRoute, render
from docuhooks.ui.session import SignedIn
from docuhooks.webhooks import service

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


@router.get("/dashboard")
async def dashboard(request: Request, ctx: Ctx, session: SignedIn) -> Response:
    who = session.principal
    service.require_admin(who)
    now = ctx.now()
    async with ctx.db.read() as conn:
        summary = await stats.site_summary(
            conn,
            who.site_id,
            now=now,
            destination_cap=Caps.from_settings(ctx.settings).destination,
        )
    return render(
        request,
        "dashboard.html",
        session,
        summary=summary,
        oldest_due_age=summary.oldest_due_age_seconds(now),
    )
