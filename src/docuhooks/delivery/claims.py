"""The worker's claim: which due deliveries go next, fairly and within every limit.

A claim takes due deliveries *site by site, then webhook by webhook*, not oldest-first over
the whole table:

1. **Candidates**: active, unsuspended webhooks with a due, unleased delivery, below their
   `maxConcurrency` in flight, whose site is below `site_max_in_flight`, whose destination
   is below `destination_max_in_flight` (all sites' calls) and whose site is below its
   adaptive limit there, not paused by a `Retry-After` the site was given, and whose
   site's breaker of it is closed or due a probe (each site keeps its own state of a
   destination: `core.destinations`). They come *round the sites*:
   first each site's longest unserved webhook (`webhooks.claimed_at`, set for every
   candidate given a share, whether its lease found a delivery or not; one left without a
   share keeps its place, so a shared destination's room alternates), then each site's
   second, and so on; so a site with a hundred webhooks has one turn in a round, as a site
   with one has. Its cost grows with the number of webhooks that have work, never with the
   number of deliveries waiting.
2. **Shares**: each site may take an equal share of the claim, and each of its candidates an
   equal share of the site's, at most its room under `maxConcurrency`, under its site's cap
   under its destination's `destination_max_in_flight` and under its site's adaptive
   limit there (all counted from `flights`, the table of calls in flight, across all
   workers: a row from a delivery's lease, claimed ahead included, until its worker's next
   claim or its recorder sees that its call has ended). A site's breaker of a destination
   that is open and due a probe gives one delivery, to one worker: the probe's turn is
   taken by a conditional update of its row, with the host's turn (`probe_turns`), which
   every site shares. So while a host fails every probe, the whole installation sends it
   one per interval, the sites whose breakers of it are open taking turns (the round
   above). A probe the host's own server answers (`core.destinations.host_answered`) gives
   the turn back at once (`delivery.destinations`), as does one whose lease finds nothing
   it may send.
3. **Leases**: each share is taken from the webhook's oldest due deliveries (in order, for an
   ordered webhook) through a partial index, leased, and written to `flights`.

On PostgreSQL everything after the candidates is one call of the procedure
`docuhooks_claim_and_read` (migration 0024), run with no transaction around it: it calls
`docuhooks_claim` (0019), commits, and reads the leased jobs' rows (`docuhooks_jobs`), so
the locks are released before the jobs are read and sent (in a transaction, behind a
pooler in transaction mode, the two functions run in it, and the locks last until it
commits). `docuhooks_claim` locks the sites of the webhooks given a share (`FOR NO KEY
UPDATE`, in id order, so two claims never deadlock), then their webhooks' rows, deletes the
rows of the worker's calls that have ended, and holds each share to the room it counts
again under the locks before leasing it: every claim that could add a call to a webhook or
a site holds that site's row, so two workers cannot both see room for the same call, even
for two webhooks of one site. (Locking the webhook rows would not do: two claims for
different webhooks of one site would each see the site's room.) Nothing else writes a
`sites` row, and producers' inserts take only a key-share lock on it, which this does not
block. A destination shared by several sites is not
serialised (it may have no row to lock): two workers claiming at the same instant for
different sites may together go over its cap by a claim's share, but no one worker ever
holds more than the cap, as each sees its own calls: so its senders never wait for one of
its pool's connections. On SQLite a claim is a write transaction, one at a time.

Deliveries left unclaimed stay in the store, holding no sender, connection or memory.

The statements are built once in `delivery.claim_statements`; the claim writes and
deletes its `flights` rows through `delivery.calls_in_flight` (the recorder, the heartbeat
and the hand-backs in `delivery.queries` write them too).
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.destinations import MAX_CONCURRENCY, BreakerState, split_state_key, state_key
from docuhooks.delivery import calls_in_flight, queries
from docuhooks.delivery import claim_statements as statements
from docuhooks.delivery.queries import Job
from docuhooks.settings import Settings
from docuhooks.store.prepared import is_autocommit
from docuhooks.store.schema import destinations, probe_turns

__all__ = ["Caps", "claim"]


@dataclass(frozen=True, slots=True)
class Caps:
    """Calls in flight at most, installation-wide: to one destination, and for one site."""

    destination: int = 20
    site: int = 32

    def __post_init__(self) -> None:
        if self.destination < 1 or self.site < 1:
            raise ValueError("the caps on calls in flight must be at least 1")

    @classmethod
    def from_settings(cls, settings: Settings) -> Caps:
        """The caps, with their defaults filled in.

        A destination's default is `connections_per_host`: more calls to one host than a
        worker's pool has connections for would wait for one, and a wait its timeout ends is
        recorded as a `timeout`, a breaker failure, though nothing was sent. A site's default
        is half of `worker_concurrency`: one site may use half a worker's senders, and the
        other sites always have the other half, however many webhooks or dead hosts it has
        (all of them would leave nothing; less would slow a busy site while others idle)."""
        return cls(
            destination=settings.destination_max_in_flight or max(1, settings.connections_per_host),
            site=settings.site_max_in_flight or max(1, settings.worker_concurrency // 2),
        )

    @property
    def ceiling(self) -> int:
        """The adaptive limit's ceiling (`BreakerPolicy.max_concurrency`): a stored limit
        at or above it is no limit beyond the destination cap."""
        return min(self.destination, MAX_CONCURRENCY)


@dataclass(slots=True)
class _Candidate:
    webhook_id: str
    site_id: str
    destination: str
    room: int
    #: Its site's breaker of the destination is open or half open: this would be its probe.
    probe: bool
    #: Its site's adaptive limit on calls to the destination, if one is below the ceiling.
    adaptive_limit: int | None
    #: Calls in flight to its destination, for its site, and for its site to its
    #: destination (counted only with an adaptive limit), as the candidates' statement
    #: counted them (what `_shares` goes by on SQLite, where no other claim runs meanwhile).
    at_destination: int
    at_site: int
    at_site_destination: int

    @property
    def state_key(self) -> str:
        """Where its site's state of its destination is kept (the probe's turn, the limit)."""
        return state_key(self.site_id, self.destination)


async def claim(
    conn: AsyncConnection,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    probe_interval: timedelta,
    caps: Caps,
    ended: Sequence[str] = (),
    ended_since: Callable[[], Sequence[Job]] = tuple,
) -> list[Job]:
    """Lease up to `limit` due deliveries fairly across sites and their webhooks (see the
    module notes). On SQLite run it in a transaction; on PostgreSQL it needs none
    (`Database.autocommit`, as the worker runs it: `_claim_on_postgresql`), and a caller's
    transaction only holds the locks longer.

    `ended` are deliveries of `owner` whose calls have ended though their outcomes are not
    written yet: their `flights` rows go first, so they no longer count. (On PostgreSQL the
    candidates' statement leaves them out of its counts, and `docuhooks_claim` deletes them
    once it holds the locks.) On PostgreSQL, `ended_since` is asked once the candidates are
    read for the leased jobs of `owner` whose calls have ended since (the worker's calls go
    on during the round trip): their room goes to this claim too, rather than the next."""
    until = now + lease
    if conn.dialect.name == "postgresql":
        return await _claim_on_postgresql(
            conn,
            owner=owner,
            now=now,
            until=until,
            limit=limit,
            probe_interval=probe_interval,
            caps=caps,
            ended=ended,
            ended_since=ended_since,
        )
    await calls_in_flight.forget(conn, owner=owner, delivery_ids=list(ended))
    candidates = await _candidates(conn, now, limit, caps, owner, ended)
    if not candidates:
        return []
    alone = _alone(candidates, limit)
    shares = await _shares(
        candidates,
        _in_flight_at(candidates),
        limit,
        caps,
        functools.partial(_take_probe_turn, conn, now=now, probe_interval=probe_interval),
    )
    leased: list[str] = []
    lease_statement = statements.lease_by_webhook(conn.dialect.name)
    for candidate, share in shares:
        rows = await lease_statement.all(
            conn,
            {
                "hook": candidate.webhook_id,
                "now": now,
                "n": share,
                "owner": owner,
                "until": until,
            },
        )
        if candidate.probe and not rows:
            await _give_back_probe_turn(conn, candidate.state_key, now=now)
        leased += [row.id for row in rows]
    # Every candidate given a share has had its turn, whether its lease found anything or not
    # (an ordered webhook waiting for the version in flight): the next claim starts with the
    # ones after it. One left without a share (its destination's or site's room went to
    # another candidate of this claim) keeps its place, so that room alternates.
    served = [candidate.webhook_id for candidate, _ in shares]
    if served and not alone:
        await statements.SERVED.execute(conn, {"ids": served, "now": now})
    if not leased:
        return []
    jobs = await queries.load_jobs(conn, leased)
    await calls_in_flight.record(conn, jobs, owner=owner, until=until)
    return jobs


def _alone(candidates: list[_Candidate], limit: int) -> bool:
    """Only one webhook has claimable work (the candidates were not cut at the limit): no
    other waits its turn, so the round-robin cursor is not worth a write. It moves at the
    next claim where webhooks share, which puts this one at most one claim early."""
    return len(candidates) == 1 and limit > 1


async def _claim_on_postgresql(
    conn: AsyncConnection,
    *,
    owner: str,
    now: datetime,
    until: datetime,
    limit: int,
    probe_interval: timedelta,
    caps: Caps,
    ended: Sequence[str],
    ended_since: Callable[[], Sequence[Job]],
) -> list[Job]:
    """`claim` on PostgreSQL, in two statements that need no transaction around them (the
    worker runs them in `Database.autocommit`): the candidates, read without locks; one
    `CALL` of `docuhooks_claim_and_read` (migration 0024), which takes the shares decided
    from them (`docuhooks_claim`, 0019), commits, and returns the leased jobs
    (`docuhooks_jobs`). In a transaction (behind a pooler in transaction mode) the procedure
    cannot commit, and the two functions are called one after the other.

    The call locks the candidates' sites, then their webhooks' rows, forgets the `ended`
    calls' `flights` rows, moves the turns, and holds each share to the room it counts under
    the locks (a claim that held them first may have taken what the candidates showed)
    before it leases it and writes its `flights` rows; a destination's probe turn is taken
    there too. So every cap holds across workers, the sites stay locked only while
    `docuhooks_claim` runs on the server (not while the jobs are read and sent; in a
    transaction, until it commits), and a claim that finds nothing costs one round trip.
    (The `ended` rows are then left to the recorder, which deletes them with the
    outcomes.)

    The calls that end while the candidates are read (`ended_since`) join `ended`, and the
    candidates' counts are lowered by them: under load a claim would otherwise find most
    of the last claim's calls still counted, and bring only the room they left."""
    candidates = await _candidates(conn, now, limit, caps, owner, ended)
    if not candidates:
        return []
    late = ended_since()
    if late:
        _without(candidates, late)
        ended = [*ended, *(job.delivery_id for job in late)]

    async def taken_in_the_call(_origin: str) -> bool:
        return True  # `docuhooks_claim` takes the probe's turn, or leases nothing for it

    shares = await _shares(candidates, _in_flight_at(candidates), limit, caps, taken_in_the_call)
    if not shares:
        return []
    params = {
        "owner": owner,
        "ended": list(ended),
        "sites": sorted({c.site_id for c, _ in shares}),
        "hooks": [c.webhook_id for c, _ in shares],
        "shares": [share for _, share in shares],
        "probes": [c.probe for c, _ in shares],
        "site_cap": caps.site,
        "destination_cap": caps.destination,
        "ceiling": caps.ceiling,
        "stamp_turns": not _alone(candidates, limit),
        "now": now,
        "until": until,
        "probe_interval": probe_interval,
    }
    if is_autocommit(conn):
        (row,) = await statements.CLAIM_AND_READ.all(conn, params)
        leased: list[str] = row.leased or []
        text = row.jobs
    else:
        # The procedure's commit cannot end a caller's transaction (behind PgBouncer in
        # transaction pooling, `Database.autocommit` is one): the two functions it calls.
        leased = [row.id for row in await statements.CLAIM.all(conn, params)]
        text = (await statements.READ_JOBS.all(conn, {"ids": leased}))[0][0] if leased else None
    if not leased:
        return []
    try:
        return queries.jobs_of_claim(text)
    except Exception:
        # The leases are committed, and this worker will not hold them: hand them back, so
        # neither they nor their `flights` rows wait out the lease (counted against the
        # caps meanwhile). If the database is away this fails too, and the leases run out.
        with contextlib.suppress(Exception):
            await queries.release(conn, owner=owner, delivery_ids=leased)
        raise


async def _candidates(
    conn: AsyncConnection,
    now: datetime,
    limit: int,
    caps: Caps,
    owner: str,
    ended: Sequence[str],
) -> list[_Candidate]:
    params = {
        "now": now,
        "webhooks": limit,
        "site_cap": caps.site,
        "destination_cap": caps.destination,
        "ceiling": caps.ceiling,
    }
    if conn.dialect.name == "postgresql":
        # The calls `ended` are left out of the counts: their rows go in the claim's call.
        rows = await statements.CANDIDATES_ON_POSTGRESQL.all(
            conn, params | {"owner": owner, "ended": list(ended)}
        )
    else:
        # The ended calls' rows are gone already (`claim`).
        rows = await statements.CANDIDATES.all(conn, params)
    return [
        _Candidate(
            webhook_id=row.id,
            site_id=row.site_id,
            destination=row.destination,
            room=row.max_concurrency - row.in_flight,
            probe=row.state is not None and row.state != BreakerState.CLOSED,
            adaptive_limit=(
                row.concurrency
                if row.concurrency is not None and row.concurrency < caps.ceiling
                else None
            ),
            at_destination=row.at_destination,
            at_site=row.at_site,
            at_site_destination=row.at_site_destination,
        )
        for row in rows
    ]


def _without(candidates: list[_Candidate], ended: Sequence[Job]) -> None:
    """Lower the candidates' counts of calls in flight by the `ended` calls (of `owner`,
    leased, so counted by the candidates' statement; if one was not, its share is too large
    by one, and `docuhooks_claim`, counting again under the locks, holds it to the room)."""
    by_webhook = Counter(job.webhook.id for job in ended)
    by_destination = Counter(job.webhook.destination for job in ended)
    by_site = Counter(job.webhook.site_id for job in ended)
    by_key = Counter(state_key(job.webhook.site_id, job.webhook.destination) for job in ended)
    for c in candidates:
        c.room += by_webhook[c.webhook_id]
        c.at_destination -= by_destination[c.destination]
        c.at_site -= by_site[c.site_id]
        if c.adaptive_limit is not None:
            c.at_site_destination -= by_key[c.state_key]


@dataclass(frozen=True, slots=True)
class _InFlight:
    """Calls in flight across all workers, to the candidates' destinations, for their
    sites, and for their sites to their destinations (by `state_key`)."""

    at_destination: Counter[str]
    at_site: Counter[str]
    at_site_destination: Counter[str]


def _in_flight_at(candidates: list[_Candidate]) -> _InFlight:
    """The calls in flight to the candidates' destinations and for their sites, as the
    candidates' statement counted them. On SQLite the claim is the only writer from its
    first statement on, so those counts are still true; on PostgreSQL `docuhooks_claim`
    holds each share to what it counts again under the locks."""
    return _InFlight(
        Counter({c.destination: c.at_destination for c in candidates}),
        Counter({c.site_id: c.at_site for c in candidates}),
        Counter({c.state_key: c.at_site_destination for c in candidates}),
    )


async def _shares(
    candidates: list[_Candidate],
    in_flight: _InFlight,
    limit: int,
    caps: Caps,
    take_probe_turn: Callable[[str], Awaitable[bool]],
) -> list[tuple[_Candidate, int]]:
    """How many deliveries each candidate takes, in the candidates' order (those after the
    last share, or whose site's part is spent, are left for the next claim).

    Each site has an equal part of the claim, split equally among its candidates; no share
    goes beyond the webhook's, the site's, the destination's room, or the site's room under
    its adaptive limit there. A site's breaker of a destination open to a probe gives one
    delivery, to its first candidate, if `take_probe_turn` (given its `state_key`) wins
    this interval's turn; one site's probe of a destination per claim."""
    destination_room = {
        c.destination: caps.destination - in_flight.at_destination[c.destination]
        for c in candidates
    }
    adaptive_room = {
        c.state_key: c.adaptive_limit - in_flight.at_site_destination[c.state_key]
        for c in candidates
        if c.adaptive_limit is not None
    }
    per_site = Counter(c.site_id for c in candidates)
    site_room = {site: caps.site - in_flight.at_site[site] for site in per_site}
    site_part = max(1, math.ceil(limit / len(per_site)))
    site_taken: Counter[str] = Counter()
    left = limit
    probed: set[str] = set()
    shares: list[tuple[_Candidate, int]] = []
    for c in candidates:
        if left <= 0:
            break
        site_left = min(site_part - site_taken[c.site_id], site_room[c.site_id])
        if site_left <= 0:
            continue  # its site has had its part: this webhook keeps its turn
        key = c.state_key
        if c.probe:
            # One probe of a host per claim: its turn is the whole installation's, so a
            # second site's probe there would only lose it (the next claim's round gives
            # it to the site whose turn is next).
            if c.destination in probed or not await take_probe_turn(key):
                continue
            probed.add(c.destination)
            share = 1
        else:
            fair = max(1, math.ceil(site_part / per_site[c.site_id]))
            share = min(
                fair,
                c.room,
                left,
                site_left,
                destination_room[c.destination],
                adaptive_room.get(key, left),
            )
        if share > 0:
            shares.append((c, share))
            left -= share
            site_taken[c.site_id] += share
            site_room[c.site_id] -= share
            destination_room[c.destination] -= share
            if key in adaptive_room:
                adaptive_room[key] -= share
    return shares


async def _take_probe_turn(
    conn: AsyncConnection, origin: str, *, now: datetime, probe_interval: timedelta
) -> bool:
    """Take the probe of a site's breaker of a destination (`origin`, its `state_key`) for
    this interval, with the host's turn, which every site shares; False if another claim
    has either. (SQLite, where a claim is a write transaction, one at a time: on
    PostgreSQL `docuhooks_claim` takes them, migration 0027.)"""
    _, destination = split_state_key(origin)
    host_turn = await conn.scalar(
        sa.select(probe_turns.c.next_at).where(probe_turns.c.destination == destination)
    )
    if host_turn is not None and host_turn > now:
        return False
    result = await conn.execute(
        destinations.update()
        .where(
            destinations.c.origin == origin,
            destinations.c.state != BreakerState.CLOSED.value,
            destinations.c.next_probe_at <= now,
        )
        .values(
            state=BreakerState.HALF_OPEN.value,
            next_probe_at=now + probe_interval,
            updated_at=now,
        )
    )
    if result.rowcount != 1:
        return False
    taken = sqlite.insert(probe_turns).values(destination=destination, next_at=now + probe_interval)
    await conn.execute(
        taken.on_conflict_do_update(
            index_elements=[probe_turns.c.destination], set_={"next_at": taken.excluded.next_at}
        )
    )
    return True


async def _give_back_probe_turn(conn: AsyncConnection, origin: str, *, now: datetime) -> None:
    """A probe whose lease found nothing it may send (an ordered webhook's next delivery is
    not due yet): the host's turn goes back to the other sites, and the site's breaker
    (`origin`, its `state_key`) tries again at its next interval. (SQLite: on PostgreSQL
    `docuhooks_claim` does the same, migration 0027.)"""
    _, destination = split_state_key(origin)
    await conn.execute(
        probe_turns.update().where(probe_turns.c.destination == destination).values(next_at=now)
    )
    await conn.execute(
        destinations.update()
        .where(
            destinations.c.origin == origin,
            destinations.c.state == BreakerState.HALF_OPEN.value,
        )
        .values(state=BreakerState.OPEN.value, updated_at=now)
    )
