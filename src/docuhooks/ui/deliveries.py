"""Delivery pages: one delivery with its attempts, and redelivery, through `delivery.log` as
the API's delivery routes are."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from docuhooks.api.deps import Ctx
from docuhooks.delivery import log
from docuhooks.errors import NotFound
from docuhooks.ui.rendering import UiRoute, is_htmx, redirect, render
from docuhooks.ui.session import Checked, SignedIn
from docuhooks.ui.webhooks import NOTIFICATION_TYPES
from docuhooks.webhooks import service

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


@router.get("/deliveries/{delivery_id}")
async def delivery_page(
    request: Request, delivery_id: str, ctx: Ctx, session: SignedIn
) -> Response:
    who = session.principal
    async with ctx.db.read() as conn:
        delivery = await log.get_delivery(
            conn, who, delivery_id, now=ctx.now(), kept_days=ctx.settings.kept_delivery_days
        )
        try:
            webhook = service.to_api(await service.get_row(conn, who, delivery["webhookId"]))
        except NotFound:
            webhook = None
    return render(
        request,
        "delivery.html",
        session,
        delivery=delivery,
        webhook=webhook,
        can_redeliver=delivery["eventType"] in NOTIFICATION_TYPES,
    )


@router.post("/deliveries/{delivery_id}/redeliver")
async def redeliver(request: Request, delivery_id: str, ctx: Ctx, session: Checked) -> Response:
    # No transaction is held here: redelivery runs its own, then wakes the worker.
    delivery = await log.redeliver(ctx, session.principal, delivery_id)
    if is_htmx(request):
        return render(
            request,
            "_redelivered.html",
            session,
            headers={"HX-Trigger": "deliveries-changed"},
            delivery=delivery,
            original_id=delivery_id,
        )
    return redirect(f"/ui/deliveries/{delivery['id']}?notice=redelivered")
