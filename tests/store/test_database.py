"""SQLite write transactions of one process queue in order on the Database's own lock."""

import asyncio
from pathlib import Path

import sqlalchemy as sa

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
