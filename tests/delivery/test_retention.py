"""Retention of the delivery log on both stores: finished deliveries go with their attempts
after `delivery_retention_days`, then the events left without deliveries; pending ones stay
however old, and keep their events. Finished recovery jobs go as long after they finished;
queued and running ones stay. The API answers for what is gone, and pruning beside a
worker that is delivering, or an administrator redelivering, loses nothing."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from tests.delivery.delivery_support import admin_of, attempts_of, make_webhook, queue_event
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock
from docuhooks.core.retry import RetrySchedule
from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery import log as delivery_log
from docuhooks.delivery import pruning, recovery
from docuhooks.delivery.transport import MockTransport, TransportResult
from docuhooks.delivery.worker import Worker, WorkerOptions
from docuhooks.errors import NotFound
from docuhooks.settings import Settings, SettingsError
from docuhooks.store.schema import deliveries, events, recovery_jobs

API = "/api/v1"
OK_URL = "https://ok.example/hook"
DOWN_URL = "https://down.example/hook"
#: One attempt, then failed for good.
ONCE = (0.0,)
#: A failure is retried, two years later: it stays pending meanwhile.
LATER = (0.0, 2 * 365 * 86400.0)


class Receivers:
    """OK_URL answers 200, anything else 500; records the delivery ids it was sent."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, request: OutboundRequest) -> TransportResult:
        self.seen.append(request.headers["X-Docuhooks-Delivery-Id"])
        return TransportResult.response(200 if request.url == OK_URL else 500, b"ok")


def worker(
    ctx: AppContext, clock: FakeClock, receivers: Receivers, delays: tuple[float, ...]
) -> Worker:
    ctx.transport_override = MockTransport(receivers)
    options = WorkerOptions(
        schedule=RetrySchedule(delays=delays),
        lease=timedelta(seconds=30),
        probe_interval=timedelta(minutes=10),
        suspend_after_failures=1000,
        suspend_after=timedelta(days=1000),
        poll_seconds=0.05,
    )
    return Worker(ctx, options, clock=clock, rng=random.Random(7))


async def existing(ctx: AppContext, table: sa.Table, ids: list[str]) -> set[str]:
    async with ctx.db.read() as conn:
        found = await conn.execute(sa.select(table.c.id).where(table.c.id.in_(ids)))
        return set(found.scalars())


async def statuses(ctx: AppContext, ids: list[str]) -> dict[str, str]:
    async with ctx.db.read() as conn:
        rows = await conn.execute(
            sa.select(deliveries.c.id, deliveries.c.status).where(deliveries.c.id.in_(ids))
        )
        return {row.id: row.status for row in rows}


async def prune(ctx: AppContext) -> pruning.Pruned:
    return await pruning.prune(ctx.db, ctx.settings, now=ctx.now())


@dataclasses.dataclass
class Log:
    """A year-old delivery log: event a delivered; b delivered to one webhook and failed for
    good at the other; c delivered to one and still retrying at the other; d never sent."""

    a: tuple[str, list[str]]
    b: tuple[str, list[str]]
    c: tuple[str, list[str]]
    d: tuple[str, list[str]]


async def year_old_log(ctx: AppContext, site: SiteUsers, clock: FakeClock) -> Log:
    receivers = Receivers()
    await make_webhook(ctx, site, OK_URL, name="ok")
    a, a_ids = await queue_event(ctx, site.site_id, now=clock.now(), work_item_id="a")
    await worker(ctx, clock, receivers, ONCE).run_once()
    await make_webhook(ctx, site, DOWN_URL, name="down")
    b, b_ids = await queue_event(ctx, site.site_id, now=clock.now(), work_item_id="b")
    await worker(ctx, clock, receivers, ONCE).run_once()
    c, c_ids = await queue_event(ctx, site.site_id, now=clock.now(), work_item_id="c")
    await worker(ctx, clock, receivers, LATER).run_once()
    d, d_ids = await queue_event(ctx, site.site_id, now=clock.now(), work_item_id="d")
    assert sorted((await statuses(ctx, a_ids + b_ids + c_ids + d_ids)).values()) == [
        *["failed"],
        *["pending"] * 3,
        *["succeeded"] * 3,
    ]
    clock.advance(timedelta(days=365))
    return Log((a.event_id, a_ids), (b.event_id, b_ids), (c.event_id, c_ids), (d.event_id, d_ids))


@pytest.fixture
def clock(ctx: AppContext) -> FakeClock:
    clock = FakeClock()
    ctx.clock = clock
    return clock


async def test_finished_deliveries_and_their_events_go_pending_ones_stay(
    ctx: AppContext, site: SiteUsers, clock: FakeClock
) -> None:
    log = await year_old_log(ctx, site, clock)
    (a, a_ids), (b, b_ids), (c, c_ids), (d, d_ids) = log.a, log.b, log.c, log.d
    c_pending = [i for i, s in (await statuses(ctx, c_ids)).items() if s == "pending"]

    pruned = await prune(ctx)

    assert (pruned.deliveries, pruned.events) == (4, 2)
    assert pruned.attempts == 5  # a: 1, b: 2, c: 2 (all started a year ago)
    # Finished deliveries went, with their attempts; so did the events they left empty.
    assert await existing(ctx, deliveries, a_ids + b_ids) == set()
    assert await existing(ctx, events, [a, b]) == set()
    # c had a finished delivery and a pending one: the pending one and the event stay.
    assert await statuses(ctx, c_ids) == {c_pending[0]: "pending"}
    # d's deliveries were never sent: a year old, still pending, still there.
    assert await statuses(ctx, d_ids) == dict.fromkeys(d_ids, "pending")
    assert await existing(ctx, events, [c, d]) == {c, d}

    # A round with nothing past retention deletes nothing.
    assert await prune(ctx) == pruning.Pruned(attempts=0, deliveries=0, events=0, recoveries=0)


async def test_deliveries_are_kept_for_their_own_retention(
    ctx: AppContext, site: SiteUsers, clock: FakeClock
) -> None:
    """`delivery_retention_days` longer than the attempts': the attempts go first, the
    deliveries (and their events) when their own retention ends."""
    ctx.settings = dataclasses.replace(
        ctx.settings, attempt_retention_days=30, delivery_retention_days=90
    )
    await make_webhook(ctx, site, OK_URL, name="ok")
    event, (sent,) = await queue_event(ctx, site.site_id, now=clock.now())
    await worker(ctx, clock, Receivers(), ONCE).run_once()

    clock.advance(timedelta(days=89))
    assert await prune(ctx) == pruning.Pruned(attempts=1, deliveries=0, events=0, recoveries=0)
    assert await statuses(ctx, [sent]) == {sent: "succeeded"}
    assert await attempts_of(ctx, sent) == []

    clock.advance(timedelta(days=2))
    assert await prune(ctx) == pruning.Pruned(attempts=0, deliveries=1, events=1, recoveries=0)
    assert await existing(ctx, events, [event.event_id]) == set()


async def test_the_api_says_what_was_pruned(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, clock: FakeClock
) -> None:
    ctx.settings = dataclasses.replace(ctx.settings, delivery_retention_days=45)
    log = await year_old_log(ctx, site, clock)
    (a, (a_id,)), (c, c_ids) = log.a, log.c
    await prune(ctx)
    auth = site.auth()

    for response in (
        await client.get(f"{API}/deliveries/{a_id}", headers=auth),
        await client.post(f"{API}/deliveries/{a_id}/redeliver", headers=auth),
        await client.get(f"{API}/events/{a}", headers=auth),
    ):
        assert response.status_code == 404, response.text
        assert "kept for 45 days and then pruned" in response.text

    # What is kept still answers: the list, the pending delivery, its event.
    hooks = (await client.get(f"{API}/webhooks", headers=auth)).json()["items"]
    listed = {
        h["name"]: [
            d["id"]
            for d in (
                await client.get(f"{API}/webhooks/{h['id']}/deliveries", headers=auth)
            ).json()["items"]
        ]
        for h in hooks
    }
    kept = await statuses(ctx, c_ids + log.d[1])
    assert sorted(listed["ok"] + listed["down"]) == sorted(kept)
    pending = next(i for i in c_ids if i in kept)
    detail = await client.get(f"{API}/deliveries/{pending}", headers=auth)
    assert detail.status_code == 200
    # Its attempt, a year old, went with the attempt log's retention; the count stays.
    assert (detail.json()["attemptCount"], detail.json()["attempts"]) == (1, [])
    event = (await client.get(f"{API}/events/{c}", headers=auth)).json()
    assert [d["id"] for d in event["deliveries"]] == [pending]


async def test_pruning_beside_a_worker_and_redeliveries_loses_nothing(
    ctx: AppContext, site: SiteUsers, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old deliveries are pruned in many small batches while a worker sends new ones and an
    administrator redelivers old ones: every new delivery is sent once and kept, and each
    redelivery either finds its delivery gone (404) or is kept, with its event, and sent."""
    monkeypatch.setattr(pruning, "DELIVERY_BATCH", 5)
    monkeypatch.setattr(pruning, "EVENT_BATCH", 5)
    monkeypatch.setattr(pruning, "BATCH_SECONDS", 1e-9)  # SQLite: the smallest batches
    receivers = Receivers()
    await make_webhook(ctx, site, OK_URL, name="ok")
    old: list[str] = []
    for n in range(40):
        old += (await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"o{n}"))[1]
    send = worker(ctx, clock, receivers, ONCE)
    while await send.run_once():
        pass
    clock.advance(timedelta(days=31))
    new: list[str] = []
    for n in range(40):
        new += (await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"n{n}"))[1]
    receivers.seen.clear()

    async def deliver() -> None:
        sent = True
        while sent:
            sent = bool(await send.run_once())
            await asyncio.sleep(0)  # the pruner and the redeliveries get their turns

    async def redeliver(delivery_id: str) -> str | None:
        try:
            copy = await delivery_log.redeliver(ctx, admin_of(site), delivery_id)
        except NotFound:
            return None
        return str(copy["id"])

    outcome = await asyncio.gather(
        prune(ctx), deliver(), *(redeliver(d) for d in old[::4]), return_exceptions=True
    )
    assert not [o for o in outcome if isinstance(o, BaseException)], outcome
    copies = [c for c in outcome[2:] if isinstance(c, str)]
    await deliver()  # the copies queued after the worker's last claim

    assert await statuses(ctx, new) == dict.fromkeys(new, "succeeded")
    assert await statuses(ctx, copies) == dict.fromkeys(copies, "succeeded")
    assert sorted(receivers.seen) == sorted(new + copies)
    async with ctx.db.read() as conn:
        orphans = await conn.execute(
            sa.select(deliveries.c.id).where(
                ~sa.exists().where(events.c.id == deliveries.c.event_id)
            )
        )
        assert orphans.all() == []
    # The old deliveries not redelivered went. On PostgreSQL the pruner skips a delivery a
    # redelivery holds locked as it copies it (it never waits), and the next round takes
    # it: only those may be left, and they go then; the copies' events stay while they do.
    held = await existing(ctx, deliveries, old)
    assert held <= set(old[::4])
    assert await prune(ctx) == pruning.Pruned(
        attempts=0, deliveries=len(held), events=0, recoveries=0
    )
    assert len(await existing(ctx, deliveries, old)) == 0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_an_event_whose_delivery_is_being_written_is_not_pruned(
    ctx: AppContext, site: SiteUsers, clock: FakeClock
) -> None:
    """Two old events without deliveries; a transaction is writing a delivery for one of
    them. Pruning skips that event (it does not wait for the writer, nor delete the event
    and with it the delivery about to commit) and prunes the other."""
    taken, _ = await queue_event(ctx, site.site_id, now=clock.now(), work_item_id="t")
    free, _ = await queue_event(ctx, site.site_id, now=clock.now(), work_item_id="f")
    hook, _ = await make_webhook(ctx, site, OK_URL, name="ok")
    clock.advance(timedelta(days=31))
    written = "01900000-0000-7000-8000-000000000001"
    row = {
        "id": written,
        "event_id": taken.event_id,
        "webhook_id": hook,
        "site_id": site.site_id,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": clock.now(),
        "created_at": clock.now(),
    }
    async with ctx.db.engine.connect() as writer:
        await writer.begin()
        await writer.execute(deliveries.insert().values(row))
        pruned = await asyncio.wait_for(prune(ctx), timeout=60)
        await writer.commit()

    assert pruned.events == 1
    assert await existing(ctx, events, [taken.event_id, free.event_id]) == {taken.event_id}
    assert await statuses(ctx, [written]) == {written: "pending"}


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"attempt_retention_days": 0}, "DOCUHOOKS_ATTEMPT_RETENTION_DAYS"),
        ({"delivery_retention_days": -1}, "DOCUHOOKS_DELIVERY_RETENTION_DAYS"),
    ],
)
def test_a_retention_that_would_prune_everything_stops_the_process_at_start(
    tmp_path: Path, values: dict[str, int], named: str
) -> None:
    with pytest.raises(SettingsError, match=named):
        Settings(data_dir=tmp_path, secret_key="test-secret-key-0123456789", **values)  # type: ignore[arg-type]


def test_deliveries_are_kept_as_long_as_attempts_unless_set() -> None:
    assert Settings(attempt_retention_days=7).kept_delivery_days == 7
    assert Settings(attempt_retention_days=7, delivery_retention_days=90).kept_delivery_days == 90


async def test_the_background_pruner_prunes_deliveries_and_events_at_start(
    ctx: AppContext, site: SiteUsers, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`serve` and `worker` run `start_pruner`: its first round, at start, covers deliveries
    and events as well as attempts."""
    await make_webhook(ctx, site, OK_URL, name="ok")
    event, (sent,) = await queue_event(ctx, site.site_id, now=clock.now())
    await worker(ctx, clock, Receivers(), ONCE).run_once()
    clock.advance(timedelta(days=31))
    rounds: asyncio.Queue[pruning.Pruned] = asyncio.Queue()
    real_prune = pruning.prune

    async def prune_and_tell(*args: Any, **kwargs: Any) -> pruning.Pruned:
        pruned = await real_prune(*args, **kwargs)
        rounds.put_nowait(pruned)
        return pruned

    monkeypatch.setattr(pruning, "prune", prune_and_tell)
    stop = await pruning.start_pruner(ctx)
    try:
        first = await asyncio.wait_for(rounds.get(), timeout=60)
    finally:
        await stop()
    assert first == pruning.Pruned(attempts=1, deliveries=1, events=1, recoveries=0)
    assert await existing(ctx, deliveries, [sent]) == set()
    assert await existing(ctx, events, [event.event_id]) == set()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_pruning_skips_a_delivery_being_redelivered_instead_of_waiting(
    ctx: AppContext, site: SiteUsers, clock: FakeClock
) -> None:
    """A redelivery holds its original under a share lock until its copy is written. The
    prune neither waits for it (it could then be one side of a deadlock with a recovery)
    nor deletes it: it prunes the rest, and that one in the next round."""
    await make_webhook(ctx, site, OK_URL, name="ok")
    _, (held,) = await queue_event(ctx, site.site_id, now=clock.now(), work_item_id="h")
    _, (other,) = await queue_event(ctx, site.site_id, now=clock.now(), work_item_id="o")
    await worker(ctx, clock, Receivers(), ONCE).run_once()
    clock.advance(timedelta(days=31))

    async with ctx.db.engine.connect() as holder:
        await holder.begin()
        await holder.execute(
            sa.select(deliveries.c.id).where(deliveries.c.id == held).with_for_update(read=True)
        )
        pruned = await asyncio.wait_for(prune(ctx), timeout=60)
        await holder.rollback()

    assert (pruned.deliveries, pruned.events) == (1, 1)
    assert await statuses(ctx, [held, other]) == {held: "succeeded"}
    assert (await prune(ctx)).deliveries == 1
    assert await statuses(ctx, [held]) == {}


async def test_interview_call_records_go_the_same_way(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, clock: FakeClock
) -> None:
    """Interview, post-processing and test calls are logged as finished deliveries: pruned
    with their events once past the retention."""
    body = {"name": "load", "url": OK_URL, "eventType": "InterviewLoadEvent"}
    created = await client.post(f"{API}/webhooks", json=body, headers=site.auth())
    assert created.status_code == 201, created.text
    ctx.transport_override = MockTransport(lambda _r: TransportResult.response(204, b""))
    sent = await client.post(f"{API}/webhooks/{created.json()['id']}/test", headers=site.auth())
    assert sent.status_code == 200, sent.text
    call, event = sent.json()["deliveryId"], sent.json()["eventId"]
    assert await statuses(ctx, [call]) == {call: "succeeded"}

    clock.advance(timedelta(days=29))
    assert await prune(ctx) == pruning.Pruned(attempts=0, deliveries=0, events=0, recoveries=0)
    clock.advance(timedelta(days=2))
    assert await prune(ctx) == pruning.Pruned(attempts=1, deliveries=1, events=1, recoveries=0)
    assert await existing(ctx, events, [event]) == set()
    gone = await client.get(f"{API}/deliveries/{call}", headers=site.auth())
    assert gone.status_code == 404 and "kept for 30 days" in gone.text


# --- recovery jobs ----------------------------------------------------------------------------


async def job_statuses(ctx: AppContext) -> dict[str, str]:
    async with ctx.db.read() as conn:
        rows = await conn.execute(sa.select(recovery_jobs.c.id, recovery_jobs.c.status))
        return {row.id: row.status for row in rows}


async def test_finished_recoveries_go_after_the_retention_queued_and_running_ones_stay(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, clock: FakeClock
) -> None:
    """Every recovery ever asked for stayed in `recovery_jobs`. A finished one (succeeded, or
    failed) now goes as long after it finished as a finished delivery does, and its page is
    a 404 saying so; a queued or running one stays however old, and is carried out after."""
    admin = admin_of(site)
    start = clock.now()
    # Two failed deliveries for `down` to recover; the other webhooks have none.
    down, _ = await make_webhook(ctx, site, DOWN_URL, name="down")
    for n in range(2):
        await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"f{n}")
    await worker(ctx, clock, Receivers(), ONCE).run_once()
    hooks = {name: (await make_webhook(ctx, site, OK_URL, name=name))[0] for name in "abcd"}
    clock.advance(timedelta(minutes=1))

    async def recover(webhook_id: str) -> str:
        job = await recovery.start_recovery(ctx, admin, webhook_id, since=start)
        return str(job["id"])

    # Day 0: one recovery succeeds, one fails (its webhook was deactivated meanwhile).
    succeeded, failed = await recover(hooks["a"]), await recover(hooks["b"])
    deactivated = await client.post(f"{API}/webhooks/{hooks['b']}/deactivate", headers=site.auth())
    assert deactivated.status_code == 200, deactivated.text
    assert await recovery.RecoveryRunner(ctx).run_once() == 2
    # Day 10: another succeeds.
    clock.advance(timedelta(days=10))
    newer = await recover(hooks["c"])
    assert await recovery.RecoveryRunner(ctx).run_once() == 1
    # Day 11: one is left running after its first batch (its lease then runs out), and one
    # is queued that no runner takes.
    clock.advance(timedelta(days=1))
    running = await recover(down)
    runner = recovery.RecoveryRunner(ctx, batch=1)
    claimed = await runner._claim()
    assert claimed is not None and claimed.id == running and await runner._count(claimed)
    step = await runner._batch(claimed, None)
    assert step is not None and step[1] is False
    queued = await recover(hooks["d"])
    assert await job_statuses(ctx) == {
        succeeded: "succeeded",
        failed: "failed",
        newer: "succeeded",
        running: "running",
        queued: "queued",
    }

    # Day 35: the two finished on day 0 are past the 30 days; the one of day 10 is not.
    clock.advance(timedelta(days=24))
    assert (await prune(ctx)).recoveries == 2
    assert await job_statuses(ctx) == {
        newer: "succeeded",
        running: "running",
        queued: "queued",
    }
    # Day 100: that one goes too. The running and the queued one, made 89 days ago, stay.
    clock.advance(timedelta(days=65))
    assert (await prune(ctx)).recoveries == 1
    assert await job_statuses(ctx) == {running: "running", queued: "queued"}

    gone = await client.get(
        f"{API}/webhooks/{hooks['a']}/recoveries/{succeeded}", headers=site.auth()
    )
    assert gone.status_code == 404, gone.text
    assert gone.json()["error"]["message"] == (
        f"recovery {succeeded} does not exist: finished recoveries are kept for 30 days and "
        "then pruned"
    )
    kept = await client.get(f"{API}/webhooks/{down}/recoveries/{running}", headers=site.auth())
    assert kept.status_code == 200 and kept.json()["status"] == "running", kept.text

    # Both are carried out, and then kept for their own 30 days.
    assert await recovery.RecoveryRunner(ctx).run_once() == 2
    assert await job_statuses(ctx) == {running: "succeeded", queued: "succeeded"}
    assert (await prune(ctx)).recoveries == 0
    clock.advance(timedelta(days=31))
    assert (await prune(ctx)).recoveries == 2
    assert await job_statuses(ctx) == {}
