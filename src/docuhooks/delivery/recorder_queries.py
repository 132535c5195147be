"""The statements that record an attempt's outcome: the attempt log rows, the delivery's
new state, the webhook's failure run (suspension, resumption, deactivation).

The recorder (`delivery.recorder`) runs them in one transaction per batch of outcomes; the
attempt-log builder (`delivery.attempt_log`) writes its rows through `insert_attempts`. Times
are parameters from the caller's clock, never the database's `now()`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.delivery.queries import SUCCEEDED, ByIds, is_pending
from docuhooks.store.database import sqlstate
from docuhooks.store.prepared import Prepared
from docuhooks.store.schema import attempts, deliveries, not_held_in_order, webhooks


async def insert_attempts(conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
    """Write attempt log rows, all with the same keys (`attempt_log.attempt_row`'s)."""
    await _INSERT_ATTEMPTS.executemany(conn, rows)


# Every outcome the worker records writes one of these: through SQLAlchemy, setting up the
# execution (and each row's parameters) cost more than SQLite's own insert.
_INSERT_ATTEMPTS = Prepared(attempts.insert())


async def settle(
    conn: AsyncConnection, *, delivery_id: str, owner: str, values: dict[str, Any]
) -> bool:
    """Write a delivery's new state and drop the lease; False if the lease was lost meanwhile."""
    result = await conn.execute(
        deliveries.update()
        .where(deliveries.c.id == delivery_id, deliveries.c.lease_owner == owner)
        .values(lease_owner=None, lease_expires_at=None, **values)
    )
    return result.rowcount == 1


async def settle_succeeded(
    conn: AsyncConnection,
    *,
    owner: str,
    delivery_ids: list[str],
    status_code: int | None,
    now: datetime,
) -> set[str]:
    """Mark many deliveries succeeded in one statement; the ids whose lease we still held.

    The same as `settle` for each, with the attempt count taken from the row (the worker
    sent attempt `attempts + 1`, since it holds the lease).
    """
    if not delivery_ids:
        return set()
    params = {"ids": delivery_ids, "owner": owner, "status_code": status_code, "now": now}
    return {row.id for row in await _SETTLE_SUCCEEDED.all(conn, params)}


_SETTLE_SUCCEEDED = ByIds(
    lambda ids_in: (
        deliveries.update()
        .where(ids_in(deliveries.c.id), deliveries.c.lease_owner == sa.bindparam("owner"))
        .values(
            status=SUCCEEDED,
            attempts=deliveries.c.attempts + 1,
            last_status_code=sa.bindparam("status_code"),
            last_error_class=None,
            last_error=None,
            next_attempt_at=None,
            completed_at=sa.bindparam("now"),
            lease_owner=None,
            lease_expires_at=None,
        )
        .returning(deliveries.c.id)
    )
)


async def existing_deliveries(conn: AsyncConnection, delivery_ids: list[str]) -> set[str]:
    if not delivery_ids:
        return set()
    found = await conn.execute(sa.select(deliveries.c.id).where(deliveries.c.id.in_(delivery_ids)))
    return set(found.scalars())


@dataclass(frozen=True, slots=True)
class FailureCount:
    consecutive_failures: int
    first_failure_at: datetime
    suspended: bool


async def count_failure(conn: AsyncConnection, webhook_id: str, now: datetime) -> FailureCount:
    row = (
        await conn.execute(
            webhooks.update()
            .where(webhooks.c.id == webhook_id)
            .values(
                consecutive_failures=webhooks.c.consecutive_failures + 1,
                first_failure_at=sa.func.coalesce(webhooks.c.first_failure_at, now),
            )
            .returning(
                webhooks.c.consecutive_failures,
                webhooks.c.first_failure_at,
                webhooks.c.suspended_at,
            )
        )
    ).one()
    return FailureCount(row[0], row[1], row[2] is not None)


async def suspend(
    conn: AsyncConnection, webhook_id: str, *, now: datetime, next_probe_at: datetime, reason: str
) -> bool:
    """Suspend the webhook; True if this call did (it was not suspended already)."""
    result = await conn.execute(
        webhooks.update()
        .where(webhooks.c.id == webhook_id, webhooks.c.suspended_at.is_(None))
        .values(suspended_at=now, next_probe_at=next_probe_at, status_reason=reason)
    )
    return result.rowcount == 1


_RESET_FAILURES = ByIds(
    lambda ids_in: (
        webhooks.update()
        .where(
            ids_in(webhooks.c.id),
            webhooks.c.suspended_at.is_(None),
            webhooks.c.consecutive_failures > 0,
        )
        .values(consecutive_failures=0, first_failure_at=None)
    )
)
_RESUME = ByIds(
    lambda ids_in: (
        webhooks.update()
        .where(ids_in(webhooks.c.id), webhooks.c.suspended_at.is_not(None))
        .values(
            suspended_at=None,
            next_probe_at=None,
            status_reason=None,
            consecutive_failures=0,
            first_failure_at=None,
        )
        .returning(webhooks.c.id)
    )
)


def _reset_or_resume_statement() -> sa.Select[Any]:
    """PostgreSQL: `_RESET_FAILURES` and `_RESUME` as one statement (a round trip where they
    were two), returning the resumed webhooks' ids. The two updates touch disjoint rows (not
    suspended, suspended), so neither sees the other's."""
    ids_in = webhooks.c.id == sa.func.any(sa.bindparam("ids", type_=postgresql.ARRAY(sa.String)))
    reset = (
        webhooks.update()
        .where(ids_in, webhooks.c.suspended_at.is_(None), webhooks.c.consecutive_failures > 0)
        .values(consecutive_failures=0, first_failure_at=None)
        .cte("reset")
    )
    resumed = (
        webhooks.update()
        .where(ids_in, webhooks.c.suspended_at.is_not(None))
        .values(
            suspended_at=None,
            next_probe_at=None,
            status_reason=None,
            consecutive_failures=0,
            first_failure_at=None,
        )
        .returning(webhooks.c.id)
        .cte("resumed")
    )
    return sa.select(resumed.c.id).add_cte(reset)


_RESET_OR_RESUME = Prepared(_reset_or_resume_statement())


async def count_successes(
    conn: AsyncConnection, webhook_ids: list[str], now: datetime
) -> list[str]:
    """Reset these webhooks' failure runs; resume those that were suspended, and return them.

    Most successes change nothing here, and the `WHERE` keeps them from writing (and
    locking) the webhook row, which every concurrent delivery to it would queue behind.
    """
    if not webhook_ids:
        return []
    if conn.dialect.name == "postgresql":
        rows = await _RESET_OR_RESUME.all(conn, {"ids": webhook_ids})
    else:
        await _RESET_FAILURES.execute(conn, {"ids": webhook_ids})
        rows = await _RESUME.all(conn, {"ids": webhook_ids})
    resumed = [row.id for row in rows]
    if resumed:
        # Drain the backlog now, oldest first (the claim orders by due time, then id).
        await conn.execute(
            deliveries.update()
            .where(deliveries.c.webhook_id.in_(resumed), is_pending(), not_held_in_order(now))
            .values(next_attempt_at=now)
        )
    return resumed


async def deactivate(conn: AsyncConnection, webhook_id: str, *, now: datetime, reason: str) -> bool:
    """Deactivate the webhook; True if this call did (it was active)."""
    result = await conn.execute(
        webhooks.update()
        .where(webhooks.c.id == webhook_id, webhooks.c.active.is_(True))
        .values(active=False, status_reason=reason, modified_at=now)
    )
    return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class Success:
    """A plain success to record (`record_successes`): its delivery, the status code its
    receiver answered, when it is settled, and its attempt row."""

    delivery_id: str
    status_code: int | None
    settled_at: datetime
    attempt_row: dict[str, Any]


class NotPlain(Exception):
    """`record_successes` wrote nothing: a lease of the batch was lost, or a webhook of it is
    suspended. Write the batch statement by statement."""


#: `docuhooks_record_successes`' own errors (migration 0021), which mean `NotPlain`.
_NOT_PLAIN_STATES = frozenset({"DH001", "DH002"})


async def record_successes(
    conn: AsyncConnection,
    *,
    owner: str,
    successes: Sequence[Success],
    stat_rows: list[dict[str, Any]],
) -> None:
    """PostgreSQL, outside a transaction: settle these deliveries, write their attempt rows
    and the roll-up's rows (`rollup.Tally.rows`), end their webhooks' failure runs and
    forget their calls' `flights` rows, in one call of `docuhooks_record_successes`
    (migration 0021): one round trip where the statements were seven. Raises `NotPlain`,
    having written nothing, when the batch needs `settle_succeeded` and the rest."""
    successes = sorted(successes, key=lambda s: s.delivery_id)  # the order rows are locked in
    params = {
        "owner": owner,
        "ids": [s.delivery_id for s in successes],
        "codes": [s.status_code for s in successes],
        "times": [s.settled_at for s in successes],
        "attempts": _json([s.attempt_row for s in successes]),
        "stats": _json(stat_rows),
        "hooks": sorted({s.attempt_row["webhook_id"] for s in successes}),
    }
    try:
        await _RECORD_SUCCESSES.execute(conn, params)
    except sa.exc.DBAPIError as exc:
        if sqlstate(exc) in _NOT_PLAIN_STATES:
            raise NotPlain(str(exc.orig)) from exc
        raise


def _json(rows: list[dict[str, Any]]) -> str:
    # A time without a zone is UTC, as asyncpg sends one (PostgreSQL would read it in the
    # session's zone).
    return orjson.dumps(rows, option=orjson.OPT_NAIVE_UTC).decode()


def _record_successes_statement() -> sa.Select[Any]:
    def array(name: str, of: Any) -> sa.BindParameter[Any]:
        return sa.bindparam(name, type_=postgresql.ARRAY(of))

    def json(name: str) -> sa.Cast[Any]:
        return sa.cast(sa.bindparam(name, type_=sa.Text), postgresql.JSON)

    called = sa.func.docuhooks_record_successes(
        sa.bindparam("owner", type_=sa.String),
        array("ids", sa.String),
        array("codes", sa.Integer),
        array("times", deliveries.c.completed_at.type),
        json("attempts"),
        json("stats"),
        array("hooks", sa.String),
    )
    return sa.select(called.label("settled"))


_RECORD_SUCCESSES = Prepared(_record_successes_statement())
