"""SQLite write transactions of one process queue in order on the Database's own lock;
PostgreSQL's pooled connections are checked for life without a round trip when busy."""

import asyncio
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from docuhooks.store import postgres_connections
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
        monkeypatch.setattr(postgres_connections, "IDLE_PING_SECONDS", 0.0)
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
        # Kept out of the pool for the next transaction (below), but none opened.
        assert pool.checkedin() + pool.checkedout() == 5, "a request takes a warm connection"
    finally:
        await db.dispose()


# --- PostgreSQL: connections kept out of the pool between units of work -----------------------


def _counting_checkouts(db: Database) -> list[int]:
    checkouts: list[int] = []

    @sa.event.listens_for(db.engine.sync_engine, "checkout")
    def _counted(*_args: object) -> None:
        checkouts.append(1)

    return checkouts


async def test_a_transaction_takes_the_connection_the_last_one_left(postgres_url: str) -> None:
    db = Database.from_url(postgres_url, pool_size=4)
    checkouts = _counting_checkouts(db)
    try:
        first = await _backend_pid(db)
        assert [await _backend_pid(db) for _ in range(3)] == [first] * 3
        assert len(checkouts) == 1, "one trip through the pool, for the first transaction"
    finally:
        await db.dispose()
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_failed_transactions_connection_goes_back_to_the_pool(postgres_url: str) -> None:
    db = Database.from_url(postgres_url, pool_size=4)
    checkouts = _counting_checkouts(db)
    try:
        async with db.transaction() as conn:
            await conn.execute(sa.text("CREATE TABLE kept_t (n int)"))
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.execute(sa.text("INSERT INTO kept_t VALUES (1)"))
                raise RuntimeError("the request failed")
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        async with db.transaction() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM kept_t"))).scalar() == 0
        assert len(checkouts) == 2, "the transaction after the failed one took from the pool"
    finally:
        async with db.transaction() as conn:
            await conn.execute(sa.text("DROP TABLE IF EXISTS kept_t"))
        await db.dispose()


async def test_a_cancelled_transaction_rolls_back_and_leaves_no_connection_out(
    postgres_url: str,
) -> None:
    db = Database.from_url(postgres_url, pool_size=4)
    try:
        async with db.transaction() as conn:
            await conn.execute(sa.text("CREATE TABLE kept_c (n int)"))
        inside = asyncio.Event()

        async def cancelled() -> None:
            async with db.transaction() as conn:
                await conn.execute(sa.text("INSERT INTO kept_c VALUES (1)"))
                inside.set()
                await asyncio.Event().wait()

        task = asyncio.create_task(cancelled())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        async with db.transaction() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM kept_c"))).scalar() == 0
    finally:
        async with db.transaction() as conn:
            await conn.execute(sa.text("DROP TABLE IF EXISTS kept_c"))
        await db.dispose()


async def test_autocommit_and_transactions_keep_connections_apart(postgres_url: str) -> None:
    """A connection kept in autocommit never serves a transaction, whose statements must
    roll back together."""
    db = Database.from_url(postgres_url, pool_size=4)
    try:
        async with db.autocommit() as conn:
            await conn.execute(sa.text("CREATE TABLE kept_a (n int)"))
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.execute(sa.text("INSERT INTO kept_a VALUES (1)"))
                raise RuntimeError("rolled back")
        async with db.autocommit() as conn:
            await conn.execute(sa.text("INSERT INTO kept_a VALUES (2)"))
        async with db.transaction() as conn:
            await conn.execute(sa.text("INSERT INTO kept_a VALUES (3)"))
            pid = sa.text("SELECT pg_backend_pid()")
            async with db.autocommit() as other:
                # Another connection, beside the open transaction, whose 3 it does not see.
                assert (await other.execute(pid)).scalar() != (await conn.execute(pid)).scalar()
                seen = await other.execute(sa.text("SELECT array_agg(n) FROM kept_a"))
                assert seen.scalar() == [2]
        async with db.read() as conn:
            rows = (await conn.execute(sa.text("SELECT n FROM kept_a ORDER BY n"))).scalars()
            assert list(rows) == [2, 3]
    finally:
        async with db.autocommit() as conn:
            await conn.execute(sa.text("DROP TABLE IF EXISTS kept_a"))
        await db.dispose()


async def test_no_more_idle_connections_are_kept_than_half_the_pool(postgres_url: str) -> None:
    db = Database.from_url(postgres_url, pool_size=4)
    try:
        release = asyncio.Event()
        started = 0

        async def one() -> None:
            nonlocal started
            async with db.transaction() as conn:
                await conn.execute(sa.text("SELECT 1"))
                started += 1
                if started == 4:
                    release.set()
                await release.wait()

        await asyncio.gather(*(one() for _ in range(4)))
        pool: Any = db.engine.pool
        assert pool.checkedout() == 2, "two kept for the next transactions, two back in the pool"
        assert pool.checkedin() == 2
    finally:
        await db.dispose()


async def test_work_that_ends_after_the_database_is_disposed_of_keeps_no_connection(
    postgres_url: str,
) -> None:
    db = Database.from_url(postgres_url, pool_size=4)
    inside, finish = asyncio.Event(), asyncio.Event()

    async def late() -> None:
        async with db.transaction() as conn:
            await conn.execute(sa.text("SELECT 1"))
            inside.set()
            await finish.wait()

    task = asyncio.create_task(late())
    await inside.wait()
    await db.dispose()
    finish.set()
    await task
    assert db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    await db.dispose()


async def test_a_urls_libpq_parameters_reach_the_pooled_and_the_listening_connections(
    postgres_url: str,
) -> None:
    """libpq's parameters go to asyncpg under its own keywords, for the engine's connections
    and for the `LISTEN` one alike. The listener used to connect with the engine's URL, where
    `sslmode` had become asyncpg's keyword `ssl`, which asyncpg reads in a DSN as a server
    setting: the server refused it, and workers never heard a notification."""
    import uuid

    from docuhooks.store.notify import ChannelListener

    name = f"docuhooks-{uuid.uuid4().hex[:12]}"
    url = (
        f"{postgres_url}?sslmode=disable&connect_timeout=10&application_name={name}"
        "&options=-c%20statement_timeout%3D12345"
    )
    db = Database.from_url(url, pool_size=1)
    listener = ChannelListener(
        db.listen_dsn() or "",
        "docuhooks_url_test",
        on_notify=lambda _: None,
        on_connect=lambda: None,
    )
    try:
        async with db.read() as conn:
            assert (await conn.execute(sa.text("SHOW application_name"))).scalar_one() == name
            timeout = (await conn.execute(sa.text("SHOW statement_timeout"))).scalar_one()
            assert timeout == "12345ms"
            listener.start()
            await asyncio.wait_for(listener.listening.wait(), timeout=30)
            # The listener's session carries the name too: this one and it.
            sessions = await conn.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"),
                {"name": name},
            )
            assert sessions.scalar_one() == 2
    finally:
        await listener.stop()
        await db.dispose()
