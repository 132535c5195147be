"""SQLite write transactions of one process queue in order on the Database's own lock;
PostgreSQL's pooled connections are checked for life without a round trip when busy."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from docuhooks.store import database
from docuhooks.store.database import Database


async def test_sqlite_writers_take_turns_first_come_first_served(tmp_path: Path) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path / 'turns.db'}")
    try:
        async with db.transaction() as conn:
            await conn.execute(sa.text("CREATE TABLE log (n INTEGER)"))
        order: list[int] = []
        first_holds = asyncio.Event()
        release_first = asyncio.Event()

        async def writer(n: int) -> None:
            async with db.transaction() as conn:
                order.append(n)
                await conn.execute(sa.text("INSERT INTO log VALUES (:n)"), {"n": n})
                if n == 0:
                    first_holds.set()
                    await release_first.wait()

        first = asyncio.create_task(writer(0))
        await first_holds.wait()
        others = [asyncio.create_task(writer(n)) for n in range(1, 6)]
        await asyncio.sleep(0.05)
        assert order == [0], "nobody writes while a transaction holds the lock"
        # A reader is not a writer: it runs beside the open write transaction.
        async with asyncio.timeout(2), db.read() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM log"))).scalar() == 0
        release_first.set()
        await asyncio.gather(first, *others)
        assert order == [0, 1, 2, 3, 4, 5]
        async with db.read() as conn:
            rows = (await conn.execute(sa.text("SELECT n FROM log ORDER BY rowid"))).scalars()
            assert list(rows) == [0, 1, 2, 3, 4, 5]
    finally:
        await db.dispose()


async def test_a_failed_transaction_lets_the_next_writer_in(tmp_path: Path) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path / 'fail.db'}")
    try:
        try:
            async with db.transaction() as conn:
                await conn.execute(sa.text("CREATE TABLE t (n INTEGER)"))
                raise RuntimeError("boom")
        except RuntimeError:
            pass
        async with asyncio.timeout(2), db.transaction() as conn:
            await conn.execute(sa.text("CREATE TABLE t (n INTEGER)"))
    finally:
        await db.dispose()


# --- PostgreSQL: pooled connections are checked without a round trip ---------------------------


async def _backend_pid(db: Database) -> int:
    async with db.transaction() as conn:
        return int((await conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar_one())


async def test_a_connection_the_server_ended_is_replaced_before_use(postgres_url: str) -> None:
    """The server ends a pooled connection's session (as a restart does): the next
    transaction gets a live connection instead of failing, with no ping before it."""
    db = Database.from_url(postgres_url, pool_size=1)
    try:
        first = await _backend_pid(db)
        other = Database.from_url(postgres_url, pool_size=1)
        try:
            async with other.transaction() as conn:
                await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": first})
        finally:
            await other.dispose()
        await asyncio.sleep(0.2)  # the loop reads the server's goodbye
        assert await _backend_pid(db) != first
    finally:
        await db.dispose()


async def test_a_busy_connection_is_not_pinged_and_an_idle_one_is(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    db = Database.from_url(postgres_url, pool_size=1)
    statements: list[str] = []

    @sa.event.listens_for(db.engine.sync_engine, "before_cursor_execute")
    def _seen(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    pings = 0
    real_ping = type(await _raw_connection(db)).ping

    def counting_ping(self: object) -> None:
        nonlocal pings
        pings += 1
        real_ping(self)

    monkeypatch.setattr(type(await _raw_connection(db)), "ping", counting_ping)
    try:
        await _backend_pid(db)
        await _backend_pid(db)
        assert pings == 0
        monkeypatch.setattr(database, "IDLE_PING_SECONDS", 0.0)
        await asyncio.sleep(0.01)
        await _backend_pid(db)
        assert pings == 1
        assert statements == ["SELECT pg_backend_pid()"] * 3
    finally:
        await db.dispose()


async def _raw_connection(db: Database) -> Any:
    async with db.engine.connect() as conn:
        return (await conn.get_raw_connection()).dbapi_connection


async def test_warming_up_opens_pooled_connections_before_any_request(postgres_url: str) -> None:
    db = Database.from_url(postgres_url, pool_size=5)
    try:
        await db.warm_up(3)
        pool: Any = db.engine.pool
        assert (pool.checkedin(), pool.checkedout()) == (3, 0)
        await db.warm_up(50)  # never more than the pool keeps
        assert pool.checkedin() == 5
        async with db.transaction() as conn:
            assert (await conn.execute(sa.text("SELECT 1"))).scalar_one() == 1
        assert pool.checkedin() == 5, "a request takes a warm connection, opens none"
    finally:
        await db.dispose()
