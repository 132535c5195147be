"""Every statement the outbox and the worker run against the deliveries, in one place.

Where SQLite and PostgreSQL differ (claiming, waking workers) each has its own version here,
so the worker reads the same on both.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

#: The PostgreSQL channel workers LISTEN on; the outbox NOTIFYs it.
CHANNEL = "docuhooks_deliveries"

#: Delivery statuses. `sync` rows record interview and post-processing calls, never claimed.
PENDING = "pending"
SUCCEEDED = "succeeded"
FAILED = "failed"


async def notify_new_deliveries(conn: AsyncConnection) -> None:
    """Wake PostgreSQL workers; the server sends the notification only if the caller commits."""
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})
