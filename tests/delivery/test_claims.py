"""The fair claim on both stores, called directly with a FakeClock: what it may take, and what
it must leave in the store (a webhook at its limit, an open breaker between probes, a paused
destination)."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.delivery.delivery_support import a_lock_is_awaited, make_webhook, version_event
from tests.delivery.isolation_support import pile_up
from tests.support import SiteUsers, make_site

from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock
from docuhooks.core.destinations import (
    BreakerPolicy,
    BreakerState,
    Signal,
    destination_of,
    host_answered,
    signal_of,
    state_key,
)
from docuhooks.delivery import calls_in_flight, claims, outbox, queries
from docuhooks.delivery import destinations as destination_states
from docuhooks.delivery.queries import Job
from docuhooks.settings import Settings, SettingsError
from docuhooks.store.schema import (
    deliveries,
    destinations,
    flights,
    probe_turns,
    sites,
    webhooks,
)

URL = "https://receiver.example/hook"
OTHER = "https://elsewhere.example/hook"
LEASE = timedelta(seconds=60)
INTERVAL = timedelta(seconds=30)


async def claim_on(conn: AsyncConnection, clock: FakeClock, owner: str) -> list[Job]:
    """`claims.claim` on a connection the test set up, with the default caps."""
    return await claims.claim(
        conn,
        owner=owner,
        now=clock.now(),
        lease=LEASE,
        limit=10,
        probe_interval=INTERVAL,
        caps=claims.Caps(),
    )


async def claim(
    ctx: AppContext,
    clock: FakeClock,
    owner: str,
    limit: int = 100,
    caps: claims.Caps = claims.Caps(destination=100, site=100),
    ended: tuple[str, ...] = (),
) -> list[Job]:
    async with ctx.db.autocommit() as conn:  # as the worker claims
        return await claims.claim(
            conn,
            owner=owner,
            now=clock.now(),
            lease=LEASE,
            limit=limit,
            probe_interval=INTERVAL,
            caps=caps,
            ended=ended,
        )


async def set_destination(
    ctx: AppContext, site_id: str, url: str, now: datetime, **values: object
) -> None:
    """The state `site_id` keeps of `url`'s destination."""
    row: dict[str, object] = {
        "origin": state_key(site_id, destination_of(url)),
        "state": BreakerState.CLOSED.value,
        "failures": 0,
        "concurrency": 100,
        "updated_at": now,
        **values,
    }
    async with ctx.db.transaction() as conn:
        await conn.execute(destinations.insert().values(**row))


async def open_breaker(
    ctx: AppContext,
    site_id: str,
    url: str,
    now: datetime,
    *,
    state: BreakerState = BreakerState.OPEN,
    due: datetime | None = None,
) -> None:
    """`site_id`'s breaker of `url`'s destination open since `now` (or half open: its probe
    in flight), due a probe at `due` (`now` unless given)."""
    await set_destination(
        ctx,
        site_id,
        url,
        now,
        state=state.value,
        failures=5,
        since=now,
        next_probe_at=now if due is None else due,
        concurrency=1,
    )


def by_hook(jobs: list[Job]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.webhook.id] = counts.get(job.webhook.id, 0) + 1
    return counts


async def test_a_webhook_at_its_limit_is_not_a_candidate_and_others_are_claimed_instead(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    busy, _ = await make_webhook(ctx, site, URL, maxConcurrency=2)
    other, _ = await make_webhook(ctx, site, OTHER)
    await pile_up(ctx, site.site_id, busy, 5, now=clock.now())
    clock.advance(1)
    await pile_up(ctx, site.site_id, other, 3, now=clock.now())

    first = await claim(ctx, clock, "w1")
    assert by_hook(first) == {busy: 2, other: 3}
    # Another worker finds the busy webhook at its limit: nothing of it is leased.
    assert await claim(ctx, clock, "w2") == []
    async with ctx.db.read() as conn:
        unleased = (
            await conn.execute(
                sa.select(sa.func.count()).where(
                    deliveries.c.webhook_id == busy, deliveries.c.lease_owner.is_(None)
                )
            )
        ).scalar_one()
    assert unleased == 3, "the rest stay in the store, unleased"

    # One call's outcome is written: room for exactly one more.
    done = next(job for job in first if job.webhook.id == busy)
    async with ctx.db.transaction() as conn:
        await calls_in_flight.forget(conn, owner="w1", delivery_ids=[done.delivery_id])
    assert by_hook(await claim(ctx, clock, "w2")) == {busy: 1}


async def test_a_claim_first_forgets_the_calls_its_worker_saw_end(
    ctx: AppContext, site: SiteUsers
) -> None:
    """A worker's calls that ended before their outcomes were written no longer count in its
    next claim: their room is taken again at once. Only that worker's own rows go."""
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL, maxConcurrency=2)
    await pile_up(ctx, site.site_id, hook, 5, now=clock.now())
    first = await claim(ctx, clock, "w1")
    assert len(first) == 2

    ended = (first[0].delivery_id,)
    # Another worker cannot forget w1's calls: the webhook stays at its limit.
    assert await claim(ctx, clock, "w2", ended=ended) == []
    assert len(await claim(ctx, clock, "w1", ended=ended)) == 1
    async with ctx.db.read() as conn:
        owners = sorted((await conn.execute(sa.select(flights.c.owner))).scalars().all())
    assert owners == ["w1", "w1"], "the ended call's row went; the other call and the new one stay"


async def test_the_calls_in_flight_of_a_dead_worker_stop_counting_when_its_lease_ends(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL, maxConcurrency=2)
    await pile_up(ctx, site.site_id, hook, 4, now=clock.now())
    assert len(await claim(ctx, clock, "dead")) == 2
    assert await claim(ctx, clock, "w2") == []
    clock.advance(LEASE + timedelta(seconds=1))
    # The dead worker's two and two more are due and unleased, but two at a time.
    assert len(await claim(ctx, clock, "w2")) == 2


async def test_claims_share_the_limit_round_the_webhooks(ctx: AppContext, site: SiteUsers) -> None:
    clock = FakeClock()
    old, _ = await make_webhook(ctx, site, URL, maxConcurrency=100)
    await pile_up(ctx, site.site_id, old, 200, now=clock.now())
    clock.advance(60)
    new, _ = await make_webhook(ctx, site, OTHER, maxConcurrency=100)
    await pile_up(ctx, site.site_id, new, 1, now=clock.now())
    # Oldest-first would give all ten to the older backlog; each webhook has an equal share.
    assert by_hook(await claim(ctx, clock, "w1", limit=10)) == {old: 5, new: 1}
    # The newer webhook was served last time: the older one's turn comes first now.
    assert by_hook(await claim(ctx, clock, "w1", limit=10)) == {old: 10}


async def test_an_open_breaker_lets_one_probe_through_per_interval_across_owners(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    dead, _ = await make_webhook(ctx, site, URL)
    same_host, _ = await make_webhook(ctx, site, URL + "/other")
    healthy, _ = await make_webhook(ctx, site, OTHER)
    for hook in (dead, same_host, healthy):
        await pile_up(ctx, site.site_id, hook, 5, now=clock.now())
    await open_breaker(ctx, site.site_id, URL, clock.now())

    first = await claim(ctx, clock, "w1")
    probes = [job for job in first if job.webhook.id in (dead, same_host)]
    assert len(probes) == 1, "one probe for the destination, whichever webhook it is from"
    assert by_hook(first)[healthy] == 5, "other destinations go on as usual"
    assert await claim(ctx, clock, "w2") == []
    async with ctx.db.read() as conn:
        row = (await conn.execute(sa.select(destinations))).one()
    assert row.state == BreakerState.HALF_OPEN.value
    assert row.next_probe_at == clock.now() + INTERVAL

    clock.advance(INTERVAL - timedelta(milliseconds=1))
    assert await claim(ctx, clock, "w2") == []
    assert await claim(ctx, clock, "w1") == []
    clock.advance(timedelta(milliseconds=1))
    second = await claim(ctx, clock, "w2")
    assert len(second) == 1 and second[0].webhook.id in (dead, same_host)
    assert await claim(ctx, clock, "w1") == []


async def test_a_host_failing_every_sites_probe_gets_one_per_interval_in_turn(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    """Each site keeps its own breaker of a shared host, but the host's probe turn is the
    whole installation's: while the host fails every probe, the sites whose breakers of it
    are open send one per interval between them, in turn; a probe that gets through gives
    the turn back at once, and the other site probes without waiting for the interval."""
    clock = FakeClock()
    ours, _ = await make_webhook(ctx, site, f"{URL}/ours")
    theirs, _ = await make_webhook(ctx, other_site, f"{URL}/theirs")
    healthy, _ = await make_webhook(ctx, other_site, OTHER)
    for owner, hook in ((site, ours), (other_site, theirs), (other_site, healthy)):
        await pile_up(ctx, owner.site_id, hook, 5, now=clock.now())
    for owner in (site, other_site):
        await open_breaker(ctx, owner.site_id, URL, clock.now())
    probes = (ours, theirs)

    turns = []
    for interval in range(4):
        taken = by_hook(await claim(ctx, clock, f"w{interval}"))
        if not interval:
            assert taken[healthy] == 5, "the other site's other host is served as usual"
        probed = [hook for hook in probes if hook in taken]
        assert len(probed) == 1, "one probe of the host, whichever site's"
        assert taken[probed[0]] == 1
        turns += probed
        # Other workers, until the interval ends: the host's turn is taken. (The healthy
        # webhook's calls, whose leases run out, are claimed again meanwhile.)
        assert set(probes).isdisjoint(by_hook(await claim(ctx, clock, "other")))
        clock.advance(INTERVAL - timedelta(milliseconds=1))
        late = by_hook(await claim(ctx, clock, "other"))
        assert set(probes).isdisjoint(late), "both sites wait for the interval"
        clock.advance(timedelta(milliseconds=1))
    assert turns in ([ours, theirs] * 2, [theirs, ours] * 2), "the sites take turns"

    # The last probe succeeds: its site's breaker closes and the host's turn is given back,
    # so the other site, due since the last interval, probes now.
    last = turns[-1]
    await fold(ctx, site if last == ours else other_site, clock, status=200)
    taken = by_hook(await claim(ctx, clock, "w4"))
    waiting = theirs if last == ours else ours
    assert taken.get(waiting) == 1, "the other site probes without waiting for the interval"


async def fold(
    ctx: AppContext,
    owner: SiteUsers,
    clock: FakeClock,
    *,
    status: int | None,
    error_class: str | None = None,
) -> None:
    """An outcome of `owner`'s call to `URL`'s host, folded into the site's state of it as the
    recorder folds it (`Finished.destination_outcome`)."""
    async with ctx.db.transaction() as conn:
        await destination_states.record(
            conn,
            [
                destination_states.Outcome(
                    state_key(owner.site_id, destination_of(URL)),
                    signal_of(status, error_class),
                    clock.now(),
                    answered=host_answered(status),
                )
            ],
            BreakerPolicy(probe_interval=INTERVAL),
            clock.now(),
        )


@pytest.mark.parametrize(
    ("status", "error_class"), [(429, None), (101, "invalid_response")], ids=["429", "101"]
)
async def test_a_host_whose_server_answers_a_probe_is_up_and_gives_its_turn_back(
    ctx: AppContext,
    site: SiteUsers,
    other_site: SiteUsers,
    status: int,
    error_class: str | None,
) -> None:
    """Only a host that fails every probe is held to one probe per interval: one whose own
    server answers (a 429 of a site's own path, or a final 1xx: below 500) is up, and
    another site's due probe goes in the same interval. A timeout keeps the turn, and so
    does a 5xx, which may be a proxy or load balancer answering for a host that is down."""
    clock = FakeClock()
    owners = {}
    for owner, path in ((site, "ours"), (other_site, "theirs")):
        hook, _ = await make_webhook(ctx, owner, f"{URL}/{path}")
        owners[hook] = owner
        await pile_up(ctx, owner.site_id, hook, 5, now=clock.now())
        await open_breaker(ctx, owner.site_id, URL, clock.now())

    (first,) = by_hook(await claim(ctx, clock, "w1"))
    await fold(ctx, owners[first], clock, status=None, error_class="timeout")
    assert await claim(ctx, clock, "w2") == [], "a host that did not answer keeps its turn"

    clock.advance(INTERVAL)
    (second,) = by_hook(await claim(ctx, clock, "w3"))
    assert second != first, "the other site has the next turn"
    await fold(ctx, owners[second], clock, status=502)  # a proxy's answer for a dead host
    assert await claim(ctx, clock, "w4") == [], "a 5xx keeps the turn"

    clock.advance(INTERVAL)
    assert set(by_hook(await claim(ctx, clock, "w5"))) == {first}
    await fold(ctx, owners[first], clock, status=status, error_class=error_class)
    assert set(by_hook(await claim(ctx, clock, "w6"))) == {second}, (
        "the host's server answered: the other site's due probe goes in the same interval"
    )


async def test_a_probe_that_finds_nothing_to_send_gives_the_hosts_turn_back(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    """An ordered webhook whose failed probe waits for its retry has later deliveries due
    that may not go before it: its site's probe turn leases nothing, and the host's turn goes
    to the other site in the same interval rather than being spent."""
    clock = FakeClock()
    ordered, _ = await make_webhook(ctx, site, f"{URL}/ours", orderedDelivery=True)
    plain, _ = await make_webhook(ctx, other_site, f"{URL}/theirs")
    await pile_up(ctx, site.site_id, ordered, 3, now=clock.now())
    await pile_up(ctx, other_site.site_id, plain, 5, now=clock.now())
    async with ctx.db.transaction() as conn:
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.webhook_id == ordered)
            .values(ordering_key="work-item", ordering_seq=1)
        )
        first_in_order = (
            await conn.execute(
                sa.select(deliveries.c.id)
                .where(deliveries.c.webhook_id == ordered)
                .order_by(deliveries.c.created_at, deliveries.c.id)
                .limit(1)
            )
        ).scalar_one()
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.id == first_in_order)
            .values(attempts=1, next_attempt_at=clock.now() + timedelta(hours=1))
        )
        # The ordered webhook has the first turn of the round.
        await conn.execute(
            webhooks.update()
            .where(webhooks.c.id == plain)
            .values(claimed_at=clock.now() - timedelta(seconds=1))
        )
    for owner in (site, other_site):
        await open_breaker(ctx, owner.site_id, URL, clock.now())

    assert await claim(ctx, clock, "w1") == [], "the ordered webhook has nothing it may send"
    assert by_hook(await claim(ctx, clock, "w2")) == {plain: 1}, "the turn went back"
    async with ctx.db.read() as conn:
        states = dict(
            (await conn.execute(sa.select(destinations.c.origin, destinations.c.state))).all()
        )
    assert states[state_key(site.site_id, destination_of(URL))] == BreakerState.OPEN.value


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_recorder_giving_back_two_hosts_turns_never_deadlocks_with_a_claim(
    ctx: AppContext,
) -> None:
    """A claim takes two hosts' probe turns in the destinations' order; a recorder whose
    batch shows both hosts answering gives both turns back. It takes the rows in the same
    order, so it waits for the claim rather than holding the turn the claim waits for.

    The claim is held, by order not by time, right after it took the first host's turn: a
    trigger on the breaker's update waits for an advisory lock the test holds."""
    clock = FakeClock()
    first_host, second_host = "https://a-host.example/hook", "https://b-host.example/hook"
    owners = [await make_site(ctx, name) for name in ("One", "Two", "Three", "Four")]
    # Sites One and Two each have a probe in flight (their outcomes are the recorder's
    # batch); Three and Four are due a probe of the first and the second host.
    plan = [
        (owners[0], second_host, BreakerState.HALF_OPEN, clock.now() + INTERVAL),
        (owners[1], first_host, BreakerState.HALF_OPEN, clock.now() + INTERVAL),
        (owners[2], first_host, BreakerState.OPEN, clock.now()),
        (owners[3], second_host, BreakerState.OPEN, clock.now()),
    ]
    for owner, url, state, due in plan:
        hook, _ = await make_webhook(ctx, owner, url)
        await pile_up(ctx, owner.site_id, hook, 2, now=clock.now())
        await open_breaker(ctx, owner.site_id, url, clock.now(), state=state, due=due)
    held = state_key(owners[2].site_id, destination_of(first_host))
    async with ctx.db.transaction() as conn:
        # The second host's row first in the table, as a sequential delete would meet them.
        for url in (second_host, first_host):
            await conn.execute(
                probe_turns.insert().values(
                    destination=destination_of(url), next_at=clock.now() - INTERVAL
                )
            )
        await conn.execute(
            sa.text(
                "CREATE FUNCTION hold_the_claim() RETURNS trigger LANGUAGE plpgsql AS $$ "
                f"BEGIN IF NEW.origin = '{held}' AND NEW.state = 'half_open' THEN "
                "PERFORM pg_advisory_xact_lock(4242); END IF; RETURN NEW; END $$"
            )
        )
        await conn.execute(
            sa.text(
                "CREATE TRIGGER hold_the_claim BEFORE UPDATE ON destinations "
                "FOR EACH ROW EXECUTE FUNCTION hold_the_claim()"
            )
        )
    async with ctx.db.engine.connect() as control:
        await control.execute(sa.text("SELECT pg_advisory_lock(4242)"))
        await control.commit()
        claiming = asyncio.create_task(claim(ctx, clock, "w1"))
        await a_lock_is_awaited(ctx)  # the claim holds the first host's turn

        async def record() -> None:
            async with ctx.db.transaction() as conn:
                await destination_states.record(
                    conn,
                    [
                        destination_states.Outcome(
                            state_key(owner.site_id, destination_of(url)),
                            Signal.HEALTHY,
                            clock.now(),
                            answered=True,
                        )
                        for owner, url, _, _ in plan[:2]
                    ],
                    BreakerPolicy(probe_interval=INTERVAL),
                    clock.now(),
                )

        recording = asyncio.create_task(record())
        await a_lock_is_awaited(ctx, by=2)  # the recorder waits for the first host's row
        await control.execute(sa.text("SELECT pg_advisory_unlock(4242)"))
        await control.commit()
        claimed, _ = await asyncio.gather(claiming, recording)
    assert len(claimed) == 2, "the claim took both hosts' probes"
    async with ctx.db.read() as conn:
        turns = (await conn.execute(sa.select(probe_turns))).all()
    assert turns == [], "the recorder gave both turns back once the claim had committed"


async def test_a_paused_destination_yields_nothing_until_its_pause_ends(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL)
    await pile_up(ctx, site.site_id, hook, 3, now=clock.now())
    await set_destination(
        ctx, site.site_id, URL, clock.now(), paused_until=clock.now() + timedelta(seconds=60)
    )
    assert await claim(ctx, clock, "w1") == []
    clock.advance(timedelta(seconds=60) - timedelta(milliseconds=1))
    assert await claim(ctx, clock, "w1") == []
    clock.advance(timedelta(milliseconds=1))
    assert len(await claim(ctx, clock, "w1")) == 3


async def test_a_destination_below_its_full_limit_is_shared_by_its_webhooks(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    hooks = [(await make_webhook(ctx, site, f"{URL}/{i}"))[0] for i in range(2)]
    for hook in hooks:
        await pile_up(ctx, site.site_id, hook, 10, now=clock.now())
    await set_destination(ctx, site.site_id, URL, clock.now(), concurrency=3)
    assert len(await claim(ctx, clock, "w1")) == 3
    assert await claim(ctx, clock, "w2") == [], "the limit counts every worker's calls"


@pytest.mark.parametrize(
    "state",
    [
        {"concurrency": 1},
        {"paused_until": "later"},
        {"state": BreakerState.OPEN.value, "failures": 5, "next_probe_at": "later"},
    ],
    ids=["adaptive limit", "pause", "open breaker"],
)
async def test_a_sites_state_of_a_shared_host_holds_back_only_its_own_calls(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers, state: dict[str, object]
) -> None:
    """Many hosts serve many tenants, each on a path of its own: one site's limit, pause or
    open breaker there (its own path's 429s, or timeouts it set too short) is its own."""
    clock = FakeClock()
    throttled, _ = await make_webhook(ctx, site, f"{URL}/theirs")
    other, _ = await make_webhook(ctx, other_site, f"{URL}/ours")
    await pile_up(ctx, site.site_id, throttled, 3, now=clock.now())
    await pile_up(ctx, other_site.site_id, other, 3, now=clock.now())
    values = {
        name: clock.now() + timedelta(hours=1) if value == "later" else value
        for name, value in state.items()
    }
    await set_destination(ctx, site.site_id, URL, clock.now(), **values)
    taken = by_hook(await claim(ctx, clock, "w1"))
    assert taken[other] == 3, "the other site's calls go out as if the host had no trouble"
    assert taken.get(throttled, 0) == (1 if "concurrency" in state else 0)


async def served_at(ctx: AppContext, hooks: list[str], when: datetime) -> None:
    """As if these webhooks were last served by a claim at `when`."""
    async with ctx.db.transaction() as conn:
        await conn.execute(
            webhooks.update().where(webhooks.c.id.in_(hooks)).values(claimed_at=when)
        )


async def test_webhooks_held_back_by_their_destinations_limit_do_not_block_the_claim(
    ctx: AppContext, site: SiteUsers
) -> None:
    """Many webhooks on one throttled host (one call at a time, and that one in flight)
    must not fill the claim's candidates while another webhook's delivery waits."""
    clock = FakeClock()
    shared = [(await make_webhook(ctx, site, f"{URL}/{i}"))[0] for i in range(30)]
    for hook in shared:
        await pile_up(ctx, site.site_id, hook, 2, now=clock.now())
    await set_destination(ctx, site.site_id, URL, clock.now(), concurrency=1)
    assert len(await claim(ctx, clock, "w0", limit=1)) == 1  # the host's one call
    healthy, _ = await make_webhook(ctx, site, OTHER)
    await pile_up(ctx, site.site_id, healthy, 1, now=clock.now())
    await served_at(ctx, shared, clock.now() - timedelta(hours=1))
    await served_at(ctx, [healthy], clock.now() - timedelta(seconds=1))
    assert by_hook(await claim(ctx, clock, "w1", limit=25)) == {healthy: 1}


async def test_ordered_webhooks_waiting_for_their_turn_do_not_block_the_claim(
    ctx: AppContext, site: SiteUsers
) -> None:
    """Ordered webhooks whose next version waits for the one in flight must not fill the
    claim's candidates while another webhook's delivery waits."""
    clock = FakeClock()
    ordered = [
        (await make_webhook(ctx, site, f"{URL}/{i}", orderedDelivery=True))[0] for i in range(30)
    ]
    first_versions = []
    for version in (1, 2):
        async with ctx.db.transaction() as conn:
            for i, hook in enumerate(ordered):
                event = version_event(site.site_id, f"wi-{i}", version)
                if version == 1:
                    first_versions.append(event.event_id)
                await outbox.enqueue(
                    conn,
                    event,
                    work_group_id=None,
                    template_id=None,
                    work_item_id=f"wi-{i}",
                    ordering_seq=version,
                    webhook_ids=[hook],
                    now=clock.now(),
                )
    firsts = await claim(ctx, clock, "w0", limit=30)
    assert len(firsts) == 30 and {job.event.event_id for job in firsts} == set(first_versions)
    healthy, _ = await make_webhook(ctx, site, OTHER)
    await pile_up(ctx, site.site_id, healthy, 1, now=clock.now())
    await served_at(ctx, ordered, clock.now() - timedelta(hours=1))
    await served_at(ctx, [healthy], clock.now() - timedelta(seconds=1))
    # A claim for 25 comes to 25 of the waiting webhooks (nothing to take), the next to the
    # other five and then the healthy one.
    assert await claim(ctx, clock, "w1", limit=25) == []
    assert by_hook(await claim(ctx, clock, "w1", limit=25)) == {healthy: 1}


# --- the caps: a destination's and a site's calls in flight ------------------------------------


def by_site(jobs: list[Job]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for job in jobs:
        counts[job.webhook.site_id] = counts.get(job.webhook.site_id, 0) + 1
    return counts


async def forget(ctx: AppContext, owner: str, jobs: list[Job]) -> None:
    async with ctx.db.transaction() as conn:
        await calls_in_flight.forget(conn, owner=owner, delivery_ids=[j.delivery_id for j in jobs])


async def test_a_destination_with_no_stored_state_is_held_to_the_destination_cap(
    ctx: AppContext, site: SiteUsers
) -> None:
    """A healthy host has no `destinations` row: the cap alone keeps its webhooks together
    within what one worker's pool has connections for."""
    clock = FakeClock()
    caps = claims.Caps(destination=5, site=100)
    hooks = [(await make_webhook(ctx, site, f"{URL}/{i}", maxConcurrency=100))[0] for i in (1, 2)]
    elsewhere, _ = await make_webhook(ctx, site, OTHER)
    for hook in hooks:
        await pile_up(ctx, site.site_id, hook, 20, now=clock.now())
    await pile_up(ctx, site.site_id, elsewhere, 3, now=clock.now())

    first = await claim(ctx, clock, "w1", caps=caps)
    assert sum(n for hook, n in by_hook(first).items() if hook in hooks) == 5
    assert by_hook(first)[elsewhere] == 3, "another destination is not held back"
    assert await claim(ctx, clock, "w2", caps=caps) == [], "the cap counts every worker's"
    await forget(ctx, "w1", [job for job in first if job.webhook.id in hooks][:2])
    assert len(await claim(ctx, clock, "w2", caps=caps)) == 2


async def test_a_destinations_adaptive_limit_counts_only_below_the_cap(
    ctx: AppContext, site: SiteUsers
) -> None:
    clock = FakeClock()
    caps = claims.Caps(destination=5, site=100)
    hook, _ = await make_webhook(ctx, site, URL, maxConcurrency=100)
    await pile_up(ctx, site.site_id, hook, 20, now=clock.now())
    # A limit grown to the old maximum is no licence beyond the cap ...
    await set_destination(ctx, site.site_id, URL, clock.now(), concurrency=100)
    assert len(await claim(ctx, clock, "w1", caps=caps)) == 5
    # ... and one halved below it is the limit.
    async with ctx.db.transaction() as conn:
        await conn.execute(destinations.update().values(concurrency=7))
        await conn.execute(sa.delete(flights))
    assert len(await claim(ctx, clock, "w2", caps=caps)) == 5
    async with ctx.db.transaction() as conn:
        await conn.execute(destinations.update().values(concurrency=3))
        await conn.execute(sa.delete(flights))
    assert len(await claim(ctx, clock, "w3", caps=caps)) == 3


async def test_a_site_is_held_to_its_cap_across_its_webhooks_and_destinations(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    clock = FakeClock()
    caps = claims.Caps(destination=100, site=7)
    hooks = [(await make_webhook(ctx, site, f"https://host{i}.example/hook"))[0] for i in range(10)]
    for hook in hooks:
        await pile_up(ctx, site.site_id, hook, 5, now=clock.now())
    neighbour, _ = await make_webhook(ctx, other_site, OTHER)
    await pile_up(ctx, other_site.site_id, neighbour, 3, now=clock.now())

    first = await claim(ctx, clock, "w1", caps=caps)
    assert by_site(first) == {site.site_id: 7, other_site.site_id: 3}
    clock.advance(1)
    await pile_up(ctx, other_site.site_id, neighbour, 2, now=clock.now())
    # Another worker: the site is at its cap, wherever its calls go; its neighbour is not.
    assert by_site(await claim(ctx, clock, "w2", caps=caps)) == {other_site.site_id: 2}
    await forget(ctx, "w1", [job for job in first if job.webhook.site_id == site.site_id][:3])
    assert by_site(await claim(ctx, clock, "w2", caps=caps)) == {site.site_id: 3}


async def test_concurrent_claims_together_keep_a_site_within_its_cap(
    ctx: AppContext, site: SiteUsers
) -> None:
    """Two claims at once for different webhooks of one site (on PostgreSQL, transactions
    that really overlap): the second counts the first's calls."""
    clock = FakeClock()
    caps = claims.Caps(destination=100, site=7)
    hooks = [(await make_webhook(ctx, site, f"https://host{i}.example/hook"))[0] for i in range(10)]
    for hook in hooks:
        await pile_up(ctx, site.site_id, hook, 5, now=clock.now())
    results = await asyncio.gather(
        *(claim(ctx, clock, f"w{i}", limit=10, caps=caps) for i in range(4))
    )
    assert sum(len(jobs) for jobs in results) == 7


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_claim_that_waited_for_the_lock_and_found_no_room_left_claims_nothing(
    ctx: AppContext, site: SiteUsers
) -> None:
    """The second claim sees room before the lock, waits for the first, then counts again
    and finds none: it leases nothing, and fails nothing."""
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL, maxConcurrency=2)
    await pile_up(ctx, site.site_id, hook, 5, now=clock.now())
    async with ctx.db.transaction() as first:
        taken = await claims.claim(
            first,
            owner="w1",
            now=clock.now(),
            lease=LEASE,
            limit=100,
            probe_interval=INTERVAL,
            caps=claims.Caps(destination=100, site=100),
        )
        assert len(taken) == 2
        second = asyncio.create_task(claim(ctx, clock, "w2"))
        await a_lock_is_awaited(ctx)
    assert await second == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize("change", ["suspended", "deactivated", "breaker opened", "paused"])
async def test_a_webhook_changed_while_a_claim_waited_for_its_row_gives_nothing(
    ctx: AppContext, site: SiteUsers, change: str
) -> None:
    """The candidates are read without locks; what a claim leases is decided under them. A
    webhook suspended or deactivated, or whose destination's breaker opened or a
    `Retry-After` paused it, by a transaction the claim waited for (a recorder's, which
    holds the webhook's row) gives nothing."""
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL, maxConcurrency=5)
    await pile_up(ctx, site.site_id, hook, 5, now=clock.now())
    later = clock.now() + INTERVAL
    async with ctx.db.transaction() as recorder:
        values: dict[str, object] = {"consecutive_failures": 5}
        if change == "suspended":
            values = {"suspended_at": clock.now(), "next_probe_at": later}
        elif change == "deactivated":
            values = {"active": False}
        await recorder.execute(webhooks.update().where(webhooks.c.id == hook).values(**values))
        if change in ("breaker opened", "paused"):
            breaker = (
                {"state": BreakerState.OPEN.value, "next_probe_at": later}
                if change == "breaker opened"
                else {"state": BreakerState.CLOSED.value, "paused_until": later}
            )
            await recorder.execute(
                destinations.insert().values(
                    origin=state_key(site.site_id, destination_of(URL)),
                    failures=5,
                    concurrency=100,
                    updated_at=clock.now(),
                    **breaker,
                )
            )
        waiting = asyncio.create_task(claim(ctx, clock, "w1"))
        await a_lock_is_awaited(ctx)
    assert await waiting == []


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_probe_goes_out_only_where_the_locks_show_room(
    ctx: AppContext, site: SiteUsers
) -> None:
    """A destination's probe counts under its site's cap like any call: a claim that waited
    for the site's lock while another filled the cap neither sends the probe nor spends the
    interval's turn."""
    clock = FakeClock()
    caps = claims.Caps(destination=100, site=2)
    probed, _ = await make_webhook(ctx, site, URL, maxConcurrency=5)
    other, _ = await make_webhook(ctx, site, OTHER, maxConcurrency=5)
    await pile_up(ctx, site.site_id, probed, 2, now=clock.now())
    await pile_up(ctx, site.site_id, other, 5, now=clock.now())
    await set_destination(
        ctx,
        site.site_id,
        URL,
        clock.now(),
        state=BreakerState.OPEN.value,
        failures=5,
        next_probe_at=clock.now(),
    )
    async with ctx.db.transaction() as conn:  # the probe's webhook has the first turn
        await conn.execute(
            webhooks.update().where(webhooks.c.id == other).values(claimed_at=clock.now())
        )
    async with ctx.db.transaction() as first:  # another claim, filling the site's cap
        await first.execute(
            sa.select(sites.c.id).where(sites.c.id == site.site_id).with_for_update()
        )
        waiting = asyncio.create_task(claim(ctx, clock, "w1", limit=4, caps=caps))
        await a_lock_is_awaited(ctx)
        taken = (
            (
                await first.execute(
                    sa.select(deliveries.c.id).where(deliveries.c.webhook_id == other).limit(2)
                )
            )
            .scalars()
            .all()
        )
        until = clock.now() + LEASE
        await first.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(taken))
            .values(lease_owner="w2", lease_expires_at=until)
        )
        await first.execute(
            flights.insert(),
            [
                {
                    "delivery_id": delivery_id,
                    "webhook_id": other,
                    "site_id": site.site_id,
                    "destination": destination_of(OTHER),
                    "owner": "w2",
                    "expires_at": until,
                }
                for delivery_id in taken
            ],
        )
    assert await waiting == []
    async with ctx.db.read() as conn:
        turn = (
            await conn.execute(
                sa.select(destinations.c.next_probe_at).where(
                    destinations.c.origin == state_key(site.site_id, destination_of(URL))
                )
            )
        ).scalar_one()
    assert turn == clock.now(), "the interval's probe is still to be sent"


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_claim_whose_jobs_cannot_be_read_hands_its_leases_back(
    ctx: AppContext, site: SiteUsers, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL the leases commit with the call that returns the jobs' rows: if the
    worker cannot make jobs of them, the claim hands them back, so they are claimed again
    at once rather than held, and counted against the webhook's limit, until the lease runs
    out."""
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL, maxConcurrency=1)
    await pile_up(ctx, site.site_id, hook, 3, now=clock.now())

    def unreadable(rows: object) -> list[Job]:
        raise ValueError("a row the worker cannot read")

    monkeypatch.setattr(queries, "jobs_of_claim", unreadable)
    with pytest.raises(ValueError, match="cannot read"):
        await claim(ctx, clock, "w1")
    monkeypatch.undo()
    assert len(await claim(ctx, clock, "w2")) == 1


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_claim_refuses_an_isolation_its_counts_would_be_wrong_under(
    ctx: AppContext, site: SiteUsers
) -> None:
    """Under REPEATABLE READ every statement of the claim would count from one snapshot,
    blind to claims committed while it waited for the locks: it fails, saying so, rather
    than go over a cap."""
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL)
    await pile_up(ctx, site.site_id, hook, 1, now=clock.now())
    async with ctx.db.transaction() as conn:
        await conn.execute(sa.text("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"))
        with pytest.raises(sa.exc.DBAPIError, match="needs READ COMMITTED"):
            await claim_on(conn, clock, "w1")


async def test_claims_go_round_the_sites_before_their_webhooks(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    """A site with a hundred webhooks with work has one turn in a round, as a site with one
    has, and an equal part of the claim."""
    clock = FakeClock()
    many = [(await make_webhook(ctx, site, f"{URL}/{i}"))[0] for i in range(100)]
    for hook in many:
        await pile_up(ctx, site.site_id, hook, 3, now=clock.now())
    single, _ = await make_webhook(ctx, other_site, OTHER)
    await pile_up(ctx, other_site.site_id, single, 20, now=clock.now())
    # Webhook by webhook, the hundred, served longer ago, would take the whole claim.
    await served_at(ctx, many, clock.now() - timedelta(hours=1))
    await served_at(ctx, [single], clock.now() - timedelta(seconds=1))

    first = await claim(ctx, clock, "w1", limit=10)
    assert by_site(first) == {site.site_id: 5, other_site.site_id: 5}
    clock.advance(1)
    second = await claim(ctx, clock, "w1", limit=10)
    assert by_site(second) == {site.site_id: 5, other_site.site_id: 5}
    # The busy site's part goes round its own webhooks too.
    assert not {j.webhook.id for j in first} & {
        j.webhook.id for j in second if j.webhook.id in many
    }


def test_the_caps_follow_the_pool_and_the_senders_unless_set() -> None:
    """By default a destination gets what one worker's pool has connections for (so the
    delivery bench, with 64 connections per host, keeps its 64 calls to its one receiver)
    and a site half the senders."""
    assert claims.Caps.from_settings(Settings()) == claims.Caps(destination=20, site=32)
    bench = Settings(worker_concurrency=64, connections_per_host=64)
    assert claims.Caps.from_settings(bench) == claims.Caps(destination=64, site=32)
    chosen = Settings(destination_max_in_flight=150, site_max_in_flight=64)
    caps = claims.Caps.from_settings(chosen)
    assert caps == claims.Caps(destination=150, site=64) and caps.ceiling == 100
    with pytest.raises(SettingsError, match="DOCUHOOKS_SITE_MAX_IN_FLIGHT"):
        claims.Caps.from_settings(Settings(site_max_in_flight=-1))


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_claims_jobs_are_the_rows_load_jobs_reads(ctx: AppContext, site: SiteUsers) -> None:
    """On PostgreSQL the claim returns its jobs' rows, the webhook's as JSON: each job is
    what `load_jobs` reads for the same delivery, value for value and type for type (times
    in UTC to the microsecond, JSON lists, booleans, nulls)."""
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL, maxConcurrency=5, orderedDelivery=True)
    moment = datetime(2026, 12, 6, 17, 59, 58, 123456, tzinfo=clock.now().tzinfo)
    async with ctx.db.transaction() as conn:
        # Every kind of column set: times with and without microseconds, a JSON list, nulls.
        await conn.execute(
            webhooks.update()
            .where(webhooks.c.id == hook)
            .values(
                work_group_ids=["wg-1", "wg-2"],
                # An integer past 64 bits, which only a JSON column could hold.
                template_ids=[123456789012345678901234567890, -18446744073709551616],
                previous_secret_expires_at=moment,
                first_failure_at=moment.replace(microsecond=0),
                # The first second of the calendar: before it in New York's time.
                next_probe_at=datetime(1, 1, 1, 0, 0, 1, tzinfo=moment.tzinfo),
                consecutive_failures=2,
                status_reason=None,
            )
        )
    await pile_up(ctx, site.site_id, hook, 2, now=clock.now())

    async with ctx.db.autocommit() as conn:
        # `to_json` writes times with the session's offset: a server not on UTC.
        await conn.execute(sa.text("SET TIME ZONE 'America/New_York'"))
        try:
            jobs = await claim_on(conn, clock, "w1")
        finally:
            await conn.execute(sa.text("RESET TIME ZONE"))

    assert len(jobs) == 2
    async with ctx.db.read() as conn:
        read = await queries.load_jobs(conn, [job.delivery_id for job in jobs])
    assert jobs == read
    for claimed, loaded in zip(jobs, read, strict=True):
        assert tuple(map(type, claimed.webhook)) == tuple(map(type, loaded.webhook))
    expires = jobs[0].webhook.previous_secret_expires_at
    assert (expires, expires.utcoffset()) == (moment, timedelta(0))
    assert jobs[0].webhook.work_group_ids == ["wg-1", "wg-2"]


async def leased_by(ctx: AppContext, owner: str) -> tuple[int, int]:
    """(deliveries leased by `owner`, its `flights` rows), read from another connection."""
    async with ctx.db.transaction() as conn:
        leases = await conn.scalar(
            sa.select(sa.func.count()).where(deliveries.c.lease_owner == owner)
        )
        rows = await conn.scalar(sa.select(sa.func.count()).where(flights.c.owner == owner))
    return leases or 0, rows or 0


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_claim_releases_its_locks_before_its_jobs_are_read(
    ctx: AppContext, site: SiteUsers
) -> None:
    """The sites' and webhooks' locks last while the leases are taken, not while the jobs
    are read and sent: a claim whose read waits (here for a lock on `events`) has committed
    its leases and let go of its site, which another claim, the recorder or an edit can
    take meanwhile."""
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL)
    await pile_up(ctx, site.site_id, hook, 2, now=clock.now())
    async with ctx.db.engine.connect() as blocker:
        await blocker.execute(sa.text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
        claiming = asyncio.create_task(claim(ctx, clock, "w1"))
        await a_lock_is_awaited(ctx)
        assert not claiming.done()
        assert await leased_by(ctx, "w1") == (2, 2)
        async with ctx.db.transaction() as conn:
            await conn.execute(sa.text("SET LOCAL lock_timeout = '5s'"))
            for table, key in ((sites, site.site_id), (webhooks, hook)):
                locked = await conn.scalar(
                    sa.select(table.c.id).where(table.c.id == key).with_for_update(nowait=True)
                )
                assert locked == key
        await blocker.rollback()
    assert len(await claiming) == 2


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
@pytest.mark.parametrize(
    ("setting", "reason"),
    [("lock_timeout", "lock timeout"), ("statement_timeout", "statement timeout")],
)
async def test_a_claim_whose_jobs_the_database_cannot_read_hands_its_leases_back(
    ctx: AppContext, site: SiteUsers, setting: str, reason: str
) -> None:
    """If reading the jobs fails after the leases were kept (a timeout, on `events` locked
    as a migration's `ALTER TABLE` would), the claim says why, and the leases and their
    `flights` rows are back at once."""
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL)
    await pile_up(ctx, site.site_id, hook, 2, now=clock.now())
    async with ctx.db.engine.connect() as blocker, ctx.db.autocommit() as conn:
        await blocker.execute(sa.text("LOCK TABLE events IN ACCESS EXCLUSIVE MODE"))
        await conn.execute(sa.text(f"SET {setting} = '300ms'"))
        try:
            with pytest.raises(queries.ClaimReadError, match=reason):
                await claim_on(conn, clock, "w1")
        finally:
            await conn.execute(sa.text(f"RESET {setting}"))
            await blocker.rollback()
    assert await leased_by(ctx, "w1") == (0, 0)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_claim_whose_webhook_row_cannot_be_decoded_hands_its_leases_back(
    ctx: AppContext, site: SiteUsers
) -> None:
    """A webhook's JSON column the worker cannot decode (an integer of 5,000 digits, past
    Python's limit) fails the claim, and its leases and `flights` rows go back."""
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL)
    await pile_up(ctx, site.site_id, hook, 2, now=clock.now())
    async with ctx.db.transaction() as conn:
        await conn.execute(
            sa.text("UPDATE webhooks SET work_group_ids = CAST(:huge AS json) WHERE id = :id"),
            {"huge": "9" * 5000, "id": hook},
        )
    with pytest.raises(ValueError, match="digits"):
        await claim(ctx, clock, "w1")
    assert await leased_by(ctx, "w1") == (0, 0)


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_a_claims_jobs_read_infinite_times_as_load_jobs_does(
    ctx: AppContext, site: SiteUsers
) -> None:
    """PostgreSQL's `infinity` and `-infinity`, which `to_json` writes as words, are the
    ends of Python's range, as asyncpg reads them."""
    clock = FakeClock()
    hook, _ = await make_webhook(ctx, site, URL)
    await pile_up(ctx, site.site_id, hook, 1, now=clock.now())
    async with ctx.db.transaction() as conn:
        await conn.execute(
            sa.text(
                "UPDATE webhooks SET previous_secret_expires_at = 'infinity', "
                "first_failure_at = '-infinity' WHERE id = :id"
            ),
            {"id": hook},
        )
    (job,) = await claim(ctx, clock, "w1")
    async with ctx.db.read() as conn:
        (loaded,) = await queries.load_jobs(conn, [job.delivery_id])
    assert job == loaded


def test_every_webhook_column_is_of_a_kind_the_claim_reads_from_json() -> None:
    """`to_json` writes a Numeric, an interval, a date or bytes in forms the claim's reader
    does not convert: a column of such a kind needs it taught first."""
    unreadable = [
        column.name for column in webhooks.c if not isinstance(column.type, queries.JSON_READABLE)
    ]
    assert unreadable == []
