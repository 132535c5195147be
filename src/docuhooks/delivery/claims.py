"""The worker's claim: which due deliveries go next, fairly and within every limit.

A claim takes due deliveries *webhook by webhook*, not oldest-first over the whole table:

1. **Candidates**: active, unsuspended webhooks with a due, unleased delivery, below their
   `maxConcurrency` in flight, whose destination is not paused by a `Retry-After`, not at its
   adaptive limit, and whose breaker is closed or due a probe; the longest unserved first
   (`webhooks.claimed_at`, set for every candidate a claim comes to, whether it took any
   delivery or not), so claims go round the webhooks, and so round the sites. Its cost grows
   with the number of webhooks that have work, never with the number of deliveries waiting.
2. **Shares**: each candidate may take an equal share of the claim, at most its room under
   `maxConcurrency` and under its destination's adaptive limit (both counted from `flights`,
   the table of calls in flight, across all workers). A destination whose breaker is open
   and due a probe gives one delivery, to one worker: the probe's turn is taken by a
   conditional update of its row, so the whole installation sends one probe per interval.
3. **Leases**: each share is taken from the webhook's oldest due deliveries (in order, for an
   ordered webhook) through a partial index, leased, and written to `flights`.

On PostgreSQL the candidates are locked (`FOR NO KEY UPDATE`, in id order, so two claims
never deadlock) and their calls in flight counted again under the lock: two workers cannot
both see room for the same call. Producers' inserts take only a key-share lock on a webhook,
which this does not block. On SQLite a claim is a write transaction, one at a time.

Deliveries left unclaimed stay in the store, holding no sender, connection or memory.
"""

from __future__ import annotations

import functools
import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.destinations import MAX_CONCURRENCY, BreakerState
from docuhooks.delivery import queries
from docuhooks.delivery.queries import Job
from docuhooks.store.prepared import Prepared
from docuhooks.store.schema import deliveries, destinations, flights, webhooks

__all__ = ["claim", "forget_flights", "record_flights"]


@dataclass(slots=True)
class _Candidate:
    webhook_id: str
    destination: str
    room: int
    #: The destination's breaker is open or half open: this would be its probe.
    probe: bool
    #: The destination's adaptive limit, when it has one below the maximum.
    destination_limit: int | None


async def claim(
    conn: AsyncConnection,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    limit: int,
    probe_interval: timedelta,
) -> list[Job]:
    """Lease up to `limit` due deliveries fairly across webhooks (see the module notes);
    run it in a transaction."""
    until = now + lease
    candidates = await _candidates(conn, now, limit)
    if not candidates:
        return []
    # Only one webhook has claimable work (the candidates were not cut at the limit): no
    # other waits its turn, so the round-robin cursor is not worth a statement. It moves at
    # the next claim where webhooks share, which puts this one at most one claim early.
    alone = len(candidates) == 1 and limit > 1
    if conn.dialect.name == "postgresql":
        candidates = await _locked(conn, candidates, now)
    shares, considered = await _shares(conn, candidates, now, limit, probe_interval)
    leased: list[str] = []
    lease_statement = _lease_by_webhook(conn.dialect.name)
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
        leased += [row.id for row in rows]
    # Every candidate this claim came to has had its turn, whether it took anything or not
    # (an ordered webhook waiting for the version in flight, a destination whose room went to
    # another of its webhooks): the next claim starts with the ones after it.
    if considered and not alone:
        await _SERVED.execute(conn, {"ids": considered, "now": now})
    if not leased:
        return []
    jobs = await queries.load_jobs(conn, leased)
    await record_flights(conn, jobs, owner=owner, until=until)
    return jobs


async def _candidates(conn: AsyncConnection, now: datetime, limit: int) -> list[_Candidate]:
    rows = await _CANDIDATES.all(conn, {"now": now, "webhooks": limit})
    return [
        _Candidate(
            webhook_id=row.id,
            destination=row.destination,
            room=row.max_concurrency - row.in_flight,
            probe=row.state is not None and row.state != BreakerState.CLOSED,
            destination_limit=(
                row.concurrency
                if row.concurrency is not None and row.concurrency < MAX_CONCURRENCY
                else None
            ),
        )
        for row in rows
    ]


async def _locked(
    conn: AsyncConnection, candidates: list[_Candidate], now: datetime
) -> list[_Candidate]:
    """Lock the candidates' rows, then count their calls in flight again, now that no other
    claim can add to them.

    The count is a statement of its own, after the lock: a statement sees what was committed
    when it began (READ COMMITTED), and the locking one began before the claim it waited for
    committed its flights, so a count in it would miss them and let both claims fill the
    same room."""
    ids = sorted(candidate.webhook_id for candidate in candidates)
    await conn.execute(_LOCK_WEBHOOKS, {"ids": ids})
    rows = (await conn.execute(_ROOM, {"ids": ids, "now": now})).all()
    room = {row.id: row.max_concurrency - row.in_flight for row in rows}
    for candidate in candidates:
        candidate.room = room.get(candidate.webhook_id, 0)
    return [candidate for candidate in candidates if candidate.room > 0]


async def _shares(
    conn: AsyncConnection,
    candidates: list[_Candidate],
    now: datetime,
    limit: int,
    probe_interval: timedelta,
) -> tuple[list[tuple[_Candidate, int]], list[str]]:
    """How many deliveries each candidate takes, in the candidates' order; and the
    candidates the claim came to (those after the last share are left for the next)."""
    limited = {c.destination for c in candidates if c.destination_limit is not None}
    destination_room: dict[str, int] = {}
    if limited:
        busy = await _destination_in_flight(conn, sorted(limited), now)
        for c in candidates:
            if c.destination_limit is not None:
                destination_room[c.destination] = c.destination_limit - busy[c.destination]
    fair = max(1, math.ceil(limit / len(candidates)))
    left = limit
    probed: set[str] = set()
    shares: list[tuple[_Candidate, int]] = []
    considered: list[str] = []
    for c in candidates:
        if left <= 0:
            break
        considered.append(c.webhook_id)
        if c.probe:
            if c.destination in probed or not await _take_probe_turn(
                conn, c.destination, now, probe_interval
            ):
                continue
            probed.add(c.destination)
            share = 1
        else:
            share = min(fair, c.room, left)
            if c.destination in destination_room:
                share = min(share, destination_room[c.destination])
                destination_room[c.destination] -= max(share, 0)
        if share > 0:
            shares.append((c, share))
            left -= share
    return shares, considered


async def _destination_in_flight(
    conn: AsyncConnection, origins: list[str], now: datetime
) -> Counter[str]:
    rows = await conn.execute(
        sa.select(flights.c.destination, sa.func.count())
        .where(flights.c.destination.in_(origins), flights.c.expires_at >= now)
        .group_by(flights.c.destination)
    )
    return Counter({origin: count for origin, count in rows.all()})


async def _take_probe_turn(
    conn: AsyncConnection, origin: str, now: datetime, probe_interval: timedelta
) -> bool:
    """Take the destination's probe for this interval; False if another claim has it."""
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
    return result.rowcount == 1


# --- flights: the calls in flight ------------------------------------------------------------


async def record_flights(
    conn: AsyncConnection, jobs: Sequence[Job], *, owner: str, until: datetime
) -> None:
    """Write a `flights` row for each job just leased (replacing a dead worker's)."""
    if not jobs:
        return
    rows = [
        {
            "delivery_id": job.delivery_id,
            "webhook_id": job.webhook.id,
            "destination": job.webhook.destination,
            "owner": owner,
            "expires_at": until,
        }
        for job in jobs
    ]
    await _upsert_flights(conn.dialect.name).executemany(conn, rows)


async def forget_flights(conn: AsyncConnection, *, owner: str, delivery_ids: list[str]) -> None:
    """The outcomes of these deliveries are written: they are no longer in flight."""
    if delivery_ids:
        await _FORGET.execute(conn, {"ids": delivery_ids, "owner": owner})


@functools.cache
def _upsert_flights(dialect: str) -> Prepared:
    insert: Any = postgresql.insert(flights) if dialect == "postgresql" else sqlite.insert(flights)
    return Prepared(
        insert.on_conflict_do_update(
            index_elements=[flights.c.delivery_id],
            set_={
                "owner": insert.excluded.owner,
                "expires_at": insert.excluded.expires_at,
                "webhook_id": insert.excluded.webhook_id,
                "destination": insert.excluded.destination,
            },
        )
    )


# --- statements, built once ---------------------------------------------------------------------


def _in_flight(now: sa.BindParameter[datetime]) -> sa.ScalarSelect[int]:
    return (
        sa.select(sa.func.count())
        .select_from(flights)
        .where(flights.c.webhook_id == webhooks.c.id, flights.c.expires_at >= now)
        .scalar_subquery()
    )


def _candidates_statement() -> sa.Select[Any]:
    now: sa.BindParameter[datetime] = sa.bindparam("now")
    in_flight = _in_flight(now)
    at_destination = (
        sa.select(sa.func.count())
        .select_from(flights)
        .where(flights.c.destination == destinations.c.origin, flights.c.expires_at >= now)
        .scalar_subquery()
    )
    # A destination at its adaptive limit has no room for any of its webhooks: they are not
    # candidates, or many webhooks on one throttled host would fill every claim's list and
    # leave other webhooks waiting. (A probe is one call whatever the limit.)
    room_at_destination = sa.or_(
        destinations.c.origin.is_(None),
        destinations.c.state != BreakerState.CLOSED.value,
        destinations.c.concurrency >= MAX_CONCURRENCY,
        at_destination < destinations.c.concurrency,
    )
    has_due = sa.exists().where(
        deliveries.c.webhook_id == webhooks.c.id,
        queries.is_pending(),
        deliveries.c.next_attempt_at <= now,
        queries.unleased(now),
    )
    open_to_calls = sa.or_(
        destinations.c.origin.is_(None),
        sa.and_(
            sa.or_(destinations.c.paused_until.is_(None), destinations.c.paused_until <= now),
            sa.or_(
                destinations.c.state == BreakerState.CLOSED.value,
                destinations.c.next_probe_at <= now,
            ),
        ),
    )
    return (
        sa.select(
            webhooks.c.id,
            webhooks.c.destination,
            webhooks.c.max_concurrency,
            in_flight.label("in_flight"),
            destinations.c.state,
            destinations.c.concurrency,
        )
        .select_from(
            webhooks.outerjoin(destinations, destinations.c.origin == webhooks.c.destination)
        )
        .where(
            webhooks.c.active.is_(True),
            webhooks.c.suspended_at.is_(None),
            open_to_calls,
            room_at_destination,
            has_due,
            in_flight < webhooks.c.max_concurrency,
        )
        .order_by(webhooks.c.claimed_at.nulls_first(), webhooks.c.id)
        .limit(sa.bindparam("webhooks"))
    )


def _lock_webhooks_statement() -> sa.Select[Any]:
    return (
        sa.select(webhooks.c.id)
        .where(webhooks.c.id.in_(sa.bindparam("ids", expanding=True)))
        .order_by(webhooks.c.id)
        .with_for_update(of=webhooks, key_share=True)
    )


def _room_statement() -> sa.Select[Any]:
    now: sa.BindParameter[datetime] = sa.bindparam("now")
    return sa.select(
        webhooks.c.id, webhooks.c.max_concurrency, _in_flight(now).label("in_flight")
    ).where(webhooks.c.id.in_(sa.bindparam("ids", expanding=True)))


@functools.cache
def _lease_by_webhook(dialect: str) -> Prepared:
    now: sa.BindParameter[datetime] = sa.bindparam("now")
    candidates = (
        sa.select(deliveries.c.id)
        .join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
        .where(
            deliveries.c.webhook_id == sa.bindparam("hook"),
            queries.is_pending(),
            deliveries.c.next_attempt_at <= now,
            queries.unleased(now),
            queries.first_in_order(),
        )
        .order_by(deliveries.c.next_attempt_at, deliveries.c.id)
        .limit(sa.bindparam("n"))
    )
    return Prepared(queries.lease_statement(dialect, candidates))


_CANDIDATES = Prepared(_candidates_statement())
_LOCK_WEBHOOKS = _lock_webhooks_statement()
_ROOM = _room_statement()
_SERVED = queries.ByIds(
    lambda ids_in: (
        webhooks.update().where(ids_in(webhooks.c.id)).values(claimed_at=sa.bindparam("now"))
    )
)
_FORGET = queries.ByIds(
    lambda ids_in: flights.delete().where(
        ids_in(flights.c.delivery_id), flights.c.owner == sa.bindparam("owner")
    )
)
