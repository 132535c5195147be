"""The interview hook engine over both stores, with loopback receivers that verify every call."""

from __future__ import annotations

import sqlalchemy as sa
from tests.interview_hooks.hooks_support import answer_json, hook_at, make_platform, serve
from tests.support import SiteUsers

from docuhooks.answers import Answer, AnswerSet
from docuhooks.context import AppContext
from docuhooks.core.events import EventType
from docuhooks.interview_hooks import run_interview_hooks
from docuhooks.receiver import InterviewLoadEvent
from docuhooks.store.schema import attempts, deliveries, events


async def test_load_hook_prefills_and_is_logged(ctx: AppContext, site: SiteUsers) -> None:
    platform = await make_platform(ctx, site)
    async with serve() as receiver:
        hook = await hook_at(
            ctx, site, receiver, "/load", answer_json({"Client Name": "Jane", "Fee": 1500})
        )
        result = await run_interview_hooks(
            ctx,
            principal=platform.principal,
            event_type=EventType.INTERVIEW_LOAD_EVENT,
            interview_id=platform.interview_id,
            work_item=platform.work_item,
            version_id=platform.version_id,
            template=platform.template,
            current_answers=AnswerSet([Answer("Client Email", "text", "j@example.com")]),
        )
    assert result.warnings == []
    assert result.answers == AnswerSet(
        [
            Answer("Client Email", "text", "j@example.com"),
            Answer("Client Name", "text", "Jane"),
            Answer("Fee", "number", 1500),
        ]
    )
    assert receiver.methods == [("/load", "GET")]
    [(_, event)] = receiver.seen
    assert isinstance(event, InterviewLoadEvent)
    assert event.interview_id == platform.interview_id
    assert event.work_item.id == platform.work_item["id"]
    assert event.user.id == platform.principal.user_id
    async with ctx.db.read() as conn:
        [logged] = (await conn.execute(sa.select(events))).all()
        [delivery] = (await conn.execute(sa.select(deliveries))).all()
        [attempt] = (await conn.execute(sa.select(attempts))).all()
    assert logged.payload["eventId"] == event.event_id
    assert delivery.webhook_id == hook.id and delivery.status == "succeeded"
    assert delivery.attempts == 1 and delivery.next_attempt_at is None
    assert attempt.status_code == 200 and attempt.error_class is None
    assert "token=[redacted]" in attempt.request_url
