"""The worker on both stores, with a MockTransport receiver and a FakeClock: no sleeping."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import json
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.delivery.delivery_support import (
    a_lock_is_awaited,
    attempts_of,
    claim_directly,
    delivery,
    make_webhook,
    queue_event,
    webhook,
)
from tests.support import SiteUsers

from docuhooks import tracing
from docuhooks.context import AppContext
from docuhooks.core.clock import Clock, FakeClock, SystemClock
from docuhooks.core.destinations import BreakerPolicy, Signal, signal_of, state_key
from docuhooks.core.retry import RetrySchedule
from docuhooks.core.signing import OutboundRequest
from docuhooks.core.tracecontext import new_trace
from docuhooks.delivery import (
    attempts,
    claim_statements,
    claims,
    pruning,
    queries,
    recorder_queries,
    rollup,
)
from docuhooks.delivery import worker as worker_module
from docuhooks.delivery.recorder import Finished
from docuhooks.delivery.transport import ErrorClass, MockTransport, TransportResult
from docuhooks.delivery.worker import Worker, WorkerOptions
from docuhooks.store.schema import deliveries, destinations, flights, sites
from docuhooks.store.schema import webhooks as webhooks_table

URL = "https://receiver.example/hook"
SCHEDULE = RetrySchedule(delays=(0, 10, 60, 300))


def options(**overrides: object) -> WorkerOptions:
    values: dict[str, object] = {
        "schedule": SCHEDULE,
        "lease": timedelta(seconds=30),
        "probe_interval": timedelta(minutes=10),
        "suspend_after_failures": 3,
        "suspend_after": timedelta(minutes=5),
        "poll_seconds": 0.05,
    }
    values.update(overrides)
    return WorkerOptions(**values)  # type: ignore[arg-type]


Handler = Callable[[OutboundRequest], TransportResult | Awaitable[TransportResult]]


def worker_with(
    ctx: AppContext, handler: Handler, clock: Clock, *, worker_id: str = "w1", **opts: object
) -> tuple[Worker, MockTransport]:
    transport = MockTransport(handler)
    ctx.transport_override = transport
    return (
        Worker(ctx, options(**opts), clock=clock, rng=random.Random(7), worker_id=worker_id),
        transport,
    )


def answer(status: int, headers: dict[str, str] | None = None) -> Handler:
    return lambda _request: TransportResult.response(status, b"ok", headers)


async def test_success_signs_the_event_and_records_the_attempt(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    hook, secret = await make_webhook(ctx, site, URL, timeoutSeconds=7, acceptUntrustedSsl=True)
    event, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    worker, transport = worker_with(ctx, answer(200), clock)

    assert await worker.run_once() == [delivery_id]

    (sent,) = transport.sent
    assert (sent.timeout, sent.verify_tls) == (7.0, False)
    assert sent.request.headers["X-Docuhooks-Delivery-Id"] == delivery_id
    assert sent.request.headers["X-Docuhooks-Attempt"] == "1"
    token = sent.request.body.decode().removeprefix("token=")  # type: ignore[union-attr]
    assert secret is not None
    claims = jwt.decode(
        token,
        secret,
        algorithms=["HS256"],
        audience=hook,
        options={"verify_iat": False, "verify_exp": False, "verify_nbf": False},
    )
    assert claims["eventId"] == event.event_id
    row = await delivery(ctx, delivery_id)
    assert (row.status, row.attempts, row.lease_owner, row.last_status_code) == (
        "succeeded",
        1,
        None,
        200,
    )
    (attempt,) = await attempts_of(ctx, delivery_id)
    assert (attempt.status_code, attempt.error_class, attempt.response_body) == (200, None, "ok")
    assert attempt.started_at == clock.now()
    assert await worker.run_once() == []


async def test_failures_follow_the_schedule_with_jitter_then_fail(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    worker, transport = worker_with(ctx, answer(500), clock, suspend_after_failures=100)

    gaps = []
    for _ in range(SCHEDULE.max_attempts - 1):
        assert await worker.run_once() == [delivery_id]
        row = await delivery(ctx, delivery_id)
        gap = (row.next_attempt_at - clock.now()).total_seconds()
        gaps.append(gap)
        clock.advance(gap - 0.001)
        assert await worker.run_once() == [], "not due before its time"
        clock.advance(0.001)
    assert await worker.run_once() == [delivery_id]

    for gap, base in zip(gaps, SCHEDULE.delays[1:], strict=True):
        assert base * 0.8 <= gap <= base * 1.2
    assert len(set(gaps)) == len(gaps)
    row = await delivery(ctx, delivery_id)
    assert (row.status, row.attempts, row.last_error_class) == ("failed", 4, "http_status")
    assert [a.attempt_number for a in await attempts_of(ctx, delivery_id)] == [1, 2, 3, 4]
    assert len(transport.sent) == 4


@pytest.mark.parametrize(
    ("status", "retry_after", "seconds"),
    [
        (429, "120", 120),
        (503, "120", 120),
        # Longer than Python reads as a number: capped like any long wait, not a crash
        # that left the attempt unrecorded and the delivery sent again every lease.
        (429, "9" * 5000, 24 * 3600),
    ],
)
async def test_retry_after_replaces_the_schedule(
    ctx: AppContext, site: SiteUsers, status: int, retry_after: str, seconds: int
) -> None:
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    worker, _ = worker_with(ctx, answer(status, {"Retry-After": retry_after}), clock)
    await worker.run_once()
    row = await delivery(ctx, delivery_id)
    assert (row.status, row.attempts) == ("pending", 1)
    assert row.next_attempt_at == clock.now() + timedelta(seconds=seconds)


async def test_one_sites_answers_on_a_shared_host_never_hold_back_another_sites(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    """A host serving many tenants, each on its own path (a chat service's incoming
    webhooks, an automation platform). One site's path answers 429 with a day's Retry-After
    and its next events time out (its webhook's timeout set shorter than the host needs):
    its own calls there pause, then its breaker opens; the other site's go out at once, in
    the order the host saw them."""
    clock = FakeClock()
    await make_webhook(ctx, site, "https://shared.example/theirs", timeoutSeconds=1)
    await make_webhook(ctx, other_site, "https://shared.example/ours")
    answers = [TransportResult.response(429, b"", {"Retry-After": "86400"})]

    def shared_host(request: OutboundRequest) -> TransportResult:
        if request.url.endswith("/theirs"):
            return answers[0]
        return TransportResult.response(200, b"ok")

    worker, transport = worker_with(ctx, shared_host, clock, suspend_after_failures=100)

    def paths() -> list[str]:
        return [sent.request.url.rsplit("/", 1)[1] for sent in transport.sent]

    await queue_event(ctx, site.site_id, now=clock.now())
    await worker.run_once()
    await queue_event(ctx, site.site_id, now=clock.now())  # paused with its site
    await queue_event(ctx, other_site.site_id, now=clock.now())
    await worker.run_once()
    assert paths() == ["theirs", "ours"]

    clock.advance(timedelta(days=1, seconds=1))
    answers[0] = TransportResult.failure(ErrorClass.TIMEOUT, "timed out after 1 s")
    for _ in range(BreakerPolicy().failure_threshold):
        await queue_event(ctx, site.site_id, now=clock.now())
        await worker.run_once()
    async with ctx.db.read() as conn:
        states = dict(
            (await conn.execute(sa.select(destinations.c.origin, destinations.c.state))).all()
        )
    theirs = state_key(site.site_id, "https://shared.example:443")
    assert states == {theirs: "open"}, (
        "the other site keeps no state of the host: it had no trouble"
    )
    await queue_event(ctx, other_site.site_id, now=clock.now())
    await worker.run_once()
    assert paths()[-1] == "ours"


async def test_retry_after_is_ignored_on_other_statuses(ctx: AppContext, site: SiteUsers) -> None:
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    worker, _ = worker_with(ctx, answer(500, {"Retry-After": "3600"}), clock)
    await worker.run_once()
    gap = (await delivery(ctx, delivery_id)).next_attempt_at - clock.now()
    assert timedelta(seconds=8) <= gap <= timedelta(seconds=12)


async def test_410_deactivates_the_webhook_with_a_reason(ctx: AppContext, site: SiteUsers) -> None:
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL)
    _, (first,) = await queue_event(ctx, site.site_id, now=clock.now())
    _, (second,) = await queue_event(ctx, site.site_id, now=clock.now())
    worker, transport = worker_with(ctx, answer(410), clock, batch_size=1)
    await worker.run_once()

    row = await webhook(ctx, hook)
    assert row.active is False
    assert "410" in row.status_reason
    (sent,) = transport.sent
    gone = sent.request.headers["X-Docuhooks-Delivery-Id"]
    (waiting,) = {first, second} - {gone}
    assert (await delivery(ctx, gone)).status == "failed"
    assert await worker.run_once() == [], "an inactive webhook sends nothing"
    assert (await delivery(ctx, waiting)).status == "pending"
    assert len(transport.sent) == 1


async def test_network_errors_are_recorded_with_their_class(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    worker, _ = worker_with(
        ctx, lambda _: TransportResult.failure(ErrorClass.TIMEOUT, "timed out"), clock
    )
    await worker.run_once()
    (attempt,) = await attempts_of(ctx, delivery_id)
    assert (attempt.status_code, attempt.error_class, attempt.error) == (
        None,
        "timeout",
        "timed out",
    )
    assert (await delivery(ctx, delivery_id)).status == "pending"


async def test_a_request_that_cannot_be_built_never_opens_its_destinations_breaker(
    ctx: AppContext, site: SiteUsers
) -> None:
    """A secret the worker cannot decrypt (a process of the installation given another key)
    fails every attempt of its webhook before a request goes out: recorded and retried, so
    an admin sees why, but it says nothing of the receiver, whose breaker stays closed and
    whose other webhooks' calls go out."""
    clock = FakeClock()
    broken, _ = await make_webhook(ctx, site, "https://shared.example/broken")
    async with ctx.db.transaction() as conn:
        await conn.execute(
            webhooks_table.update()
            .where(webhooks_table.c.id == broken)
            .values(secret_enc="not-a-token")
        )
    worker, transport = worker_with(ctx, answer(200), clock, suspend_after_failures=100)
    failures = BreakerPolicy().failure_threshold + 1
    errors: list[str] = []
    for _ in range(failures):
        _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
        await worker.run_once()
        errors += [row.error for row in await attempts_of(ctx, delivery_id)]
    assert len(errors) == failures
    assert all(error.startswith("could not build the request") for error in errors), errors
    assert transport.sent == []
    async with ctx.db.read() as conn:
        states = (await conn.execute(sa.select(destinations.c.state))).scalars().all()
    assert set(states) <= {"closed"}, "a request that never went out opened the breaker"

    await make_webhook(ctx, site, "https://shared.example/fine")
    await queue_event(ctx, site.site_id, now=clock.now())
    await worker.run_once()
    assert [sent.request.url for sent in transport.sent] == ["https://shared.example/fine"]


async def test_attempt_log_redacts_secrets(ctx: AppContext, site: SiteUsers) -> None:
    clock = FakeClock()
    await make_webhook(ctx, site, URL, name="get", eventType="NewWorkItemVersionComplete")
    await make_webhook(
        ctx,
        site,
        "https://receiver.example/legacy",
        name="legacy",
        authenticationMethod="AccessToken",
        accessToken="very-secret-token",
    )
    _, ids = await queue_event(ctx, site.site_id, now=clock.now())
    worker, transport = worker_with(ctx, answer(200, {"Set-Cookie": "x=1"}), clock)
    await worker.run_once()

    assert len(transport.sent) == 2
    logged = [a for i in ids for a in await attempts_of(ctx, i)]
    text = repr([(a.request_url, a.request_headers, a.response_headers) for a in logged])
    assert "very-secret-token" not in text
    for sent in transport.sent:
        for value in sent.request.headers.values():
            if "secret" in value or value.startswith("Bearer"):
                assert value not in text
    legacy = next(a for a in logged if a.request_url.endswith("/legacy"))
    assert legacy.request_headers["Authorization"] == "[redacted]"


async def test_long_response_bodies_are_capped_at_16_kib(ctx: AppContext, site: SiteUsers) -> None:
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    worker, _ = worker_with(ctx, lambda _: TransportResult.response(200, b"x" * 100_000), clock)
    await worker.run_once()
    (attempt,) = await attempts_of(ctx, delivery_id)
    assert len(attempt.response_body) == 16 * 1024


async def test_suspension_probes_and_resume_drains_the_backlog(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL)
    receiver_up = False

    def receiver(_: OutboundRequest) -> TransportResult:
        # 500, not 503: a 503 would also lower the destination's adaptive limit.
        return TransportResult.response(200 if receiver_up else 500)

    # Suspension alone: the destination's circuit breaker (tested on its own) stays closed.
    worker, transport = worker_with(ctx, receiver, clock, breaker=BreakerPolicy(10**6))
    ids = []
    for version in range(1, 4):
        _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now(), version=version)
        ids.append(delivery_id)
    # Three failures in a burst are a blip, not a dead receiver (span 5 minutes needed).
    assert len(await worker.run_once()) == 3
    assert (await webhook(ctx, hook)).suspended_at is None
    clock.advance(timedelta(minutes=6))
    assert len(await worker.run_once()) == 3
    suspended = await webhook(ctx, hook)
    assert suspended.suspended_at == clock.now()
    assert "consecutive failed attempts" in suspended.status_reason

    # New events still queue; only one probe goes per probe interval.
    _, (late,) = await queue_event(ctx, site.site_id, now=clock.now(), version=4)
    clock.advance(timedelta(hours=1))
    assert await worker.run_once() == [ids[0]], "one probe, the oldest delivery"
    assert await worker.run_once() == []
    clock.advance(timedelta(minutes=9))
    assert await worker.run_once() == []
    clock.advance(timedelta(minutes=1))
    assert await worker.run_once() == [ids[0]], "the next probe, still failing"
    clock.advance(timedelta(minutes=10))
    receiver_up = True
    assert await worker.run_once() == [ids[0]]

    resumed = await webhook(ctx, hook)
    assert (resumed.suspended_at, resumed.consecutive_failures, resumed.status_reason) == (
        None,
        0,
        None,
    )
    assert sorted(await worker.run_once()) == sorted([*ids[1:], late])
    assert {(await delivery(ctx, i)).status for i in [*ids, late]} == {"succeeded"}
    assert (await delivery(ctx, ids[0])).attempts == 5, "probes do not exhaust the schedule"
    assert len(transport.sent) == 3 + 3 + 3 + 3


async def test_ordered_delivery_sends_one_version_at_a_time(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    await make_webhook(ctx, site, URL, name="ordered", orderedDelivery=True)
    await make_webhook(ctx, site, "https://other.example/hook", name="unordered")
    versions: list[tuple[str, int]] = []
    fail_once = {("a", 2)}

    def receiver(request: OutboundRequest) -> TransportResult:
        if "other.example" in request.url:
            return TransportResult.response(200)
        body = request.body.decode()  # type: ignore[union-attr]
        token = body.removeprefix("token=")
        claims = jwt.decode(token, options={"verify_signature": False})
        key = (claims["data"]["workItemId"], claims["data"]["versionNumber"])
        versions.append(key)
        if key in fail_once:
            fail_once.discard(key)
            return TransportResult.response(500)
        return TransportResult.response(200)

    worker, _ = worker_with(ctx, receiver, clock)
    # Queued out of order, across two work items.
    for work_item, version in (("a", 3), ("a", 1), ("b", 1), ("a", 2), ("b", 2)):
        await queue_event(
            ctx, site.site_id, now=clock.now(), work_item_id=work_item, version=version
        )
    for _ in range(6):
        await worker.run_once()
        clock.advance(timedelta(seconds=15))
    assert [v for w, v in versions if w == "a"] == [1, 2, 2, 3]
    assert [v for w, v in versions if w == "b"] == [1, 2]


async def test_expired_leases_are_taken_over(ctx: AppContext, site: SiteUsers) -> None:
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    hanging = asyncio.Event()

    async def never_answers(_: OutboundRequest) -> TransportResult:
        await hanging.wait()
        return TransportResult.response(200)

    dead, _ = worker_with(ctx, never_answers, clock, worker_id="dead")
    stuck = asyncio.create_task(dead.run_once())
    for _ in range(100):
        if (await delivery(ctx, delivery_id)).lease_owner == "dead":
            break
        await asyncio.sleep(0.01)
    survivor, _ = worker_with(ctx, answer(200), clock, worker_id="survivor")
    assert await survivor.run_once() == [], "a live lease is respected"
    clock.advance(timedelta(seconds=31))
    assert await survivor.run_once() == [delivery_id]
    assert (await delivery(ctx, delivery_id)).status == "succeeded"

    # The dead worker wakes up late: its attempt is logged, the delivery stays succeeded.
    hanging.set()
    await stuck
    row = await delivery(ctx, delivery_id)
    assert (row.status, row.lease_owner) == ("succeeded", None)
    assert len(await attempts_of(ctx, delivery_id)) == 2


async def test_graceful_stop_releases_what_it_holds(ctx: AppContext, site: SiteUsers) -> None:
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    started = asyncio.Event()

    async def slow(_: OutboundRequest) -> TransportResult:
        started.set()
        await asyncio.sleep(30)
        return TransportResult.response(200)

    worker, _ = worker_with(ctx, slow, clock, shutdown_grace_seconds=0.1)
    await worker.start()
    await asyncio.wait_for(started.wait(), 10)
    assert (await delivery(ctx, delivery_id)).lease_owner == "w1"
    await asyncio.wait_for(worker.stop(), 10)

    row = await delivery(ctx, delivery_id)
    assert (row.status, row.lease_owner, row.lease_expires_at) == ("pending", None, None)
    other, _ = worker_with(ctx, answer(200), clock, worker_id="w2")
    assert await other.run_once() == [delivery_id], "taken at once, no lease to wait out"


async def test_stop_hands_back_what_was_claimed_ahead_unsent(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    ids = [
        (await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"wi-{i}"))[1][0]
        for i in range(5)
    ]
    started = asyncio.Event()
    release = asyncio.Event()
    sent: list[str] = []

    async def one_at_a_time(request: OutboundRequest) -> TransportResult:
        sent.append(request.headers["X-Docuhooks-Delivery-Id"])
        started.set()
        await release.wait()
        return TransportResult.response(200)

    # One sender, a batch of ten: four deliveries wait in the worker's queue, leased.
    worker, _ = worker_with(
        ctx,
        one_at_a_time,
        clock,
        concurrency=1,
        batch_size=10,
        shutdown_grace_seconds=5,
    )
    await worker.start()
    await asyncio.wait_for(started.wait(), 10)
    assert {(await delivery(ctx, i)).lease_owner for i in ids} == {"w1"}
    stopping = asyncio.create_task(worker.stop())
    await asyncio.sleep(0.05)
    release.set()  # the one in flight answers within the grace period
    await asyncio.wait_for(stopping, 10)

    assert len(sent) == 1, "nothing claimed ahead is sent once stopping"
    rows = {i: await delivery(ctx, i) for i in ids}
    assert rows[sent[0]].status == "succeeded"
    assert len(await attempts_of(ctx, sent[0])) == 1
    for delivery_id in set(ids) - set(sent):
        row = rows[delivery_id]
        assert (row.status, row.lease_owner, row.attempts) == ("pending", None, 0)
        assert await attempts_of(ctx, delivery_id) == []


async def test_senders_do_not_wait_for_outcomes_to_be_written(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    for i in range(3):
        await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"wi-{i}")
    worker, transport = worker_with(ctx, answer(200), clock, concurrency=1, batch_size=10)
    recorder = worker._recorder
    hold_writes = asyncio.Event()
    write = recorder._write_with_retries

    async def slow_write(batch: list) -> None:  # type: ignore[type-arg]
        await hold_writes.wait()
        await write(batch)

    recorder._write_with_retries = slow_write  # type: ignore[method-assign]
    await worker.start()
    try:
        # The one sender sends all three while not a single outcome is written yet.
        for _ in range(200):
            if len(transport.sent) == 3:
                break
            await asyncio.sleep(0.01)
        assert len(transport.sent) == 3
        ids = [sent.request.headers["X-Docuhooks-Delivery-Id"] for sent in transport.sent]
        # Unwritten outcomes keep their leases: the heartbeat extends them.
        assert {(await delivery(ctx, i)).lease_owner for i in ids} == {"w1"}
        hold_writes.set()
    finally:
        await worker.stop()
    assert {(await delivery(ctx, i)).status for i in ids} == {"succeeded"}


async def test_the_running_worker_is_woken_by_a_commit(ctx: AppContext, site: SiteUsers) -> None:
    await make_webhook(ctx, site, URL)
    arrived = asyncio.Event()

    def receiver(_: OutboundRequest) -> TransportResult:
        arrived.set()
        return TransportResult.response(204)

    # A long poll interval: only the wake-up can explain a quick delivery.
    worker, _ = worker_with(ctx, receiver, SystemClock(), poll_seconds=60)
    await worker.start()
    try:
        await asyncio.sleep(0.2)
        await queue_event(ctx, site.site_id, now=worker.clock.now())
        await asyncio.wait_for(arrived.wait(), 5)
    finally:
        await worker.stop()


async def test_pruning_deletes_only_attempts_past_retention(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (old,) = await queue_event(ctx, site.site_id, now=clock.now())
    worker, _ = worker_with(ctx, answer(200), clock)
    await worker.run_once()
    clock.advance(timedelta(days=20))
    _, (recent,) = await queue_event(ctx, site.site_id, now=clock.now())
    await worker.run_once()

    clock.advance(timedelta(days=11))
    deleted = await pruning.prune_attempts(ctx.db, now=clock.now(), retention_days=30)
    assert deleted == 1
    assert await attempts_of(ctx, old) == []
    assert len(await attempts_of(ctx, recent)) == 1


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_claims_are_spaced_out_only_while_busy_after_a_short_claim(
    ctx: AppContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under a stream of single events, claims share a gap; an idle worker claims at once."""
    slept: list[float] = []

    async def record_sleep(seconds: float) -> None:
        slept.append(seconds)

    worker = Worker(ctx, WorkerOptions())
    monkeypatch.setattr(asyncio, "sleep", record_sleep)
    now = asyncio.get_running_loop().time()
    worker._last_claim_at, worker._last_claim_short = now, True
    await worker._space_out_claims()  # nothing in hand: idle, claim at once
    worker._held["d"] = None  # type: ignore[assignment]
    await worker._space_out_claims()
    worker._last_claim_short = False
    await worker._space_out_claims()  # the last claim was full: more may be due right away
    assert len(slept) == 1
    assert 0 < slept[0] <= worker_module.CLAIM_GAP_SECONDS


async def test_a_claim_leases_due_deliveries_and_carries_what_sending_needs(
    ctx: AppContext, site: SiteUsers
) -> None:
    """The claim leases the due deliveries, oldest first within each webhook and shared
    between the webhooks, up to the limit, and returns each with its event and its webhook's
    row."""
    clock = FakeClock()
    hook_a, _ = await make_webhook(ctx, site, URL, name="a")
    hook_b, _ = await make_webhook(ctx, site, URL + "/b", name="b")
    queued = []
    for _ in range(3):
        queued.append(await queue_event(ctx, site.site_id, now=clock.now()))
        clock.advance(timedelta(seconds=1))
    jobs = await claim_directly(ctx, clock, "w1")
    first_two_events = [queued[0][0], queued[0][0], queued[1][0], queued[1][0]]
    assert [job.event.event_id for job in jobs] == [e.event_id for e in first_two_events]
    assert {job.delivery_id for job in jobs} == {*queued[0][1], *queued[1][1]}
    assert {job.webhook.id for job in jobs} == {hook_a, hook_b}
    events = {event.event_id: event for event, _ in queued}
    async with ctx.db.read() as conn:
        base_url = (
            await conn.execute(sa.select(sites.c.base_url).where(sites.c.id == site.site_id))
        ).scalar_one()
    for job in jobs:
        assert json.loads(job.event.json_text) == events[job.event.event_id].to_dict()
        stored = await webhook(ctx, job.webhook.id)
        assert tuple(job.webhook) == tuple(stored), "the webhook's whole row, as stored"
        assert job.issuer == base_url
        row = await delivery(ctx, job.delivery_id)
        assert (row.lease_owner, row.lease_expires_at) == (
            "w1",
            clock.now() + timedelta(seconds=30),
        )

    async with ctx.db.transaction() as conn:
        rest = await claims.claim(
            conn,
            owner="w2",
            now=clock.now(),
            lease=timedelta(seconds=30),
            limit=10,
            probe_interval=timedelta(seconds=30),
            caps=claims.Caps(),
        )
    assert {job.delivery_id for job in rest} == set(queued[2][1]), "leased ones stay leased"


async def _suspended_with_a_probe_due(ctx: AppContext, hook: str, clock: FakeClock) -> None:
    async with ctx.db.transaction() as conn:
        await recorder_queries.suspend(
            conn, hook, now=clock.now(), next_probe_at=clock.now(), reason="suspended: test"
        )


async def _one_probe_due(ctx: AppContext, site: SiteUsers, clock: FakeClock) -> tuple[str, str]:
    """A suspended webhook with one delivery, its probe due; (the webhook, the delivery)."""
    hook, _ = await make_webhook(ctx, site, URL)
    _, (probe_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    await _suspended_with_a_probe_due(ctx, hook, clock)
    return hook, probe_id


async def test_probes_already_leased_are_sent_when_the_due_claim_fails(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probes and due deliveries are claimed in two steps; if the second fails, the probes
    the first leased are still sent rather than left to wait out their lease."""
    clock = FakeClock()
    hook, probe_id = await _one_probe_due(ctx, site, clock)
    clock.advance(timedelta(seconds=1))
    worker, transport = worker_with(ctx, answer(200), clock)

    async def database_away(*_args: object, **_kwargs: object) -> list[queries.Job]:
        raise ConnectionError("the database went away")

    monkeypatch.setattr(claims, "claim", database_away)
    assert await worker.run_once() == [probe_id]
    assert len(transport.sent) == 1
    assert (await webhook(ctx, hook)).suspended_at is None, "the probe succeeded: resumed"
    with pytest.raises(ConnectionError):
        await worker.run_once()  # nothing else in hand: the failure is the claim's to report


async def _three_to_send(ctx: AppContext, site: SiteUsers, clock: FakeClock) -> list[str]:
    await make_webhook(ctx, site, URL)
    return [
        (await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"wi-{i}"))[1][0]
        for i in range(3)
    ]


def _first_claim_loses_its_answer(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The first claim that leases anything raises after it has committed (the connection
    dropped); the list it returns is filled with what that claim leased."""
    real_claim = claims.claim
    lost: list[str] = []

    async def answer_lost(*args: Any, **kwargs: Any) -> list[queries.Job]:
        jobs = await real_claim(*args, **kwargs)
        if not lost and jobs:
            lost.extend(job.delivery_id for job in jobs)
            raise ConnectionResetError("the connection dropped after the claim committed")
        return jobs

    monkeypatch.setattr(claims, "claim", answer_lost)
    return lost


async def test_leases_a_claim_committed_but_never_answered_are_handed_back(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim can commit its leases and lose its answer: the connection drops, or the call
    is cancelled, after PostgreSQL's procedure has committed. The worker holds none of those
    deliveries, and their calls count against every cap; they must not wait out the lease
    (an hour here, which the fake clock never reaches). The next claim hands them back
    first, and takes them again. (On SQLite the claim's transaction rolls back instead.)"""
    clock = FakeClock()
    ids = await _three_to_send(ctx, site, clock)
    lost = _first_claim_loses_its_answer(monkeypatch)
    worker, transport = worker_with(ctx, answer(200), clock, lease=timedelta(hours=1))
    await worker.start()
    try:
        for _ in range(400):  # a bound on a broken worker's wait, not the property tested
            if {(await delivery(ctx, i)).status for i in ids} == {"succeeded"}:
                break
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()

    assert sorted(lost) == sorted(ids), "the first claim took them all, and lost its answer"
    assert [(await delivery(ctx, i)).status for i in ids] == ["succeeded"] * 3
    assert sorted(sent.request.headers["X-Docuhooks-Delivery-Id"] for sent in transport.sent) == (
        sorted(ids)
    ), "each sent once"
    async with ctx.db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(flights))).scalar() == 0


async def test_run_once_hands_back_the_leases_of_a_claim_that_lost_its_answer(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`run_once` (tests and tools) raises when its claim fails; the next `run_once` hands
    back what that claim may have committed, as the running worker's next claim does."""
    clock = FakeClock()
    ids = await _three_to_send(ctx, site, clock)
    lost = _first_claim_loses_its_answer(monkeypatch)
    worker, transport = worker_with(ctx, answer(200), clock, lease=timedelta(hours=1))
    with pytest.raises(ConnectionResetError):
        await worker.run_once()
    assert sorted(lost) == sorted(ids), "the claim took them all, and lost its answer"
    # On PostgreSQL they stay leased to this worker (for an hour) unless handed back; on
    # SQLite the claim's transaction rolled back.
    assert sorted(await worker.run_once()) == sorted(ids)
    assert [(await delivery(ctx, i)).status for i in ids] == ["succeeded"] * 3
    assert len(transport.sent) == 3
    async with ctx.db.read() as conn:
        assert (await conn.execute(sa.select(sa.func.count()).select_from(flights))).scalar() == 0


async def test_an_outcome_written_late_lets_go_of_its_own_claim_only(
    ctx: AppContext, site: SiteUsers
) -> None:
    """With a retry due at once, a delivery can be claimed again, and be sending, before
    its first attempt's outcome is known to be written. That outcome lets go of the first
    claim only: the second stays held, so the heartbeat keeps its lease and a hand-back
    after a failed claim leaves it alone (it would otherwise be claimed and sent again while
    its call is in flight)."""
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    worker, _ = worker_with(ctx, answer(200), clock)
    (first,) = await claim_directly(ctx, clock, "w1")
    again = dataclasses.replace(first)  # the same delivery, claimed again
    worker._held[delivery_id] = again

    worker._recorded(first)
    assert worker._held[delivery_id] is again
    worker._claim_lost = True
    await worker._hand_back_lost_leases()
    assert (await delivery(ctx, delivery_id)).lease_owner == "w1"

    worker._recorded(again)
    assert delivery_id not in worker._held


async def test_what_a_database_refuses_in_one_outcome_never_holds_the_others(
    ctx: AppContext, site: SiteUsers
) -> None:
    """A NUL is no character PostgreSQL's text takes: a receiver's NUL must neither make its
    own outcome unwritable (sent again at every lease) nor sink the batch it was written in."""
    clock = FakeClock()
    hostile, _ = await make_webhook(ctx, site, URL + "/hostile", name="hostile")
    healthy, _ = await make_webhook(ctx, site, URL + "/healthy", name="healthy")
    _, ids = await queue_event(ctx, site.site_id, now=clock.now())

    def receiver(request: OutboundRequest) -> TransportResult:
        if request.url.endswith("/hostile"):
            # Past what the transport sanitises: a NUL in the body and in the error text.
            return TransportResult.response(200, b"ok\x00", {"X-Odd": "1\x002"})
        return TransportResult.failure(ErrorClass.CONNECT, "refused\x00 by a NUL")

    worker, _ = worker_with(ctx, receiver, clock)
    assert sorted(await worker.run_once()) == sorted(ids)
    for delivery_id in ids:
        row = await delivery(ctx, delivery_id)
        assert row.lease_owner is None, "written, not left to run out its lease"
        (attempt,) = await attempts_of(ctx, delivery_id)
        assert "\x00" not in (attempt.response_body or "") + (attempt.error or "")
    statuses = {(await delivery(ctx, i)).webhook_id: (await delivery(ctx, i)).status for i in ids}
    assert statuses == {hostile: "succeeded", healthy: "pending"}


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)  # SQLite takes any text
async def test_an_outcome_the_database_refuses_is_written_plainer_and_alone(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever a database refuses in one attempt row (here a NUL that no sanitising caught),
    the other outcomes of its batch are written, and it is written without the refused text
    rather than left to run out its lease and be sent again."""
    clock = FakeClock()
    await make_webhook(ctx, site, URL + "/a", name="a")
    await make_webhook(ctx, site, URL + "/b", name="b")
    _, ids = await queue_event(ctx, site.site_id, now=clock.now())
    build = attempts._attempt_row

    def with_a_nul(*args: object, **kwargs: object) -> dict[str, object]:
        row = build(*args, **kwargs)  # type: ignore[arg-type]
        if str(row["request_url"]).endswith("/a"):
            row["request_url"] = str(row["request_url"]) + "\x00"
        return row

    monkeypatch.setattr(attempts, "_attempt_row", with_a_nul)
    worker, _ = worker_with(ctx, answer(200), clock)
    assert sorted(await worker.run_once()) == sorted(ids)
    for delivery_id in ids:
        row = await delivery(ctx, delivery_id)
        assert (row.status, row.lease_owner) == ("succeeded", None)
        (attempt,) = await attempts_of(ctx, delivery_id)
        assert "\x00" not in attempt.request_url


@dataclasses.dataclass(frozen=True)
class _Call:
    started: asyncio.Event
    ends: asyncio.Event
    submitted: asyncio.Event


def _calls_end_when_told(worker: Worker, monkeypatch: pytest.MonkeyPatch) -> _Call:
    """The worker's calls start (`started`), wait for `ends`, and hand their outcome to a
    recorder that never writes it (`submitted`)."""
    call = _Call(asyncio.Event(), asyncio.Event(), asyncio.Event())

    async def attempt(job: queries.Job) -> object:
        call.started.set()
        await call.ends.wait()
        return job

    def submit(_: object) -> asyncio.Future[None]:
        call.submitted.set()
        return asyncio.get_running_loop().create_future()

    monkeypatch.setattr(worker, "_attempt", attempt)
    monkeypatch.setattr(worker._recorder, "submit", submit)
    return call


async def _calls_of_one_webhook(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch, *, limit: int, events: int
) -> tuple[str, Worker, _Call]:
    """A webhook with `maxConcurrency` `limit` and `events` due deliveries, and a worker
    whose calls end when told (`_calls_end_when_told`); (the webhook, the worker, its calls)."""
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL, maxConcurrency=limit)
    for version in range(events):
        await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"wi-{version}")
    clock.advance(timedelta(seconds=1))
    worker = Worker(ctx, WorkerOptions(), clock=clock)
    return hook, worker, _calls_end_when_told(worker, monkeypatch)


@contextlib.asynccontextmanager
async def _sending(worker: Worker, job: queries.Job) -> AsyncIterator[None]:
    """`job` held by the worker and taken by one of its senders."""
    worker._held[job.delivery_id] = job
    worker._ready.put_nowait(job)
    sender = asyncio.create_task(worker._sender())
    try:
        yield
    finally:
        worker._ready.put_nowait(None)
        await sender


async def test_a_call_that_ended_leaves_room_before_its_outcome_is_written(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call counts against its webhook's `maxConcurrency` until it ends, not until its
    outcome is written: the worker's next claim may take another delivery of the webhook
    while the recorder still holds the first outcome. Before the call ends, it may not."""
    hook, worker, call = await _calls_of_one_webhook(ctx, site, monkeypatch, limit=1, events=2)

    (first,) = await worker._claim(10)
    async with _sending(worker, first):
        await call.started.wait()
        assert await worker._claim(10) == [], "the webhook's one call is in flight"

        call.ends.set()
        await call.submitted.wait()
        (second,) = await worker._claim(10)
        assert second.delivery_id != first.delivery_id
        in_flight = sa.select(flights.c.delivery_id).where(flights.c.webhook_id == hook)
        async with ctx.db.read() as conn:
            assert (await conn.execute(in_flight)).scalars().all() == [second.delivery_id]


def _outcomes_written(worker: Worker) -> dict[str, asyncio.Future[None]]:
    """A future for each delivery, done once the recorder has written the outcome the
    worker's senders submitted for it (the worker's own callback, which lets the claim go,
    runs before a task awaiting it resumes)."""
    loop = asyncio.get_running_loop()
    written: collections.defaultdict[str, asyncio.Future[None]] = collections.defaultdict(
        loop.create_future
    )
    submit = worker._recorder.submit

    def recorded(item: Finished) -> asyncio.Future[None]:
        future = submit(item)
        mark = written[item.job.delivery_id]

        def done(_: object) -> None:
            if not mark.done():  # a later outcome of the same delivery
                mark.set_result(None)

        future.add_done_callback(done)
        return future

    worker._recorder.submit = recorded  # type: ignore[method-assign]
    return written


class _SlowCall:
    """A handler whose calls start (`started`) and answer `status` once `ends` is set."""

    def __init__(self, status: int, headers: dict[str, str] | None = None) -> None:
        self.started, self.ends = asyncio.Event(), asyncio.Event()
        self.status, self.headers = status, headers

    async def __call__(self, _request: OutboundRequest) -> TransportResult:
        self.started.set()
        await self.ends.wait()
        return TransportResult.response(self.status, b"", self.headers)


async def _in_flight_rows(ctx: AppContext) -> list[str]:
    async with ctx.db.read() as conn:
        return list((await conn.execute(sa.select(flights.c.delivery_id))).scalars())


@pytest.mark.parametrize("written", ["before the claim is taken", "after it"])
@pytest.mark.parametrize("status", [200, 500])
async def test_a_delivery_whose_lease_ran_out_in_flight_is_not_sent_again_by_its_worker(
    ctx: AppContext, site: SiteUsers, written: str, status: int
) -> None:
    """Heartbeats missed (the database away) let a lease run out while its call goes on;
    the worker's next claim leases the delivery again. Whether the first call's outcome is
    written before the claimer takes that claim's answer or after, the worker does not send
    the delivery again beside it: the first outcome settles the delivery (a success, or a
    retry later), and no lease or `flights` row is left to a delivery nobody holds."""
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    call = _SlowCall(status)
    worker, transport = worker_with(ctx, call, clock)
    outcomes = _outcomes_written(worker)
    (first,) = await worker._claim(10)
    worker._take([first], set())
    sender = asyncio.create_task(worker._sender())
    await call.started.wait()

    clock.advance(options().lease + timedelta(seconds=1))  # no heartbeat meanwhile
    held = set(worker._held)
    (again,) = await worker._claim(10)
    assert again.delivery_id == delivery_id, "the lease ran out: the claim took it again"
    if written == "after it":
        worker._take([again], held)
        assert worker._ready.empty(), "not queued for a second call"
    call.ends.set()
    worker._ready.put_nowait(None)
    await sender  # the call has ended, its outcome handed to the recorder
    await outcomes[delivery_id]  # and the first claim let go
    if written == "before the claim is taken":
        worker._take([again], held)
        assert worker._ready.empty(), "not queued for a second call"

    assert len(transport.sent) == 1
    assert worker._held == {}
    worker._take(await worker._claim(10), set(worker._held))  # hands back what was skipped
    assert (worker._held, worker._taken_again) == ({}, set())
    row = await delivery(ctx, delivery_id)
    assert (row.status, row.attempts, row.lease_owner) == (
        "succeeded" if status == 200 else "pending",
        1,
        None,
    )
    assert await _in_flight_rows(ctx) == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_running_worker_does_not_send_a_delivery_again_whose_outcome_came_mid_claim(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the claimer's loop: no heartbeat runs, the lease runs out mid-call, and the
    first call's outcome is written while the claim that leased the delivery again is
    still on its way back (the procedure committed its lease first)."""
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    call = _SlowCall(200)
    worker, transport = worker_with(ctx, call, clock, concurrency=2)
    outcomes = _outcomes_written(worker)
    claim = claims.claim
    taken_again, claimed_after = asyncio.Event(), asyncio.Event()

    async def outcome_written_meanwhile(conn: AsyncConnection, **kwargs: Any) -> list[Any]:
        jobs = await claim(conn, **kwargs)
        if taken_again.is_set():
            claimed_after.set()
        elif call.started.is_set() and any(job.delivery_id == delivery_id for job in jobs):
            call.ends.set()
            await outcomes[delivery_id]
            taken_again.set()
        return jobs

    monkeypatch.setattr(claims, "claim", outcome_written_meanwhile)
    monkeypatch.setattr(worker, "_heartbeat", lambda: asyncio.sleep(0))
    await worker.start()
    try:
        await call.started.wait()
        clock.advance(options().lease + timedelta(seconds=1))
        worker.wake()
        await taken_again.wait()
        worker.wake()
        await claimed_after.wait()  # the claim after: what was skipped is handed back
        row = await delivery(ctx, delivery_id)
        assert (row.status, row.attempts, row.lease_owner) == ("succeeded", 1, None)
        assert await _in_flight_rows(ctx) == []
        assert (worker._held, worker._taken_again) == ({}, set())
    finally:
        await worker.stop()
    assert len(transport.sent) == 1, "a succeeded delivery was sent a second time"


async def test_a_claim_a_worker_skips_leaves_no_claim_span_behind(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With traces on, each delivery a claim brings keeps that claim's span until its
    attempt links to it: a claim `_take` skips is never attempted, so it keeps none, and
    the first claim's span is the one kept for its attempt."""

    @contextlib.contextmanager
    def span(*_args: object, **_kwargs: object) -> Iterator[tracing.Span]:
        yield tracing.Span(new_trace())

    monkeypatch.setattr(tracing, "enabled", lambda: True)
    monkeypatch.setattr(tracing, "span", span)
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    await queue_event(ctx, site.site_id, now=clock.now())
    worker, _ = worker_with(ctx, answer(200), clock)
    (first,) = await worker._claim(10)
    worker._take([first], set())
    first_claim = worker._claimed_in[first.delivery_id]
    clock.advance(options().lease + timedelta(seconds=1))
    held = set(worker._held)
    worker._take(await worker._claim(10), held)
    assert worker._claimed_in == {first.delivery_id: first_claim}


async def test_a_retry_due_at_once_that_a_claim_took_before_the_first_was_let_go_is_sent_next(
    ctx: AppContext, site: SiteUsers
) -> None:
    """A first call's outcome is written (a retry due at once) and a claim leases the retry
    before the worker has let the first claim go: that claim skips it, and the next one
    hands its lease back and takes it, so it is sent then, not after a lease runs out."""
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    worker, transport = worker_with(
        ctx, answer(500), clock, schedule=RetrySchedule(delays=(0, 0, 60), jitter=0)
    )
    outcomes = _outcomes_written(worker)
    (first,) = await worker._claim(10)
    worker._take([first], set())
    held = set(worker._held)  # as a claim beginning now sees it
    sender = asyncio.create_task(worker._sender())
    await outcomes[delivery_id]
    (retry,) = await worker._claim(10)
    worker._take([retry], held)
    assert worker._ready.empty()
    assert (worker._held, worker._taken_again) == ({}, {delivery_id})

    (sent_next,) = await worker._claim(10)
    worker._take([sent_next], set(worker._held))
    assert (worker._held[delivery_id], worker._ready.qsize()) == (sent_next, 1)
    assert worker._taken_again == set()
    worker._ready.put_nowait(None)
    await sender
    await worker._recorder.flush(timeout=30)
    assert len(transport.sent) == 2


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_call_that_ends_while_the_candidates_are_read_leaves_its_room_to_that_claim(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a claim reads its candidates, then leases in a second round trip, and
    the worker's calls go on meanwhile. A call that ends in between leaves its room to this
    claim, not the next: under load a claim would otherwise find most of the last claim's
    calls still counted, and bring only what they left."""
    hook, worker, call = await _calls_of_one_webhook(ctx, site, monkeypatch, limit=2, events=3)
    candidates = claim_statements.CANDIDATES_ON_POSTGRESQL

    class EndingMeanwhile:
        """The candidates' statement, with the call ending before its answer is read."""

        async def all(self, conn: AsyncConnection, params: dict[str, Any]) -> Any:
            rows = await candidates.all(conn, params)
            call.ends.set()
            await call.submitted.wait()
            return rows

    (first,) = await worker._claim(1)
    async with _sending(worker, first):
        await call.started.wait()
        monkeypatch.setattr(claim_statements, "CANDIDATES_ON_POSTGRESQL", EndingMeanwhile())
        claimed = await worker._claim(10)
        assert len(claimed) == 2, "the call that ended gave its room to this claim"
        assert first.delivery_id not in {job.delivery_id for job in claimed}
        in_flight = sa.select(flights.c.delivery_id).where(flights.c.webhook_id == hook)
        async with ctx.db.read() as conn:
            rows = (await conn.execute(in_flight)).scalars().all()
        assert sorted(rows) == sorted(job.delivery_id for job in claimed)


async def _recording_paused(
    worker: Worker, finished: Finished, monkeypatch: pytest.MonkeyPatch
) -> tuple[asyncio.Task[None], asyncio.Event]:
    """Start writing `finished` statement by statement and hold the recorder's transaction
    just before its roll-up (its deliveries settled and webhooks updated, its `flights` rows
    not yet deleted); the task writing, and the event that lets it go on. (On PostgreSQL a
    batch of successes is otherwise one call of `docuhooks_record_successes`, which takes
    the rows in the same order but cannot be held half way.)"""
    paused, release = asyncio.Event(), asyncio.Event()
    add_attempts = rollup.add_attempts

    async def not_in_one_call(_batch: object) -> bool:
        return False

    monkeypatch.setattr(worker._recorder, "_written_in_one_call", not_in_one_call)

    async def pausing(conn: object, rows: object) -> None:
        paused.set()
        await release.wait()
        await add_attempts(conn, rows)  # type: ignore[arg-type]

    monkeypatch.setattr(rollup, "add_attempts", pausing)
    recording = asyncio.create_task(worker._recorder._write_with_retries([finished]))
    await paused.wait()
    return recording, release


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_claim_never_deadlocks_with_the_recorder_of_a_failed_call(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorder of a failed call updates its webhook's row and deletes the call's
    `flights` row; a claim of the same worker deletes that row too (the call has ended) and
    updates the webhook's turn. Both take the webhook's row first (the claim locks its
    candidates' rows before deleting any `flights` row), so the claim waits for the recorder
    instead of each waiting for the other (PostgreSQL then aborted one)."""
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL + "/a", name="a")
    await make_webhook(ctx, site, URL + "/b", name="b")
    for version in range(3):
        await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"wi-{version}")
    worker, _ = worker_with(ctx, answer(500), clock)
    job = next(job for job in await worker._claim(2) if job.webhook.id == hook)
    finished = await worker._attempt(job)

    writes = 0
    write = worker._recorder._write

    async def counted(conn: object, batch: object) -> None:
        nonlocal writes
        writes += 1
        await write(conn, batch)  # type: ignore[arg-type]

    monkeypatch.setattr(worker._recorder, "_write", counted)
    # Mid-transaction: the webhook's failure counted, its row locked.
    recording, release = await _recording_paused(worker, finished, monkeypatch)

    claiming = asyncio.create_task(claim_directly(ctx, clock, worker.id, ended=[job.delivery_id]))
    await a_lock_is_awaited(ctx)
    release.set()
    assert len(await claiming) == 4  # not aborted as a deadlock's victim
    await recording
    assert writes == 1, "the recorder's transaction was not aborted and tried again"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_claim_never_deadlocks_with_a_recorder_batch_of_a_success_and_a_failure(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch with a success on one webhook that resets its failure run and a failure on
    another takes both webhooks' rows, in id order, as a claim does; so a claim that wants
    both waits for the recorder instead of each holding one (the batch reset the success's
    webhook first, whatever its id, and PostgreSQL aborted the claim)."""
    clock = FakeClock()
    one, _ = await make_webhook(ctx, site, URL + "/one", name="one")
    two, _ = await make_webhook(ctx, site, URL + "/two", name="two")
    first, second = sorted([one, two])
    for version in range(3):
        await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"wi-{version}")
    failing = {one: URL + "/one", two: URL + "/two"}[first]
    worker, _ = worker_with(
        ctx,
        lambda request: TransportResult.response(500 if request.url == failing else 200, b""),
        clock,
    )
    jobs = {job.webhook.id: job for job in await worker._claim(2)}
    assert set(jobs) == {first, second}
    async with ctx.db.transaction() as conn:  # the success will end a failure run
        await conn.execute(
            sa.update(webhooks_table)
            .where(webhooks_table.c.id == second)
            .values(consecutive_failures=1, first_failure_at=clock.now())
        )
    batch = [await worker._attempt(jobs[second]), await worker._attempt(jobs[first])]
    assert [item.plain_success for item in batch] == [True, False]

    # Hold the recorder's transaction as soon as it has taken one webhook's row.
    holding_a_webhook, release = asyncio.Event(), asyncio.Event()
    write, write_one = worker._recorder._write, worker._recorder._write_one
    count_successes = recorder_queries.count_successes
    writes = 0

    async def counted(conn: AsyncConnection, items: list[Finished]) -> None:
        nonlocal writes
        writes += 1
        await write(conn, items)

    async def took_a_webhook(*args: Any, **kwargs: Any) -> list[str]:
        if holding_a_webhook.is_set():
            await release.wait()
        resumed = await count_successes(*args, **kwargs)
        holding_a_webhook.set()
        return resumed

    async def one_by_one(conn: AsyncConnection, item: Finished) -> bool:
        if holding_a_webhook.is_set():
            await release.wait()
        written = await write_one(conn, item)
        holding_a_webhook.set()
        return written

    monkeypatch.setattr(worker._recorder, "_write", counted)
    monkeypatch.setattr(worker._recorder, "_write_one", one_by_one)
    monkeypatch.setattr(recorder_queries, "count_successes", took_a_webhook)
    recording = asyncio.create_task(worker._recorder._write_with_retries(batch))
    await holding_a_webhook.wait()

    claiming = asyncio.create_task(claim_directly(ctx, clock, "w2"))
    await a_lock_is_awaited(ctx)
    release.set()
    await recording
    assert {job.webhook.id for job in await claiming} == {first, second}  # not aborted
    assert writes == 1, "the recorder's transaction was not aborted and tried again"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_heartbeat_never_deadlocks_with_the_recorder(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The recorder settles its calls' deliveries, then deletes their `flights` rows; the
    heartbeat extends the same rows' leases. Both take the deliveries' rows first, so the
    heartbeat waits for the recorder instead of each waiting for the other (PostgreSQL then
    aborted one, and an aborted heartbeat let leases run out with their calls in flight)."""
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    await queue_event(ctx, site.site_id, now=clock.now())
    worker, _ = worker_with(ctx, answer(200), clock)
    (job,) = await worker._claim(10)
    finished = await worker._attempt(job)

    # Mid-transaction: the delivery settled, its flights row not yet gone.
    recording, release = await _recording_paused(worker, finished, monkeypatch)

    async def heartbeat() -> None:
        async with ctx.db.transaction() as conn:
            await queries.extend_leases(
                conn,
                owner=worker.id,
                delivery_ids=[job.delivery_id],
                until=clock.now() + timedelta(seconds=30),
            )

    beating = asyncio.create_task(heartbeat())
    await a_lock_is_awaited(ctx)
    release.set()
    await beating  # not aborted as a deadlock's victim
    await recording
    assert (await delivery(ctx, job.delivery_id)).status == "succeeded"


def test_an_outcome_is_quiet_exactly_when_its_signal_tells_a_destination_at_rest_nothing() -> None:
    """The recorder skips the destinations' bookkeeping for a batch of quiet outcomes to
    destinations at rest without classifying each: its shortcut agrees with `signal_of` for
    every status and error class."""
    for status in [None, *range(100, 600)]:
        for error_class in [None, *ErrorClass]:
            finished = Finished(
                job=None,  # type: ignore[arg-type]
                attempt=1,
                attempt_row={},
                result=TransportResult(status=status, error_class=error_class),
                decision=None,  # type: ignore[arg-type]
                now=datetime(2026, 1, 1, tzinfo=UTC),
            )
            signal = signal_of(status, error_class.value if error_class else None)
            quiet = signal in (Signal.HEALTHY, Signal.NONE)
            assert finished.quiet == quiet, (status, error_class)


async def test_a_heartbeat_aborted_to_end_a_deadlock_runs_again(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """PostgreSQL aborts one side of a deadlock; if that is the heartbeat, it runs again at
    once rather than leave the leases to run out until the next one (their calls are still
    in flight: another worker would send them too)."""
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    await queue_event(ctx, site.site_id, now=clock.now())
    worker, _ = worker_with(ctx, answer(200), clock)
    (job,) = await worker._claim(10)
    worker._held[job.delivery_id] = job
    before = (await delivery(ctx, job.delivery_id)).lease_expires_at
    extend_leases = queries.extend_leases
    runs = 0

    class _Deadlock(Exception):
        sqlstate = "40P01"

    async def aborted_once(conn: AsyncConnection, **kwargs: Any) -> None:
        nonlocal runs
        runs += 1
        await extend_leases(conn, **kwargs)
        if runs == 1:
            raise sa.exc.DBAPIError("UPDATE deliveries …", None, _Deadlock("deadlock detected"))

    monkeypatch.setattr(queries, "extend_leases", aborted_once)
    clock.advance(timedelta(seconds=10))
    await worker._heartbeat()

    assert runs == 2
    assert (await delivery(ctx, job.delivery_id)).lease_expires_at > before


async def _in_flight(ctx: AppContext, site_id: str) -> tuple[int, int]:
    """(deliveries leased for the site, flights rows for the site)."""
    async with ctx.db.read() as conn:
        leased = (
            await conn.execute(
                sa.select(sa.func.count())
                .select_from(deliveries)
                .where(deliveries.c.site_id == site_id, deliveries.c.lease_owner.is_not(None))
            )
        ).scalar_one()
        rows = (
            await conn.execute(
                sa.select(sa.func.count()).select_from(flights).where(flights.c.site_id == site_id)
            )
        ).scalar_one()
    return leased, rows


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_late_ended_call_never_deletes_the_row_of_a_probe_this_claim_just_leased(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A probe's call ends once a claim has begun, and its outcome is written before the
    claim's probes are leased (the worker not yet told, so it is still held). The claim
    leases the same delivery as the next probe; the calls it then finds ended while its
    candidates were read must not include the earlier one, whose `flights` row is the new
    probe's: deleting it would let the site go over `site_max_in_flight`."""
    clock = FakeClock()
    probed, _ = await make_webhook(ctx, site, URL + "/a", name="a")
    await make_webhook(ctx, site, URL + "/b", name="b", maxConcurrency=10)
    for i in range(4):
        await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"wi-{i}")
    await _suspended_with_a_probe_due(ctx, probed, clock)
    worker, _ = worker_with(ctx, answer(500), clock, caps=claims.Caps(site=2))
    (probe,) = await worker._claim(1)  # the probe only
    assert probe.probe
    worker._held[probe.delivery_id] = probe
    finished = await worker._attempt(probe)  # the call ends (it failed: still suspended)
    clock.advance(timedelta(minutes=10))  # the next probe is due
    real_claim_probes = queries.claim_probes

    async def outcome_written_meanwhile(*args: Any, **kwargs: Any) -> list[str]:
        worker._ended.append(probe)  # the call ended after the claim began...
        await worker._recorder.record(finished)  # ...its outcome committed, callback not run
        return await real_claim_probes(*args, **kwargs)

    monkeypatch.setattr(queries, "claim_probes", outcome_written_meanwhile)
    claimed = await worker._claim(10)
    assert probe.delivery_id in {job.delivery_id for job in claimed}, "probed again"
    leased, rows = await _in_flight(ctx, site.site_id)
    assert rows == leased, f"{leased} calls in flight for the site but {rows} flights rows"
    assert leased <= 2, f"site_max_in_flight is 2, {leased} calls in flight"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_an_earlier_claims_ended_call_never_deletes_the_row_of_its_delivery_claimed_again(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a retry due at once, a delivery's first call ends, its outcome is written, and
    it is claimed again and sent. A claim that then finds the first call among those
    ended must leave it out: the `flights` row is the second call's now."""
    clock = FakeClock()
    await make_webhook(ctx, site, URL, maxConcurrency=1)
    _, (first_id,) = await queue_event(ctx, site.site_id, now=clock.now(), work_item_id="wi-0")
    await queue_event(ctx, site.site_id, now=clock.now(), work_item_id="wi-1")
    worker, _ = worker_with(
        ctx,
        answer(500),
        clock,
        schedule=RetrySchedule(delays=(0, 0, 10)),
        suspend_after_failures=100,
    )
    (first,) = await worker._claim(1)
    assert first.delivery_id == first_id
    worker._held[first.delivery_id] = first
    finished = await worker._attempt(first)
    worker._ended.append(first)  # its call ended; the recorder writes it
    written = worker._recorder.submit(finished)
    written.add_done_callback(worker._on_recorded(first))
    await written
    await asyncio.sleep(0)  # the callback: no longer held
    (again,) = await worker._claim(1)  # the retry, due at once, claimed again
    assert again.delivery_id == first_id
    worker._held[again.delivery_id] = again  # and being sent now
    # (an earlier call of the same delivery, ended and listed, as a late `_ended` entry)
    worker._ended.append(first)
    assert await worker._claim(1) == [], "maxConcurrency 1: the retry is in flight"
    async with ctx.db.read() as conn:
        rows = (await conn.execute(sa.select(flights.c.delivery_id))).scalars().all()
    assert rows == [first_id], "the second call's row stays"


async def test_a_clock_set_on_the_worker_after_construction_is_the_attempts_clock(
    ctx: AppContext, site: SiteUsers
) -> None:
    """The attempts take the time from the worker's clock, whenever it was set."""
    built_with, set_later = FakeClock(), FakeClock()
    set_later.advance(timedelta(hours=1))
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=built_with.now())
    worker, _ = worker_with(ctx, answer(200), built_with)
    worker.clock = set_later
    assert await worker.run_once() == [delivery_id]
    (attempt,) = await attempts_of(ctx, delivery_id)
    assert attempt.started_at == set_later.now(), "the attempt's clock is the worker's"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_run_once_hands_back_the_leases_of_a_claim_cancelled_after_it_committed(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A claim cancelled after its commit (`asyncio.wait_for(worker.run_once(), …)` timed
    out, say) is handed back by the next claim, as one whose connection dropped is."""
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())
    real_claim = claims.claim

    async def cancelled_after_commit(*args: Any, **kwargs: Any) -> list[queries.Job]:
        await real_claim(*args, **kwargs)
        raise asyncio.CancelledError  # e.g. asyncio.wait_for(worker.run_once(), ...) timed out

    monkeypatch.setattr(claims, "claim", cancelled_after_commit)
    worker, _ = worker_with(ctx, answer(200), clock, lease=timedelta(hours=1))
    with pytest.raises(asyncio.CancelledError):
        await worker.run_once()
    monkeypatch.setattr(claims, "claim", real_claim)
    assert await worker.run_once() == [delivery_id], "handed back and sent, not leased an hour"


async def _flight_rows(ctx: AppContext) -> list[str]:
    async with ctx.db.read() as conn:
        return list((await conn.execute(sa.select(flights.c.delivery_id))).scalars())


@pytest.mark.parametrize(
    "failure",
    [asyncio.CancelledError, lambda: ConnectionResetError("dropped after the commit")],
    ids=["cancelled", "connection_dropped"],
)
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_probes_whose_transaction_committed_but_did_not_answer_are_handed_back(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch, failure: Any
) -> None:
    """The probes' transaction commits, then its answer is lost (the claim is cancelled, or
    the connection drops): the probe's lease and `flights` row are this worker's, and not
    held. The next claim hands them back, as it does a lost `CALL`'s."""
    clock = FakeClock()
    _, probe_id = await _one_probe_due(ctx, site, clock)
    real = ctx.db.transaction
    fired: list[bool] = []

    @contextlib.asynccontextmanager
    async def answer_lost(*, urgent: bool = False) -> AsyncIterator[Any]:
        async with real(urgent=urgent) as conn:
            yield conn
        if urgent and not fired:  # the first urgent one is the probes' transaction
            fired.append(True)
            raise failure()

    monkeypatch.setattr(ctx.db, "transaction", answer_lost)
    worker, _ = worker_with(ctx, answer(200), clock, lease=timedelta(hours=1))
    with pytest.raises((asyncio.CancelledError, ConnectionResetError)):
        await worker.run_once()
    assert (await delivery(ctx, probe_id)).lease_owner == "w1", "the probe was leased"
    await worker.run_once()  # the next claim hands it back (and probes it again)
    assert await _flight_rows(ctx) == []
    assert (await delivery(ctx, probe_id)).lease_owner is None


async def test_a_claim_whose_transaction_rolled_back_sends_nothing(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite (and PostgreSQL behind a pooler in transaction mode) the claim is one
    transaction: a failure after its leases rolls them back, and the claim fails with it
    rather than return deliveries no one holds."""
    clock = FakeClock()
    await make_webhook(ctx, site, URL)
    _, (delivery_id,) = await queue_event(ctx, site.site_id, now=clock.now())

    async def fails(*_args: Any, **_kwargs: Any) -> None:
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(queries, "next_due_at", fails)
    worker, _ = worker_with(ctx, answer(200), clock)
    if ctx.db.is_sqlite:
        with pytest.raises(ConnectionResetError):
            await worker._claim(10)
        assert (await delivery(ctx, delivery_id)).lease_owner is None
        assert await _flight_rows(ctx) == []
    else:  # outside a transaction the claim does not ask, and its leases stand
        (job,) = await worker._claim(10)
        assert (await delivery(ctx, delivery_id)).lease_owner == "w1"
        assert await _flight_rows(ctx) == [job.delivery_id]
