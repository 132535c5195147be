"""The interview hook engine over both stores, with loopback receivers that verify every call:
what it sends and logs, and which webhooks it calls. Every method and verb, custom-event
lookups, overlay order and misbehaving receivers are tested end to end over the HTTP API
(`test_receiver_processes`, `test_misbehaving`)."""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any

import sqlalchemy as sa
from tests.interview_hooks.hooks_support import (
    Platform,
    answer_json,
    hook_at,
    make_platform,
    serve,
)
from tests.support import SiteUsers

from docuhooks.answers import Answer, AnswerSet, AnswerType
from docuhooks.context import AppContext
from docuhooks.core.events import EventType
from docuhooks.interview_hooks import HookResult, run_interview_hooks
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
            current_answers=AnswerSet([Answer("Client Email", AnswerType.TEXT, "j@example.com")]),
        )
    assert result.warnings == []
    assert result.answers == AnswerSet(
        [
            Answer("Client Email", AnswerType.TEXT, "j@example.com"),
            Answer("Client Name", AnswerType.TEXT, "Jane"),
            Answer("Fee", AnswerType.NUMBER, 1500),
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


def run(ctx: AppContext, platform: Platform, **overrides: Any) -> Awaitable[HookResult]:
    arguments: dict[str, Any] = {
        "principal": platform.principal,
        "event_type": EventType.INTERVIEW_LOAD_EVENT,
        "interview_id": platform.interview_id,
        "work_item": platform.work_item,
        "version_id": platform.version_id,
        "template": platform.template,
        "current_answers": AnswerSet(),
    }
    return run_interview_hooks(ctx, **{**arguments, **overrides})


async def test_only_matching_webhooks_are_called(ctx: AppContext, site: SiteUsers) -> None:
    platform = await make_platform(ctx, site)
    elsewhere = await make_platform(ctx, site)
    async with serve() as receiver:
        await hook_at(ctx, site, receiver, "/all", answer_json({"Fee": 1}))
        await hook_at(
            ctx,
            site,
            receiver,
            "/scoped",
            answer_json({"Fee": 2}),
            workGroupIds=[platform.work_item["work_group_id"]],
            templateIds=[platform.template["id"]],
            order=1,
        )
        await hook_at(
            ctx,
            site,
            receiver,
            "/other-group",
            answer_json({"Fee": 3}),
            workGroupIds=[elsewhere.work_item["work_group_id"]],
            order=2,
        )
        await hook_at(ctx, site, receiver, "/inactive", answer_json({"Fee": 4}), active=False)
        await hook_at(
            ctx,
            site,
            receiver,
            "/custom",
            answer_json({"Fee": 5}),
            event_type="CustomInterviewEvent",
            interviewEventName="Look up client",
        )
        result = await run(ctx, platform)
    assert sorted(path for path, _ in receiver.methods) == ["/all", "/scoped"]
    assert result.answers["Fee"].value == 2


async def test_no_matching_webhook_writes_nothing(ctx: AppContext, site: SiteUsers) -> None:
    platform = await make_platform(ctx, site)
    current = AnswerSet([Answer("Fee", AnswerType.NUMBER, 10)])
    result = await run(ctx, platform, current_answers=current)
    assert result == HookResult(current, [])
    async with ctx.db.read() as conn:
        assert (await conn.scalar(sa.select(sa.func.count()).select_from(events))) == 0


async def test_each_answer_names_the_webhook_that_supplied_it(
    ctx: AppContext, site: SiteUsers
) -> None:
    platform = await make_platform(ctx, site)
    async with serve() as receiver:
        first = await hook_at(
            ctx, site, receiver, "/first", answer_json({"Fee": 1, "Client Name": "Jane"})
        )
        second = await hook_at(ctx, site, receiver, "/second", answer_json({"Fee": 2}), order=1)
        result = await run(ctx, platform)
    # The later webhook in the overlay order supplied the answer both sent.
    assert result.sources == {
        "Client Name": {"webhookId": first.id, "webhookName": first.name},
        "Fee": {"webhookId": second.id, "webhookName": second.name},
    }
