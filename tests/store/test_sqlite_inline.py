"""The inline SQLite driver: statements on the loop's thread, yet the loop never waits on
another process's lock or on a checkpoint."""

import asyncio
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncTransaction

from docuhooks.store import sqlite_inline
from docuhooks.store.database import Database
from docuhooks.store.sqlite_inline import WriteLock


async def _table(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute(sa.text("CREATE TABLE t (n INTEGER PRIMARY KEY, s TEXT)"))


def _hold_write_lock(path: Path, seconds: float, holding: threading.Event) -> None:
    """Another process's writer, as far as SQLite can tell: its own connection, its lock."""
    other = sqlite3.connect(path, isolation_level=None)
    try:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO t (n, s) VALUES (1, 'other')")
        holding.set()
        time.sleep(seconds)
        other.execute("COMMIT")
    finally:
        other.close()


async def _loop_turns_while_another_writer_holds_the_lock(
    path: Path, write: Callable[[], Awaitable[None]]
) -> int:
    """Run `write` while another connection holds the write lock for 0.4 s; how many times the
    event loop turned meanwhile (blocking it for the wait would let it turn about once)."""
    holding = threading.Event()
    holder = threading.Thread(target=_hold_write_lock, args=(path, 0.4, holding))
    holder.start()
    await asyncio.to_thread(holding.wait, 5)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticking = asyncio.create_task(ticker())
    try:
        await write()
    finally:
        ticking.cancel()
        await asyncio.to_thread(holder.join)
    return ticks


async def test_a_writer_waits_for_another_connections_lock_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    path = tmp_path / "locked.db"
    db = Database.from_url(f"sqlite:///{path}")
    try:
        await _table(db)
        waited = 0.0

        async def write() -> None:
            nonlocal waited
            started = time.monotonic()
            async with db.transaction() as conn:
                waited = time.monotonic() - started
                await conn.execute(sa.text("INSERT INTO t (n, s) VALUES (2, 'ours')"))

        ticks = await _loop_turns_while_another_writer_holds_the_lock(path, write)
        assert waited >= 0.3, "the transaction began only once the other writer committed"
        # Blocking the loop for the wait would have let the ticker run about once.
        assert ticks >= 15, f"the loop turned only {ticks} times while the writer waited"
        async with db.read() as conn:
            rows = (await conn.execute(sa.text("SELECT s FROM t ORDER BY n"))).scalars().all()
        assert rows == ["other", "ours"]
    finally:
        await db.dispose()


async def test_transactions_begin_on_the_loop_unless_they_must_wait_for_the_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLAlchemy's greenlet begins a transaction only when another process holds the lock."""
    through_greenlet: list[bool] = []
    greenlet_start = AsyncTransaction.start

    async def counted(self: AsyncTransaction, is_ctxmanager: bool = False) -> AsyncTransaction:
        through_greenlet.append(True)
        return await greenlet_start(self, is_ctxmanager)

    monkeypatch.setattr(AsyncTransaction, "start", counted)
    path = tmp_path / "begin.db"
    db = Database.from_url(f"sqlite:///{path}")
    try:
        await _table(db)
        through_greenlet.clear()
        async with db.transaction() as conn:
            await conn.execute(sa.text("INSERT INTO t (n, s) VALUES (5, 'free')"))
        async with db.read() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM t"))).scalar() == 1
        assert through_greenlet == []
        holding = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(path, 1.0, holding))
        holder.start()
        await asyncio.to_thread(holding.wait, 5)
        async with db.read() as conn:  # a reader needs no lock: it begins at once
            assert (await conn.execute(sa.text("SELECT count(*) FROM t"))).scalar() == 1
        assert through_greenlet == []
        async with db.transaction() as conn:
            await conn.execute(sa.text("INSERT INTO t (n, s) VALUES (6, 'waited')"))
        await asyncio.to_thread(holder.join)
        assert through_greenlet == [True]
        async with db.read() as conn:
            rows = (await conn.execute(sa.text("SELECT s FROM t ORDER BY n"))).scalars().all()
        assert rows == ["other", "free", "waited"]
    finally:
        await db.dispose()


async def test_a_writer_gives_up_after_the_busy_timeout_with_sqlites_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_inline, "BUSY_TIMEOUT", 0.2)
    path = tmp_path / "stuck.db"
    db = Database.from_url(f"sqlite:///{path}")
    try:
        await _table(db)
        holding = threading.Event()
        holder = threading.Thread(target=_hold_write_lock, args=(path, 1.0, holding))
        holder.start()
        await asyncio.to_thread(holding.wait, 5)
        with pytest.raises(sa.exc.OperationalError, match="locked"):
            async with db.transaction() as conn:
                await conn.execute(sa.text("INSERT INTO t (n, s) VALUES (2, 'late')"))
        await asyncio.to_thread(holder.join)
        # Nothing half-done is left behind: the connection is usable and the row absent.
        async with db.transaction() as conn:
            await conn.execute(sa.text("INSERT INTO t (n, s) VALUES (3, 'after')"))
        async with db.read() as conn:
            rows = (await conn.execute(sa.text("SELECT s FROM t ORDER BY n"))).scalars().all()
        assert rows == ["other", "after"]
    finally:
        await db.dispose()


async def test_results_read_like_any_driver(tmp_path: Path) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path / 'rows.db'}")
    try:
        await _table(db)
        async with db.transaction() as conn:
            inserted = await conn.execute(
                sa.text("INSERT INTO t (n, s) VALUES (:n, :s)"),
                [{"n": n, "s": f"row {n}"} for n in range(10)],
            )
            assert inserted.rowcount == 10
            updated = await conn.execute(sa.text("UPDATE t SET s = 'even' WHERE n % 2 = 0"))
            assert updated.rowcount == 5
            returned = await conn.execute(
                sa.text("INSERT INTO t (n, s) VALUES (100, 'new') RETURNING n, s")
            )
            assert returned.one() == (100, "new")
        async with db.read() as conn:
            result = await conn.execute(sa.text("SELECT n, s FROM t ORDER BY n"))
            assert result.keys() == ["n", "s"]
            assert result.fetchone() == (0, "even")
            assert result.fetchmany(2) == [(1, "row 1"), (2, "even")]
            assert [row.n for row in result.fetchall()] == [3, 4, 5, 6, 7, 8, 9, 100]
            assert (await conn.execute(sa.text("SELECT n FROM t WHERE n < 0"))).first() is None
    finally:
        await db.dispose()


async def test_commits_do_not_checkpoint_the_checkpointer_does(tmp_path: Path) -> None:
    path = tmp_path / "wal.db"
    db = Database.from_url(f"sqlite:///{path}")
    wal = Path(f"{path}-wal")
    try:
        await _table(db)
        for n in range(200):
            async with db.transaction() as conn:
                await conn.execute(
                    sa.text("INSERT INTO t (n, s) VALUES (:n, :s)"), {"n": n, "s": "x" * 2000}
                )
        wal_size = wal.stat().st_size  # noqa: ASYNC240
        assert wal_size > 400_000, "the commits appended to the WAL"
        # The WAL's size alone would not tell (a checkpoint reuses the file without
        # shrinking it): the connections that commit must have SQLite's own checkpoints off.
        async with db.transaction() as conn:
            assert (await conn.exec_driver_sql("PRAGMA wal_autocheckpoint")).scalar() == 0
        checker = sqlite3.connect(path, isolation_level=None)
        try:
            checkpointer = sqlite_inline.Checkpointer(str(path), truncate_pages=10)
            checkpointer.checkpoint(checker)
        finally:
            checker.close()
        wal_size = wal.stat().st_size  # noqa: ASYNC240
        assert wal_size == 0, "a WAL past the threshold is copied back and truncated"
        async with db.read() as conn:
            assert (await conn.execute(sa.text("SELECT count(*) FROM t"))).scalar() == 200
    finally:
        await db.dispose()


async def _driver(conn: AsyncConnection) -> object:
    raw = await conn.get_raw_connection()
    return raw.driver_connection


async def test_transactions_reuse_kept_connections_and_a_failure_is_rolled_back(
    tmp_path: Path,
) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path / 'kept.db'}")
    try:
        await _table(db)
        async with db.transaction() as conn:
            first = await _driver(conn)
        async with db.transaction() as conn:
            assert await _driver(conn) is first, "the writer's connection is kept"
        with pytest.raises(RuntimeError):
            async with db.transaction() as conn:
                await conn.execute(sa.text("INSERT INTO t (n, s) VALUES (1, 'undone')"))
                raise RuntimeError("the unit of work fails")
        # The failed unit's connection went back through the pool's reset (a rollback).
        async with db.transaction() as conn:
            await conn.execute(sa.text("INSERT INTO t (n, s) VALUES (2, 'kept')"))
        async with db.read() as conn:
            reader = await _driver(conn)
            rows = (await conn.execute(sa.text("SELECT s FROM t"))).scalars().all()
        assert rows == ["kept"], "the failed transaction was rolled back"
        async with db.read() as conn:
            assert await _driver(conn) is reader, "an idle reader is used again"
    finally:
        await db.dispose()


async def test_a_cancelled_transaction_leaves_nothing_open_for_the_next(tmp_path: Path) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path / 'cancel.db'}")
    try:
        await _table(db)
        inside = asyncio.Event()

        async def stuck() -> None:
            async with db.transaction() as conn:
                await conn.execute(sa.text("INSERT INTO t (n, s) VALUES (1, 'never')"))
                inside.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(stuck())
        await inside.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        async with asyncio.timeout(5), db.transaction() as conn:
            await conn.execute(sa.text("INSERT INTO t (n, s) VALUES (2, 'next')"))
        async with db.read() as conn:
            rows = (await conn.execute(sa.text("SELECT s FROM t"))).scalars().all()
        assert rows == ["next"]
    finally:
        await db.dispose()


# --- the writers' lock ------------------------------------------------------------------------


async def _queue_up(lock: WriteLock, order: list[str], name: str, *, urgent: bool = False) -> None:
    async with lock.hold(urgent=urgent):
        order.append(name)
        await asyncio.sleep(0)


async def test_writers_take_turns_in_arrival_order_and_an_urgent_one_goes_first() -> None:
    lock = WriteLock()
    order: list[str] = []
    await lock.acquire()  # a writer is in its transaction; the others queue
    tasks = [asyncio.create_task(_queue_up(lock, order, name)) for name in ("a", "b", "c")]
    await asyncio.sleep(0)
    tasks.append(asyncio.create_task(_queue_up(lock, order, "claim", urgent=True)))
    await asyncio.sleep(0)
    lock.release()
    await asyncio.gather(*tasks)
    assert order == ["claim", "a", "b", "c"]
    assert not lock.locked()


async def test_a_newcomer_cannot_take_the_lock_handed_to_a_waiter() -> None:
    lock = WriteLock()
    order: list[str] = []
    await lock.acquire()
    waiter = asyncio.create_task(_queue_up(lock, order, "waiter"))
    await asyncio.sleep(0)
    lock.release()  # handed to the waiter, which has not resumed yet
    newcomer = asyncio.create_task(_queue_up(lock, order, "newcomer"))
    await asyncio.gather(waiter, newcomer)
    assert order == ["waiter", "newcomer"]


async def test_a_cancelled_waiter_loses_its_turn_and_blocks_nobody() -> None:
    lock = WriteLock()
    order: list[str] = []
    await lock.acquire()
    gone = asyncio.create_task(_queue_up(lock, order, "gone"))
    after = asyncio.create_task(_queue_up(lock, order, "after"))
    await asyncio.sleep(0)
    gone.cancel()
    await asyncio.sleep(0)
    lock.release()
    await after
    assert order == ["after"]
    assert not lock.locked()


async def test_a_waiter_cancelled_as_its_turn_came_passes_the_lock_on() -> None:
    lock = WriteLock()
    order: list[str] = []
    await lock.acquire()
    unlucky = asyncio.create_task(_queue_up(lock, order, "unlucky"))
    after = asyncio.create_task(_queue_up(lock, order, "after"))
    await asyncio.sleep(0)
    lock.release()  # the turn is handed over...
    unlucky.cancel()  # ...and the cancel arrives before the task resumes
    await after
    assert order == ["after"]
    assert unlucky.cancelled()
    assert not lock.locked()


async def test_a_statement_that_begins_its_own_transaction_waits_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    """Autobegin (a statement outside any `begin()`) waits for another process's lock in the
    greenlet, as `begin()` does: no busy handler or `time.sleep` puts the loop to sleep."""
    path = tmp_path / "autobegin.db"
    db = Database.from_url(f"sqlite:///{path}")
    try:
        await _table(db)

        async def write() -> None:
            async with db.engine.connect() as conn:
                await conn.execute(sa.text("INSERT INTO t (n, s) VALUES (2, 'autobegun')"))
                await conn.commit()

        ticks = await _loop_turns_while_another_writer_holds_the_lock(path, write)
        assert ticks >= 15, f"the loop turned only {ticks} times while the statement waited"
        async with db.read() as conn:
            rows = (await conn.execute(sa.text("SELECT s FROM t ORDER BY n"))).scalars().all()
        assert rows == ["other", "autobegun"]
    finally:
        await db.dispose()


@pytest.mark.parametrize(("setting", "pragma"), [("normal", 1), ("full", 2)])
async def test_durability_is_the_setting_and_no_connection_has_a_busy_handler(
    tmp_path: Path, setting: str, pragma: int
) -> None:
    db = Database.from_url(f"sqlite:///{tmp_path / 'sync.db'}", sqlite_synchronous=setting)
    try:
        await _table(db)
        for unit in (db.read(), db.transaction()):
            async with unit as conn:
                assert (await conn.exec_driver_sql("PRAGMA synchronous")).scalar() == pragma
                assert (await conn.exec_driver_sql("PRAGMA busy_timeout")).scalar() == 0
                mode = (await conn.exec_driver_sql("PRAGMA journal_mode")).scalar()
                assert mode == "wal"
    finally:
        await db.dispose()


def test_an_unknown_durability_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="sqlite_synchronous must be one of normal, full"):
        Database.from_url("sqlite:///:memory:", sqlite_synchronous="off")
