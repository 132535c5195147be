"""The delivery roll-up against the attempt log it summarises, on both stores: exact counts,
latency quantiles within the histogram's error, and a size that stays bounded."""

from __future__ import annotations

import asyncio
import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from tests.delivery.delivery_support import make_webhook, queue_event
from tests.delivery.test_worker import worker_with
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core import latency
from docuhooks.core.clock import FakeClock
from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery import pruning, rollup, stats
from docuhooks.delivery.transport import ErrorClass, TransportResult
from docuhooks.store.schema import attempts, webhook_stats

OUTCOMES: list[str | int | ErrorClass] = [
    "ok",
    "ok",
    "ok",
    "ok",
    500,
    503,
    404,
    ErrorClass.TIMEOUT,
    ErrorClass.CONNECT,
]


def flaky_receiver(seed: int) -> Any:
    rng = random.Random(seed)

    def handle(_request: OutboundRequest) -> TransportResult:
        outcome = rng.choice(OUTCOMES)
        duration = math.exp(rng.uniform(0, math.log(20_000)))  # 1 ms to 20 s
        if outcome == "ok":
            return TransportResult.response(200, b"ok", duration_ms=duration)
        if isinstance(outcome, ErrorClass):
            return TransportResult.failure(outcome, "down", duration_ms=duration)
        assert isinstance(outcome, int)
        return TransportResult.response(outcome, b"no", duration_ms=duration)

    return handle


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


async def test_the_roll_up_matches_the_attempt_log(ctx: AppContext, site: SiteUsers) -> None:
    # Start late in a day, so the run spans two days and several hours.
    clock = FakeClock(datetime(2026, 3, 1, 22, 30, tzinfo=UTC))
    hooks = [(await make_webhook(ctx, site, f"https://r{i}.example/hook"))[0] for i in range(2)]
    worker, _ = worker_with(ctx, flaky_receiver(5), clock, suspend_after_failures=10_000)
    for _hour in range(3):
        for n in range(15):
            await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"wi-{_hour}-{n}")
        for _round in range(6):  # every retry of the schedule (0, 10, 60, 300 s)
            await worker.run_once()
            clock.advance(301)
        clock.advance(timedelta(minutes=35))

    async with ctx.db.read() as conn:
        logged = (await conn.execute(sa.select(attempts))).all()
        rolled = (await conn.execute(sa.select(webhook_stats))).all()
    assert {row.webhook_id for row in logged} == set(hooks)

    expected: dict[tuple[str, str, datetime], dict[str, Any]] = defaultdict(
        lambda: {"succeeded": 0, "failed": 0, "classes": defaultdict(int), "durations": []}
    )
    for row in logged:
        for grain, start in (
            (rollup.HOUR, rollup.hour_of(row.started_at)),
            (rollup.DAY, rollup.day_of(row.started_at)),
        ):
            tally = expected[(row.webhook_id, grain, start)]
            if row.status_code == 200:
                tally["succeeded"] += 1
            else:
                tally["failed"] += 1
                tally["classes"][row.error_class] += 1
            tally["durations"].append(row.duration_ms)

    def check(bucket: stats.Bucket, key: tuple[str, str, datetime]) -> None:
        tally = expected[key]
        assert (bucket.succeeded, bucket.failed) == (tally["succeeded"], tally["failed"]), key
        assert bucket.failed_by_class == tally["classes"], key
        for q, reported in ((0.5, bucket.p50_ms), (0.99, bucket.p99_ms)):
            true = nearest_rank(tally["durations"], q)
            assert reported is not None
            assert abs(reported / true - 1) <= latency.RELATIVE_ERROR + 1e-9

    # The batches write hours: one row per webhook and hour, each exactly its attempts.
    hours = {k for k in expected if k[1] == rollup.HOUR}
    assert {(r.webhook_id, r.grain, r.bucket_start) for r in rolled} == hours
    assert len({start for (_, grain, start) in expected if grain == rollup.DAY}) == 2
    assert len({start for (_, _, start) in hours}) >= 3
    for row in rolled:
        counts = [getattr(row, name) for name in rollup.COUNT_COLUMNS]
        check(
            stats.from_counts(row.bucket_start, counts),
            (row.webhook_id, row.grain, row.bucket_start),
        )

    async def days_match(now: datetime) -> None:
        async with ctx.db.read() as conn:
            for hook in hooks:
                history = await stats.webhook_history(conn, hook, now=now)
                for bucket in history.days:
                    if (hook, rollup.DAY, bucket.start) in expected:
                        check(bucket, (hook, rollup.DAY, bucket.start))
                    else:
                        assert bucket.total == 0

    # Days, read from the hours not yet folded; then again once the pruner has folded them.
    await days_match(clock.now())
    later = clock.now() + timedelta(hours=50)
    assert await pruning.prune_rollup(ctx.db, now=later) == len(hours)
    async with ctx.db.read() as conn:
        grains = {r.grain for r in (await conn.execute(sa.select(webhook_stats))).all()}
    assert grains == {rollup.DAY}
    await days_match(later)

    # The site's summary sums the same rows.
    async with ctx.db.read() as conn:
        summary = await stats.site_summary(conn, site.site_id, now=later, destination_cap=50)
    assert len(summary.history.hours) == rollup.HOURS and len(summary.history.days) == rollup.DAYS
    assert sum(b.failed for b in summary.history.days) == sum(
        1 for r in logged if r.status_code != 200
    )
    assert sum(b.succeeded for b in summary.history.days) == sum(
        1 for r in logged if r.status_code == 200
    )
    assert sum(b.total for b in summary.history.hours) == 0  # all folded into days


async def test_the_roll_up_keeps_48_hours_and_30_days(ctx: AppContext, site: SiteUsers) -> None:
    hook, _ = await make_webhook(ctx, site, "https://r.example/hook")
    now = datetime(2026, 3, 10, 12, 15, tzinfo=UTC)
    starts = [now - timedelta(hours=back) for back in range(24 * 40)]
    async with ctx.db.transaction() as conn:
        await rollup.add_calls(
            conn, [rollup.Call(hook, site.site_id, at, 10.0, None) for at in starts]
        )
    assert await pruning.prune_rollup(ctx.db, now=now) > 0
    async with ctx.db.read() as conn:
        rows = (await conn.execute(sa.select(webhook_stats))).all()
        history = await stats.webhook_history(conn, hook, now=now)
    hours = sorted(r.bucket_start for r in rows if r.grain == rollup.HOUR)
    days = sorted(r.bucket_start for r in rows if r.grain == rollup.DAY)
    assert hours[0] == datetime(2026, 3, 8, 13, tzinfo=UTC) and len(hours) == rollup.HOURS
    # Folded hours made days, from the oldest kept to the day of the oldest hour kept.
    assert days == [datetime(2026, 2, 9, tzinfo=UTC) + timedelta(days=n) for n in range(28)]
    per_day: dict[datetime, int] = defaultdict(int)
    for at in starts:
        per_day[rollup.day_of(at)] += 1
    assert [b.total for b in history.days] == [per_day[b.start] for b in history.days]
    assert sum(b.total for b in history.hours) == rollup.HOURS
    assert await pruning.prune_rollup(ctx.db, now=now) == 0


@pytest.mark.slow
async def test_100000_deliveries_keep_the_roll_up_bounded(ctx: AppContext, site: SiteUsers) -> None:
    """Through the recorder's write path (`rollup.add_attempts` on attempt rows, a batch of
    500 per transaction), spread over 40 days and pruned hourly as the pruner does."""
    hooks = [(await make_webhook(ctx, site, f"https://r{i}.example/hook"))[0] for i in range(4)]
    rng = random.Random(3)
    start = datetime(2026, 3, 1, tzinfo=UTC)
    total, batch_size, step = 100_000, 500, timedelta(days=40) / 100_000
    bound = len(hooks) * (rollup.HOURS + rollup.DAYS + 2)
    last_prune = start
    sent: dict[str, int] = defaultdict(int)
    for first in range(0, total, batch_size):
        rows: list[dict[str, Any]] = []
        for n in range(first, first + batch_size):
            hook = hooks[n % len(hooks)]
            failed = rng.random() < 0.2
            rows.append(
                {
                    "webhook_id": hook,
                    "site_id": site.site_id,
                    "started_at": start + step * n,
                    "duration_ms": rng.uniform(1, 3000),
                    "status_code": 500 if failed else 200,
                    "error_class": "http_status" if failed else None,
                }
            )
            sent[hook] += 1
        now: datetime = rows[-1]["started_at"]
        async with ctx.db.transaction() as conn:
            await rollup.add_attempts(conn, rows)
        if now - last_prune >= timedelta(hours=1):
            await pruning.prune_rollup(ctx.db, now=now)
            last_prune = now
            async with ctx.db.read() as conn:
                count = (
                    await conn.execute(sa.select(sa.func.count()).select_from(webhook_stats))
                ).scalar_one()
            assert count <= bound
    assert sum(sent.values()) == total
    async with ctx.db.read() as conn:
        history = await stats.webhook_history(conn, hooks[0], now=now)
    # The last 30 days hold what was sent in them (3/4 of the 40 days, give or take a day).
    in_window = sum(b.total for b in history.days)
    assert abs(in_window - sent[hooks[0]] * 30 / 40) <= sent[hooks[0]] / 40 + 1


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_concurrent_writers_take_the_rows_in_one_order(
    ctx: AppContext, site: SiteUsers
) -> None:
    """Two batches touching the same webhooks in opposite orders, on PostgreSQL's row locks:
    each batch's upsert goes in key order, so the second waits for the first instead of
    holding a row the first needs next (a deadlock, one of them aborted). PostgreSQL only:
    SQLite has one writer at a time, so no row locks to order."""
    hooks = sorted([(await make_webhook(ctx, site, f"https://r{i}.example/"))[0] for i in (1, 2)])
    first, last = hooks
    now = datetime(2026, 3, 1, 12, tzinfo=UTC)

    def call(hook: str) -> rollup.Call:
        return rollup.Call(hook, site.site_id, now, 5.0, None)

    async with ctx.db.transaction() as holder:
        await rollup.add_calls(holder, [call(first)])  # holds the first webhook's rows
        waiter_pid: asyncio.Future[int] = asyncio.get_running_loop().create_future()

        async def other_batch() -> None:
            async with ctx.db.transaction() as conn:
                waiter_pid.set_result(
                    (await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one()
                )
                # Given last-first: in key order it waits on the first and holds nothing else.
                await rollup.add_calls(conn, [call(last), call(first)])

        other = asyncio.create_task(other_batch())
        pid = await waiter_pid
        waiting = sa.text("SELECT count(*) FROM pg_locks WHERE pid = :pid AND NOT granted")
        async with ctx.db.read() as watcher:
            # PostgreSQL tells no one when a lock wait starts: its lock table is polled.
            while not (await watcher.execute(waiting, {"pid": pid})).scalar_one():  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        # The other batch waits for our first row; our next row is free.
        await rollup.add_calls(holder, [call(last)])
    await other
    async with ctx.db.read() as conn:
        rows = (await conn.execute(sa.select(webhook_stats))).all()
    assert {(r.webhook_id, r.grain): r.succeeded for r in rows} == {
        (hook, rollup.HOUR): 2 for hook in hooks
    }
