"""The interview hook engine over both stores, with loopback receivers that verify every call."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Awaitable
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp import web
from tests.interview_hooks.hooks_support import (
    EVENT,
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
from docuhooks.receiver import AnswerSetBuilder, CustomInterviewEvent, InterviewLoadEvent
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


@pytest.mark.parametrize(
    ("method", "verb"),
    [
        ("HMAC", "GET"),
        ("HMAC", "POST"),
        ("AccessToken", "GET"),
        ("AccessToken", "POST"),
        ("StandardWebhooks", "POST"),
    ],
)
async def test_every_method_and_verb_is_verified_and_prefills(
    ctx: AppContext, site: SiteUsers, method: str, verb: str
) -> None:
    platform = await make_platform(ctx, site)
    extra = {"accessToken": "tok-" + "x" * 30} if method == "AccessToken" else {}
    async with serve() as receiver:
        await hook_at(
            ctx,
            site,
            receiver,
            "/load",
            answer_json({"Client Name": "Jane", "Start": "2026-01-31"}),
            authenticationMethod=method,
            requestVerb=verb,
            **extra,
        )
        result = await run(ctx, platform)
    assert receiver.rejected == [] and receiver.methods == [("/load", verb)]
    assert result.warnings == []
    assert result.answers["Client Name"].value == "Jane"
    assert result.answers["Start"].value == dt.date(2026, 1, 31)


async def test_custom_event_looks_up_from_the_typed_answer(
    ctx: AppContext, site: SiteUsers
) -> None:
    platform = await make_platform(ctx, site)
    directory = {"C-17": "1 High Street", "C-42": "9 Low Road"}

    async def lookup(request: web.Request) -> web.Response:
        event = request[EVENT]
        assert isinstance(event, CustomInterviewEvent)
        typed = {a["name"]: a["value"] for a in event.answers["answers"]}
        xml = AnswerSetBuilder().text("Client Address", directory[typed["Customer Number"]])
        return web.Response(body=xml.to_xml(), content_type="application/xml")

    async with serve() as receiver:
        await hook_at(
            ctx,
            site,
            receiver,
            "/lookup",
            lookup,
            event_type="CustomInterviewEvent",
            interviewEventName="Look up client",
        )
        # Another button's hook must not be called.
        await hook_at(
            ctx,
            site,
            receiver,
            "/other",
            answer_json({"Client Address": "wrong"}),
            event_type="CustomInterviewEvent",
            interviewEventName="Look up clients",
        )
        typed = AnswerSet([Answer("Customer Number", AnswerType.TEXT, "C-42")])
        result = await run(
            ctx,
            platform,
            event_type=EventType.CUSTOM_INTERVIEW_EVENT,
            interview_event_name="Look up client",
            current_answers=typed,
        )
    assert receiver.methods == [("/lookup", "POST")]
    [(_, event)] = receiver.seen
    assert isinstance(event, CustomInterviewEvent)
    assert event.interview_event_name == "Look up client"
    assert result.warnings == []
    assert result.answers == typed.overlay(
        AnswerSet([Answer("Client Address", AnswerType.TEXT, "9 Low Road")])
    )


async def test_overlay_follows_order_not_arrival(ctx: AppContext, site: SiteUsers) -> None:
    platform = await make_platform(ctx, site)
    async with serve() as receiver:
        # Lowest order answers last; the highest order answers first and must still win.
        for order, delay in ((1, 0.30), (2, 0.15), (3, 0.0)):
            await hook_at(
                ctx,
                site,
                receiver,
                f"/o{order}",
                answer_json({"Client Name": f"from {order}", "Fee": order}, delay=delay),
                order=order,
            )
        started = time.perf_counter()
        result = await run(ctx, platform)
        elapsed = time.perf_counter() - started
    assert result.answers["Client Name"].value == "from 3"
    assert result.answers["Fee"].value == 3
    # Concurrent: about the slowest receiver, not the sum of all three.
    assert elapsed < 0.45 + 0.15


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
