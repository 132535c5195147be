"""Delivery routes: a webhook's deliveries, one delivery with its
attempts, redelivery, recovery since a time, and the test send."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Response
from pydantic import Field

from docuhooks.api.deps import Caller, Conn, Ctx, StandaloneCaller
from docuhooks.api.models import ERRORS, ErrorResponse, EventTypeName, Input, Output, Page
from docuhooks.delivery import log, recovery
from docuhooks.platform import sample_sends
from docuhooks.store import pagination

router = APIRouter(prefix="/api/v1", tags=["deliveries"], responses=ERRORS)

Limit = Annotated[int, Query(ge=1, le=pagination.MAX_LIMIT)]
Cursor = Annotated[str | None, Query(max_length=500)]
DeliveryStatus = Literal["pending", "succeeded", "failed"]


class Delivery(Output):
    id: str
    eventId: str
    eventType: str
    webhookId: str
    status: str = Field(description="pending, succeeded or failed")
    inFlight: bool = Field(description="A worker is sending it right now")
    attemptCount: int
    nextAttemptDate: datetime | None = Field(description="When a pending delivery goes next")
    lastStatusCode: int | None
    lastErrorClass: str | None
    lastError: str | None
    createdDate: datetime
    completedDate: datetime | None


class Attempt(Output):
    id: str
    attemptNumber: int
    startedDate: datetime
    durationMs: float
    requestMethod: str
    requestUrl: str = Field(description="With any token query parameter redacted")
    requestHeaders: dict[str, str] = Field(description="Credentials and signatures redacted")
    statusCode: int | None = Field(description="Null when no response arrived")
    responseHeaders: dict[str, str] | None
    responseBody: str | None = Field(description="The first 16 KiB")
    errorClass: str | None = Field(
        description="timeout, connect, dns, tls, blocked, http_status or invalid_response"
    )
    error: str | None


class DeliveryWithAttempts(Delivery):
    attempts: list[Attempt]


class Recover(Input):
    # JSON has no time type: these fields alone take ISO 8601 text (a time without a zone
    # is UTC).
    since: datetime = Field(
        strict=False, description="Re-send failed deliveries created at or after this"
    )
    until: datetime | None = Field(default=None, strict=False, description="…and before this")


class Recovery(Output):
    id: str
    webhookId: str
    status: str = Field(description="queued, running, succeeded or failed")
    since: datetime
    until: datetime = Field(description="The window's end: as asked, else when it was asked")
    total: int | None = Field(
        description="Failed deliveries in the window, once counted (null until then)"
    )
    done: int = Field(description="Failed deliveries examined so far")
    redelivered: int = Field(description="Events queued again so far")
    error: str | None
    createdBy: str = Field(description="Login name of who asked")
    createdDate: datetime
    updatedDate: datetime
    finishedDate: datetime | None
    link: str = Field(description="Where to follow its progress")


class TestCall(Output):
    statusCode: int | None
    durationMs: float
    errorClass: str | None
    error: str | None


class TestSent(Output):
    eventId: str
    deliveryId: str
    status: str = Field(
        description="pending (queued for the worker: follow `link`), or succeeded / failed "
        "(an interview or post-processing call, made at once)"
    )
    link: str = Field(description="The delivery, with its attempts")
    call: TestCall | None = Field(description="The call's result; null when queued")
    answers: dict[str, Any] | None = Field(
        description="Interview events: the answer set the reply carried (canonical JSON)"
    )
    warnings: list[dict[str, Any]] = Field(
        description="What was wrong with the reply, each {code, message, variable?}"
    )


@router.get("/webhooks/{webhook_id}/deliveries", response_model=Page[Delivery])
async def list_deliveries(
    webhook_id: str,
    ctx: Ctx,
    conn: Conn,
    who: Caller,
    limit: Limit = 50,
    cursor: Cursor = None,
    status: DeliveryStatus | None = None,
    eventType: EventTypeName | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
) -> dict[str, Any]:
    """The webhook's deliveries, newest first; `since`/`until` bound their creation time."""
    page = await log.list_deliveries(
        conn,
        who,
        webhook_id,
        now=ctx.now(),
        limit=limit,
        cursor=cursor,
        status=status,
        event_type=eventType,
        since=since,
        until=until,
    )
    return {"items": page.items, "nextCursor": page.next_cursor}


@router.get("/deliveries/{delivery_id}", response_model=DeliveryWithAttempts)
async def get_delivery(delivery_id: str, ctx: Ctx, conn: Conn, who: Caller) -> dict[str, Any]:
    return await log.get_delivery(
        conn, who, delivery_id, now=ctx.now(), kept_days=ctx.settings.kept_delivery_days
    )


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    status_code=202,
    response_model=DeliveryWithAttempts,
    responses={
        429: {
            "model": ErrorResponse,
            "description": "The site has made `redeliveries_per_minute` redeliveries within "
            "the last minute (for a test delivery: `webhook_tests_per_minute` test sends)",
            "headers": {
                "Retry-After": {
                    "description": "Seconds until the site may redeliver again",
                    "schema": {"type": "integer"},
                }
            },
        },
    },
)
async def redeliver(delivery_id: str, ctx: Ctx, who: StandaloneCaller) -> dict[str, Any]:
    """Send the event to the webhook again, same eventId. A finished delivery gets a new
    delivery (returned); a pending one is made due now; one in flight is a 409.

    A site redelivers at most `redeliveries_per_minute` (60 by default) within any minute,
    whichever webhooks and server processes they go through, a pending delivery made due
    included: past it, 429 `too_many_requests` with `Retry-After`. Sending a test delivery
    again is a test send: it counts toward `webhook_tests_per_minute` instead. To re-send
    many failed deliveries, recover the webhook."""
    return await log.redeliver(ctx, who, delivery_id)


@router.post(
    "/webhooks/{webhook_id}/recover",
    status_code=202,
    response_model=Recovery,
    responses={
        409: {
            "model": ErrorResponse,
            "description": "`recovery_in_progress`: the webhook has a recovery queued or "
            "running, which the message names with its link. Or `conflict`: the webhook is "
            "inactive",
        },
    },
)
async def recover(
    webhook_id: str, body: Recover, ctx: Ctx, who: StandaloneCaller
) -> dict[str, Any]:
    """Re-send every event whose delivery to this webhook failed, within the time window: a
    background job does it in batches; follow it at `link`. A webhook has one recovery queued
    or running at a time: asking for another meanwhile is a 409 `recovery_in_progress`."""
    return await recovery.start_recovery(ctx, who, webhook_id, since=body.since, until=body.until)


@router.get("/webhooks/{webhook_id}/recoveries/{recovery_id}", response_model=Recovery)
async def get_recovery(
    webhook_id: str, recovery_id: str, ctx: Ctx, conn: Conn, who: Caller
) -> dict[str, Any]:
    """A recovery's status and progress. A finished one is kept as long as finished
    deliveries are, then pruned (404)."""
    return await recovery.get_recovery(
        conn, who, webhook_id, recovery_id, kept_days=ctx.settings.kept_delivery_days
    )


@router.post(
    "/webhooks/{webhook_id}/test",
    response_model=TestSent,
    responses={
        202: {"model": TestSent, "description": "Queued for the worker"},
        429: {
            "model": ErrorResponse,
            "description": "The site has sent `webhook_tests_per_minute` tests within the "
            "last minute",
            "headers": {
                "Retry-After": {
                    "description": "Seconds until the site may send a test again",
                    "schema": {"type": "integer"},
                }
            },
        },
    },
)
async def test_webhook(
    webhook_id: str, ctx: Ctx, who: StandaloneCaller, response: Response
) -> TestSent:
    """Send a sample event of the webhook's type, marked `"test": true`, down the real path:
    queued (202) for NewWorkItemVersionComplete; called at once (200) for the others.

    A site sends at most `webhook_tests_per_minute` tests (20 by default) within any minute,
    whichever webhooks and server processes they go through: past it, 429
    `too_many_requests` with `Retry-After`."""
    sent = await sample_sends.send_test(ctx, who, webhook_id)
    call = None
    if sent.result is not None:
        call = TestCall(
            statusCode=sent.result.status,
            durationMs=sent.result.duration_ms,
            errorClass=str(sent.result.error_class) if sent.result.error_class else None,
            error=sent.result.error,
        )
    response.status_code = 202 if sent.queued else 200
    return TestSent(
        eventId=sent.event_id,
        deliveryId=sent.delivery_id,
        status=sent.status,
        link=f"/api/v1/deliveries/{sent.delivery_id}",
        call=call,
        answers=sent.answers,
        warnings=sent.warnings,
    )
