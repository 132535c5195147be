"""Receivers that misbehave in every way we know, all behind one `POST .../interviews`: the
interview still opens when the budget ends (not when the slowest hook's own timeout would), with
the good hooks' answers and one warning naming each bad hook and its reason, and every call is
in the delivery log."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any

import httpx
import sqlalchemy as sa
from aiohttp import web
from tests.interview_hooks.hooks_support import (
    Handler,
    Hook,
    Receiver,
    answer_json,
    hook_over_api,
    open_over_api,
    refused_port,
    self_signed_context,
    serve,
    values_of,
    work_item_over_api,
)
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.interview_hooks import start_log_writer
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


async def test_bad_receivers_never_break_the_interview(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, interview_budget_seconds=BUDGET)
    item = await work_item_over_api(client, site)
    # As `serve` runs it: the delivery log is written after the reply, flushed on stop.
    stop_log_writer = await start_log_writer(ctx)

    async def hook(path: str, handler: Handler, on: Receiver | None = None, **fields: Any) -> Hook:
        where = on or receiver
        made = await hook_over_api(client, site, f"{where.base}{path}", **fields)
        where.route(path, made.verifier(), handler)
        return made

    async with serve() as receiver, serve(self_signed_context()) as tls:
        hooks = {
            "good": await hook("/good", answer_json({"Client Name": "Jane"}), order=0),
            "slow": await hook("/slow", sleeping(3), timeoutSeconds=1),
            "past budget": await hook("/forever", sleeping(30), timeoutSeconds=10),
            "huge": await hook("/huge", huge),
            "not json": await hook("/not-json", not_json),
            "wrong types": await hook(
                "/types",
                answer_json({"Fee": "a lot", "Start Date": "31/01/2026", "Is Company": True}),
            ),
            "unknown": await hook("/unknown", answer_json({"Shoe Size": 44, "Fee": 1500})),
            "unknown option": await hook("/option", answer_json({"Colours": ["Purple"]})),
            "500": await hook("/error", server_error),
            "redirect": await hook("/redirect", to_private),
            "refused": await hook_over_api(client, site, f"http://127.0.0.1:{refused_port()}/hook"),
            "tls": await hook("/secure", answer_json({"Fee": 9}), on=tls),
            "good late": await hook("/good-late", answer_json({"Colours": ["Blue"]}, delay=0.5)),
        }
        started = time.perf_counter()
        opened = await open_over_api(client, site, item)
        elapsed = time.perf_counter() - started
    # The budget ended the wait, not the hanging hook's own 10 s timeout: its warning names
    # the budget (below). The bound is that timeout, far from anything a busy machine adds.
    assert elapsed < 10, elapsed
    assert receiver.rejected == []

    answers = values_of(opened)
    assert answers == {
        "Client Name": "Jane",
        "Is Company": True,
        "Fee": 1500,
        "Colours": ["Blue"],
    }
    names = {made.id: label for label, made in hooks.items()}
    by_hook: dict[str, list[dict[str, Any]]] = {}
    for warning in opened["warnings"]:
        assert set(warning) == {"source", "code", "message", "variable", "webhookId", "webhookName"}
        assert warning["source"] == "webhook"
        assert warning["webhookName"] == hooks[names[warning["webhookId"]]].name
        by_hook.setdefault(names[warning["webhookId"]], []).append(warning)
    codes = {label: sorted(w["code"] for w in found) for label, found in by_hook.items()}
    assert codes == {
        "slow": ["timeout"],
        "past budget": ["timeout"],
        "huge": ["invalid_response"],
        "not json": ["invalid_answers"],
        "wrong types": ["type_mismatch", "type_mismatch"],
        "unknown": ["unknown_variable"],
        "unknown option": ["unknown_option"],
        "500": ["http_status"],
        "redirect": ["http_status"],
        "refused": ["connect"],
        "tls": ["tls"],
    }
    variables = {
        label: sorted(w["variable"] or "" for w in found) for label, found in by_hook.items()
    }
    assert variables["wrong types"] == ["Fee", "Start Date"]
    assert variables["unknown"] == ["Shoe Size"] and variables["unknown option"] == ["Colours"]
    assert variables["500"] == [""]  # a failed call is about no one answer
    assert "2 s budget" in by_hook["past budget"][0]["message"]
    assert "max_answer_set_bytes" in by_hook["huge"][0]["message"]
    assert "10.0.0.1" in by_hook["redirect"][0]["message"]
    assert "Purple" in by_hook["unknown option"][0]["message"]
    # The redirect was not followed: nothing but loopback was ever contacted.
    assert all(path != "/steal" for path, _ in receiver.methods)
    # What the user sees was saved: reading the interview back gives the same answers.
    read = await client.get(f"/api/v1/interviews/{opened['id']}", headers=site.auth("User"))
    assert values_of(read.json()) == answers

    await stop_log_writer()  # writes what is still queued
    async with ctx.db.read() as conn:
        logged = {row.webhook_id: row for row in (await conn.execute(sa.select(deliveries))).all()}
        attempt_count = await conn.scalar(sa.select(sa.func.count()).select_from(attempts))
    assert len(logged) == len(hooks) == attempt_count
    failed = {names[webhook_id] for webhook_id, row in logged.items() if row.status == "failed"}
    # Answers dropped for not fitting the template are warnings, not failed calls.
    assert failed == set(codes) - {"wrong types", "unknown", "unknown option"}
    assert logged[hooks["tls"].id].last_error_class == "tls"
    assert logged[hooks["past budget"].id].last_error_class == "timeout"
