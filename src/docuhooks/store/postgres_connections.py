"""PostgreSQL connections: checked for life on the way out of the pool, and kept out of it
between units of work.

Taking a connection from SQLAlchemy's pool and giving it back costs more CPU than a short
unit of work's own statements: two trips through a greenlet, the pool's events, and a task
that shields the close (about 300 µs a transaction on the development VMs, where `BEGIN`, a
statement and `COMMIT` on asyncpg alone cost about 100 µs; `bench/store.py` measures it). So
`Database.transaction` and `Database.autocommit` leave a connection whose work ended cleanly
in a `KeptConnections` of their kind, and the next unit of work of that kind takes it from
there, the most recently used first. The pool still opens, checks and closes every
connection: a kept one goes back to it when it fails, when its kind already keeps enough, or
when it has been idle long enough to need the pool's ping (`IDLE_PING_SECONDS`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

__all__ = ["IDLE_PING_SECONDS", "KeptConnections", "check_liveness_on_checkout"]

#: A PostgreSQL connection idle longer than this is pinged before it is used again.
IDLE_PING_SECONDS = 10.0
#: Where a pooled connection's record notes when it went idle.
_IDLE_SINCE = "docuhooks_idle_since"


def check_liveness_on_checkout(engine: AsyncEngine) -> None:
    """Hand out only live PostgreSQL connections, without a round trip for a busy one.

    SQLAlchemy's `pool_pre_ping` costs three round trips on asyncpg (a ping inside its own
    transaction) before every transaction: more than most of our transactions themselves.
    A server that restarts or ends a session closes its socket, which asyncpg notices as soon
    as the loop runs, so a connection is first checked locally; only one idle longer than
    `IDLE_PING_SECONDS` (which a firewall may have dropped without a word) is pinged. A dead
    one is discarded and the pool hands out another (`DisconnectionError`).
    """

    @event.listens_for(engine.sync_engine, "checkin")
    def _on_checkin(_dbapi_conn: Any, record: Any) -> None:
        record.info[_IDLE_SINCE] = time.monotonic()

    @event.listens_for(engine.sync_engine, "checkout")
    def _on_checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if dbapi_conn.driver_connection.is_closed():
            raise sa_exc.DisconnectionError("the server closed the connection")
        since = record.info.get(_IDLE_SINCE)
        if since is not None and time.monotonic() - since > IDLE_PING_SECONDS:
            try:
                dbapi_conn.ping()
            except Exception as exc:
                raise sa_exc.DisconnectionError(f"ping failed: {exc}") from exc


class KeptConnections:
    """Connections of one kind of unit of work (one event loop's), kept checked out of the
    pool while idle: at most `capacity`, each `prepared` once when it leaves the pool (put
    in autocommit, say), so the pool keeps its idle connections for everything else."""

    def __init__(
        self,
        engine: AsyncEngine,
        *,
        capacity: int,
        prepare: Callable[[AsyncConnection], Awaitable[object]] | None = None,
    ) -> None:
        self._engine = engine
        self._capacity = capacity
        self._prepare = prepare
        #: Idle connections and when each went idle, the most recently used last.
        self._idle: list[tuple[AsyncConnection, float]] = []

    @asynccontextmanager
    async def lent(self) -> AsyncIterator[AsyncConnection]:
        """A connection for one unit of work, kept again afterwards if the work ended
        without an error."""
        conn = await self.take()
        clean = False
        try:
            yield conn
            clean = True
        finally:
            await self.give_back(conn, clean=clean)

    async def take(self) -> AsyncConnection:
        """A connection for one unit of work: a kept one if a recent one is live, or one
        from the pool (checked there, `check_liveness_on_checkout`)."""
        while self._idle:
            conn, since = self._idle.pop()
            if time.monotonic() - since <= IDLE_PING_SECONDS and _live(conn):
                return conn
            await _back_to_the_pool(conn, idle_since=since)
        conn = await self._engine.connect()
        if self._prepare is not None:
            try:
                await self._prepare(conn)
            except BaseException:
                await _closed(conn)
                raise
        return conn

    async def give_back(self, conn: AsyncConnection, *, clean: bool) -> None:
        """The unit of work on `conn` is over; `clean`: it ended without an error, so the
        connection holds no transaction and its session is as it was taken."""
        if clean and len(self._idle) < self._capacity and _live(conn):
            if conn.in_transaction():
                # Autocommit work that went through SQLAlchemy's `execute`, which begins a
                # transaction of its own bookkeeping: nothing to roll back on the server.
                await conn.rollback()
            self._idle.append((conn, time.monotonic()))
            return
        await _closed(conn)

    async def close(self) -> None:
        """Give back every idle connection, and from now on each that work gives back (the
        `Database` is being disposed of: a task still running must not keep one)."""
        self._capacity = 0
        idle, self._idle = self._idle, []
        for conn, _ in idle:
            await _closed(conn)


def _live(conn: AsyncConnection) -> bool:
    if conn.closed or conn.invalidated:
        return False
    sync = conn.sync_connection
    if sync is None:
        return False
    driver: Any = sync.connection.driver_connection
    return not driver.is_closed()


async def _closed(conn: AsyncConnection) -> None:
    """Give `conn` back to the pool (which rolls back what it left and resets it), whatever
    cancels the caller meanwhile, as `async with engine.connect()` does."""
    await asyncio.shield(conn.close())


async def _back_to_the_pool(conn: AsyncConnection, *, idle_since: float) -> None:
    """Give back a connection idle too long to use unchecked; the pool then knows how long it
    has been idle, and pings it before it hands it out again."""
    info = conn.sync_connection.connection.info if _live(conn) else None  # type: ignore[union-attr]
    await _closed(conn)
    if info is not None:
        info[_IDLE_SINCE] = idle_since
