"""Interview calls in the roll-up: every call counted where the interview log is written,
failures by class and the calls the step's budget cut off."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import sqlalchemy as sa
from tests.interview_hooks.hooks_support import answer_json, hook_at, make_platform, serve
from tests.interview_hooks.test_engine import run
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.delivery import rollup
from docuhooks.store.schema import deliveries, webhook_stats

#: Far shorter than the slow receiver's delay, so its call is always cut off.
BUDGET = 1.0


async def test_interview_calls_are_rolled_up_with_budget_cut_offs(
    ctx: AppContext, site: SiteUsers
) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, interview_budget_seconds=BUDGET)
    platform = await make_platform(ctx, site)
    async with serve() as receiver:
        good = await hook_at(ctx, site, receiver, "/good", answer_json({"Client Name": "J"}))
        broken = await hook_at(ctx, site, receiver, "/broken", answer_json({}, status=500))
        slow = await hook_at(ctx, site, receiver, "/slow", answer_json({}, delay=60))
        for _ in range(2):
            await run(ctx, platform)

    async with ctx.db.read() as conn:
        logged = (await conn.execute(sa.select(deliveries))).all()
        rows = (await conn.execute(sa.select(webhook_stats))).all()
    assert len(logged) == 6
    # The steps may straddle an hour: each webhook's hours summed.
    by_hook = {
        hook: SimpleNamespace(
            **{
                name: sum(getattr(r, name) for r in rows if r.webhook_id == hook)
                for name in rollup.COUNT_COLUMNS
            }
        )
        for hook in {row.webhook_id for row in rows}
    }
    assert (by_hook[good.id].succeeded, by_hook[good.id].failed) == (2, 0)
    assert (by_hook[broken.id].failed, by_hook[broken.id].failed_http_status) == (2, 2)
    cut = by_hook[slow.id]
    assert (cut.failed, cut.failed_timeout, cut.budget_cut) == (2, 2, 2)
    assert by_hook[good.id].budget_cut == by_hook[broken.id].budget_cut == 0
    for counts in by_hook.values():
        assert sum(getattr(counts, name) for name in rollup.LATENCY_COLUMNS) == 2
