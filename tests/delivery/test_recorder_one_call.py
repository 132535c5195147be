"""The recorder's batch of plain successes in one call on PostgreSQL
(`docuhooks_record_successes`, migration 0021), and the statement-by-statement path it
leaves every other batch to.

A batch is recorded the same whichever way it is written: the tests that run on both stores
check the same rows on SQLite (statement by statement) and PostgreSQL (one call)."""

from __future__ import annotations

import asyncio
import importlib.util
import random
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.delivery.delivery_support import (
    a_lock_is_awaited,
    claim_directly,
    make_webhook,
    queue_event,
)
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock
from docuhooks.core.destinations import state_key
from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery import queries, recorder_queries, rollup
from docuhooks.delivery.recorder import Finished, _successes
from docuhooks.delivery.transport import MockTransport, TransportResult
from docuhooks.delivery.worker import Worker, WorkerOptions
from docuhooks.store.database import MIGRATIONS_DIR
from docuhooks.store.schema import attempts, deliveries, destinations, flights, webhook_stats
from docuhooks.store.schema import webhooks as webhooks_table

URL = "https://receiver.example"


class _Setup:
    def __init__(self, worker: Worker, jobs: list[Any], clock: FakeClock, hooks: list[str]):
        self.worker, self.jobs, self.clock, self.hooks = worker, jobs, clock, hooks
        self.statement_by_statement = 0

    async def batch(self) -> list[Finished]:
        return [await self.worker._attempt(job) for job in self.jobs]

    async def record(self, batch: list[Finished]) -> None:
        recorder = self.worker._recorder
        write = recorder._write

        async def counted(conn: AsyncConnection, items: list[Finished]) -> None:
            self.statement_by_statement += 1
            await write(conn, items)

        recorder._write = counted  # type: ignore[method-assign,assignment]
        try:
            await recorder._write_with_retries(batch)
        finally:
            recorder._write = write  # type: ignore[method-assign]


async def _two_webhooks_with_two_deliveries_each(ctx: AppContext, site: SiteUsers) -> _Setup:
    """Webhooks "ok" (answers 200, in a failure run of 2) and "nc" (answers 204), two
    events each, claimed by worker "w1"."""
    clock = FakeClock()
    ok, _ = await make_webhook(ctx, site, URL + "/ok", name="ok")
    nc, _ = await make_webhook(ctx, site, URL + "/nc", name="nc")
    for version in range(2):
        await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"wi-{version}")
    async with ctx.db.transaction() as conn:
        await conn.execute(
            sa.update(webhooks_table)
            .where(webhooks_table.c.id == ok)
            .values(consecutive_failures=2, first_failure_at=clock.now())
        )
    clock.advance(timedelta(seconds=1))

    def handler(request: OutboundRequest) -> TransportResult:
        return TransportResult.response(200 if request.url.endswith("/ok") else 204, b"fine")

    ctx.transport_override = MockTransport(handler)
    worker = Worker(
        ctx, WorkerOptions(batch_size=10), clock=clock, rng=random.Random(7), worker_id="w1"
    )
    jobs = await claim_directly(ctx, clock, "w1", limit=10)
    assert len(jobs) == 4
    return _Setup(worker, jobs, clock, [ok, nc])


async def _rows(ctx: AppContext, table: sa.Table, *where: Any) -> list[Any]:
    async with ctx.db.read() as conn:
        return list((await conn.execute(sa.select(table).where(*where))).all())


async def test_a_batch_of_plain_successes_is_recorded_whole(
    ctx: AppContext, site: SiteUsers
) -> None:
    """Each delivery settled with its status code, an attempt row each, the webhooks' roll-up
    and the failure run ended, the calls no longer in flight: in one call on PostgreSQL, in
    the batch's transaction on SQLite."""
    setup = await _two_webhooks_with_two_deliveries_each(ctx, site)
    ok, nc = setup.hooks
    await setup.record(await setup.batch())

    assert setup.statement_by_statement == (0 if ctx.db.dialect == "postgresql" else 1)
    settled = {row.id: row for row in await _rows(ctx, deliveries)}
    assert len(settled) == 4
    for job in setup.jobs:
        row = settled[job.delivery_id]
        code = 200 if job.webhook.id == ok else 204
        assert (row.status, row.attempts, row.last_status_code) == ("succeeded", 1, code)
        assert (row.lease_owner, row.lease_expires_at, row.next_attempt_at) == (None,) * 3
        assert row.completed_at == setup.clock.now()
    logged = await _rows(ctx, attempts)
    assert sorted((row.delivery_id, row.status_code, row.response_body) for row in logged) == (
        sorted(
            (job.delivery_id, 200 if job.webhook.id == ok else 204, "fine") for job in setup.jobs
        )
    )
    assert all(row.started_at == setup.clock.now() for row in logged)
    assert all(row.request_headers["User-Agent"].startswith("docuhooks") for row in logged)
    stats = {row.webhook_id: row for row in await _rows(ctx, webhook_stats)}
    assert {hook: (row.grain, row.succeeded, row.failed) for hook, row in stats.items()} == {
        ok: ("hour", 2, 0),
        nc: ("hour", 2, 0),
    }
    hooks = {row.id: row for row in await _rows(ctx, webhooks_table)}
    assert (hooks[ok].consecutive_failures, hooks[ok].first_failure_at) == (0, None)
    assert await _rows(ctx, flights) == []


async def test_the_roll_up_adds_to_the_hour_already_counted(
    ctx: AppContext, site: SiteUsers
) -> None:
    setup = await _two_webhooks_with_two_deliveries_each(ctx, site)
    batch = await setup.batch()
    await setup.record(batch[:2])
    await setup.record(batch[2:])

    stats = await _rows(ctx, webhook_stats)
    assert sorted(row.succeeded for row in stats) == [2, 2]
    latencies = rollup.COUNT_COLUMNS[10:]  # a call counted in its latency bin
    assert sum(getattr(row, c) for row in stats for c in latencies) == 4


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_lost_lease_sends_the_batch_statement_by_statement(
    ctx: AppContext, site: SiteUsers
) -> None:
    """A delivery whose lease another worker took meanwhile: the call writes nothing, and
    the batch is written as any other, its lost one's attempt logged and its state left to
    the worker that holds it."""
    setup = await _two_webhooks_with_two_deliveries_each(ctx, site)
    lost = setup.jobs[0].delivery_id
    batch = await setup.batch()
    async with ctx.db.transaction() as conn:
        await conn.execute(
            sa.update(deliveries).where(deliveries.c.id == lost).values(lease_owner="w2")
        )
    await setup.record(batch)

    assert setup.statement_by_statement == 1
    rows = {row.id: row for row in await _rows(ctx, deliveries)}
    assert (rows[lost].status, rows[lost].lease_owner) == ("pending", "w2")
    assert [r.status for i, r in rows.items() if i != lost] == ["succeeded"] * 3
    assert len(await _rows(ctx, attempts)) == 4


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_success_of_a_suspended_webhook_resumes_it_statement_by_statement(
    ctx: AppContext, site: SiteUsers
) -> None:
    setup = await _two_webhooks_with_two_deliveries_each(ctx, site)
    ok, _ = setup.hooks
    batch = await setup.batch()
    async with ctx.db.transaction() as conn:
        await conn.execute(
            sa.update(webhooks_table)
            .where(webhooks_table.c.id == ok)
            .values(suspended_at=setup.clock.now())
        )
    await setup.record(batch)

    assert setup.statement_by_statement == 1
    (hook,) = await _rows(ctx, webhooks_table, webhooks_table.c.id == ok)
    assert (hook.suspended_at, hook.consecutive_failures) == (None, 0)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_successes_to_a_destination_not_at_rest_go_in_the_batchs_transaction(
    ctx: AppContext, site: SiteUsers
) -> None:
    """A destination whose adaptive limit is below its ceiling grows it with the successes,
    in the transaction that records them."""
    setup = await _two_webhooks_with_two_deliveries_each(ctx, site)
    origin = state_key(setup.jobs[0].webhook.site_id, setup.jobs[0].webhook.destination)
    async with ctx.db.transaction() as conn:
        await conn.execute(
            sa.insert(destinations).values(
                origin=origin,
                state="closed",
                failures=0,
                concurrency=2,
                updated_at=setup.clock.now(),
            )
        )
    await setup.record(await setup.batch())

    assert setup.statement_by_statement == 1
    (row,) = await _rows(ctx, destinations)
    assert row.concurrency > 2


def test_the_calls_columns_are_the_tables() -> None:
    """`docuhooks_record_successes` names the attempt log's columns and the roll-up's counts
    of its revision: a change to either must replace the function."""
    path = MIGRATIONS_DIR / "versions" / "0021_record_successes_in_one_call.py"
    spec = importlib.util.spec_from_file_location("migration_0021", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)

    assert migration.COUNT_COLUMNS == rollup.COUNT_COLUMNS
    assert tuple(column.name for column in attempts.c) == migration.ATTEMPT_COLUMNS
    assert tuple(c.name for c in webhook_stats.c)[4:] == rollup.COUNT_COLUMNS


async def test_headers_are_stored_as_they_were_sent_and_received(
    ctx: AppContext, site: SiteUsers
) -> None:
    """The attempt log shows a response's headers in the order the receiver sent them, the
    same whichever way the batch was written (`jsonb` on the way would reorder them)."""
    setup = await _two_webhooks_with_two_deliveries_each(ctx, site)
    sent = {"Zeta": "1", "alpha": "2", "B": "\u00e9\u00ff", "content-type": "a/b"}
    ctx.transport_override = MockTransport(
        lambda _request: TransportResult.response(200, b"fine", dict(sent))
    )
    await setup.record(await setup.batch())

    assert setup.statement_by_statement == (0 if ctx.db.dialect == "postgresql" else 1)
    for row in await _rows(ctx, attempts):
        assert list(row.response_headers.items()) == list(sent.items())


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_the_call_takes_the_deliveries_rows_in_id_order_as_the_heartbeat_does(
    ctx: AppContext, site: SiteUsers
) -> None:
    """Sends end in any order, and a batch comes in that order; the call locks its
    deliveries in id order, as the heartbeat (and every statement over many of them) does, so
    the two never each hold a row the other waits for. Another transaction holds the third
    delivery, so the call waits there holding the first two, and the heartbeat waits for the
    first; on a table large enough for the planner to read the batch's ids in array order,
    the call took them as they came and deadlocked with the heartbeat."""
    setup = await _two_webhooks_with_two_deliveries_each(ctx, site)
    async with ctx.db.transaction() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO deliveries (id, event_id, webhook_id, site_id, status, attempts, "
                "created_at) SELECT 'settled-' || i, d.event_id, d.webhook_id, d.site_id, "
                "'succeeded', 1, d.created_at FROM deliveries d, generate_series(1, 20000) i "
                "WHERE d.id = :one"
            ),
            {"one": setup.jobs[0].delivery_id},
        )
    async with ctx.db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("ANALYZE deliveries")
    batch = sorted(await setup.batch(), key=lambda item: item.job.delivery_id)[:3]
    a, b, c = (item.job.delivery_id for item in batch)
    batch = [batch[1], batch[2], batch[0]]  # the order the sends ended in
    held, release = asyncio.Event(), asyncio.Event()

    async def hold_the_third() -> None:
        async with ctx.db.transaction() as conn:
            await conn.execute(
                sa.select(deliveries.c.id).where(deliveries.c.id == c).with_for_update()
            )
            held.set()
            await release.wait()

    async def record() -> None:
        async with ctx.db.autocommit() as conn:
            await recorder_queries.record_successes(
                conn,
                owner="w1",
                successes=_successes(batch),
                stat_rows=rollup.tally_of_attempts(i.attempt_row for i in batch).rows(),
            )

    async def heartbeat() -> None:
        async with ctx.db.transaction() as conn:
            await queries.extend_leases(
                conn,
                owner="w1",
                delivery_ids=[a, b, c],
                until=setup.clock.now() + timedelta(minutes=1),
            )

    holder = asyncio.create_task(hold_the_third())
    await held.wait()
    recording = asyncio.create_task(record())
    await a_lock_is_awaited(ctx)  # the call waits for the third delivery
    beating = asyncio.create_task(heartbeat())
    await a_lock_is_awaited(ctx, by=2)  # the heartbeat waits too
    release.set()
    await asyncio.gather(holder, recording, beating)  # neither aborted
    rows = {
        row.id: row.status for row in await _rows(ctx, deliveries, deliveries.c.id.in_([a, b, c]))
    }
    assert rows == {a: "succeeded", b: "succeeded", c: "succeeded"}
