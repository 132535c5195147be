"""`POST /webhooks/{id}/test`: a sample event of the webhook's type, marked
`"test": true`, sent down the same path a real one takes.

* `NewWorkItemVersionComplete` goes through the outbox to this webhook alone, so the worker
  signs, sends, retries and logs it like any notification; the caller gets the delivery to
  watch.
* Interview events and post-processing are calls someone waits for: the test makes the call
  at once, with the same request builder and transport, judges the reply the way the
  platform would, writes it to the delivery log with the interview engine's own log writer,
  and returns what happened.

An inactive webhook sends nothing, a test included: it is a 409 that says to
activate it. So is a suspended notification webhook, whose queue waits for a probe; resuming
it is the way to find out whether its receiver is back. A site's test sends are limited in
number (`delivery.manual_sends`: a 429 past `webhook_tests_per_minute`), counted in a
transaction of their own, committed before the send goes: a send that then fails has used
its turn.

The sample refers to a work item, version and documents that do not exist (their URLs answer
404); it uses the webhook's first scoped template and work group when it has them, so a
receiver that routes on those sees values it knows. Receivers should skip events with
`"test": true` after verifying them.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import tracing
from docuhooks.answers import AnswerLimits, AnswerSetError, VariableDef, off_loop
from docuhooks.answers.offload import definitions_size
from docuhooks.answers.validate import read_template_variables
from docuhooks.core.events import (
    INTERVIEW_EVENTS,
    NOTIFICATION_EVENTS,
    OPERATIONAL_EVENTS,
    Event,
    EventType,
)
from docuhooks.core.ids import uuid7
from docuhooks.core.operational import sample_data as sample_operational_data
from docuhooks.core.signing import OutboundRequest, build_request
from docuhooks.delivery import manual_sends, outbox
from docuhooks.delivery.attempts import USER_AGENT
from docuhooks.delivery.transport import ErrorClass, TransportResult
from docuhooks.errors import Conflict
from docuhooks.identity.models import Principal
from docuhooks.interview_hooks import log as call_log
from docuhooks.interview_hooks.replies import judge_off_loop
from docuhooks.interview_hooks.warnings import webhook_warning
from docuhooks.platform.documents import content_url
from docuhooks.platform.interfaces import PlatformContext
from docuhooks.platform.postprocessing.replies import MAX_REPLY_BYTES, judge_in_pool
from docuhooks.store.schema import sites, templates
from docuhooks.webhooks import matching
from docuhooks.webhooks import service as webhook_service

__all__ = ["TestSend", "sample_event", "send_test"]

#: A one-page PDF: small, valid, and recognisably a sample.
SAMPLE_PDF = (
    b"%PDF-1.4\n1 0 obj<</Type/Catalog/Pages 2 0 R>>endobj\n"
    b"2 0 obj<</Type/Pages/Kids[3 0 R]/Count 1>>endobj\n"
    b"3 0 obj<</Type/Page/Parent 2 0 R/MediaBox[0 0 595 842]>>endobj\n"
    b"trailer<</Root 1 0 R>>\n%%EOF\n"
)
#: The variables of a test event's template when the webhook names none: those of the
#: template docs/platform.md builds, which the receivers in examples/ answer, so a test of
#: them shows no warning the real interview would not.
SAMPLE_VARIABLES: list[dict[str, Any]] = [
    {"name": "Client Name", "type": "text", "repeatDepth": 0, "options": []},
    {"name": "Fee", "type": "number", "repeatDepth": 0, "options": []},
    {"name": "Start Date", "type": "date", "repeatDepth": 0, "options": []},
    {"name": "Is Company", "type": "truefalse", "repeatDepth": 0, "options": []},
    {
        "name": "Colours",
        "type": "multiplechoice",
        "repeatDepth": 0,
        "options": ["Red", "Green", "Blue"],
    },
    {"name": "Child Name", "type": "text", "repeatDepth": 1, "options": []},
]
POST_PROCESSING_DEADLINE = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class SampleScope:
    """What the sample event names: the webhook's own scope where it has one."""

    work_group_id: str
    template_id: str
    template_name: str
    variables: list[dict[str, Any]]


@dataclass(frozen=True)
class TestSend:
    """The outcome of a test: a queued delivery, or a finished call."""

    event_id: str
    delivery_id: str
    #: `pending` (queued for the worker), `succeeded` or `failed` (a synchronous call).
    status: str
    result: TransportResult | None = None
    answers: dict[str, Any] | None = None
    warnings: list[dict[str, Any]] = field(default_factory=list)

    @property
    def queued(self) -> bool:
        return self.result is None


def sample_event(
    event_type: EventType,
    principal: Principal,
    *,
    scope: SampleScope,
    base_url: str,
    interview_event_name: str | None,
    now: datetime,
) -> Event:
    """A realistic event of `event_type` for a test, with `"test": true`."""
    work_item_id, version_id, document_id = (str(uuid.uuid4()) for _ in range(3))
    document = {
        "id": document_id,
        "name": "Engagement letter",
        "fileName": "Engagement letter.pdf",
        "contentType": "application/pdf",
        "size": len(SAMPLE_PDF),
        "sha256": hashlib.sha256(SAMPLE_PDF).hexdigest(),
        "url": content_url(base_url, work_item_id, version_id, document_id),
    }
    item = {
        "workItemId": work_item_id,
        "workItemName": "Sample work item",
        "workItemVersionId": version_id,
        "workGroupId": scope.work_group_id,
        "templateId": scope.template_id,
        "templateName": scope.template_name,
    }
    data: dict[str, Any]
    if event_type in OPERATIONAL_EVENTS:
        data = sample_operational_data(event_type, now)
    elif event_type is EventType.NEW_WORK_ITEM_VERSION_COMPLETE:
        data = {**item, "versionNumber": 1, "documents": [document]}
    elif event_type in INTERVIEW_EVENTS:
        data = {"interviewId": str(uuid.uuid4()), **item}
        if event_type is EventType.CUSTOM_INTERVIEW_EVENT:
            data["interviewEventName"] = (interview_event_name or "").strip()
            data["answers"] = {
                "answers": [
                    {"name": v["name"], "type": v["type"], "value": None} for v in scope.variables
                ]
            }
    else:
        del item["workItemName"], item["workGroupId"]
        data = {
            **item,
            "versionNumber": 1,
            "documents": [{**document, "content": base64.b64encode(SAMPLE_PDF).decode("ascii")}],
            "callbackDeadline": (now + POST_PROCESSING_DEADLINE).isoformat(),
            "completeUrl": f"{base_url.rstrip('/')}/api/v1/workitems/{work_item_id}"
            f"/versions/{version_id}/complete",
        }
    return Event(
        event_type=event_type,
        site_id=principal.site_id,
        created_by=principal.as_actor(),
        data=data,
        created_date=now,
        test=True,
    )


async def send_test(ctx: PlatformContext, principal: Principal, webhook_id: str) -> TestSend:
    """Send a sample event to the webhook (see the module docstring for how each type goes)."""
    now = ctx.now()
    async with ctx.db.read() as conn:
        hook = await webhook_service.get_row(conn, principal, webhook_id)
        base_url = str(
            await conn.scalar(sa.select(sites.c.base_url).where(sites.c.id == hook.site_id))
        )
        scope = await _scope(conn, hook)
    event_type = EventType(hook.event_type)
    if not hook.active:
        raise Conflict(
            f"webhook {hook.name!r} is inactive and sends nothing, tests included: activate "
            f"it first (POST /api/v1/webhooks/{hook.id}/activate)"
        )
    if event_type in NOTIFICATION_EVENTS and hook.suspended_at is not None:
        raise Conflict(
            f"webhook {hook.name!r} is suspended: its deliveries wait for a successful probe. "
            f"Resume it (POST /api/v1/webhooks/{hook.id}/resume) to send its backlog now"
        )
    async with ctx.db.transaction() as conn:
        await manual_sends.take_turn(
            conn,
            manual_sends.TEST_SENDS,
            hook.site_id,
            webhook_id=hook.id,
            per_minute=ctx.settings.webhook_tests_per_minute,
            now=now,
        )
    event = sample_event(
        event_type,
        principal,
        scope=scope,
        base_url=base_url,
        interview_event_name=hook.interview_event_name,
        now=now,
    )
    if event_type in NOTIFICATION_EVENTS:
        return await _queue(ctx, hook, event, now)
    return await _call(ctx, hook, event, scope, base_url, now)


async def _scope(conn: AsyncConnection, hook: sa.Row[Any]) -> SampleScope:
    template = None
    if hook.template_ids:
        template = (
            await conn.execute(
                sa.select(templates.c.id, templates.c.name, templates.c.variables).where(
                    templates.c.id == hook.template_ids[0], templates.c.site_id == hook.site_id
                )
            )
        ).first()
    return SampleScope(
        work_group_id=hook.work_group_ids[0] if hook.work_group_ids else str(uuid.uuid4()),
        template_id=template.id if template else str(uuid.uuid4()),
        template_name=template.name if template else "Sample engagement letter",
        variables=list(template.variables) if template else SAMPLE_VARIABLES,
    )


async def _queue(ctx: PlatformContext, hook: sa.Row[Any], event: Event, now: datetime) -> TestSend:
    async with ctx.db.transaction() as conn:
        ids = await outbox.enqueue(
            conn, event, work_group_id=None, template_id=None, webhook_ids=[hook.id], now=now
        )
    if not ids:  # deactivated between the read and the write
        raise Conflict(f"webhook {hook.name!r} was deactivated meanwhile; nothing was queued")
    ctx.events_committed()
    return TestSend(event.event_id, ids[0], "pending")


async def _call(
    ctx: PlatformContext,
    hook: sa.Row[Any],
    event: Event,
    scope: SampleScope,
    base_url: str,
    now: datetime,
) -> TestSend:
    payload = event.to_dict()
    delivery_id = uuid7()
    request: OutboundRequest | None = None
    started = time.perf_counter()
    # The test call continues the trace of the request that asked for it.
    call = tracing.start_span(
        "docuhooks.test_send.call",
        kind=tracing.Kind.CLIENT,
        attributes={"docuhooks.webhook.id": hook.id, "docuhooks.delivery.id": delivery_id},
        propagated=True,
    )
    assert call.context is not None  # a propagated span always has one
    try:
        target = matching.signing_target(ctx, hook, base_url, now)
        request = build_request(
            payload,
            target,
            delivery_id=delivery_id,
            attempt=1,
            now=now,
            user_agent=USER_AGENT,
            traceparent=call.context.traceparent,
            tracestate=call.context.state,
        )
    except Exception as exc:
        result = TransportResult.failure(
            ErrorClass.CONNECT, f"the request could not be built: {exc}"
        )
    else:
        result = await ctx.interactive_send(
            hook.site_id,
            request,
            timeout=float(hook.timeout_seconds),
            verify_tls=not hook.accept_untrusted_ssl,
            # A post-processing reply carries documents; an interview reply only answers.
            max_body=(
                ctx.settings.max_answer_set_bytes
                if EventType(hook.event_type) in INTERVIEW_EVENTS
                else MAX_REPLY_BYTES
            ),
        )
    finished = now + timedelta(seconds=time.perf_counter() - started)
    if result.status is not None:
        call.set_attribute("http.response.status_code", result.status)
    call.end()
    if EventType(hook.event_type) in INTERVIEW_EVENTS:
        # The template's variables, as a live step reads them: off the loop when many.
        variables = await off_loop(
            definitions_size(scope.variables),
            ctx.settings.answer_parse_threads,
            _variables,
            scope.variables,
            site=hook.site_id,
        )
        outcome = await judge_off_loop(
            result,
            variables,
            AnswerLimits.from_settings(ctx.settings),
            ctx.settings.answer_parse_threads,
            site=hook.site_id,
        )
    else:
        # Judged as the platform judges a real reply; the sample's document ids are the
        # ones a `replace` may name.
        ids = [document["id"] for document in payload["data"]["documents"]]
        judged = await judge_in_pool(
            ctx.render_pool, result, site_id=hook.site_id, document_ids=ids
        )
        outcome = judged.outcome
    async with ctx.db.transaction() as conn:
        # Written before the reply (not queued like a live interview's log), so the link
        # the caller gets already shows the attempt.
        await call_log.write(
            conn,
            [
                call_log.StepLog(
                    event=payload,
                    site_id=hook.site_id,
                    work_item_id=payload["data"]["workItemId"],
                    calls=[
                        call_log.CallRecord(delivery_id, hook.id, now, request, result, outcome)
                    ],
                    created_at=now,
                    finished_at=finished,
                    trace=tracing.current(),
                )
            ],
        )
    return TestSend(
        event.event_id,
        delivery_id,
        "succeeded" if outcome.succeeded else "failed",
        result=result,
        answers=outcome.answers.to_json() if outcome.answers is not None else None,
        warnings=[webhook_warning(hook.id, hook.name, p) for p in outcome.problems],
    )


def _variables(raw: list[dict[str, Any]]) -> Mapping[str, VariableDef] | None:
    try:
        return read_template_variables(raw)
    except (AnswerSetError, KeyError, TypeError, AttributeError):
        return None  # answers are then read as they come, without the template's types
