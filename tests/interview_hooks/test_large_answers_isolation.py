"""Large answer sets never hold the event loop, and one site's never queue another's: the
interview's answers read and written, the receivers' replies judged, and a
CustomInterviewEvent's answers encoded and signed, all in the answer-parsing threads under
the site's own slots."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import threading
from typing import Any

import httpx
import pytest
from tests.interview_hooks.hooks_support import (
    API_VARIABLES,
    answer_json,
    hook_at,
    hook_over_api,
    make_platform,
    serve,
    work_item_over_api,
)
from tests.support import SiteUsers

from docuhooks import answers
from docuhooks.answers import AnswerSet, offload
from docuhooks.context import AppContext
from docuhooks.core.events import EventType
from docuhooks.interview_hooks import replies, run_interview_hooks
from docuhooks.platform import interviews

KIB = 1024


async def test_one_sites_large_replies_do_not_queue_another_sites_reply_behind_them(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Reading a large reply holds one of its site's slots of the answer-parsing threads
    (`answers.offload`), as every other heavy answer operation does: a site whose receivers
    answer many large answer sets queues them in its own line, and another site's reply is
    read after the one being read now, not after all of them."""
    ctx.settings = dataclasses.replace(
        ctx.settings, answer_parse_threads=1, interview_budget_seconds=60.0
    )
    noisy = await make_platform(ctx, site)
    quiet = await make_platform(ctx, other_site)
    gate = threading.Event()
    read: list[str] = []
    real_judge = replies.judge

    def judge(result: Any, *args: Any) -> Any:
        who = "quiet" if b"quiet" in (result.body or b"") else "noisy"
        if who == "noisy" and not read:
            gate.wait(30)  # the first noisy reply holds the only thread until released
        read.append(who)
        return real_judge(result, *args)

    monkeypatch.setattr(replies, "judge", judge)
    pool = offload._pool(1)

    def queued() -> int:
        return offload.LIMITER.waiting(noisy.principal.site_id) + pool._work_queue.qsize()

    async def until(condition: Any) -> None:
        for _ in range(3000):
            if condition():
                return
            await asyncio.sleep(0.01)
        raise AssertionError("never happened")

    def step(platform: Any) -> Any:
        return run_interview_hooks(
            ctx,
            principal=platform.principal,
            event_type=EventType.INTERVIEW_LOAD_EVENT,
            interview_id=platform.interview_id,
            work_item=platform.work_item,
            version_id=platform.version_id,
            template=platform.template,
            current_answers=AnswerSet(),
        )

    async with serve() as receiver:
        for n in range(4):
            await hook_at(
                ctx,
                site,
                receiver,
                f"/noisy{n}",
                answer_json({"Client Name": "n" * (40 * KIB)}),
                order=n,
            )
        await hook_at(
            ctx,
            other_site,
            receiver,
            "/quiet",
            answer_json({"Client Name": "quiet" + "q" * (40 * KIB)}),
        )
        noisy_step = asyncio.create_task(step(noisy))
        try:
            await until(lambda: queued() == 3)  # one read, three waiting
            quiet_step = asyncio.create_task(step(quiet))
            await until(lambda: queued() == 4)  # the quiet site's reply is waiting too
        finally:
            gate.set()
        noisy_result, quiet_result = await asyncio.gather(noisy_step, quiet_step)
    assert quiet_result.warnings == [] and noisy_result.warnings == []
    assert read == ["noisy", "quiet", "noisy", "noisy", "noisy"]


async def test_an_interview_with_few_answers_of_many_values_is_read_off_the_event_loop(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A template declares a handful of variables, one of them a date repeated four levels
    deep: 10,000 values, within every limit, take the better part of a second to read.
    Opening the interview with a webhook reads the stored answers, and writing what the
    webhook changed reads them again: both in the answer-parsing threads, never on the event
    loop every other site's requests are served by. (The size was guessed from the number
    of answers, 100 bytes each, so one answer of 10,000 values passed for 100 bytes.)"""
    item_id, _ = await _interview_of_many_dates(client, site, event_elements=[])

    on_loop: list[str] = []
    real_parse = answers.parse_stored

    def parse_stored(data: Any) -> Any:
        if "Dates" in json.dumps(data)[:10_000] and not threading.current_thread().name.startswith(
            "answer-parse"
        ):
            on_loop.append(threading.current_thread().name)
        return real_parse(data)

    monkeypatch.setattr(interviews, "parse_stored", parse_stored)
    async with serve() as receiver:
        hook = await hook_over_api(client, site, f"{receiver.base}/load")
        receiver.route("/load", hook.verifier(), answer_json({"Client Name": "Jane"}))
        opened = await client.post(
            f"/api/v1/workitems/{item_id}/interviews", headers=site.auth("User")
        )
    assert opened.status_code == 201, opened.text
    assert opened.json()["warnings"] == []
    assert {a["name"] for a in opened.json()["answers"]["answers"]} >= {"Client Name", "Dates"}
    assert on_loop == []


async def test_a_custom_event_encodes_a_large_interviews_answers_off_the_event_loop(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CustomInterviewEvent carries the interview's answers: encoding 10,000 deep-repeated
    dates takes about 0.2 s (and each webhook's request encodes and signs them again); on
    the event loop that would stall every site's requests."""
    _, interview_id = await _interview_of_many_dates(
        client, site, event_elements=["Look up client"]
    )

    on_loop: list[str] = []
    real_to_json = AnswerSet.to_json

    def to_json(self: AnswerSet) -> Any:
        if "Dates" in self and not threading.current_thread().name.startswith("answer-parse"):
            on_loop.append(threading.current_thread().name)
        return real_to_json(self)

    monkeypatch.setattr(AnswerSet, "to_json", to_json)
    async with serve() as receiver:
        hook = await hook_over_api(
            client,
            site,
            f"{receiver.base}/custom",
            event_type="CustomInterviewEvent",
            interviewEventName="Look up client",
        )
        receiver.route("/custom", hook.verifier(), answer_json({"Client Name": "Jane"}))
        fired = await client.post(
            f"/api/v1/interviews/{interview_id}/events/Look%20up%20client",
            headers=site.auth("User"),
        )
    assert fired.status_code == 200, fired.text
    assert fired.json()["warnings"] == []
    assert on_loop == []


async def _interview_of_many_dates(
    client: httpx.AsyncClient, site: SiteUsers, *, event_elements: list[str]
) -> tuple[str, str]:
    """A work item of a template with a date repeated four levels deep, and an interview of
    it whose answers hold 10,000 of them (within every limit): (work item id, interview id)."""
    dates_variable = {"name": "Dates", "type": "date", "repeatDepth": 4, "options": []}
    item_id = (
        await work_item_over_api(
            client,
            site,
            variables=[*API_VARIABLES, dates_variable],
            event_elements=tuple(event_elements),
        )
    ).id
    first = await client.post(f"/api/v1/workitems/{item_id}/interviews", headers=site.auth("User"))
    dates = [[[["2024-01-31"] * 10] * 10] * 100]  # 10,000 values
    put = await client.put(
        f"/api/v1/interviews/{first.json()['id']}/answers",
        json={"Dates": dates},
        headers=site.auth("User"),
    )
    assert put.status_code == 200, put.text
    return item_id, first.json()["id"]
