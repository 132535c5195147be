"""Recovery jobs on both stores: batches that queue each failed event once, progress, the
audit entry, a job taken over from a process that stopped renewing its lease, one job at a
time per webhook (requests racing make one), runners that take the sites in turn and give
each job a turn of batches, and the app component that runs jobs as they are made."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import UTC, datetime, timedelta

import httpx
import pytest
import sqlalchemy as sa
from tests.delivery.delivery_support import admin_of, make_webhook, queue_event
from tests.support import MovedClock, SiteUsers, racing_at_the_site_lock

from docuhooks.context import AppContext
from docuhooks.core.retry import RetrySchedule
from docuhooks.delivery import recovery
from docuhooks.delivery.recovery import RecoveryRunner
from docuhooks.delivery.transport import MockTransport, TransportResult
from docuhooks.delivery.worker import Worker, WorkerOptions
from docuhooks.store.schema import deliveries, recovery_jobs

URL = "https://receiver.example/hook"
API = "/api/v1"


async def _failed_events(ctx: AppContext, site: SiteUsers, count: int) -> list[str]:
    """`count` events whose one delivery failed (one attempt, answered 500); their ids."""
    start = datetime.now(UTC) - timedelta(hours=1)
    ids = []
    for n in range(count):
        event, _ = await queue_event(
            ctx, site.site_id, now=start + timedelta(seconds=n), work_item_id=f"wi-{n}"
        )
        ids.append(event.event_id)
    ctx.transport_override = MockTransport(lambda _request: TransportResult.response(500))
    worker = Worker(ctx, WorkerOptions(schedule=RetrySchedule(delays=(0,))), rng=random.Random(2))
    assert len(await worker.run_once()) == count
    return ids


async def _pending_events(ctx: AppContext) -> list[str]:
    async with ctx.db.read() as conn:
        rows = await conn.execute(
            sa.select(deliveries.c.event_id).where(deliveries.c.status == "pending")
        )
        return sorted(rows.scalars().all())


async def test_a_job_queues_each_failed_event_once_in_batches_with_progress_and_audit(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook, _ = await make_webhook(ctx, site, URL)
    failed = await _failed_events(ctx, site, 7)
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    made = await client.post(
        f"{API}/webhooks/{hook}/recover", json={"since": since}, headers=site.auth()
    )
    assert made.status_code == 202, made.text
    job = made.json()
    assert job["status"] == "queued" and job["createdBy"] == site.logins["SiteAdministrator"]

    runner = RecoveryRunner(ctx, batch=3)
    claimed = await runner._claim()
    assert claimed is not None and claimed.id == job["id"]
    assert await runner._count(claimed)
    progress = []
    cursor = None
    while True:
        step = await runner._batch(claimed, cursor)
        assert step is not None
        cursor, finished = step
        progress.append((await client.get(job["link"], headers=site.auth())).json())
        if finished:
            break
    assert [(p["status"], p["done"], p["redelivered"]) for p in progress] == [
        ("running", 3, 3),
        ("running", 6, 6),
        ("succeeded", 7, 7),
    ]
    assert {p["total"] for p in progress} == {7}
    assert await _pending_events(ctx) == sorted(failed)

    audit = (await client.get(f"{API}/webhooks/{hook}/audit", headers=site.auth())).json()
    assert audit[0]["action"] == "webhook.recovered"
    assert audit[0]["details"]["redelivered"] == 7
    assert audit[0]["details"]["recoveryId"] == job["id"]

    again = await client.post(
        f"{API}/webhooks/{hook}/recover", json={"since": since}, headers=site.auth()
    )
    assert await RecoveryRunner(ctx, batch=3).run_once() == 1
    second = (await client.get(again.json()["link"], headers=site.auth())).json()
    assert (second["done"], second["redelivered"]) == (7, 0), "nothing is queued twice"


async def test_a_job_whose_lease_ran_out_is_finished_by_another_runner_where_it_stopped(
    ctx: AppContext, site: SiteUsers
) -> None:
    hook, _ = await make_webhook(ctx, site, URL)
    failed = await _failed_events(ctx, site, 5)
    job = await recovery.start_recovery(
        ctx, admin_of(site), hook, since=datetime.now(UTC) - timedelta(days=1)
    )
    first = RecoveryRunner(ctx, owner="first", batch=2)
    claimed = await first._claim()
    assert claimed is not None and await first._count(claimed)
    step = await first._batch(claimed, None)
    assert step is not None and step[1] is False
    # The first process stops renewing (it died, or stalled past its lease).
    async with ctx.db.transaction() as conn:
        await conn.execute(
            recovery_jobs.update().values(lease_expires_at=datetime.now(UTC) - timedelta(1))
        )
    assert await RecoveryRunner(ctx, owner="second", batch=2).run_once() == 1
    assert await first._batch(claimed, step[0]) is None, "the lease is the second's now"
    async with ctx.db.read() as conn:
        row = (await conn.execute(sa.select(recovery_jobs))).one()
    assert (row.status, row.done, row.redelivered, row.lease_owner) == (
        "succeeded",
        5,
        5,
        "second",
    )
    assert row.id == job["id"]
    assert await _pending_events(ctx) == sorted(failed), "each event once, none lost"


async def test_bad_requests_name_the_problem(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook, _ = await make_webhook(ctx, site, URL)
    missing = await client.get(
        f"{API}/webhooks/{hook}/recoveries/0190c0de-0000-7000-8000-000000000000",
        headers=site.auth(),
    )
    assert missing.status_code == 404 and "recovery" in missing.json()["error"]["message"]
    backwards = await client.post(
        f"{API}/webhooks/{hook}/recover",
        json={"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"},
        headers=site.auth(),
    )
    assert backwards.status_code == 422 and "until" in backwards.text
    await client.post(f"{API}/webhooks/{hook}/deactivate", headers=site.auth())
    inactive = await client.post(
        f"{API}/webhooks/{hook}/recover",
        json={"since": "2026-01-01T00:00:00Z"},
        headers=site.auth(),
    )
    assert inactive.status_code == 409 and "inactive" in inactive.text


async def test_the_app_component_runs_a_job_as_soon_as_it_is_made(
    ctx: AppContext, site: SiteUsers
) -> None:
    hook, _ = await make_webhook(ctx, site, URL)
    failed = await _failed_events(ctx, site, 3)
    stop = await recovery.start_recoveries(ctx)
    try:
        job = await recovery.start_recovery(
            ctx, admin_of(site), hook, since=datetime.now(UTC) - timedelta(days=1)
        )
        async with asyncio.timeout(30):  # woken at once; the bound only stops a hang
            while True:
                async with ctx.db.read() as conn:
                    status = await recovery.get_recovery(conn, admin_of(site), hook, job["id"])
                if status["status"] == "succeeded":
                    break
                await asyncio.sleep(0.01)
    finally:
        await stop()
    assert status["redelivered"] == 3
    assert await _pending_events(ctx) == sorted(failed)


async def test_stopping_the_app_component_ends_it_even_as_a_job_wakes_it(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job made while a run is under way wakes the loop at once; a stop that lands at that
    moment still ends it. (`asyncio.wait_for` on Python 3.11 took the wake-up and dropped the
    cancellation, and the loop ran on while `stop()` waited for it.)"""
    ran = asyncio.Event()

    async def run_once(self: RecoveryRunner) -> None:
        if not ran.is_set():  # as start_recovery does for a job made during the first run
            recovery._wakeups[id(ctx)].set()
            ran.set()

    monkeypatch.setattr(RecoveryRunner, "run_once", run_once)
    stop = await recovery.start_recoveries(ctx)
    await ran.wait()
    async with asyncio.timeout(30):  # ends at once; the bound only turns a hang into a failure
        await stop()


async def test_on_sqlite_a_batch_reads_only_the_failed_deliveries_index(
    ctx: AppContext, site: SiteUsers
) -> None:
    """The plans that keep each batch bounded however large the log: failed deliveries by
    the partial index, starting at the cursor, and settled events by event id."""
    if not ctx.db.is_sqlite:
        return
    hook, _ = await make_webhook(ctx, site, URL)
    job = await recovery.start_recovery(
        ctx, admin_of(site), hook, since=datetime.now(UTC) - timedelta(days=1)
    )
    runner = RecoveryRunner(ctx)
    claimed = await runner._claim()
    assert claimed is not None and claimed.id == job["id"]
    batch = (
        sa.select(deliveries.c.id)
        .where(*runner._window(claimed), *runner._after((datetime.now(UTC), "x")))
        .order_by(deliveries.c.created_at, deliveries.c.id)
        .limit(recovery.BATCH)
    )
    settled = sa.select(deliveries.c.event_id).where(deliveries.c.event_id.in_(["a", "b"]))
    async with ctx.db.read() as conn:
        plans = []
        for query in (batch, settled):
            compiled = query.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True})
            rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
            plans.append(" ".join(str(tuple(row)[3]) for row in rows.all()))
    assert "ix_deliveries_webhook_failed (webhook_id=? AND created_at>? AND" in plans[0]
    assert "TEMP B-TREE" not in plans[0]
    assert "ix_deliveries_event (event_id=?)" in plans[1]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_on_sqlite_a_claim_reads_each_sites_last_turn_from_its_index(
    ctx: AppContext,
) -> None:
    """A site's last turn is one index entry, however many of its jobs have finished: not a
    count over all of them at every claim."""
    query = recovery.next_job(datetime.now(UTC))
    compiled = query.compile(dialect=ctx.db.engine.dialect, compile_kwargs={"literal_binds": True})
    async with ctx.db.read() as conn:
        rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
        plan = " ".join(str(tuple(row)[3]) for row in rows.all())
    assert "SEARCH recovery_jobs USING INDEX ix_recovery_jobs_status (status=?)" in plan
    assert "ix_recovery_jobs_site_claimed (site_id=? AND claimed_at>?)" in plan


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_on_sqlite_the_check_for_a_recovery_in_progress_reads_only_unfinished_jobs(
    ctx: AppContext,
) -> None:
    """Finished jobs are kept for the retention: the check read every recovery the webhook
    had (70 ms at 100,000, on the event loop, under the site's lock), and a site may ask for
    one as fast as they finish."""
    query = recovery.in_progress("0190c0de-0000-7000-8000-000000000000")
    compiled = query.compile(dialect=ctx.db.engine.dialect, compile_kwargs={"literal_binds": True})
    async with ctx.db.read() as conn:
        rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
        plan = " ".join(str(tuple(row)[3]) for row in rows.all())
    assert "USING INDEX ix_recovery_jobs_webhook_status (webhook_id=? AND status=?)" in plan


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_on_sqlite_a_prune_batch_seeks_the_finished_jobs_by_their_lease(
    ctx: AppContext,
) -> None:
    """No index holds `finished_at`: read by it, each batch of retention read every finished
    job kept (75-90 ms at 100,000, on the event loop). The lease a finished job keeps bounds
    the seek instead."""
    query = recovery.finished_jobs_delete(datetime.now(UTC), 100, postgresql=False)
    compiled = query.compile(dialect=ctx.db.engine.dialect, compile_kwargs={"literal_binds": True})
    async with ctx.db.read() as conn:
        rows = await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")
        plan = " ".join(str(tuple(row)[3]) for row in rows.all())
    assert "ix_recovery_jobs_status (status=? AND lease_expires_at<?)" in plan, plan
    assert "SCAN recovery_jobs" not in plan, plan


# --- one recovery at a time per webhook --------------------------------------------------------


async def _recover(client: httpx.AsyncClient, site: SiteUsers, hook: str) -> httpx.Response:
    return await client.post(
        f"{API}/webhooks/{hook}/recover",
        json={"since": "2000-01-01T00:00:00Z"},
        headers=site.auth(),
    )


async def _jobs(ctx: AppContext) -> list[str]:
    async with ctx.db.read() as conn:
        return list((await conn.execute(sa.select(recovery_jobs.c.id))).scalars())


def _in_progress(response: httpx.Response, job: dict[str, str]) -> None:
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["code"] == "recovery_in_progress", error
    assert f"recovery {job['id']}" in error["message"], error
    assert job["link"] in error["message"], error


async def test_a_webhook_has_one_recovery_queued_or_running_at_a_time(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Each request queued a job, and runners work through jobs: a site asking a thousand
    times held every other site's recoveries back. A second one while the first is queued or
    running is a 409 naming it; once it has finished, another may start."""
    hook, _ = await make_webhook(ctx, site, URL)
    await _failed_events(ctx, site, 3)
    other, _ = await make_webhook(ctx, site, URL + "/other", name="other")
    first = await _recover(client, site, hook)
    assert first.status_code == 202, first.text
    job = first.json()
    _in_progress(await _recover(client, site, hook), job)
    # Another webhook of the site has its own.
    assert (await _recover(client, site, other)).status_code == 202

    runner = RecoveryRunner(ctx, batch=1)
    claimed = await runner._claim()
    assert claimed is not None and claimed.id == job["id"]
    assert await runner._count(claimed)
    step = await runner._batch(claimed, None)
    assert step is not None and step[1] is False
    _in_progress(await _recover(client, site, hook), job)  # running
    assert len(await _jobs(ctx)) == 2

    while not step[1]:
        step = await runner._batch(claimed, step[0])
        assert step is not None
    finished = (await client.get(job["link"], headers=site.auth())).json()
    assert finished["status"] == "succeeded", finished
    assert (await _recover(client, site, hook)).status_code == 202


async def test_two_recoveries_asked_at_once_make_one_job(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    hook, _ = await make_webhook(ctx, site, URL)
    results = await asyncio.gather(_recover(client, site, hook), _recover(client, site, hook))
    assert sorted(r.status_code for r in results) == [202, 409], [r.text for r in results]
    (made,) = [r.json() for r in results if r.status_code == 202]
    (refused,) = [r for r in results if r.status_code == 409]
    _in_progress(refused, made)
    assert await _jobs(ctx) == [made["id"]]


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite's writers take turns
async def test_postgres_recoveries_racing_are_checked_one_after_the_other(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    """Both requests have read the webhook and wait at the site's lock: let go together,
    the second sees the first's job."""
    hook, _ = await make_webhook(ctx, site, URL)
    results = await racing_at_the_site_lock(
        ctx,
        site.site_id,
        lambda: _recover(client, site, hook),
        lambda: _recover(client, site, hook),
    )
    assert sorted(r.status_code for r in results) == [202, 409], [r.text for r in results]
    (made,) = [r.json() for r in results if r.status_code == 202]
    assert await _jobs(ctx) == [made["id"]]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_the_openapi_document_gives_the_recovery_in_progress_409(
    client: httpx.AsyncClient,
) -> None:
    spec = (await client.get("/openapi.json")).json()
    conflict = spec["paths"]["/api/v1/webhooks/{webhook_id}/recover"]["post"]["responses"]["409"]
    assert "recovery_in_progress" in conflict["description"]


# --- runners take the sites in turn -----------------------------------------------------------


class TickingClock(MovedClock):
    """Each reading a millisecond after the last: the times the store keeps say in what order
    the runner wrote."""

    def now(self) -> datetime:
        assert self.at is not None
        self.at += timedelta(milliseconds=1)
        return self.at


async def _failed_everywhere(ctx: AppContext, events: dict[str, int]) -> None:
    """`events[site_id]` events of each site, each delivery to each of its webhooks failed."""
    # Every delivery is tried, however many fail at one host.
    ctx.settings = dataclasses.replace(ctx.settings, breaker_failure_threshold=1000)
    start = datetime.now(UTC) - timedelta(hours=1)
    for site_id, count in events.items():
        for n in range(count):
            await queue_event(
                ctx, site_id, now=start + timedelta(seconds=n), work_item_id=f"{site_id[:8]}-{n}"
            )
    ctx.transport_override = MockTransport(lambda _request: TransportResult.response(500))
    worker = Worker(ctx, WorkerOptions(schedule=RetrySchedule(delays=(0,))), rng=random.Random(2))
    while await worker.run_once():
        pass
    async with ctx.db.read() as conn:
        statuses = set((await conn.execute(sa.select(deliveries.c.status))).scalars())
    assert statuses == {"failed"}


async def _resent_in_order(ctx: AppContext) -> list[str]:
    """The webhook of each delivery queued again, in the order they were written."""
    async with ctx.db.read() as conn:
        rows = await conn.execute(
            sa.select(deliveries.c.webhook_id)
            .where(deliveries.c.status == "pending")
            .order_by(deliveries.c.created_at)
        )
        return list(rows.scalars())


async def test_runners_take_the_sites_in_turn_not_the_oldest_job_first(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    """A site with many webhooks' recoveries asked first made every other site's wait for all
    of them: now the site served longest ago goes next."""
    busy = [(await make_webhook(ctx, site, f"{URL}/{n}", name=f"busy {n}"))[0] for n in range(3)]
    (quiet, _) = await make_webhook(ctx, other_site, URL, name="quiet")
    await _failed_everywhere(ctx, {site.site_id: 1, other_site.site_id: 1})
    ctx.clock = TickingClock(datetime.now(UTC))
    since = datetime.now(UTC) - timedelta(days=1)
    for hook in busy:
        await recovery.start_recovery(ctx, admin_of(site), hook, since=since)
    await recovery.start_recovery(ctx, admin_of(other_site), quiet, since=since)

    assert await RecoveryRunner(ctx).run_once() == 4
    assert await _resent_in_order(ctx) == [busy[0], quiet, busy[1], busy[2]]


async def test_a_long_recovery_lets_another_sites_go_between_its_turns(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    """A runner kept a job until it was done, so one recovery of a million failures held
    another site's small one back until the end: now each job has a turn of batches."""
    (long, _) = await make_webhook(ctx, site, URL, name="long")
    (short, _) = await make_webhook(ctx, other_site, URL, name="short")
    await _failed_everywhere(ctx, {site.site_id: 5, other_site.site_id: 2})
    ctx.clock = TickingClock(datetime.now(UTC))
    since = datetime.now(UTC) - timedelta(days=1)
    await recovery.start_recovery(ctx, admin_of(site), long, since=since)
    await recovery.start_recovery(ctx, admin_of(other_site), short, since=since)

    # One failed delivery a batch, two batches a turn; the short job's last turn finds that
    # nothing is left (its third batch, empty), as does the long one's.
    assert await RecoveryRunner(ctx, batch=1, turn=2).run_once() == 2
    assert await _resent_in_order(ctx) == [long, long, short, short, long, long, long]
    async with ctx.db.read() as conn:
        jobs = (await conn.execute(sa.select(recovery_jobs))).all()
    assert {(job.status, job.done, job.redelivered) for job in jobs} == {
        ("succeeded", 5, 5),
        ("succeeded", 2, 2),
    }
