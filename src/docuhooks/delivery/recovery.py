"""Recovery jobs: re-send a webhook's failed deliveries of a time window, in the background.

`POST /webhooks/{id}/recover` records a job and returns at once (202); `RecoveryRunner`
(started with the server, like the delivery worker) works through the window in batches of
`BATCH` failed deliveries, each its own short transaction that queues the batch's
redeliveries and records the job's progress and place. A window of a million failures is then
five thousand small transactions instead of one that loads them all: on SQLite statements run
on the server's event loop, and none of them grows with the log here.

Which deliveries are sent again is what a single pass would choose: every event whose
delivery to the webhook failed within the window, once, and not when another delivery of it
to the webhook succeeded or is still pending. Batches keep that: an event queued again by an
earlier batch has a pending delivery, which later batches see. The window ends when the job
was made (or earlier, as asked), so the job never chases the failures of what it queued.

A webhook has at most one recovery queued or running: asking for another meanwhile is a 409
`recovery_in_progress` that names the one in progress and where to follow it. The check and
the new job are one transaction under the site's lock (`store.scoped.lock_site`), so two
requests racing in one process or many make one job.

Any process may run any job: one claims it with a lease (on PostgreSQL with `FOR UPDATE SKIP
LOCKED`), renews the lease with every batch and loses the job if it stops renewing (a killed
process's job is taken over where its last batch left it, since the place is committed with
the batch). A runner works on a job for a turn of `TURN_BATCHES` batches, then lets it go
and claims again. Claims take the sites in turn, not the oldest job first: the job of the
site served longest ago (by its jobs' `claimed_at`), a site's own jobs likewise among
themselves. So a site with a hundred webhooks' recoveries, or one recovery of a million
failures, has one turn in a round, as a site with one small recovery has, and no site's
recoveries wait for another's to finish. The `webhook.recovered` audit entry is written when
the job finishes, in its last batch's transaction, in the name of who asked, with the count
queued.

Finished jobs are kept as long as finished deliveries (`Settings.kept_delivery_days`, counted
from when the job finished), then retention prunes them (`delivery.pruning`, through
`finished_jobs_delete`); the audit log's `webhook.recovered` entries stay. Queued and running
jobs are never pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks import audit
from docuhooks.core.ids import uuid7
from docuhooks.core.pacing import Pacer
from docuhooks.core.tasks import stop_task
from docuhooks.delivery import log as delivery_log
from docuhooks.delivery import queries, upkeep_queries
from docuhooks.delivery.interfaces import DeliveryContext
from docuhooks.errors import Conflict, NotFound
from docuhooks.identity.models import Principal
from docuhooks.store.database import Database
from docuhooks.store.schema import deliveries, events, recovery_jobs, webhooks
from docuhooks.store.scoped import lock_site
from docuhooks.webhooks import service as webhook_service

__all__ = [
    "BATCH",
    "FINISHED",
    "TURN_BATCHES",
    "RecoveryInProgress",
    "RecoveryRunner",
    "finished_jobs_delete",
    "get_recovery",
    "start_recoveries",
    "start_recovery",
]

log = structlog.get_logger(__name__)

#: Failed deliveries one batch examines (one short transaction), on PostgreSQL.
BATCH = 200
#: Deliveries one counting step reads (a read transaction of keys only), on PostgreSQL.
COUNT_BATCH = 2000
#: On SQLite a batch's statements run on the event loop, so batches are sized by time
#: instead (`core.pacing`): each aims at this long, whatever the machine's speed or load.
#: A fixed 200 held the loop from 10 to 54 ms on the same 2-core test machine under a drain
#: (tests/delivery/test_loop_lag.py bounds it at 50 ms); aiming at 10 ms, a batch still met a
#: recorder's batch and a scrape in one turn of the loop, 49-54 ms together.
BATCH_SECONDS = 0.005
#: Batches a runner gives one job before it lets it go and claims again (the sites in turn).
TURN_BATCHES = 20
#: How long a claim holds a job without a batch renewing it.
LEASE_SECONDS = 60.0
#: How often an idle runner looks for jobs another process made (its own wake it at once).
POLL_SECONDS = 5.0

QUEUED, RUNNING, SUCCEEDED, FAILED = "queued", "running", "succeeded", "failed"
#: The statuses nothing changes any more: retention prunes these, and only these.
FINISHED = (SUCCEEDED, FAILED)

#: Runners of this process, woken when a job is made here (keyed by their context's id).
_wakeups: dict[int, asyncio.Event] = {}


# --- the request side -------------------------------------------------------------------------


class RecoveryInProgress(Conflict):
    """The webhook has a recovery queued or running; `job` is that one, as `get_recovery`
    shows it."""

    code = "recovery_in_progress"

    def __init__(self, message: str, *, job: dict[str, Any]) -> None:
        super().__init__(message)
        self.job = job


async def start_recovery(
    ctx: DeliveryContext,
    principal: Principal,
    webhook_id: str,
    *,
    since: datetime,
    until: datetime | None = None,
) -> dict[str, Any]:
    """Record a recovery job for the webhook's failures in [since, until) and wake a runner;
    the job as `get_recovery` shows it. An inactive webhook is a 409, bad times a 422, and a
    webhook with a recovery queued or running a 409 `RecoveryInProgress`."""
    now = ctx.now()
    start = delivery_log.aware(since, "since")
    end = delivery_log.aware(until, "until")
    delivery_log.check_window(start, end)
    job_id = uuid7()
    async with ctx.db.transaction() as conn:
        hook = await webhook_service.get_row(conn, principal, webhook_id)
        await delivery_log.sendable_webhook(conn, hook.id)
        # Held to the commit: a request racing this one sees its job, or this one sees theirs.
        await lock_site(conn, hook.site_id)
        await _none_in_progress(conn, hook)
        await conn.execute(
            recovery_jobs.insert().values(
                id=job_id,
                site_id=principal.site_id,
                webhook_id=hook.id,
                since=start,
                until=min(end, now) if end is not None else now,
                status=QUEUED,
                done=0,
                redelivered=0,
                created_by_id=principal.user_id,
                created_by_login=principal.login_name,
                created_at=now,
                updated_at=now,
            )
        )
        job = await _job_row(conn, principal, hook.id, job_id)
    wake = _wakeups.get(id(ctx))
    if wake is not None:
        wake.set()
    return to_api(job)


async def _none_in_progress(conn: AsyncConnection, hook: sa.Row[Any]) -> None:
    """Raise `RecoveryInProgress` if the webhook has a recovery queued or running: one is
    enough, as it re-sends every failure of its window; more would only take the runners'
    turns from other sites' recoveries."""
    busy = (await conn.execute(in_progress(hook.id))).first()
    if busy is None:
        return
    job = to_api(busy)
    raise RecoveryInProgress(
        f"webhook {hook.name!r} has a recovery in progress: recovery {busy.id} ({busy.status}, "
        f"asked by {busy.created_by_login} at {busy.created_at.isoformat()}); follow it at "
        f"{job['link']}, and ask for another once it has finished",
        job=job,
    )


def in_progress(webhook_id: str) -> sa.Select[Any]:
    """The webhook's recovery queued or running, if any (one at most, but for jobs made
    before there was a check). Read through `ix_recovery_jobs_webhook_status`, without an
    order that would make SQLite read the webhook's jobs by age instead: finished jobs are
    kept for the retention, one for every recovery the webhook had meanwhile, and a site may
    ask for them as fast as they finish."""
    return (
        sa.select(recovery_jobs)
        .where(
            recovery_jobs.c.webhook_id == webhook_id,
            recovery_jobs.c.status.in_([QUEUED, RUNNING]),
        )
        .limit(1)
    )


async def get_recovery(
    conn: AsyncConnection,
    principal: Principal,
    webhook_id: str,
    job_id: str,
    *,
    kept_days: int | None = None,
) -> dict[str, Any]:
    """One recovery job of the webhook, with its progress; `kept_days` (the retention) goes
    into the 404 of one that does not exist, since it may have finished and been pruned."""
    hook = await webhook_service.get_row(conn, principal, webhook_id)
    return to_api(await _job_row(conn, principal, hook.id, job_id, kept_days=kept_days))


async def _job_row(
    conn: AsyncConnection,
    principal: Principal,
    webhook_id: str,
    job_id: str,
    *,
    kept_days: int | None = None,
) -> sa.Row[Any]:
    row = (
        await conn.execute(
            sa.select(recovery_jobs).where(
                recovery_jobs.c.id == job_id,
                recovery_jobs.c.webhook_id == webhook_id,
                recovery_jobs.c.site_id == principal.site_id,
            )
        )
    ).first()
    if row is None:
        if kept_days is None:
            raise NotFound(f"recovery {job_id} does not exist")
        raise NotFound(
            f"recovery {job_id} does not exist: finished recoveries are kept for {kept_days} "
            "days and then pruned"
        )
    return row


def to_api(row: sa.Row[Any]) -> dict[str, Any]:
    return {
        "id": row.id,
        "webhookId": row.webhook_id,
        "status": row.status,
        "since": row.since,
        "until": row.until,
        "total": row.total,
        "done": row.done,
        "redelivered": row.redelivered,
        "error": row.error,
        "createdBy": row.created_by_login,
        "createdDate": row.created_at,
        "updatedDate": row.updated_at,
        "finishedDate": row.finished_at,
        "link": f"/api/v1/webhooks/{row.webhook_id}/recoveries/{row.id}",
    }


# --- the background side ----------------------------------------------------------------------


class _LeaseLost(Exception):
    """The job's lease ran out and another process took it: this batch is rolled back."""


@dataclass(frozen=True)
class _Claimed:
    id: str
    site_id: str
    webhook_id: str
    since: datetime
    until: datetime
    total: int | None
    cursor: tuple[datetime, str] | None
    created_by_id: str | None
    created_by_login: str


class RecoveryRunner:
    """Claims recovery jobs and works through them a batch at a time (see the module)."""

    def __init__(
        self,
        ctx: DeliveryContext,
        *,
        owner: str | None = None,
        batch: int | None = None,
        turn: int = TURN_BATCHES,
    ):
        """`batch` fixes the batch size; without it batches are paced on SQLite (see
        `BATCH_SECONDS`) and `BATCH` on PostgreSQL. `turn` is the batches of a job's turn."""
        self.ctx = ctx
        self.db: Database = ctx.db
        self.owner = owner or f"recovery-{uuid7()}"
        self.batches = _pacer(self.db, batch, BATCH)
        self.counts = _pacer(self.db, None, COUNT_BATCH)
        self.turn = turn

    async def run_once(self) -> int:
        """Run every job that can be claimed now to its end, a turn at a time with the sites
        in turn; how many were finished."""
        finished = 0
        while (job := await self._claim()) is not None:
            if await self._run(job):
                finished += 1
        return finished

    async def _claim(self) -> _Claimed | None:
        """Lease the claimable job of the site served longest ago (see the module)."""
        now = self.ctx.now()
        async with self.db.transaction() as conn:
            query = next_job(now)
            if not self.db.is_sqlite:
                query = query.with_for_update(skip_locked=True, of=recovery_jobs)
            row = (await conn.execute(query)).first()
            if row is None:
                return None
            await conn.execute(
                recovery_jobs.update()
                .where(recovery_jobs.c.id == row.id)
                .values(
                    status=RUNNING,
                    lease_owner=self.owner,
                    lease_expires_at=now + timedelta(seconds=LEASE_SECONDS),
                    claimed_at=now,
                    updated_at=now,
                )
            )
        cursor = (row.cursor_created_at, row.cursor_id) if row.cursor_id is not None else None
        return _Claimed(
            id=row.id,
            site_id=row.site_id,
            webhook_id=row.webhook_id,
            since=row.since,
            until=row.until,
            total=row.total,
            cursor=cursor,
            created_by_id=row.created_by_id,
            created_by_login=row.created_by_login,
        )

    async def _run(self, job: _Claimed) -> bool:
        """A turn of the job: count the window (once), then one batch per transaction, up to
        `turn` batches. True if the job is done; False if the turn ended first (the job is
        let go, to be claimed again in its site's turn) or the lease was lost to another
        process on the way."""
        try:
            if job.total is None and not await self._count(job):
                return False
            cursor = job.cursor
            for _ in range(self.turn):
                step = await self._batch(job, cursor)
                if step is None:
                    return False
                cursor, finished = step
                if finished:
                    return True
                await asyncio.sleep(0)  # between batches, whatever else waits goes first
            await self._let_go(job)
            return False
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # The job's place is committed batch by batch: recorded as failed, nothing of
            # what was queued is undone, and a new recovery starts from the window again.
            log.warning("recovery.failed", job=job.id, error=f"{type(exc).__name__}: {exc}")
            await self._finish_failed(job, f"{type(exc).__name__}: {exc}")
            return True

    def _window(self, job: _Claimed) -> list[sa.ColumnElement[bool]]:
        # Read through the partial index `ix_deliveries_webhook_failed` (its predicate stated
        # as a literal): only the window's failed deliveries, whatever else it holds.
        return [
            deliveries.c.webhook_id == job.webhook_id,
            queries.is_failed(),
            deliveries.c.created_at >= job.since,
            deliveries.c.created_at < job.until,
        ]

    def _after(self, cursor: tuple[datetime, str] | None) -> list[sa.ColumnElement[bool]]:
        if cursor is None:
            return []
        created_at, delivery_id = cursor
        return [
            # The first term bounds the index range, so a batch starts where the last ended
            # instead of reading past everything already done.
            deliveries.c.created_at >= created_at,
            sa.or_(deliveries.c.created_at > created_at, deliveries.c.id > delivery_id),
        ]

    async def _count(self, job: _Claimed) -> bool:
        """The failed deliveries of the window, counted in read transactions of a bounded
        number of keys each (a count in one statement grows with the window)."""
        total = 0
        cursor: tuple[datetime, str] | None = None
        while True:
            size, started = self.counts.size, time.perf_counter()
            async with self.db.read() as conn:
                keys = (
                    await conn.execute(
                        sa.select(deliveries.c.created_at, deliveries.c.id)
                        .where(*self._window(job), *self._after(cursor))
                        .order_by(deliveries.c.created_at, deliveries.c.id)
                        .limit(size)
                    )
                ).all()
            self.counts.took(len(keys), time.perf_counter() - started)
            total += len(keys)
            if len(keys) < size:
                break
            cursor = (keys[-1].created_at, keys[-1].id)
            await asyncio.sleep(0)
        async with self.db.transaction() as conn:
            return await self._renew(conn, job, total=total)

    async def _let_go(self, job: _Claimed) -> None:
        """End this runner's turn of the job: its place is committed with each batch, and
        without a lease it is claimable again at once, by any runner."""
        async with self.db.transaction() as conn:
            await conn.execute(
                recovery_jobs.update()
                .where(
                    recovery_jobs.c.id == job.id,
                    recovery_jobs.c.lease_owner == self.owner,
                    recovery_jobs.c.status == RUNNING,
                )
                .values(lease_owner=None, lease_expires_at=None, updated_at=self.ctx.now())
            )

    async def _renew(self, conn: AsyncConnection, job: _Claimed, **values: Any) -> bool:
        """Extend this runner's lease and record `values`; False if another process has the
        job now (its lease ran out and was taken)."""
        now = self.ctx.now()
        result = await conn.execute(
            recovery_jobs.update()
            .where(
                recovery_jobs.c.id == job.id,
                recovery_jobs.c.lease_owner == self.owner,
                recovery_jobs.c.status == RUNNING,
            )
            .values(
                lease_expires_at=now + timedelta(seconds=LEASE_SECONDS), updated_at=now, **values
            )
        )
        return result.rowcount == 1

    async def _batch(
        self, job: _Claimed, cursor: tuple[datetime, str] | None
    ) -> tuple[tuple[datetime, str] | None, bool] | None:
        """One batch: queue again the failed deliveries after `cursor` that no other delivery
        of their event settled, and record the place; (new cursor, finished), or None if the
        lease was lost (nothing of the batch is then committed)."""
        now = self.ctx.now()
        notification = events.c.event_type.in_(delivery_log.NOTIFICATION_TYPES).label("sendable")
        size, started = self.batches.size, time.perf_counter()
        try:
            async with self.db.transaction() as conn:
                rows = (
                    await conn.execute(
                        sa.select(deliveries, notification)
                        .join(events, events.c.id == deliveries.c.event_id)
                        .where(*self._window(job), *self._after(cursor))
                        .order_by(deliveries.c.created_at, deliveries.c.id)
                        .limit(size)
                        # Held until the redeliveries are in: retention cannot prune an
                        # original (and then its event) in between (`delivery.pruning`).
                        .with_for_update(read=True, of=deliveries)
                    )
                ).all()
                settled = await _settled(conn, job.webhook_id, {row.event_id for row in rows})
                active = (
                    await conn.execute(
                        sa.select(webhooks.c.active).where(webhooks.c.id == job.webhook_id)
                    )
                ).scalar()
                latest = {
                    row.event_id: row
                    for row in rows
                    if row.sendable and row.event_id not in settled
                }
                originals = sorted(latest.values(), key=lambda row: (row.created_at, row.id))
                queued = (
                    await upkeep_queries.insert_redeliveries(conn, originals, now=now)
                    if active
                    else []
                )
                if rows:
                    cursor = (rows[-1].created_at, rows[-1].id)
                finished = len(rows) < size or not active
                values: dict[str, Any] = {
                    "done": recovery_jobs.c.done + len(rows),
                    "redelivered": recovery_jobs.c.redelivered + len(queued),
                    "cursor_created_at": cursor[0] if cursor else None,
                    "cursor_id": cursor[1] if cursor else None,
                }
                if finished:
                    values.update(status=SUCCEEDED if active else FAILED, finished_at=now)
                    if not active:
                        values["error"] = "the webhook was deactivated: nothing more is sent"
                if not await self._renew(conn, job, **values):
                    raise _LeaseLost  # rolls the batch back: another process has the job
                if finished:
                    await self._audit(conn, job)
        except _LeaseLost:
            return None
        self.batches.took(len(rows), time.perf_counter() - started)
        if queued:
            self.ctx.events_committed()
        return cursor, finished

    async def _audit(self, conn: AsyncConnection, job: _Claimed) -> None:
        """The entry a recovery has always written, now when it is done, as who asked."""
        row = (
            await conn.execute(sa.select(recovery_jobs).where(recovery_jobs.c.id == job.id))
        ).one()
        if row.total is not None and row.done > row.total:
            # Deliveries of the window that failed while the job ran were examined too.
            await conn.execute(
                recovery_jobs.update().where(recovery_jobs.c.id == job.id).values(total=row.done)
            )
        actor = Principal(
            user_id=job.created_by_id or "",
            site_id=job.site_id,
            login_name=job.created_by_login,
            name="",
            email="",
            account_type="",
            roles=frozenset(),
        )
        await audit.record(
            conn,
            actor if job.created_by_id else None,
            site_id=job.site_id,
            now=self.ctx.now(),
            action="webhook.recovered",
            object_type="webhook",
            object_id=job.webhook_id,
            details={
                "since": job.since.isoformat(),
                "until": job.until.isoformat(),
                "redelivered": row.redelivered,
                "recoveryId": job.id,
                "status": row.status,
            },
        )

    async def _finish_failed(self, job: _Claimed, error: str) -> None:
        with contextlib.suppress(Exception):
            async with self.db.transaction() as conn:
                await self._renew(
                    conn, job, status=FAILED, error=error[:1000], finished_at=self.ctx.now()
                )


def next_job(now: datetime) -> sa.Select[Any]:
    """The job a claim at `now` takes: of those queued, or running without a live lease, the
    one of the site served longest ago, then its own longest unserved, then the oldest."""
    claimable = sa.and_(
        recovery_jobs.c.status.in_([QUEUED, RUNNING]),
        sa.or_(
            recovery_jobs.c.lease_expires_at.is_(None),
            recovery_jobs.c.lease_expires_at < now,
        ),
    )
    # When the site last had a turn: its jobs' latest claim, finished jobs' included, or
    # null (also once retention has pruned them all: served longer ago than a site whose
    # jobs are kept). Read as the first entry of `ix_recovery_jobs_site_claimed` from the
    # end, not as `max()`, which SQLite would count over all of the site's jobs kept.
    served = recovery_jobs.alias("served")
    site_served = (
        sa.select(served.c.claimed_at)
        .where(served.c.site_id == recovery_jobs.c.site_id, served.c.claimed_at.is_not(None))
        .order_by(served.c.claimed_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    return (
        sa.select(recovery_jobs)
        .where(claimable)
        .order_by(
            site_served.nulls_first(),
            recovery_jobs.c.claimed_at.nulls_first(),
            recovery_jobs.c.created_at,
            recovery_jobs.c.id,
        )
        .limit(1)
    )


def finished_jobs_delete(older_than: datetime, limit: int, postgresql: bool) -> sa.Delete:
    """Retention's statement (`delivery.pruning`): delete up to `limit` jobs that finished
    before `older_than`. A queued or running job has neither a finished status nor a
    `finished_at`, and is never chosen.

    The jobs are found through `ix_recovery_jobs_status` (status, lease_expires_at), no
    migration needed: a job's last batch renews its lease as it records the end, so a
    finished job's lease runs out `LEASE_SECONDS` after it finished (plus that batch's time,
    by which the job goes later, in a later round), and is never written again. The range on
    the lease bounds the seek to the jobs finished in time; `finished_at` decides. Without it
    each batch read every finished job kept, since no index holds `finished_at`: 75-90 ms a
    batch at 100,000 finished jobs on SQLite, on the event loop, where the seek takes under a
    millisecond.

    On PostgreSQL `id = ANY(ARRAY(subquery))`, as `upkeep_queries.finished_deliveries_delete`
    does and for its reason (the generic plan of `IN`), skipping any job another transaction
    holds: the prune never waits (`upkeep_queries.delete_batch`)."""
    old = (
        sa.select(recovery_jobs.c.id)
        .where(
            recovery_jobs.c.status.in_(FINISHED),
            recovery_jobs.c.lease_expires_at < older_than + timedelta(seconds=LEASE_SECONDS),
            recovery_jobs.c.finished_at < older_than,
        )
        .limit(limit)
    )
    return upkeep_queries.delete_batch(recovery_jobs, old, postgresql=postgresql)


def _pacer(db: Database, fixed: int | None, default: int) -> Pacer:
    if fixed is not None:
        return Pacer.fixed(fixed)
    if db.is_sqlite:
        return Pacer.aiming(BATCH_SECONDS, start=min(50, default))
    return Pacer.fixed(default)


async def _settled(conn: AsyncConnection, webhook_id: str, event_ids: set[str]) -> set[str]:
    """The events among `event_ids` with a delivery to the webhook that succeeded or is still
    pending (an earlier recovery or redelivery): not to be queued again.

    Looked up by event alone (`ix_deliveries_event`: an event has a few deliveries, one per
    matching webhook and per redelivery), the webhook and status compared here: asked for
    them too, SQLite's planner (which has no statistics) may read every delivery of the
    webhook, or every pending and succeeded one, through another index instead."""
    if not event_ids:
        return set()
    rows = await conn.execute(
        sa.select(deliveries.c.event_id, deliveries.c.webhook_id, deliveries.c.status).where(
            deliveries.c.event_id.in_(sorted(event_ids))
        )
    )
    settling = (queries.PENDING, queries.SUCCEEDED)
    return {e for e, hook, status in rows.all() if hook == webhook_id and status in settling}


async def start_recoveries(ctx: DeliveryContext) -> Callable[[], Awaitable[None]]:
    """The app component that runs recovery jobs: woken when this process makes one, and
    every `POLL_SECONDS` for jobs made elsewhere or left by a process that died."""
    runner = RecoveryRunner(ctx)
    wake = _wakeups[id(ctx)] = asyncio.Event()

    async def loop() -> None:
        while True:
            wake.clear()
            try:
                await runner.run_once()
            except Exception as exc:
                log.warning("recovery.run_failed", error=f"{type(exc).__name__}: {exc}")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(POLL_SECONDS):
                    await wake.wait()

    task = asyncio.create_task(loop(), name="docuhooks-recoveries")

    async def stop() -> None:
        _wakeups.pop(id(ctx), None)
        await stop_task(task)

    return stop
