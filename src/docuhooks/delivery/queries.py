"""The deliveries' statuses and the statements that claim them: leasing due deliveries,
loading what a claimed one needs to send, renewing and releasing leases.

Recording an outcome is `delivery.recorder_queries`; redelivery, pruning, the metrics and
the worker fleet are `delivery.upkeep_queries`. Where SQLite and PostgreSQL differ (claiming,
waking workers) the difference is made here, so the worker reads the same on both. Times
are parameters from the worker's clock, never the database's `now()`, so tests can move time
without sleeping.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence, Set
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.signing import StoredEvent
from docuhooks.core.tracecontext import TraceContext, checked, from_stored
from docuhooks.store.notify import DELIVERIES_CHANNEL
from docuhooks.store.prepared import Prepared
from docuhooks.store.schema import (
    UtcDateTime,
    deliveries,
    events,
    flights,
    sites,
    webhooks,
)
from docuhooks.store.schema import is_pending as is_pending  # the delivery queries' own

#: The PostgreSQL channel workers LISTEN on; the outbox NOTIFYs it.
CHANNEL = DELIVERIES_CHANNEL

#: Delivery statuses. `sync` rows record interview and post-processing calls, never claimed.
PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"
#: The statuses nothing changes any more: retention prunes these, and only these.
FINISHED = (SUCCEEDED, FAILED)


# --- claiming -------------------------------------------------------------------------------


def is_failed(table: sa.TableClause | sa.Table = deliveries) -> sa.ColumnElement[bool]:
    """`status = 'failed'` written into the SQL: the predicate of the partial index
    `ix_deliveries_webhook_failed` (see `is_pending` for why it must be a literal)."""
    return table.c.status == sa.literal_column(f"'{FAILED}'")


def unleased(now: datetime | sa.BindParameter[datetime]) -> sa.ColumnElement[bool]:
    # A lease that ran out belongs to a worker that died or lost the database: take it over.
    return sa.or_(deliveries.c.lease_expires_at.is_(None), deliveries.c.lease_expires_at < now)


def first_in_order() -> sa.ColumnElement[bool]:
    """For `orderedDelivery` webhooks: no earlier delivery of the same work item is pending."""
    earlier = deliveries.alias("earlier")
    blocked = sa.exists().where(
        earlier.c.webhook_id == deliveries.c.webhook_id,
        earlier.c.ordering_key == deliveries.c.ordering_key,
        is_pending(earlier),
        sa.or_(
            earlier.c.ordering_seq < deliveries.c.ordering_seq,
            sa.and_(
                earlier.c.ordering_seq == deliveries.c.ordering_seq,
                sa.tuple_(earlier.c.created_at, earlier.c.id)
                < sa.tuple_(deliveries.c.created_at, deliveries.c.id),
            ),
        ),
    )
    return sa.or_(
        webhooks.c.ordered_delivery.is_(False),
        deliveries.c.ordering_key.is_(None),
        ~blocked,
    )


async def _lease(
    conn: AsyncConnection, candidates: sa.Select[Any], owner: str, until: datetime
) -> list[str]:
    """Lease the candidate deliveries in one statement and return their ids.

    PostgreSQL: the candidates are locked `FOR UPDATE SKIP LOCKED`, so concurrent workers
    each take different rows without waiting on one another. SQLite: the caller's
    transaction is `BEGIN IMMEDIATE`, so one claim runs at a time and a plain subquery is safe.
    """
    statement = lease_statement(conn.dialect.name, candidates)
    return list((await conn.execute(statement, {"owner": owner, "until": until})).scalars())


def lease_statement(dialect: str, candidates: sa.Select[Any]) -> sa.UpdateBase:
    if dialect == "postgresql":
        candidates = candidates.with_for_update(of=deliveries, skip_locked=True)
    chosen = candidates.cte("chosen")
    return (
        deliveries.update()
        .where(deliveries.c.id.in_(sa.select(chosen.c.id)))
        .values(lease_owner=sa.bindparam("owner"), lease_expires_at=sa.bindparam("until"))
        .returning(deliveries.c.id)
    )


async def claim_probes(
    conn: AsyncConnection,
    *,
    owner: str,
    now: datetime,
    lease: timedelta,
    probe_interval: timedelta,
    limit: int,
) -> list[str]:
    """Lease one probe delivery per suspended webhook whose probe is due.

    The probe is the webhook's oldest pending delivery (in order, for ordered webhooks),
    whatever its own schedule says. Moving the webhook's `next_probe_at` in the same
    transaction is what keeps two workers from probing one receiver at once.
    """
    due = sa.select(webhooks.c.id).where(
        webhooks.c.next_probe_at <= now,
        webhooks.c.suspended_at.is_not(None),
        webhooks.c.active.is_(True),
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    webhook_ids = list((await conn.execute(due.limit(limit))).scalars())
    claimed: list[str] = []
    for webhook_id in webhook_ids:
        busy = sa.exists().where(
            deliveries.c.webhook_id == webhook_id,
            is_pending(),
            deliveries.c.lease_expires_at >= now,
        )
        if (await conn.execute(sa.select(busy))).scalar():
            continue  # a probe is still in flight
        candidates = (
            sa.select(deliveries.c.id)
            .join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
            .where(
                deliveries.c.webhook_id == webhook_id,
                is_pending(),
                unleased(now),
                first_in_order(),
            )
            .order_by(deliveries.c.ordering_seq, deliveries.c.created_at, deliveries.c.id)
            .limit(1)
        )
        claimed += await _lease(conn, candidates, owner, now + lease)
        await conn.execute(
            webhooks.update()
            .where(webhooks.c.id == webhook_id)
            .values(next_probe_at=now + probe_interval)
        )
    return claimed


@dataclass(frozen=True, slots=True)
class Job:
    """A leased delivery with everything needed to send it."""

    delivery_id: str
    attempts: int
    event: StoredEvent
    #: The webhook's row (`sa.Row`, or a named tuple from `Prepared`): read
    #: by attribute.
    webhook: Any
    issuer: str
    #: The trace context the event was written in (`tracecontext.checked`); None for events
    #: from before it was kept.
    traceparent: str | None = None
    tracestate: str | None = None

    @property
    def trace(self) -> TraceContext | None:
        return from_stored(self.traceparent, self.tracestate)

    @property
    def probe(self) -> bool:
        return self.webhook.suspended_at is not None


def _jobs_from(source: Any, *more: sa.ColumnElement[Any]) -> sa.Select[Any]:
    """What sending needs of each delivery in `source` (the deliveries table, or the claim's
    leased rows), then `more` columns, in the order the deliveries were made."""
    return (
        sa.select(
            source.c.id,
            source.c.attempts,
            source.c.webhook_id,
            events.c.id.label("event_id"),
            events.c.event_type,
            # As text: signing splices the JWT's claims onto it (`signing.StoredEvent`).
            sa.cast(events.c.payload, sa.Text).label("payload_text"),
            sites.c.base_url,
            events.c.traceparent,
            events.c.tracestate,
            *more,
        )
        .select_from(source)
        .join(events, events.c.id == source.c.event_id)
        .join(sites, sites.c.id == source.c.site_id)
        .order_by(source.c.created_at, source.c.id)
    )


def _job(row: Any, webhook: Any) -> Job:
    """A row of `_jobs_from` and its webhook's row, as the worker takes it. A stored
    `traceparent` that fails its check starts a new trace, and its `tracestate` (which
    belongs to the trace it named) is dropped with it."""
    traceparent = checked(row.traceparent)
    return Job(
        row.id,
        row.attempts,
        StoredEvent(row.event_id, row.event_type, row.payload_text),
        webhook,
        row.base_url,
        traceparent,
        row.tracestate if traceparent is not None else None,
    )


def _in_json_array(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """`column IN (the elements of the JSON array passed as "ids")`: on SQLite, one statement
    for any number of ids, compiled once; an expanding IN is compiled again for every run."""
    elements = sa.func.json_each(sa.bindparam("ids", type_=sa.String)).table_valued("value")
    return column.in_(sa.select(elements.c.value))


def _in_expanding(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    return column.in_(sa.bindparam("ids", expanding=True))


def _in_array(column: sa.ColumnElement[Any]) -> sa.ColumnElement[bool]:
    """`column = ANY(:ids)`, the ids as one PostgreSQL array: compiled once for any number."""
    return column == sa.func.any(sa.bindparam("ids", type_=postgresql.ARRAY(sa.String)))


class ByIds:
    """A statement over a list of ids passed as "ids", in forms built once and prepared
    (`store.prepared`): on SQLite the ids as one JSON array (`_in_json_array`), on
    PostgreSQL as one array (`_in_array`); elsewhere an expanding IN. The worker runs these
    for every batch, so the per-run compile of an expanding IN and SQLAlchemy's execution
    setup were a good part of its time."""

    def __init__(
        self, build: Callable[[Callable[[sa.ColumnElement[Any]], Any]], sa.Executable]
    ) -> None:
        self._expanding = build(_in_expanding)
        self._sqlite = Prepared(build(_in_json_array))
        self._postgresql = Prepared(build(_in_array))

    async def all(self, conn: AsyncConnection, params: dict[str, Any]) -> Sequence[Any]:
        if conn.dialect.name == "sqlite":
            return await self._sqlite.all(conn, {**params, "ids": _json_array(params["ids"])})
        if conn.dialect.name == "postgresql":
            return await self._postgresql.all(conn, params)
        return (await conn.execute(self._expanding, params)).all()

    async def execute(self, conn: AsyncConnection, params: dict[str, Any]) -> None:
        """Run a statement whose rows (if any) are not wanted."""
        if conn.dialect.name == "sqlite":
            await self._sqlite.execute(conn, {**params, "ids": _json_array(params["ids"])})
        elif conn.dialect.name == "postgresql":
            await self._postgresql.execute(conn, params)
        else:
            await conn.execute(self._expanding, params)


def _json_array(ids: Sequence[str]) -> str:
    # orjson: the worker passes every batch's ids this way, several times per delivery.
    return orjson.dumps(ids).decode()


# Statements the worker runs for every batch, built once (see `_claim_due_statement`).
_JOBS = ByIds(lambda ids_in: _jobs_from(deliveries).where(ids_in(deliveries.c.id)))
_WEBHOOKS = ByIds(lambda ids_in: sa.select(webhooks).where(ids_in(webhooks.c.id)))


#: PostgreSQL, where each statement is a round trip: the jobs with their webhooks' rows in
#: one statement, each webhook column under this prefix.
_WEBHOOK_PREFIX = "webhook__"
_JOBS_WITH_WEBHOOKS = Prepared(
    _jobs_from(deliveries, *(c.label(_WEBHOOK_PREFIX + c.name) for c in webhooks.c))
    .join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
    .where(_in_array(deliveries.c.id))
)
_WebhookRow = NamedTuple(  # type: ignore[misc]
    "WebhookRow", [(column.name, Any) for column in webhooks.c]
)


async def load_jobs(conn: AsyncConnection, delivery_ids: list[str]) -> list[Job]:
    if not delivery_ids:
        return []
    if conn.dialect.name == "postgresql":
        return _jobs_with_webhooks(await _JOBS_WITH_WEBHOOKS.all(conn, {"ids": delivery_ids}))
    rows = await _JOBS.all(conn, {"ids": delivery_ids})
    webhook_ids = list({r.webhook_id for r in rows})
    hooks = {row.id: row for row in await _WEBHOOKS.all(conn, {"ids": webhook_ids})}
    return [_job(r, hooks[r.webhook_id]) for r in rows if r.webhook_id in hooks]


def _jobs_with_webhooks(rows: Sequence[Any]) -> list[Job]:
    """Jobs from `_JOBS_WITH_WEBHOOKS`' rows, one webhook row shared by its jobs."""
    hooks: dict[str, Any] = {}
    names = [_WEBHOOK_PREFIX + column.name for column in webhooks.c]
    jobs = []
    for row in rows:
        hook = hooks.get(row.webhook_id)
        if hook is None:
            hook = hooks[row.webhook_id] = _WebhookRow(*(getattr(row, n) for n in names))
        jobs.append(_job(row, hook))
    return jobs


class ClaimReadError(RuntimeError):
    """The database could not read a claim's jobs after leasing them (`docuhooks_jobs`)."""


def jobs_of_claim(text: str) -> list[Job]:
    """Jobs from `docuhooks_jobs`' JSON (migration 0024): a row per delivery, and each
    webhook's row once (`to_json`), made into the row `load_jobs` gives. A column this
    schema does not know is left out; one the JSON lacks is an error (the database is
    older than the code)."""
    claimed = orjson.loads(text)
    if "error" in claimed:
        raise ClaimReadError(f"the claim's jobs could not be read: {claimed['error']}")
    # The webhooks' rows are JSON text of their own, decoded as SQLAlchemy decodes a JSON
    # column (orjson would make an integer past 64 bits a float).
    rows = json.loads(claimed["webhooks"])
    hooks = {hook_id: _webhook_of_json(row) for hook_id, row in rows.items()}
    return [_job(_ClaimedRow(*row), hooks[row[2]]) for row in claimed["jobs"]]


class _ClaimedRow(NamedTuple):
    """A row of `docuhooks_jobs`' `jobs`, named as `_jobs_from` names its columns."""

    id: str
    attempts: int
    webhook_id: str
    event_id: str
    event_type: str
    payload_text: str
    base_url: str
    traceparent: str | None
    tracestate: str | None


def _webhook_of_json(fields: dict[str, Any]) -> Any:
    return _WebhookRow(
        *(
            _utc(fields[column.name]) if column.name in _TIMES else fields[column.name]
            for column in webhooks.c
        )
    )


#: The kinds of webhook column `_webhook_of_json` reads as `load_jobs` would: `to_json`
#: writes the others (Numeric, Interval, Date, bytes…) in forms it would have to convert.
#: A test fails when `webhooks` gains a column of another kind.
JSON_READABLE = (sa.String, sa.Integer, sa.Boolean, sa.JSON, UtcDateTime)

#: The webhook columns `to_json` writes as ISO 8601 text (in UTC: `docuhooks_jobs`' zone).
_TIMES = frozenset(column.name for column in webhooks.c if isinstance(column.type, UtcDateTime))
#: How `to_json` writes the times asyncpg reads as the ends of Python's range.
_INFINITE = {
    "infinity": datetime.max.replace(tzinfo=UTC),
    "-infinity": datetime.min.replace(tzinfo=UTC),
}


def _utc(value: str | None) -> datetime | None:
    if value is None:
        return None
    infinite = _INFINITE.get(value)
    return infinite or datetime.fromisoformat(value).astimezone(UTC)


async def extend_leases(
    conn: AsyncConnection, *, owner: str, delivery_ids: list[str], until: datetime
) -> None:
    """Extend `owner`'s leases on these deliveries and their `flights` rows.

    The deliveries' rows first, then the `flights` rows: the order in which the recorder
    takes them too. On PostgreSQL two transactions that take the same rows in opposite
    orders can each wait for the other, and one is aborted; a heartbeat aborted so lets
    leases run out while their calls are still in flight."""
    if delivery_ids:
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.id.in_(delivery_ids), deliveries.c.lease_owner == owner)
            .values(lease_expires_at=until)
        )
        await conn.execute(
            flights.update()
            .where(flights.c.delivery_id.in_(delivery_ids), flights.c.owner == owner)
            .values(expires_at=until)
        )


async def release_leases(conn: AsyncConnection, *, owner: str) -> int:
    """Hand back every pending delivery `owner` holds, so another worker takes it at once."""
    result = await conn.execute(
        deliveries.update()
        .where(deliveries.c.lease_owner == owner, is_pending())
        .values(lease_owner=None, lease_expires_at=None)
    )
    await conn.execute(flights.delete().where(flights.c.owner == owner))
    return result.rowcount


async def release(conn: AsyncConnection, *, owner: str, delivery_ids: list[str]) -> None:
    """Hand back these deliveries of `owner`'s, and their calls' `flights` rows (in that
    order, the one every writer takes them in)."""
    if not delivery_ids:
        return
    await conn.execute(
        deliveries.update()
        .where(deliveries.c.id.in_(delivery_ids), deliveries.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None)
    )
    await conn.execute(
        flights.delete().where(flights.c.delivery_id.in_(delivery_ids), flights.c.owner == owner)
    )


async def webhook_states(conn: AsyncConnection, webhook_ids: Set[str]) -> dict[str, Any]:
    """Whether each of these webhooks is active and when an admin last changed it (`active`,
    `modified_at`); a deleted one is missing."""
    rows = await conn.execute(
        sa.select(webhooks.c.id, webhooks.c.active, webhooks.c.modified_at).where(
            webhooks.c.id.in_(sorted(webhook_ids))
        )
    )
    return {row.id: row for row in rows}


async def release_unheld(conn: AsyncConnection, *, owner: str, held: list[str]) -> int:
    """Hand back `owner`'s leases on deliveries other than `held`, and their calls'
    `flights` rows; how many. A claim writes each lease's `flights` row in the commit that
    takes it, and that table holds only the calls in flight, so it is the one read."""
    rows = await conn.execute(
        sa.select(flights.c.delivery_id).where(
            flights.c.owner == owner, flights.c.delivery_id.not_in(held)
        )
    )
    unheld = list(rows.scalars())
    await release(conn, owner=owner, delivery_ids=unheld)
    return len(unheld)


#: Built once and prepared: a worker whose claim came back short (its webhooks at their
#: limits) asks this before it waits, many times a second under load.
_NEXT_DUE_AT = Prepared(
    sa.select(sa.func.min(deliveries.c.next_attempt_at).label("due")).where(is_pending())
)


async def next_due_at(conn: AsyncConnection) -> datetime | None:
    """When the earliest pending delivery falls due: how long an idle worker may sleep."""
    row = await _NEXT_DUE_AT.one(conn, {})
    due: datetime | None = row.due
    return due
