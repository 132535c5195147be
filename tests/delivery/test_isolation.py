"""Isolation, with real sockets: a failing or slow receiver never delays anyone else's calls.

* noisy neighbour: a blackhole's and a slow receiver's backlogs do not delay a healthy one;
* shared host: a notification backlog to a host never holds the connections interviews need;
* breaker: two PostgreSQL workers together send an open breaker's destination one probe per
  interval, and a host that does not answer one per interval whichever sites' breakers of
  it are open; everything postponed arrives once it is back;
* fairness: one site's backlog does not delay another site's event, nor does a site with
  many webhooks on many dead hosts;
* limit across workers: two PostgreSQL workers keep a webhook within its `maxConcurrency`.

Every claim is shown by the order in which things happened (what a receiver had seen when
another one got a call, what the attempt log held at that moment), never by how long it took.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiohttp import web
from tests.delivery.delivery_support import make_webhook
from tests.delivery.isolation_support import Arrival, Blackhole, Receiver, eventually, pile_up
from tests.delivery.test_reliability import Workers, all_recorded
from tests.interview_hooks.hooks_support import (
    answer_json,
    hook_over_api,
    open_over_api,
    serve,
    values_of,
    work_item_over_api,
)
from tests.support import SiteUsers, make_site

from docuhooks.context import AppContext
from docuhooks.core.destinations import BreakerState
from docuhooks.delivery.worker import Worker, WorkerOptions
from docuhooks.settings import Settings
from docuhooks.store.schema import attempts, deliveries, destinations, flights

pytestmark = pytest.mark.slow

#: A webhook's `maxConcurrency` when none is given.
DEFAULT_LIMIT = 10


@asynccontextmanager
async def running_worker(ctx: AppContext) -> AsyncIterator[Worker]:
    """The worker in this process, on the real transport (dev mode lets loopback through).
    Its stop waits a second for calls in flight, not the default ten: calls to a blackhole
    never end, and are handed back unfinished."""
    options = dataclasses.replace(
        WorkerOptions.from_settings(ctx.settings), shutdown_grace_seconds=1.0, poll_seconds=0.2
    )
    worker = Worker(ctx, options)
    await worker.start()
    try:
        yield worker
    finally:
        await worker.stop()
        await ctx.close_transports()


async def scalar(ctx: AppContext, query: sa.Select[Any]) -> Any:
    async with ctx.db.read() as conn:
        return (await conn.execute(query)).scalar_one()


async def attempts_of_webhook(ctx: AppContext, webhook_id: str) -> int:
    query = sa.select(sa.func.count()).where(attempts.c.webhook_id == webhook_id)
    return int(await scalar(ctx, query))


# --- noisy neighbour -----------------------------------------------------------------------

BLACKHOLE_BACKLOG = 2000
SLOW_BACKLOG = 500
HEALTHY_EVENTS = 50


async def test_a_dead_and_a_slow_receiver_never_delay_a_healthy_one(
    ctx: AppContext, site: SiteUsers
) -> None:
    blackhole = Blackhole()
    slow = Receiver(delay=3.0)
    # What the blackhole had seen when the healthy receiver got its last event.
    seen: dict[str, int] = {}

    def on_healthy_arrival(_: Arrival, count: int) -> None:
        if count == HEALTHY_EVENTS:
            seen.update(closed=blackhole.closed, accepted=len(blackhole.accepted))

    healthy = Receiver(on_arrival=on_healthy_arrival)
    try:
        dead, _ = await make_webhook(ctx, site, blackhole.url(), timeoutSeconds=30)
        sluggish, _ = await make_webhook(ctx, site, slow.url())
        fine, _ = await make_webhook(ctx, site, healthy.url())
        await pile_up(ctx, site.site_id, dead, BLACKHOLE_BACKLOG)
        await pile_up(ctx, site.site_id, sluggish, SLOW_BACKLOG)
        async with running_worker(ctx):
            # The neighbours hold all they may before the healthy webhook's events come.
            await eventually(
                lambda: blackhole.open == DEFAULT_LIMIT and slow.in_flight == DEFAULT_LIMIT,
                30,
                "the blackhole and the slow receiver to hold their full share",
            )
            for _ in range(HEALTHY_EVENTS):
                await pile_up(ctx, site.site_id, fine, 1)
            await eventually(
                lambda: len(healthy.arrived()) >= HEALTHY_EVENTS, 60, "the healthy events"
            )
            # Attempts are written only when they end: none to the blackhole now means none
            # had ended (timed out) when the last healthy event arrived, either.
            assert await attempts_of_webhook(ctx, dead) == 0
        # The stop abandoned the calls to the blackhole (closing them) rather than wait 30 s.
        await eventually(
            lambda: blackhole.closed == len(blackhole.accepted), 10, "the calls to be closed"
        )
    finally:
        blackhole.stop()
        slow.stop()
        healthy.stop()

    # The blackhole's first call had not timed out (its client would have closed it) when
    # the last healthy event arrived, though the blackhole had been called before.
    assert seen["closed"] == 0
    assert seen["accepted"] >= 1
    assert 1 <= blackhole.max_open <= DEFAULT_LIMIT, blackhole.max_open
    # The abandoned calls are not attempts, and nothing of the backlog is lost or leased.
    assert await attempts_of_webhook(ctx, dead) == 0
    waiting = sa.select(sa.func.count()).where(
        deliveries.c.webhook_id == dead,
        deliveries.c.status == "pending",
        deliveries.c.attempts == 0,
        deliveries.c.lease_owner.is_(None),
    )
    assert await scalar(ctx, waiting) == BLACKHOLE_BACKLOG
    assert await scalar(ctx, sa.select(sa.func.count()).select_from(flights)) == 0


# --- shared host ---------------------------------------------------------------------------

PREFILL = {"Client Name": "Jane Smith", "Fee": 1500}
NOTIFICATIONS = 200


async def interviews_beside_a_notification_backlog(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers, interviews: int
) -> list[dict[str, Any]]:
    """Open `interviews` interviews whose load hook is on a host that also has 200
    notifications queued, while the notifications hold every pooled connection to it.

    The notification path answers only once the interviews are open (slower than any
    budget), so every connection the worker may hold to the host is held throughout."""
    item = await work_item_over_api(client, site)
    release = asyncio.Event()
    holding = [0]

    async def notification(_: web.Request) -> web.Response:
        holding[0] += 1
        await release.wait()
        return web.Response(status=200)

    per_host = ctx.settings.connections_per_host
    try:
        async with serve() as receiver:
            receiver.route("/notify", None, notification)
            hook = await hook_over_api(client, site, f"{receiver.base}/load")
            receiver.route("/load", hook.verifier(), answer_json(PREFILL))
            # Its own limit would let it hold more than the host's whole pool.
            notify, _ = await make_webhook(ctx, site, f"{receiver.base}/notify", maxConcurrency=100)
            await pile_up(ctx, site.site_id, notify, NOTIFICATIONS)
            async with running_worker(ctx):
                await eventually(
                    lambda: holding[0] >= per_host, 30, "the notifications to fill the pool"
                )
                opened = [await open_over_api(client, site, item) for _ in range(interviews)]
                # The pool was full the whole time: no notification had been answered.
                assert holding[0] == per_host
                release.set()
                left = sa.select(sa.func.count()).where(deliveries.c.status == "pending")
                deadline = time.monotonic() + 60
                while await scalar(ctx, left):
                    assert time.monotonic() < deadline, "the notifications did not drain"
                    await asyncio.sleep(0.1)
    finally:
        release.set()
    assert receiver.rejected == []
    return opened


async def test_interviews_are_never_behind_notifications_to_the_same_host(
    ctx: AppContext, client: httpx.AsyncClient, site: SiteUsers
) -> None:
    opened = await interviews_beside_a_notification_backlog(ctx, client, site, 5)
    for interview in opened:
        assert interview["warnings"] == []
        assert values_of(interview) == PREFILL


async def test_one_shared_pool_would_make_interviews_wait_for_notifications(
    ctx: AppContext,
    client: httpx.AsyncClient,
    site: SiteUsers,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Why interviews have a pool of their own: in the notifications' pool, the interview
    waits the whole budget for a connection and opens with a warning and no prefill."""
    monkeypatch.setattr(AppContext, "interactive_transport", property(lambda c: c.transport))
    ctx.settings = dataclasses.replace(ctx.settings, interview_budget_seconds=2.0)
    (interview,) = await interviews_beside_a_notification_backlog(ctx, client, site, 1)
    assert values_of(interview) == {}
    (warning,) = interview["warnings"]
    assert warning["code"] == "timeout", warning


# --- the breaker across workers ------------------------------------------------------------

PROBE_SECONDS = 1.0
WINDOWS = 5
#: Windows watched on a host that never answers (long enough to tell one probe per interval
#: from one per site).
QUIET_WINDOWS = 8


def probing_workers(settings: Settings, tmp_path: Path) -> Workers:
    """Worker processes whose breakers open after three failures and probe every
    `PROBE_SECONDS`, with quick retries, and enough of them that no delivery runs out
    during a test."""
    return Workers(
        settings,
        tmp_path,
        settings.resolved_database_url,
        DOCUHOOKS_BREAKER_FAILURE_THRESHOLD="3",
        DOCUHOOKS_BREAKER_PROBE_SECONDS=str(PROBE_SECONDS),
        DOCUHOOKS_RETRY_SCHEDULE=",".join(["0", *["0.2s"] * 11]),
    )


async def breaker_state(ctx: AppContext) -> str | None:
    async with ctx.db.read() as conn:
        states = (await conn.execute(sa.select(destinations.c.state))).scalars().all()
    return states[0] if states else None


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_an_open_breaker_sends_one_probe_per_interval_from_all_workers(
    ctx: AppContext, site: SiteUsers, settings: Settings, tmp_path: Path
) -> None:
    receiver = Receiver(status=500)
    hook, _ = await make_webhook(ctx, site, receiver.url())
    queued = await pile_up(ctx, site.site_id, hook, 300)
    workers = probing_workers(settings, tmp_path)
    try:
        workers.start()
        workers.start()
        deadline = time.monotonic() + 30
        while await breaker_state(ctx) in (None, BreakerState.CLOSED.value):
            assert time.monotonic() < deadline, "the breaker did not open"
            await asyncio.sleep(0.05)
        # Calls claimed before it opened may still be on their way: let one interval pass,
        # then watch WINDOWS intervals on the listener's own clock.
        await asyncio.sleep(PROBE_SECONDS)
        start = time.monotonic()
        await asyncio.sleep(PROBE_SECONDS * WINDOWS)
        end = time.monotonic()
        during = [a.at for a in receiver.arrived() if start <= a.at < end]
        assert receiver.succeeded() == [], "the destination failed throughout"
        assert await breaker_state(ctx) != BreakerState.CLOSED.value

        receiver.status = 200
        await eventually(
            lambda: set(queued) <= set(receiver.succeeded()), 60, "the postponed backlog"
        )
        await all_recorded(ctx, 20)
    finally:
        workers.stop_all()
        receiver.stop()

    # Each probe's turn is taken at least an interval after the last one's (and the next
    # is due an interval after the probe *ended*), so probes are claimed at least an interval
    # apart. Their arrival at the listener lags the claim by a little that varies, so one
    # window may get two when the probe before the boundary was late: at most two in any
    # window, and in all at most one more than there are windows. Two workers without a
    # shared turn would each send one per interval.
    per_window = Counter(int((at - start) // PROBE_SECONDS) for at in during)
    assert max(per_window.values(), default=0) <= 2, per_window
    assert 1 <= len(during) <= WINDOWS + 1, during

    received = Counter(receiver.succeeded())
    assert set(received) == set(queued)
    # At least once: a call repeats only if its outcome was lost in flight, so duplicates
    # are at most the calls the webhook may have in flight.
    assert sum(received.values()) - len(received) <= DEFAULT_LIMIT
    statuses = Counter(await scalar_all(ctx, sa.select(deliveries.c.status)))
    assert statuses == {"succeeded": len(queued)}


BLACKHOLE_SITES = 4


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_host_that_does_not_answer_gets_one_probe_per_interval_from_all_sites(
    ctx: AppContext, settings: Settings, tmp_path: Path
) -> None:
    """Four sites' webhooks on a host that accepts and never answers: each site's breaker
    of it opens, and the host still sees one probe per interval from both workers and all
    four sites together (each would send one per interval of its own without the host's
    shared turn)."""
    blackhole = Blackhole()
    for index in range(BLACKHOLE_SITES):
        owner = await make_site(ctx, f"Site {index}")
        hook, _ = await make_webhook(
            ctx, owner, blackhole.url(f"/{owner.site_id}"), timeoutSeconds=1
        )
        await pile_up(ctx, owner.site_id, hook, 50)
    workers = probing_workers(settings, tmp_path)
    try:
        workers.start()
        workers.start()
        deadline = time.monotonic() + 60
        while True:
            states = await breaker_states(ctx)
            if len(states) == BLACKHOLE_SITES and BreakerState.CLOSED.value not in states:
                break
            assert time.monotonic() < deadline, f"the breakers did not open: {states}"
            await asyncio.sleep(0.05)
        # Calls claimed before they opened end within their one-second timeout: let that
        # and an interval pass, then watch the listener for WINDOWS intervals.
        await asyncio.sleep(1 + PROBE_SECONDS)
        start = time.monotonic()
        await asyncio.sleep(PROBE_SECONDS * QUIET_WINDOWS)
        end = time.monotonic()
        during = [at for at in blackhole.accepted if start <= at < end]
        assert BreakerState.CLOSED.value not in await breaker_states(ctx)
    finally:
        workers.stop_all()
        blackhole.stop()

    # As above: the turns are taken at least an interval apart, so at most two connections
    # in any window and one more than there are windows in all; four sites each probing at
    # their own interval (a probe every two seconds: a second's timeout, then the interval)
    # would make about twice as many.
    per_window = Counter(int((at - start) // PROBE_SECONDS) for at in during)
    assert max(per_window.values(), default=0) <= 2, per_window
    assert 1 <= len(during) <= QUIET_WINDOWS + 1, during


async def breaker_states(ctx: AppContext) -> list[str]:
    async with ctx.db.read() as conn:
        return list((await conn.execute(sa.select(destinations.c.state))).scalars())


async def scalar_all(ctx: AppContext, query: sa.Select[Any]) -> list[Any]:
    async with ctx.db.read() as conn:
        return list((await conn.execute(query)).scalars())


# --- fairness ------------------------------------------------------------------------------

BACKLOG = 5000
HEALTHY_EVENTS_B = 20


async def test_one_sites_backlog_does_not_delay_another_sites_event(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    # One receiver for both sites: its log is the order in which the calls arrived.
    receiver = Receiver()
    try:
        busy, _ = await make_webhook(ctx, site, receiver.url("/a"), maxConcurrency=100)
        quiet, _ = await make_webhook(ctx, other_site, receiver.url("/b"))
        await pile_up(ctx, site.site_id, busy, BACKLOG, batch=1000)
        async with running_worker(ctx):
            await eventually(lambda: len(receiver.arrived("/a")) >= 50, 30, "site A's backlog")
            (event,) = await pile_up(ctx, other_site.site_id, quiet, 1)
            await eventually(lambda: receiver.arrived("/b"), 60, "site B's event")
    finally:
        receiver.stop()
    arrivals = receiver.arrived()
    position = next(i for i, a in enumerate(arrivals) if a.event_id == event)
    before = sum(1 for a in arrivals[:position] if a.path == "/a")
    # Oldest first, site B's event would come after all of site A's 5,000; claimed fairly,
    # it goes in the next claim, behind at most what the worker held already.
    assert before < BACKLOG * 0.2, before


DEAD_HOSTS = 30


async def test_a_site_with_many_dead_hosts_holds_no_more_than_its_cap(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    """Thirty webhooks of one site on thirty blackholes (ten calls each allowed, three
    hundred in all) would take every sender, webhook by webhook; the site's cap leaves the
    other site's events their senders."""
    blackholes = [Blackhole() for _ in range(DEAD_HOSTS)]
    cap = WorkerOptions.from_settings(ctx.settings).caps.site
    seen: dict[str, int] = {}

    def on_healthy_arrival(_: Arrival, count: int) -> None:
        if count == HEALTHY_EVENTS_B:
            seen.update(
                open=sum(b.open for b in blackholes), closed=sum(b.closed for b in blackholes)
            )

    healthy = Receiver(on_arrival=on_healthy_arrival)
    try:
        dead = [(await make_webhook(ctx, site, b.url(), timeoutSeconds=30))[0] for b in blackholes]
        for hook in dead:
            await pile_up(ctx, site.site_id, hook, 20)
        fine, _ = await make_webhook(ctx, other_site, healthy.url())
        async with running_worker(ctx):
            await eventually(
                lambda: sum(b.open for b in blackholes) == cap,
                30,
                "the dead hosts' site to hold its whole cap",
            )
            for _ in range(HEALTHY_EVENTS_B):
                await pile_up(ctx, other_site.site_id, fine, 1)
            await eventually(
                lambda: len(healthy.arrived()) >= HEALTHY_EVENTS_B, 60, "the other site's events"
            )
            # Attempts are written only when they end: none to a blackhole now means none had
            # ended (timed out) when the other site's last event arrived, either.
            recorded = sa.select(sa.func.count()).where(attempts.c.site_id == site.site_id)
            assert await scalar(ctx, recorded) == 0
    finally:
        for blackhole in blackholes:
            blackhole.stop()
        healthy.stop()
    assert seen == {"open": cap, "closed": 0}, "the dead hosts held their cap throughout"
    assert max(b.max_open for b in blackholes) <= DEFAULT_LIMIT


# --- the limit across workers --------------------------------------------------------------


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_postgres_workers_keep_a_webhook_within_its_limit(
    ctx: AppContext, site: SiteUsers, settings: Settings, tmp_path: Path
) -> None:
    receiver = Receiver(delay=0.075)
    hook, _ = await make_webhook(ctx, site, receiver.url(), maxConcurrency=5)
    queued = await pile_up(ctx, site.site_id, hook, 300)
    workers = Workers(settings, tmp_path, settings.resolved_database_url)
    try:
        workers.start()
        workers.start()
        await eventually(lambda: set(queued) <= set(receiver.succeeded()), 60, "every event")
        await all_recorded(ctx, 20)
    finally:
        workers.stop_all()
        receiver.stop()
    assert 2 <= receiver.max_in_flight <= 5, receiver.max_in_flight
