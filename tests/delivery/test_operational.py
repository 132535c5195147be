"""Operational events: each fires once when its condition happens, carries the webhook (or
destination) it is about, is signed like any event, and never goes through the webhook it
is about. Every test runs on SQLite and PostgreSQL; the races run two PostgreSQL workers."""

from __future__ import annotations

import asyncio
import random
import threading
from collections import Counter
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
import sqlalchemy as sa
from tests.delivery.delivery_support import admin_of, make_webhook, queue_event, webhook
from tests.delivery.isolation_support import eventually
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock
from docuhooks.core.destinations import BreakerPolicy
from docuhooks.core.events import EventType
from docuhooks.core.retry import RetrySchedule
from docuhooks.core.signing import OutboundRequest
from docuhooks.delivery import grace_notices, operational
from docuhooks.delivery.transport import MockTransport, TransportResult
from docuhooks.delivery.worker import Worker, WorkerOptions
from docuhooks.store.schema import deliveries, events
from docuhooks.webhooks import service
from docuhooks_receiver import HmacSecret, OperationalEvent, Verifier

DEAD = "https://dead.example/hook"
OPS = "https://ops.example"


def options(**overrides: object) -> WorkerOptions:
    values: dict[str, object] = {
        "schedule": RetrySchedule(delays=(0, 10, 60, 300)),
        "lease": timedelta(seconds=30),
        "probe_interval": timedelta(minutes=10),
        "suspend_after_failures": 3,
        "suspend_after": timedelta(minutes=5),
        "poll_seconds": 0.05,
        # Suspension and the breaker are tested apart: one at a time.
        "breaker": BreakerPolicy(10**6),
    }
    values.update(overrides)
    return WorkerOptions(**values)  # type: ignore[arg-type]


class Receivers:
    """Every receiver behind one mock transport: `DEAD` answers `dead_status`, the rest 200.
    What each operational webhook got is read back from the signed requests."""

    def __init__(self) -> None:
        self.dead_status = 500
        self.transport = MockTransport(self._answer)
        self.secrets: dict[str, tuple[str, str]] = {}  # url -> (webhook id, secret)

    def _answer(self, request: OutboundRequest) -> TransportResult:
        if request.url.startswith("https://dead.example"):
            return TransportResult.response(self.dead_status)
        return TransportResult.response(200)

    def received(self, url: str) -> list[dict[str, Any]]:
        """The events the webhook at `url` got, each verified with its own secret."""
        webhook_id, secret = self.secrets[url]
        got = []
        for sent in self.transport.sent:
            if sent.request.url != url:
                continue
            assert sent.request.body is not None
            token = sent.request.body.decode().removeprefix("token=")
            got.append(
                jwt.decode(
                    token,
                    secret,
                    algorithms=["HS256"],
                    audience=webhook_id,
                    options={"verify_iat": False, "verify_exp": False, "verify_nbf": False},
                )
            )
        return got

    def of_type(self, url: str, event_type: EventType) -> list[dict[str, Any]]:
        return [e for e in self.received(url) if e["eventType"] == event_type.value]


async def subscribe(
    ctx: AppContext, site: SiteUsers, receivers: Receivers, event_type: EventType, url: str
) -> str:
    """An operational webhook of `event_type` at `url`, made by the SiteAdministrator."""
    async with ctx.db.transaction() as conn:
        created, secret = await service.create(
            ctx,
            conn,
            admin_of(site),
            {"name": f"{event_type} {url}", "url": url, "eventType": event_type.value},
        )
    assert secret is not None
    receivers.secrets[url] = (created["id"], secret)
    return str(created["id"])


def worker(
    ctx: AppContext, receivers: Receivers, clock: FakeClock, worker_id: str = "w1", **opts: object
) -> Worker:
    ctx.transport_override = receivers.transport
    return Worker(ctx, options(**opts), clock=clock, rng=random.Random(7), worker_id=worker_id)


async def drain(workers: list[Worker]) -> None:
    """Run the workers together until none of them finds anything due."""
    while any(await asyncio.gather(*(w.run_once() for w in workers))):
        pass


async def operational_events(ctx: AppContext, event_type: EventType) -> list[dict[str, Any]]:
    async with ctx.db.read() as conn:
        rows = await conn.execute(
            sa.select(events.c.payload).where(events.c.event_type == event_type.value)
        )
        return [row.payload for row in rows]


async def suspend_dead_webhook(
    ctx: AppContext, site: SiteUsers, clock: FakeClock, workers: list[Worker]
) -> str:
    """A webhook at `DEAD` that fails long enough to be suspended; returns its id."""
    hook, _ = await make_webhook(ctx, site, DEAD, name="dead")
    for version in range(1, 4):
        await queue_event(ctx, site.site_id, now=clock.now(), version=version)
    await drain(workers)
    clock.advance(timedelta(minutes=6))
    await drain(workers)
    assert (await webhook(ctx, hook)).suspended_at is not None
    await drain(workers)  # the operational events it caused
    return hook


# --- suspended, resumed -------------------------------------------------------------------


async def test_suspension_and_a_probes_success_are_each_announced_once(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock, receivers = FakeClock(), Receivers()
    suspended_url, resumed_url = f"{OPS}/suspended", f"{OPS}/resumed"
    await subscribe(ctx, site, receivers, EventType.WEBHOOK_SUSPENDED, suspended_url)
    await subscribe(ctx, site, receivers, EventType.WEBHOOK_RESUMED, resumed_url)
    w = worker(ctx, receivers, clock)

    hook = await suspend_dead_webhook(ctx, site, clock, [w])

    (event,) = receivers.received(suspended_url)
    assert event["eventType"] == "WebhookSuspended"
    assert event["siteId"] == site.site_id
    assert event["createdBy"]["accountType"] == "System"
    data = event["data"]
    assert data["webhook"]["id"] == hook
    assert (data["webhook"]["name"], data["webhook"]["url"]) == ("dead", DEAD)
    assert data["webhook"]["status"] == "suspended"
    assert "consecutive failed attempts" in data["webhook"]["statusReason"]
    # Three failures in a burst, then the first six minutes later spans the 5 minutes.
    assert data["consecutiveFailures"] == 4
    assert data["nextProbeDate"] is not None
    assert receivers.received(resumed_url) == []

    # Failed probes change nothing: no new event.
    clock.advance(timedelta(minutes=10))
    await drain([w])
    assert len(receivers.received(suspended_url)) == 1

    receivers.dead_status = 200
    clock.advance(timedelta(minutes=10))
    await drain([w])
    assert (await webhook(ctx, hook)).suspended_at is None
    (resumed,) = receivers.received(resumed_url)
    assert resumed["data"]["webhook"]["id"] == hook
    assert resumed["data"]["webhook"]["status"] == "active"
    assert resumed["data"]["resumedBy"] == "probe"
    assert resumed["data"]["suspendedDate"] == data["suspendedDate"]
    assert resumed["createdBy"]["accountType"] == "System"
    assert len(receivers.received(suspended_url)) == 1
    assert len(await operational_events(ctx, EventType.WEBHOOK_SUSPENDED)) == 1
    assert len(await operational_events(ctx, EventType.WEBHOOK_RESUMED)) == 1


async def test_an_admin_resume_is_announced_once_with_the_admin(
    ctx: AppContext, site: SiteUsers
) -> None:
    # The resume happens at the context's time: the worker's clock starts there.
    clock, receivers = FakeClock(ctx.now()), Receivers()
    resumed_url = f"{OPS}/resumed"
    await subscribe(ctx, site, receivers, EventType.WEBHOOK_RESUMED, resumed_url)
    w = worker(ctx, receivers, clock)
    hook = await suspend_dead_webhook(ctx, site, clock, [w])

    admin = admin_of(site)
    for _ in range(2):  # the second resume lifts nothing
        async with ctx.db.transaction() as conn:
            await operational.resume(ctx, conn, admin, hook)
    await drain([w])

    (resumed,) = receivers.received(resumed_url)
    assert resumed["data"]["webhook"]["id"] == hook
    assert resumed["data"]["resumedBy"] == "admin"
    assert resumed["createdBy"]["id"] == admin.user_id
    assert resumed["data"]["suspendedDate"] is not None


async def test_an_operational_webhook_never_hears_of_itself(
    ctx: AppContext, site: SiteUsers
) -> None:
    """Two suspension webhooks, one at a dead receiver: its suspension is announced to the
    other, never to itself, and nothing more follows (no storm)."""
    clock, receivers = FakeClock(), Receivers()
    alive_url, dying_url = f"{OPS}/alive", "https://dead.example/ops"
    await subscribe(ctx, site, receivers, EventType.WEBHOOK_SUSPENDED, alive_url)
    dying = await subscribe(ctx, site, receivers, EventType.WEBHOOK_SUSPENDED, dying_url)
    w = worker(ctx, receivers, clock)

    hook = await suspend_dead_webhook(ctx, site, clock, [w])
    # The dying webhook fails to take that announcement until it is suspended itself.
    for _ in range(4):
        clock.advance(timedelta(minutes=10))
        await drain([w])
    assert (await webhook(ctx, dying)).suspended_at is not None

    announced = [e["data"]["webhook"]["id"] for e in receivers.received(alive_url)]
    assert announced == [hook, dying]
    assert {e["data"]["webhook"]["id"] for e in receivers.received(dying_url)} == {hook}
    # Its probes keep failing: nothing new is announced to anyone.
    for _ in range(3):
        clock.advance(timedelta(minutes=10))
        await drain([w])
    assert len(receivers.received(alive_url)) == 2
    assert len(await operational_events(ctx, EventType.WEBHOOK_SUSPENDED)) == 2


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_postgres_workers_announce_a_suspension_once(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock, receivers = FakeClock(), Receivers()
    url = f"{OPS}/suspended"
    await subscribe(ctx, site, receivers, EventType.WEBHOOK_SUSPENDED, url)
    hook, _ = await make_webhook(ctx, site, DEAD, name="dead")
    for version in range(1, 41):
        await queue_event(ctx, site.site_id, now=clock.now(), version=version)
    both = [
        worker(ctx, receivers, clock, f"w{n}", batch_size=5, suspend_after=timedelta(0))
        for n in (1, 2)
    ]
    await asyncio.gather(*(w.run_once() for w in both))
    await drain(both)

    assert (await webhook(ctx, hook)).suspended_at is not None
    assert [e["data"]["webhook"]["id"] for e in receivers.received(url)] == [hook]
    assert len(await operational_events(ctx, EventType.WEBHOOK_SUSPENDED)) == 1


# --- deactivated by a 410 -----------------------------------------------------------------


async def test_a_410_deactivation_is_announced_once(ctx: AppContext, site: SiteUsers) -> None:
    clock, receivers = FakeClock(), Receivers()
    url = f"{OPS}/deactivated"
    await subscribe(ctx, site, receivers, EventType.WEBHOOK_DEACTIVATED, url)
    hook, _ = await make_webhook(ctx, site, DEAD, name="gone")
    receivers.dead_status = 410
    for version in range(1, 4):  # three 410s in one batch: one deactivation
        await queue_event(ctx, site.site_id, now=clock.now(), version=version)
    await drain([worker(ctx, receivers, clock)])

    (event,) = receivers.received(url)
    assert event["data"]["webhook"]["id"] == hook
    assert event["data"]["webhook"]["status"] == "inactive"
    assert (event["data"]["cause"], event["data"]["statusCode"]) == ("gone", 410)
    assert (await webhook(ctx, hook)).active is False


# --- a secret's grace period ending -------------------------------------------------------


async def test_a_grace_period_ending_is_announced_once_per_rotation(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock, receivers = FakeClock(), Receivers()
    url = f"{OPS}/grace"
    own = await subscribe(ctx, site, receivers, EventType.WEBHOOK_SECRET_GRACE_ENDING, url)
    hook, _ = await make_webhook(ctx, site, "https://receiver.example/hook", name="rotated")
    admin = admin_of(site)
    lead = timedelta(hours=24)

    async def rotate(webhook_id: str, grace: timedelta) -> dict[str, Any]:
        async with ctx.db.transaction() as conn:
            rotated, _ = await service.regenerate_secret(
                ctx, conn, admin, webhook_id, int(grace.total_seconds())
            )
        return rotated

    rotated = await rotate(hook, timedelta(days=3))
    now = clock.now()
    # Not yet within the lead time: nothing.
    assert await operational.announce_grace_endings(ctx, now=now, lead=lead) == 0
    later = rotated["secretRotation"]["previousSecretExpires"] - timedelta(hours=23)
    assert await operational.announce_grace_endings(ctx, now=later, lead=lead) == 1
    assert await operational.announce_grace_endings(ctx, now=later, lead=lead) == 0
    await drain([worker(ctx, receivers, FakeClock(later))])
    (event,) = receivers.received(url)
    assert event["data"]["webhook"]["id"] == hook
    assert event["data"]["previousSecretId"] == rotated["secretRotation"]["previousSecretId"]
    assert event["data"]["secretId"] == rotated["secretId"]

    # A new rotation is announced again; the operational webhook's own rotation is not
    # announced through itself.
    again = await rotate(hook, timedelta(hours=1))
    await rotate(own, timedelta(hours=1))
    soon = ctx.now()
    assert await operational.announce_grace_endings(ctx, now=soon, lead=lead) == 2
    # Signed with its old secret still, within its own grace period.
    await drain([worker(ctx, receivers, FakeClock(soon))])
    assert [e["data"]["previousSecretId"] for e in receivers.received(url)] == [
        rotated["secretRotation"]["previousSecretId"],
        again["secretRotation"]["previousSecretId"],
    ]
    # Past its end, a grace period is not "about to end".
    third = await rotate(hook, timedelta(hours=1))
    past = third["secretRotation"]["previousSecretExpires"] + timedelta(seconds=1)
    assert await operational.announce_grace_endings(ctx, now=past, lead=lead) == 0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_postgres_processes_announce_a_grace_ending_once(
    ctx: AppContext, site: SiteUsers
) -> None:
    receivers = Receivers()
    await subscribe(ctx, site, receivers, EventType.WEBHOOK_SECRET_GRACE_ENDING, f"{OPS}/g")
    admin = admin_of(site)
    for n in range(20):
        hook, _ = await make_webhook(ctx, site, f"https://r{n}.example/hook", name=f"r{n}")
        async with ctx.db.transaction() as conn:
            await service.regenerate_secret(ctx, conn, admin, hook, 3600)
    now = ctx.now()
    counts = await asyncio.gather(
        *(
            operational.announce_grace_endings(ctx, now=now, lead=timedelta(hours=2))
            for _ in range(2)
        )
    )
    assert sum(counts) == 20
    about = Counter(
        e["data"]["webhook"]["id"]
        for e in await operational_events(ctx, EventType.WEBHOOK_SECRET_GRACE_ENDING)
    )
    assert len(about) == 20 and set(about.values()) == {1}


# --- a destination's breaker --------------------------------------------------------------


async def test_a_breaker_opening_and_closing_is_announced_once_to_its_site(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    """Each site keeps its own breaker of a destination: the other site's webhook at the
    same host had no trouble, its breaker stays closed, and it is told nothing."""
    clock, receivers = FakeClock(), Receivers()
    opened_url, closed_url = f"{OPS}/opened", f"{OPS}/closed"
    other_opened = "https://ops-other.example/opened"
    await subscribe(ctx, site, receivers, EventType.DESTINATION_BREAKER_OPENED, opened_url)
    await subscribe(ctx, site, receivers, EventType.DESTINATION_BREAKER_CLOSED, closed_url)
    # At the failing destination itself: it is what the event is about; never through it.
    at_dead = "https://dead.example/ops"
    await subscribe(ctx, site, receivers, EventType.DESTINATION_BREAKER_OPENED, at_dead)
    await subscribe(ctx, other_site, receivers, EventType.DESTINATION_BREAKER_OPENED, other_opened)
    hook, _ = await make_webhook(ctx, site, DEAD, name="dead")
    await make_webhook(ctx, other_site, "https://DEAD.example:443/b", name="b")
    # An inactive webhook there makes no calls for the breaker to hold: not listed.
    await make_webhook(ctx, site, "https://dead.example/old", name="old", active=False)
    w = worker(
        ctx,
        receivers,
        clock,
        breaker=BreakerPolicy(failure_threshold=2, probe_interval=timedelta(seconds=30)),
    )
    for version in (1, 2):
        await queue_event(ctx, site.site_id, now=clock.now(), version=version)
    await drain([w])

    (opened,) = receivers.received(opened_url)
    data = opened["data"]
    assert data["destination"] == "https://dead.example:443"
    assert data["failures"] == 2
    listed = {item["id"] for item in data["webhooks"]}
    assert listed == {hook, receivers.secrets[at_dead][0]}
    assert data["webhookCount"] == 2
    assert receivers.received(other_opened) == []
    assert receivers.received(at_dead) == []
    assert receivers.received(closed_url) == []

    # A failed probe re-opens it: no new event. A successful one closes it: one event.
    clock.advance(timedelta(seconds=30))
    await drain([w])
    assert len(receivers.received(opened_url)) == 1
    receivers.dead_status = 200
    clock.advance(timedelta(seconds=30))
    await drain([w])
    (closed,) = receivers.received(closed_url)
    assert closed["data"]["destination"] == "https://dead.example:443"
    assert closed["data"]["openedDate"] == data["openedDate"]
    assert {item["id"] for item in closed["data"]["webhooks"]} == listed
    assert len(receivers.received(opened_url)) == 1
    assert len(await operational_events(ctx, EventType.DESTINATION_BREAKER_OPENED)) == 1
    assert len(await operational_events(ctx, EventType.DESTINATION_BREAKER_CLOSED)) == 1
    assert receivers.received(other_opened) == []


async def test_no_subscriber_no_event(ctx: AppContext, site: SiteUsers) -> None:
    clock, receivers = FakeClock(), Receivers()
    await suspend_dead_webhook(ctx, site, clock, [worker(ctx, receivers, clock)])
    assert await operational_events(ctx, EventType.WEBHOOK_SUSPENDED) == []
    async with ctx.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(deliveries)) == 3


# --- over real HTTP -----------------------------------------------------------------------


class RecordingReceiver:
    """A real HTTP receiver on loopback: `/gone` answers 410, everything else 200; it keeps
    every request whole, for the SDK to verify."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.requests.append((self.path, dict(self.headers.items()), body))
                self.send_response(410 if self.path == "/gone" else 200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def at(self, path: str) -> list[tuple[str, dict[str, str], bytes]]:
        return [r for r in self.requests if r[0] == path]

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


async def test_a_running_worker_delivers_an_operational_event_the_sdk_verifies(
    ctx: AppContext, site: SiteUsers
) -> None:
    receiver = RecordingReceiver()
    receivers = Receivers()  # only to keep the secret
    ops_url = receiver.url("/ops")
    ops = await subscribe(ctx, site, receivers, EventType.WEBHOOK_DEACTIVATED, ops_url)
    hook, _ = await make_webhook(ctx, site, receiver.url("/gone"), name="gone")
    w = Worker(ctx, options(poll_seconds=0.05))
    await w.start()
    try:
        await queue_event(ctx, site.site_id, now=ctx.now())
        await eventually(lambda: receiver.at("/ops"), 30, "the operational event")
    finally:
        await w.stop()
        receiver.stop()

    ((_, headers, body),) = receiver.at("/ops")
    verifier = Verifier(secrets=[HmacSecret(receivers.secrets[ops_url][1])], audience=ops)
    event = verifier.verify("POST", ops_url, headers, body)
    assert isinstance(event, OperationalEvent)
    assert event.event_type == "WebhookDeactivated" == headers["X-Docuhooks-Event-Type"]
    assert event.webhook is not None
    assert (event.webhook.id, event.webhook.status) == (hook, "inactive")
    assert event.data["cause"] == "gone" and event.user.account_type == "System"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_two_postgres_workers_announce_each_breaker_transition_once(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock, receivers = FakeClock(), Receivers()
    opened_url, closed_url = f"{OPS}/opened", f"{OPS}/closed"
    await subscribe(ctx, site, receivers, EventType.DESTINATION_BREAKER_OPENED, opened_url)
    await subscribe(ctx, site, receivers, EventType.DESTINATION_BREAKER_CLOSED, closed_url)
    hooks = [(await make_webhook(ctx, site, f"{DEAD}/{n}", name=f"d{n}"))[0] for n in range(4)]
    for version in range(1, 11):
        await queue_event(ctx, site.site_id, now=clock.now(), version=version)
    breaker = BreakerPolicy(failure_threshold=2, probe_interval=timedelta(seconds=30))
    both = [worker(ctx, receivers, clock, f"w{n}", batch_size=5, breaker=breaker) for n in (1, 2)]
    await drain(both)
    receivers.dead_status = 200
    clock.advance(timedelta(seconds=30))
    await drain(both)
    clock.advance(timedelta(seconds=30))
    await drain(both)

    (opened,) = receivers.received(opened_url)
    (closed,) = receivers.received(closed_url)
    for event in (opened, closed):
        assert {item["id"] for item in event["data"]["webhooks"]} == set(hooks)
    assert len(await operational_events(ctx, EventType.DESTINATION_BREAKER_OPENED)) == 1
    assert len(await operational_events(ctx, EventType.DESTINATION_BREAKER_CLOSED)) == 1


async def test_the_upkeep_announces_grace_endings_as_soon_as_it_starts(
    ctx: AppContext, site: SiteUsers
) -> None:
    receivers = Receivers()
    await subscribe(ctx, site, receivers, EventType.WEBHOOK_SECRET_GRACE_ENDING, f"{OPS}/g")
    hook, _ = await make_webhook(ctx, site, "https://receiver.example/hook", name="rotated")
    async with ctx.db.transaction() as conn:
        await service.regenerate_secret(ctx, conn, admin_of(site), hook, 3600)
    found: list[dict[str, Any]] = []
    stop = await grace_notices.start_grace_notices(ctx)
    try:
        # Its first look is at start (the next a minute later); the 30 s bound is for a
        # broken upkeep, not the property under test.
        deadline = asyncio.get_running_loop().time() + 30
        while not found:
            assert asyncio.get_running_loop().time() < deadline, "no announcement"
            await asyncio.sleep(0.05)
            found = await operational_events(ctx, EventType.WEBHOOK_SECRET_GRACE_ENDING)
    finally:
        await stop()
    assert [event["data"]["webhook"]["id"] for event in found] == [hook]
