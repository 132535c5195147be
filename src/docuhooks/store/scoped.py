"""The site boundary for reads by id: another site's object, or an id that is not a UUID, is
simply not found, so ids never reveal what exists elsewhere. And the site's lock, which
writes held to a limit of the site's take in turn, and the other locks keyed by a name
(`advisory_lock`)."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.errors import Conflict, NotFound
from docuhooks.store.prepared import Prepared


def parse_id(value: str, what: str) -> str:
    """The canonical form of a UUID from a URL; anything else is an object that does not exist.

    Receivers written for .NET platforms send upper-case or braced GUIDs; `uuid.UUID` reads
    them all, and the canonical lower-case form is what the database holds.
    """
    try:
        return str(uuid.UUID(value))
    except (ValueError, AttributeError):
        raise NotFound(f"{what} {value} does not exist") from None


async def fetch_in_site(
    conn: AsyncConnection, table: sa.Table, row_id: str, site_id: str, what: str
) -> sa.Row[Any]:
    """The row of `table` with this id in this site, or NotFound naming `what`."""
    row_id = parse_id(row_id, what)
    row = (
        await conn.execute(sa.select(table).where(table.c.id == row_id, table.c.site_id == site_id))
    ).first()
    if row is None:
        raise NotFound(f"{what} {row_id} does not exist")
    return row


async def insert_named(
    conn: AsyncConnection, table: sa.Table, values: dict[str, Any], what: str
) -> None:
    """Insert a row whose `name` is unique in its site: a taken name is a Conflict naming the
    row that has it, and a name taken between the check and the insert is one too."""
    name = values["name"]
    taken = (
        await conn.execute(
            sa.select(table.c.id).where(table.c.site_id == values["site_id"], table.c.name == name)
        )
    ).first()
    if taken is not None:
        raise Conflict(f"a {what} named {name!r} already exists (id {taken.id})")
    try:
        await conn.execute(table.insert().values(**values))
    except sa.exc.IntegrityError:
        raise Conflict(f"a {what} named {name!r} already exists") from None


#: The advisory lock `lock_site` takes: a 64-bit hash of this prefix and the site's id.
SITE_LOCK_PREFIX = "docuhooks.site:"
_ADVISORY_LOCK = Prepared(
    sa.select(
        sa.func.pg_advisory_xact_lock(
            sa.func.hashtextextended(sa.bindparam("key", type_=sa.String), 0)
        )
    )
)


async def advisory_lock(conn: AsyncConnection, key: str) -> None:
    """Hold the lock named `key` (a prefix naming what it guards, and an id) until the
    transaction ends: transactions that must not interleave, whose rows do not keep them
    apart, take it in turn. One statement.

    On PostgreSQL it is an advisory lock keyed by a 64-bit hash of `key`, held to the
    transaction's end (the one kind a transaction pooler keeps). On SQLite, write
    transactions already run one at a time: nothing is run."""
    if conn.dialect.name == "postgresql":
        await _ADVISORY_LOCK.execute(conn, {"key": key})


async def lock_site(conn: AsyncConnection, site_id: str) -> None:
    """Hold the site's lock until the transaction ends: writes that count what the site has
    before adding to it (its storage quota, its most webhooks, its test sends and
    redeliveries of a minute, a webhook's one recovery in progress) take it first,
    so two of them never both count the same total and both add. Take it after the locks
    such a writer may hold while it waits for this one (its version's, its interview's: the
    order `platform.workitems` gives), so that no two transactions wait for each other
    through it.

    On PostgreSQL it is an advisory lock held to the transaction's end (the one kind a
    transaction pooler keeps), keyed by the site, not a lock on the site's row: every
    worker's claim locks its candidates' site rows, so a lock on the row, held while a large
    upload is written, would hold up the deliveries of every site that claim had in hand.
    Only the site's other counting writers wait for it. On SQLite, write transactions
    already run one at a time."""
    await advisory_lock(conn, SITE_LOCK_PREFIX + site_id)
