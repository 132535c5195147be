"""Receivers whose answer sets are over a limit: alone, or once overlaid on the answers of
the receivers before them. Each such reply is a failed call that contributes nothing, with a
warning naming the limit; the interview still opens with everyone else's answers."""

from __future__ import annotations

import dataclasses
from typing import Any

import httpx
import sqlalchemy as sa
from aiohttp import web
from tests.answers.answer_strategies import HOSTILE
from tests.interview_hooks.hooks_support import (
    Handler,
    answer_json,
    hook_over_api,
    open_over_api,
    serve,
    values_of,
    work_item_over_api,
)
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.interview_hooks import start_log_writer
from docuhooks.store.schema import deliveries

KIB = 1024


def by_webhook(opened: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    found: dict[str, list[dict[str, Any]]] = {}
    for warning in opened["warnings"]:
        found.setdefault(warning["webhookId"], []).append(warning)
    return found


async def test_a_reply_over_a_limit_is_a_failed_call_and_the_interview_opens(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, max_answers=3, max_answer_values_per_answer=5)
    item = await work_item_over_api(client, site)
    stop_log_writer = await start_log_writer(ctx)
    async with serve() as receiver:

        async def hook(path: str, answers: Any, order: int) -> str:
            made = await hook_over_api(client, site, f"{receiver.base}{path}", order=order)
            receiver.route(path, made.verifier(), answer_json(answers))
            return made.id

        good = await hook("/good", {"Client Name": "Jane"}, 0)
        long_value = await hook("/long", {"Client Email": "x" * (64 * KIB + 1)}, 1)
        many_answers = await hook("/many", {"Fee": 1, "Is Company": True, "A": 1, "B": 2}, 2)
        many_values = await hook("/values", {"Child Name": list("abcdef")}, 3)
        opened = await open_over_api(client, site, item)
    assert values_of(opened) == {"Client Name": "Jane"}
    warnings = by_webhook(opened)
    assert set(warnings) == {long_value, many_answers, many_values}
    for webhook, limit in (
        (long_value, "max_answer_value_bytes"),
        (many_answers, "max_answers"),
        (many_values, "max_answer_values_per_answer"),
    ):
        [warning] = warnings[webhook]
        assert warning["code"] == "answer_limit_exceeded"
        assert limit in warning["message"], warning

    await stop_log_writer()
    async with ctx.db.read() as conn:
        logged = {row.webhook_id: row for row in (await conn.execute(sa.select(deliveries))).all()}
    assert logged[good].status == "succeeded"
    for webhook in (long_value, many_answers, many_values):
        assert logged[webhook].status == "failed"
        assert logged[webhook].last_error_class == "invalid_response"


async def test_a_reply_that_would_take_the_answers_over_a_limit_contributes_nothing(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    # Each reply fits alone; the second one on top of the first does not.
    ctx.settings = dataclasses.replace(
        ctx.settings, max_answer_set_bytes=64 * KIB, max_answer_value_bytes=20 * KIB
    )
    item = await work_item_over_api(client, site)
    text = "x" * (16 * KIB)
    async with serve() as receiver:
        first = await hook_over_api(client, site, f"{receiver.base}/first", order=0)
        receiver.route("/first", first.verifier(), answer_json({"Child Name": [text] * 3}))
        second = await hook_over_api(client, site, f"{receiver.base}/second", order=1)
        receiver.route("/second", second.verifier(), answer_json({"Client Name": text}))
        # A reply that replaces answers adds nothing to them, so it still applies.
        third = await hook_over_api(client, site, f"{receiver.base}/third", order=2)
        receiver.route("/third", third.verifier(), answer_json({"Child Name": ["a", text]}))
        opened = await open_over_api(client, site, item)
    assert values_of(opened) == {"Child Name": ["a", text]}
    [warning] = opened["warnings"]
    assert warning["webhookId"] == second.id and warning["code"] == "answer_limit_exceeded"
    assert "max_answer_set_bytes" in warning["message"]


def replying(body: bytes, content_type: str) -> Handler:
    async def handler(request: web.Request) -> web.Response:
        return web.Response(body=body, headers={"Content-Type": content_type})

    return handler


async def test_hostile_replies_are_failed_calls_and_the_interview_opens(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    item = await work_item_over_api(client, site)
    async with serve() as receiver:
        hooks = set()
        for index, (body, content_type) in enumerate(HOSTILE):
            path = f"/hostile/{index}"
            made = await hook_over_api(client, site, f"{receiver.base}{path}")
            receiver.route(path, made.verifier(), replying(body, content_type))
            hooks.add(made.id)
        opened = await open_over_api(client, site, item)
    assert values_of(opened) == {}
    warned = by_webhook(opened)
    # Every reply was refused as a whole (one warning) or left out answer by answer.
    assert set(warned) == hooks
    for warnings in warned.values():
        assert all(w["code"] != "connect" and w["message"] for w in warnings), warnings
