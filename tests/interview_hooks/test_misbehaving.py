"""Receivers that misbehave in every way we know, all in one interview step: the interview
still opens within the budget (plus 100 ms), with the good hooks' answers and one warning
naming each bad hook and its reason, and every call is in the delivery log."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import sqlalchemy as sa
from aiohttp import web
from tests.interview_hooks.hooks_support import (
    Handler,
    answer_json,
    hook_at,
    make_hook,
    make_platform,
    refused_port,
    self_signed_context,
    serve,
)
from tests.support import SiteUsers

from docuhooks.answers import AnswerSet, Selection
from docuhooks.context import AppContext
from docuhooks.core.events import EventType
from docuhooks.interview_hooks import run_interview_hooks
from docuhooks.store.schema import attempts, deliveries

BUDGET = 2.0


def sleeping(seconds: float) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        await asyncio.sleep(seconds)
        return web.json_response({"Client Email": "late@example.com"})

    return handler


async def huge(request: web.Request) -> web.Response:
    return web.Response(
        body=b"[" + b"1," * (5 * 1024 * 1024) + b"1]", content_type="application/json"
    )


async def not_json(request: web.Request) -> web.Response:
    return web.Response(body=b'{"Client Name": ', content_type="application/json")


async def server_error(request: web.Request) -> web.Response:
    return web.Response(status=500, text="database down")


async def to_private(request: web.Request) -> web.Response:
    raise web.HTTPFound("http://10.0.0.1/steal")


async def test_bad_receivers_never_break_the_interview(ctx: AppContext, site: SiteUsers) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, interview_budget_seconds=BUDGET)
    platform = await make_platform(ctx, site)
    async with serve() as receiver, serve(self_signed_context()) as tls:
        hooks = {
            "good": await hook_at(
                ctx, site, receiver, "/good", answer_json({"Client Name": "Jane"}), order=0
            ),
            "slow": await hook_at(ctx, site, receiver, "/slow", sleeping(3), timeoutSeconds=1),
            "past budget": await hook_at(
                ctx, site, receiver, "/forever", sleeping(30), timeoutSeconds=10
            ),
            "huge": await hook_at(ctx, site, receiver, "/huge", huge),
            "not json": await hook_at(ctx, site, receiver, "/not-json", not_json),
            "wrong types": await hook_at(
                ctx,
                site,
                receiver,
                "/types",
                answer_json({"Fee": "a lot", "Start": "31/01/2026", "Urgent": True}),
            ),
            "unknown": await hook_at(
                ctx, site, receiver, "/unknown", answer_json({"Shoe Size": 44, "Fee": 1500})
            ),
            "500": await hook_at(ctx, site, receiver, "/error", server_error),
            "redirect": await hook_at(ctx, site, receiver, "/redirect", to_private),
            "refused": await make_hook(ctx, site, f"http://127.0.0.1:{refused_port()}/hook"),
            "tls": await hook_at(ctx, site, tls, "/secure", answer_json({"Fee": 9})),
            "good late": await hook_at(
                ctx, site, receiver, "/good-late", answer_json({"Colour": ["Blue"]}, delay=0.5)
            ),
        }
        started = time.perf_counter()
        result = await run_interview_hooks(
            ctx,
            principal=platform.principal,
            event_type=EventType.INTERVIEW_LOAD_EVENT,
            interview_id=platform.interview_id,
            work_item=platform.work_item,
            version_id=platform.version_id,
            template=platform.template,
            current_answers=AnswerSet(),
        )
        elapsed = time.perf_counter() - started
    assert elapsed < BUDGET + 0.1, elapsed
    assert receiver.rejected == []

    answers = {name: answer.value for name, answer in result.answers.items()}
    assert answers["Client Name"] == "Jane"
    assert answers["Urgent"] is True and answers["Fee"] == 1500
    assert answers["Colour"] == Selection(("Blue",))
    assert "Client Email" not in answers and "Shoe Size" not in answers

    by_hook: dict[str, list[tuple[str, str]]] = {}
    names = {hook.id: label for label, hook in hooks.items()}
    for warning in result.warnings:
        assert warning["webhookName"] == next(
            h.name for h in hooks.values() if h.id == warning["webhookId"]
        )
        by_hook.setdefault(names[warning["webhookId"]], []).append(
            (warning["code"], warning["message"])
        )
    codes = {label: sorted(code for code, _ in found) for label, found in by_hook.items()}
    assert codes == {
        "slow": ["timeout"],
        "past budget": ["timeout"],
        "huge": ["invalid_response"],
        "not json": ["invalid_answers"],
        "wrong types": ["type_mismatch", "type_mismatch"],
        "unknown": ["unknown_variable"],
        "500": ["http_status"],
        "redirect": ["http_status"],
        "refused": ["connect"],
        "tls": ["tls"],
    }
    assert "2 s budget" in by_hook["past budget"][0][1]
    assert "1 MiB" in by_hook["huge"][0][1]
    assert "10.0.0.1" in by_hook["redirect"][0][1]
    assert any("Fee" in message for _, message in by_hook["wrong types"])
    assert "Shoe Size" in by_hook["unknown"][0][1]
    # The redirect was not followed: nothing but loopback was ever contacted.
    assert all(path != "/steal" for path, _ in receiver.methods)

    async with ctx.db.read() as conn:
        logged = {row.webhook_id: row for row in (await conn.execute(sa.select(deliveries))).all()}
        attempt_count = await conn.scalar(sa.select(sa.func.count()).select_from(attempts))
    assert len(logged) == len(hooks) == attempt_count
    failed = {names[webhook_id] for webhook_id, row in logged.items() if row.status == "failed"}
    # Answers dropped for not fitting the template are warnings, not failed calls.
    assert failed == set(codes) - {"wrong types", "unknown"}
    assert logged[hooks["tls"].id].last_error_class == "tls"
    assert logged[hooks["past budget"].id].last_error_class == "timeout"
