"""What isolation is doing right now, for people and for `/metrics`: each webhook's calls in
flight and effective limit, its destination's breaker and pause, and its due backlog.

Every read here is bounded whatever the queue holds: counts of pending deliveries stop at a
cap (a `LIMIT`ed subquery over a partial index, `dueBacklogCapped` says when one did), the
age of the oldest due delivery is one index seek, and calls in flight and destinations are
small tables (a row per leased delivery, a row per destination that has shown trouble). A
page of webhooks costs the same three statements as one webhook.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.destinations import (
    MAX_CONCURRENCY,
    BreakerState,
    DestinationState,
    state_key,
)
from docuhooks.delivery import destinations as destination_store
from docuhooks.delivery import queries
from docuhooks.store.schema import deliveries, destinations, flights, webhooks

__all__ = [
    "DUE_CAP",
    "LIST_DUE_CAP",
    "Backlog",
    "WebhookHealth",
    "backlog",
    "breaker_counts",
    "of_webhooks",
    "per_webhook",
]

#: The most due deliveries one webhook's health counts (`dueBacklogCapped` beyond).
DUE_CAP = 100_000
#: The same for each webhook of a list (a page, or the per-webhook metrics): a page of 200
#: webhooks then reads at most 200,000 index entries.
LIST_DUE_CAP = 1_000
#: SQLite allows at most 500 SELECTs in one compound statement.
_ARMS_PER_STATEMENT = 200


@dataclass(frozen=True, slots=True)
class WebhookHealth:
    webhook_id: str
    destination: str
    #: Calls of this webhook in flight now, from every worker.
    in_flight: int
    #: The limit on them now: `maxConcurrency`, or the destination's limit (the cap on calls
    #: to one destination, or its adaptive limit) if lower.
    concurrency_limit: int
    #: The destination's stored state (`DestinationState()` when it has shown no trouble).
    breaker: DestinationState
    #: Pending deliveries whose attempt is due and that are not in flight, up to the cap.
    due_backlog: int
    due_backlog_capped: bool
    oldest_due_at: datetime | None

    def paused_until(self, now: datetime) -> datetime | None:
        """The end of the destination's `Retry-After` pause, if it has not passed."""
        until = self.breaker.paused_until
        return until if until is not None and until > now else None

    def oldest_due_age_seconds(self, now: datetime) -> float | None:
        if self.oldest_due_at is None:
            return None
        return max(0.0, (now - self.oldest_due_at).total_seconds())


async def of_webhooks(
    conn: AsyncConnection,
    hooks: Sequence[Any],
    *,
    now: datetime,
    due_cap: int = DUE_CAP,
    destination_cap: int = MAX_CONCURRENCY,
) -> dict[str, WebhookHealth]:
    """The health of each webhook row in `hooks` (rows of `webhooks`: `id`, `site_id`,
    `destination`, `max_concurrency`), keyed by id; each webhook's due count stops at
    `due_cap`."""
    if not hooks:
        return {}
    ids = [hook.id for hook in hooks]
    busy = await _in_flight_by_webhook(conn, ids, now)
    keys = {hook.id: state_key(hook.site_id, hook.destination) for hook in hooks}
    states = await destination_store.load(conn, set(keys.values()))
    due = await _due_by_webhook(conn, ids, now, due_cap)
    health = {}
    for hook in hooks:
        state = states.get(keys[hook.id], DestinationState())
        count, oldest = due[hook.id]
        in_flight = busy[hook.id]
        capped = count >= due_cap
        health[hook.id] = WebhookHealth(
            webhook_id=hook.id,
            destination=hook.destination,
            in_flight=in_flight,
            concurrency_limit=min(hook.max_concurrency, state.concurrency, destination_cap),
            breaker=state,
            # The deliveries in flight are still pending and due until their outcome is
            # written; what is left is what waits for a sender.
            due_backlog=count if capped else max(0, count - in_flight),
            due_backlog_capped=capped,
            oldest_due_at=oldest,
        )
    return health


async def _in_flight_by_webhook(
    conn: AsyncConnection, ids: list[str], now: datetime
) -> Counter[str]:
    rows = await conn.execute(
        sa.select(flights.c.webhook_id, sa.func.count())
        .where(flights.c.webhook_id.in_(ids), flights.c.expires_at >= now)
        .group_by(flights.c.webhook_id)
    )
    return Counter({webhook_id: count for webhook_id, count in rows.all()})


def _due(
    webhook_id: str | sa.BindParameter[str], now: datetime | sa.BindParameter[datetime]
) -> list[sa.ColumnElement[bool]]:
    # Exactly the predicate of the partial index `ix_deliveries_webhook_due`.
    return [
        deliveries.c.webhook_id == webhook_id,
        queries.is_pending(),
        deliveries.c.next_attempt_at <= now,
    ]


def _due_arm(
    webhook_id: str | sa.BindParameter[str],
    now: datetime | sa.BindParameter[datetime],
    cap: int | sa.BindParameter[int],
) -> sa.Select[Any]:
    """One webhook's capped due count and its oldest due attempt: two range reads of the
    partial index, the first stopping after `cap` entries, the second after one."""
    some = sa.select(sa.literal(1).label("one")).where(*_due(webhook_id, now)).limit(cap)
    count = sa.select(sa.func.count()).select_from(some.subquery()).scalar_subquery()
    oldest = sa.select(sa.func.min(deliveries.c.next_attempt_at)).where(*_due(webhook_id, now))
    label = webhook_id if isinstance(webhook_id, sa.BindParameter) else sa.literal(webhook_id)
    return sa.select(
        sa.type_coerce(label, sa.String()).label("id"),
        count.label("due"),
        oldest.scalar_subquery().label("oldest"),
    )


#: How many arms a statement of `_due_statement` has: a list of webhooks is padded up to the
#: next of these (with an id no webhook has), so a handful of statements, each built once,
#: serve any list.
_ARM_COUNTS = (1, 4, 16, 50, 100, _ARMS_PER_STATEMENT)
_NO_WEBHOOK = ""


@functools.cache
def _due_statement(arms: int) -> sa.Select[Any] | sa.CompoundSelect[Any]:
    """`arms` webhooks' `_due_arm`s in one statement, the ids bound as `w0`, `w1`, …, the time
    as `now` and the cap as `cap`. Built once per size: building and compiling a union of
    hundreds of arms for each read cost about a third of a millisecond per webhook, on the
    event loop (the dashboard reads every webhook of a site)."""
    now = sa.bindparam("now", type_=deliveries.c.next_attempt_at.type)
    cap = sa.bindparam("cap", type_=sa.Integer())
    parts = [_due_arm(sa.bindparam(f"w{k}", type_=sa.String()), now, cap) for k in range(arms)]
    return parts[0] if arms == 1 else sa.union_all(*parts)


async def _due_by_webhook(
    conn: AsyncConnection, ids: list[str], now: datetime, cap: int
) -> dict[str, tuple[int, datetime | None]]:
    found: dict[str, tuple[int, datetime | None]] = {}
    oldest_type = deliveries.c.next_attempt_at.type
    for start in range(0, len(ids), _ARMS_PER_STATEMENT):
        chunk = ids[start : start + _ARMS_PER_STATEMENT]
        arms = next(n for n in _ARM_COUNTS if n >= len(chunk))
        params: dict[str, Any] = {"now": now, "cap": cap}
        params |= {f"w{k}": webhook_id for k, webhook_id in enumerate(chunk)}
        params |= {f"w{k}": _NO_WEBHOOK for k in range(len(chunk), arms)}
        for row in (await conn.execute(_due_statement(arms), params)).all():
            if row[0] == _NO_WEBHOOK:
                continue
            # Through a UNION the column's type is lost on SQLite: convert it back.
            oldest = row[2]
            if oldest is not None and not isinstance(oldest, datetime):
                processor = oldest_type.result_processor(conn.dialect, None)
                oldest = processor(oldest) if processor else oldest
            found[row[0]] = (row[1], oldest)
    return found


# --- installation-wide, for /metrics ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Backlog:
    """Pending deliveries by state; `due` and `scheduled` stop at the cap they were read
    with (`*_capped`), `in_flight` is exact."""

    due: int
    due_capped: bool
    #: Due deliveries, those in flight included (up to the cap).
    due_total: int
    scheduled: int
    scheduled_capped: bool
    in_flight: int


async def backlog(conn: AsyncConnection, *, now: datetime, cap: int = DUE_CAP) -> Backlog:
    """The installation's pending deliveries: due and waiting for a sender, scheduled for a
    later attempt, and in flight. Each count reads `ix_deliveries_due` up to `cap` entries."""
    in_flight = (
        await conn.execute(
            sa.select(sa.func.count()).select_from(flights).where(flights.c.expires_at >= now)
        )
    ).scalar_one()
    due = await _capped(conn, deliveries.c.next_attempt_at <= now, cap)
    scheduled = await _capped(conn, deliveries.c.next_attempt_at > now, cap)
    return Backlog(
        due=due if due >= cap else max(0, due - in_flight),
        due_capped=due >= cap,
        due_total=due,
        scheduled=scheduled,
        scheduled_capped=scheduled >= cap,
        in_flight=in_flight,
    )


async def _capped(conn: AsyncConnection, when: sa.ColumnElement[bool], cap: int) -> int:
    some = sa.select(sa.literal(1).label("one")).where(queries.is_pending(), when)
    statement = sa.select(sa.func.count()).select_from(some.limit(cap).subquery())
    return int((await conn.execute(statement)).scalar_one())


async def breaker_counts(conn: AsyncConnection) -> dict[BreakerState, int]:
    """Destinations with a stored state, by breaker state (one with no row is healthy and
    is not counted)."""
    rows = await conn.execute(
        sa.select(destinations.c.state, sa.func.count()).group_by(destinations.c.state)
    )
    counts = dict.fromkeys(BreakerState, 0)
    for state, count in rows.all():
        counts[BreakerState(state)] = count
    return counts


async def per_webhook(
    conn: AsyncConnection, *, now: datetime, cap: int = LIST_DUE_CAP
) -> list[WebhookHealth]:
    """The health of every webhook (for the opt-in per-webhook metrics)."""
    hooks = (
        await conn.execute(
            sa.select(
                webhooks.c.id,
                webhooks.c.site_id,
                webhooks.c.destination,
                webhooks.c.max_concurrency,
            ).order_by(webhooks.c.id)
        )
    ).all()
    health = await of_webhooks(conn, hooks, now=now, due_cap=cap)
    return [health[hook.id] for hook in hooks]
