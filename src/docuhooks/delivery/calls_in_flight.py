"""The calls in flight: a `flights` row for each delivery leased, from its lease until its
call has ended (the worker's next claim, or the recorder with the outcome, deletes it), on
every worker. The caps on calls in flight count these rows (`delivery.claims`), and the
heartbeat extends them with the leases."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.delivery import queries
from docuhooks.delivery.queries import Job
from docuhooks.store.prepared import Prepared
from docuhooks.store.schema import deliveries, flights, webhooks

__all__ = ["forget", "record"]


async def record(
    conn: AsyncConnection, jobs: Sequence[Job], *, owner: str, until: datetime
) -> None:
    """Write a `flights` row for each job just leased (replacing a dead worker's)."""
    if not jobs:
        return
    if conn.dialect.name == "sqlite":
        # One statement that reads each row's webhook, site and destination from the store
        # (this transaction's, as the jobs were loaded), rather than a row of parameters
        # per job, each converted for the driver.
        await _FLIGHTS_OF.execute(
            conn, {"ids": [job.delivery_id for job in jobs], "owner": owner, "until": until}
        )
        return
    rows = [
        {
            "delivery_id": job.delivery_id,
            "webhook_id": job.webhook.id,
            "site_id": job.webhook.site_id,
            "destination": job.webhook.destination,
            "owner": owner,
            "expires_at": until,
        }
        for job in jobs
    ]
    await _upsert_flights(conn.dialect.name).executemany(conn, rows)


async def forget(conn: AsyncConnection, *, owner: str, delivery_ids: list[str]) -> None:
    """The calls of these deliveries have ended (their outcomes may not be written yet):
    they are no longer in flight."""
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
                "site_id": insert.excluded.site_id,
                "destination": insert.excluded.destination,
            },
        )
    )


def _flights_of(ids_in: Any) -> sa.Insert:
    """The `flights` rows of the deliveries `ids_in` picks, leased to "owner" until "until"."""
    insert = sqlite.insert(flights).from_select(
        ["delivery_id", "webhook_id", "site_id", "destination", "owner", "expires_at"],
        sa.select(
            deliveries.c.id,
            webhooks.c.id,
            webhooks.c.site_id,
            webhooks.c.destination,
            sa.bindparam("owner", type_=flights.c.owner.type),
            sa.bindparam("until", type_=flights.c.expires_at.type),
        )
        .join(webhooks, webhooks.c.id == deliveries.c.webhook_id)
        .where(ids_in(deliveries.c.id)),
    )
    return insert.on_conflict_do_update(
        index_elements=[flights.c.delivery_id],
        set_={
            name: getattr(insert.excluded, name)
            for name in ("owner", "expires_at", "webhook_id", "site_id", "destination")
        },
    )


#: SQLite's form is the one used (`record`).
_FLIGHTS_OF = queries.ByIds(_flights_of)
_FORGET = queries.ByIds(
    lambda ids_in: flights.delete().where(
        ids_in(flights.c.delivery_id), flights.c.owner == sa.bindparam("owner")
    )
)
