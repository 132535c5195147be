"""PostgreSQL: what an event written through the outbox and a worker's claim cost in round
trips, counted on the wire (`bench.pg_round_trips`), and what the one-statement outbox relies
on in the database (delivery ids made by `docuhooks_uuid7()`, a wake-up only for an insert
that wrote a row)."""

from __future__ import annotations

import asyncio
import dataclasses
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
import sqlalchemy as sa
from bench.pg_round_trips import RoundTripRelay
from sqlalchemy.engine import make_url
from tests.delivery.delivery_support import make_webhook, version_event
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.events import Event, EventType
from docuhooks.delivery import attempt_log, claims, outbox, queries, recorder_queries, rollup
from docuhooks.delivery.transport import TransportResult
from docuhooks.store.database import Database
from docuhooks.store.schema import deliveries, flights

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.parametrize("db_url", ["postgresql"], indirect=True),
]


@pytest.fixture
async def relayed(db_url: str) -> AsyncIterator[tuple[RoundTripRelay, Database]]:
    """The test database, through a relay that counts round trips."""
    target = make_url(db_url)
    relay = RoundTripRelay(target.host or "127.0.0.1", target.port or 5432)
    await relay.start()
    db = Database.from_url(relay.url(db_url), pool_size=1)
    try:
        yield relay, db
    finally:
        await db.dispose()
        await relay.stop()


async def _write(db: Database, site_id: str, **kwargs: object) -> list[str]:
    async with db.transaction() as conn:
        return await outbox.enqueue(
            conn,
            version_event(site_id, work_item_id=str(uuid.uuid4())),
            work_group_id=None,
            template_id=None,
            now=datetime.now(UTC),
            **kwargs,  # type: ignore[arg-type]
        )


def _unmatched_event(site_id: str) -> Event:
    """An event of a type no webhook of these tests subscribes to."""
    return dataclasses.replace(version_event(site_id), event_type=EventType.INTERVIEW_LOAD_EVENT)


async def test_an_event_through_the_outbox_is_three_round_trips(
    ctx: AppContext, site: SiteUsers, relayed: tuple[RoundTripRelay, Database]
) -> None:
    """BEGIN, one statement (match, event, deliveries), COMMIT: however many webhooks it
    reaches, none included, matched or named."""
    relay, db = relayed
    first, _ = await make_webhook(ctx, site, "https://a.example/hook", name="a")
    second, _ = await make_webhook(ctx, site, "https://b.example/hook", name="b")
    await _write(db, site.site_id)  # the connection, its types, the statement prepared
    await _write(db, site.site_id, webhook_ids=[first])

    relay.reset()
    ids = await _write(db, site.site_id)
    assert relay.round_trips == 3, relay.messages
    assert len(ids) == 2

    relay.reset()
    assert len(await _write(db, site.site_id, webhook_ids=[second, first])) == 2
    assert relay.round_trips == 3, relay.messages

    relay.reset()
    async with db.transaction() as conn:
        nothing = await outbox.enqueue(
            conn,
            _unmatched_event(site.site_id),
            work_group_id=None,
            template_id=None,
            now=datetime.now(UTC),
        )
    assert nothing == []
    assert relay.round_trips == 3, relay.messages


async def test_delivery_ids_are_time_ordered_uuids_from_the_server_clock(
    ctx: AppContext, site: SiteUsers
) -> None:
    await make_webhook(ctx, site, "https://a.example/hook")
    async with ctx.db.read() as conn:
        before = (await conn.execute(sa.text("SELECT clock_timestamp()"))).scalar_one()
    ids = await _write(ctx.db, site.site_id)
    async with ctx.db.read() as conn:
        after = (await conn.execute(sa.text("SELECT clock_timestamp()"))).scalar_one()
        stored = (
            await conn.execute(sa.select(deliveries.c.id).where(deliveries.c.id.in_(ids)))
        ).scalar_one()
    made = uuid.UUID(stored)
    assert str(made) == stored  # canonical text: lower case, hyphenated
    assert (made.version, made.variant) == (7, uuid.RFC_4122)
    millis = made.int >> 80
    assert int(before.timestamp() * 1000) <= millis <= int(after.timestamp() * 1000)


async def test_the_workers_are_woken_only_by_an_event_with_deliveries(
    ctx: AppContext, site: SiteUsers, db_url: str
) -> None:
    """An event that reaches no webhook still runs the (empty) delivery insert; its trigger
    stays silent. A marker raised after a delivery's wake-up, in the same transaction, shows
    what came before it."""
    await make_webhook(ctx, site, "https://a.example/hook")
    heard: list[str] = []
    marker = asyncio.Event()

    def on_notify(_conn: object, _pid: int, _channel: str, payload: str) -> None:
        heard.append(payload)
        if payload == "marker":
            marker.set()

    listener = await asyncpg.connect(
        make_url(db_url).set(drivername="postgresql").render_as_string(hide_password=False)
    )
    try:
        await listener.add_listener(queries.CHANNEL, on_notify)
        unmatched = _unmatched_event(site.site_id)
        async with ctx.db.transaction() as conn:
            assert (
                await outbox.enqueue(
                    conn, unmatched, work_group_id=None, template_id=None, now=ctx.now()
                )
                == []
            )
        async with ctx.db.transaction() as conn:
            written = await outbox.enqueue(
                conn,
                version_event(site.site_id),
                work_group_id=None,
                template_id=None,
                now=ctx.now(),
            )
            assert len(written) == 1
            await conn.execute(
                sa.text("SELECT pg_notify(:channel, 'marker')"), {"channel": queries.CHANNEL}
            )
        await asyncio.wait_for(marker.wait(), timeout=30)
    finally:
        await listener.close()
    assert heard == ["", "marker"]


async def test_a_claim_is_two_round_trips_however_many_it_leases(
    ctx: AppContext, site: SiteUsers, relayed: tuple[RoundTripRelay, Database]
) -> None:
    """With no transaction around it, as the worker runs it: the candidates; one call of
    `docuhooks_claim_and_read` that locks, forgets the worker's ended calls, counts under
    the locks, leases each share with its `flights` rows, commits and returns the jobs. A
    claim that finds nothing due is the candidates alone."""
    relay, db = relayed
    await make_webhook(ctx, site, "https://a.example/hook")
    await make_webhook(ctx, site, "https://b.example/hook")
    now = datetime.now(UTC)
    queued = [await _write(db, site.site_id) for _ in range(6)]

    async def claim(owner: str, limit: int, ended: list[str]) -> list[str]:
        async with db.autocommit() as conn:
            jobs = await claims.claim(
                conn,
                owner=owner,
                now=now + timedelta(seconds=1),
                lease=timedelta(seconds=30),
                limit=limit,
                probe_interval=timedelta(seconds=30),
                caps=claims.Caps(),
                ended=ended,
            )
        return [job.delivery_id for job in jobs]

    first = await claim("w1", 1, [])  # prepares the statements on this connection
    relay.reset()
    # The first call has ended: its row goes in the same call as the leases.
    rest = await claim("w1", 20, first)
    assert relay.round_trips == 2, relay.transactions
    assert sorted(first + rest) == sorted(i for ids in queued for i in ids)
    async with db.read() as conn:
        hooks = await conn.execute(
            sa.select(deliveries.c.webhook_id).distinct().where(deliveries.c.id.in_(rest))
        )
        assert len(hooks.all()) == 2, "both webhooks' shares in the one call"
        in_flight = (await conn.execute(sa.select(flights.c.delivery_id))).scalars().all()
    assert sorted(in_flight) == sorted(rest)

    relay.reset()
    assert await claim("w1", 20, []) == []
    assert relay.round_trips == 1, relay.transactions


async def test_an_idle_workers_next_due_check_is_one_round_trip(
    ctx: AppContext, site: SiteUsers, relayed: tuple[RoundTripRelay, Database]
) -> None:
    """No BEGIN or COMMIT around it: the one statement commits by itself."""
    relay, db = relayed
    await make_webhook(ctx, site, "https://a.example/hook")
    await _write(db, site.site_id)
    for _ in range(2):  # the first prepares the statement on this connection
        relay.reset()
        async with db.read(single_statement=True) as conn:
            due = await queries.next_due_at(conn)
    assert relay.round_trips == 1, relay.messages
    assert due is not None


async def test_a_batch_of_plain_successes_is_one_round_trip(
    ctx: AppContext, site: SiteUsers, relayed: tuple[RoundTripRelay, Database]
) -> None:
    """The recorder's common batch, with no transaction around it: one call of
    `docuhooks_record_successes` settles the deliveries, writes their attempt rows and the
    roll-up, ends the webhooks' failure runs and forgets the calls' `flights` rows."""
    relay, db = relayed
    await make_webhook(ctx, site, "https://a.example/hook")
    await make_webhook(ctx, site, "https://b.example/hook")
    now = datetime.now(UTC)
    for _ in range(3):
        await _write(db, site.site_id)
    async with db.autocommit() as conn:
        jobs = await claims.claim(
            conn,
            owner="w1",
            now=now + timedelta(seconds=1),
            lease=timedelta(seconds=30),
            limit=20,
            probe_interval=timedelta(seconds=30),
            caps=claims.Caps(),
        )
    assert len(jobs) == 6

    def successes(some: list[queries.Job]) -> list[recorder_queries.Success]:
        rows = [
            attempt_log.attempt_row(
                delivery_id=job.delivery_id,
                webhook_id=job.webhook.id,
                site_id=job.webhook.site_id,
                attempt_number=1,
                started_at=now,
                method="POST",
                url=job.webhook.url,
                request_headers={"Content-Type": "application/json"},
                result=TransportResult.response(200, b"ok"),
                error_class=None,
                error=None,
            )
            for job in some
        ]
        return [recorder_queries.Success(row["delivery_id"], 200, now, row) for row in rows]

    async def record(some: list[queries.Job]) -> None:
        batch = successes(some)
        stats = rollup.tally_of_attempts(s.attempt_row for s in batch).rows()
        async with db.autocommit() as conn:
            await recorder_queries.record_successes(
                conn, owner="w1", successes=batch, stat_rows=stats
            )

    await record(jobs[:1])  # prepares the statement on this connection
    relay.reset()
    await record(jobs[1:])
    assert relay.round_trips == 1, relay.transactions
    async with db.read() as conn:
        settled = (
            await conn.execute(
                sa.select(deliveries.c.status).where(deliveries.c.status == "succeeded")
            )
        ).all()
        in_flight = (await conn.execute(sa.select(flights.c.delivery_id))).all()
    assert (len(settled), in_flight) == (6, [])
