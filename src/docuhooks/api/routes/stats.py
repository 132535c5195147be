"""Delivery health over time: a webhook's attempts by hour and by day, and the site's
summary the admin UI's dashboard shows, read from the roll-up (`delivery.stats`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import Field

from docuhooks.api.deps import Ctx, ReadConn, StandaloneCaller
from docuhooks.api.models import ERRORS, Output
from docuhooks.delivery import stats
from docuhooks.delivery.claims import Caps

router = APIRouter(prefix="/api/v1", tags=["stats"], responses=ERRORS)


class StatsBucket(Output):
    start: datetime = Field(description="The UTC hour or day the attempts started in")
    succeeded: int = Field(
        description="Attempts that succeeded (a 2xx; for an interview call, "
        "a reply whose answers could be used)"
    )
    failed: int = Field(description="Attempts that failed, whatever the class")
    failedByClass: dict[str, int] = Field(
        description="Failed attempts by error class (timeout, connect, dns, tls, blocked, "
        "http_status, invalid_response); classes with none are left out"
    )
    budgetCutOff: int = Field(
        description="Interview calls the step's time budget ended (also failed timeouts)"
    )
    p50Ms: float | None = Field(
        description="Median duration in ms, within 12.25 % (null without attempts)"
    )
    p99Ms: float | None = Field(description="99th percentile duration in ms, within 12.25 %")


class WebhookStats(Output):
    webhookId: str
    last24Hours: StatsBucket = Field(description="The last 24 hourly buckets together")
    hours: list[StatsBucket] = Field(description="The last 48 UTC hours, oldest first")
    days: list[StatsBucket] = Field(description="The last 30 UTC days, oldest first")


class WebhookTotals(StatsBucket):
    webhookId: str
    name: str
    eventType: str


class SuspendedWebhook(Output):
    webhookId: str
    name: str
    since: datetime
    reason: str | None


class OpenBreaker(Output):
    destination: str
    state: str = Field(description="open or half_open")
    since: datetime | None
    nextProbeAt: datetime | None
    webhookIds: list[str]


class SiteStats(Output):
    last24Hours: StatsBucket
    hours: list[StatsBucket] = Field(description="Every webhook of the site, by UTC hour")
    days: list[StatsBucket] = Field(description="Every webhook of the site, by UTC day")
    failingMost: list[WebhookTotals] = Field(
        description="The webhooks with the most failed attempts in the last 24 hours"
    )
    interviewWebhooks: list[WebhookTotals] = Field(
        description="Each interview webhook's calls in the last 24 hours"
    )
    dueBacklog: int = Field(description="Due deliveries waiting for a sender, site-wide")
    dueBacklogCapped: bool = Field(
        description="A webhook's due count stopped at its cap (1000): the backlog is larger"
    )
    oldestDueAgeSeconds: float | None
    suspended: list[SuspendedWebhook] = Field(
        description="The first 20 suspended webhooks, by name (suspendedCount counts them all)"
    )
    suspendedCount: int = Field(description="The site's suspended webhooks, all of them")
    openBreakers: list[OpenBreaker] = Field(
        description="The first 20 destinations whose breaker is open or half open, "
        "by destination (openBreakerCount counts them all)"
    )
    openBreakerCount: int = Field(description="Destinations whose breaker is not closed")
    webhookCount: int


@router.get("/webhooks/{webhook_id}/stats", response_model=WebhookStats)
async def webhook_stats(
    webhook_id: str, ctx: Ctx, conn: ReadConn, who: StandaloneCaller
) -> dict[str, Any]:
    """A webhook's attempts by hour (48 hours) and by day (30 days), from the roll-up."""
    return await stats.read_webhook_stats(conn, who, webhook_id, now=ctx.now())


@router.get("/stats", response_model=SiteStats)
async def site_stats(ctx: Ctx, conn: ReadConn, who: StandaloneCaller) -> dict[str, Any]:
    """The site's delivery health: attempts over time, the webhooks failing most, the
    backlog, suspended webhooks and open breakers, interview webhooks' calls."""
    return await stats.read_site_summary(
        conn, who, now=ctx.now(), destination_cap=Caps.from_settings(ctx.settings).destination
    )
