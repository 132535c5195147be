"""Review findings: what one site's interview receivers can do to another site's interviews."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

import pytest
from tests.interview_hooks.hooks_support import answer_json, hook_at, make_platform, serve
from tests.support import SiteUsers

from docuhooks.answers import AnswerSet, offload
from docuhooks.context import AppContext
from docuhooks.core.events import EventType
from docuhooks.interview_hooks import replies, run_interview_hooks

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
