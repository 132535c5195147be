"""What a unit of work costs the process, beyond its statements, on PostgreSQL.

    .venv/bin/python bench/store.py [--units 3000] [--rounds 3]

One statement (`SELECT 1` through `Prepared`, as the hot paths run theirs) in each kind of
unit of work `Database` offers, one after another on one connection's worth of work, timed
by this thread's CPU (`time.thread_time`: what the process spends, not what the server or
the wire does), against, in the same run:

- **raw asyncpg**: `BEGIN`, the statement and `COMMIT` on one asyncpg connection, or the
  statement alone for autocommit: the floor;
- **through the pool**: the same unit of work as SQLAlchemy runs it (`engine.begin()`, or
  `engine.connect()` in autocommit), each taking a connection from the pool and giving it
  back: what `Database` did before it kept connections (`store.postgres_connections`).

Each figure is the best of `--rounds`. Needs PostgreSQL on 127.0.0.1:5432 (trust).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Awaitable, Callable

import asyncpg
import sqlalchemy as sa
import uvloop

from docuhooks.store.database import Database
from docuhooks.store.prepared import Prepared

URL = os.environ.get("DOCUHOOKS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
SELECT_ONE = Prepared(sa.select(sa.literal(1).label("one")))


async def _cpu_per_unit(unit: Callable[[], Awaitable[object]], units: int, rounds: int) -> float:
    """The best round's thread CPU per unit, in µs."""
    for _ in range(min(200, units)):
        await unit()
    best = float("inf")
    for _ in range(rounds):
        started = time.thread_time()
        for _ in range(units):
            await unit()
        best = min(best, (time.thread_time() - started) / units * 1e6)
    return best


async def measure(units: int, rounds: int) -> list[tuple[str, float, float, float]]:
    """(kind, raw asyncpg, through the pool, `Database`) in µs per unit."""
    db = Database.from_url(URL)
    raw = await asyncpg.connect(URL)
    try:

        async def raw_transaction() -> None:
            async with raw.transaction():
                await raw.fetch("SELECT 1 AS one")

        async def raw_statement() -> None:
            await raw.fetch("SELECT 1 AS one")

        async def pooled_transaction() -> None:
            async with db.engine.begin() as conn:
                await SELECT_ONE.all(conn, {})

        async def pooled_autocommit() -> None:
            async with db.engine.connect() as conn:
                await conn.execution_options(isolation_level="AUTOCOMMIT")
                await SELECT_ONE.all(conn, {})

        async def transaction() -> None:
            async with db.transaction() as conn:
                await SELECT_ONE.all(conn, {})

        async def autocommit() -> None:
            async with db.autocommit() as conn:
                await SELECT_ONE.all(conn, {})

        async def read() -> None:
            async with db.read() as conn:
                await SELECT_ONE.all(conn, {})

        rows = []
        for kind, floor, pooled, ours in (
            ("transaction", raw_transaction, pooled_transaction, transaction),
            ("read", raw_transaction, pooled_transaction, read),
            ("autocommit", raw_statement, pooled_autocommit, autocommit),
        ):
            rows.append(
                (
                    kind,
                    await _cpu_per_unit(floor, units, rounds),
                    await _cpu_per_unit(pooled, units, rounds),
                    await _cpu_per_unit(ours, units, rounds),
                )
            )
        return rows
    finally:
        await raw.close()
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = uvloop.run(measure(args.units, args.rounds))
    print(f"{args.units} units a round, best of {args.rounds}; this process's CPU per unit, µs\n")
    print(
        f"{'unit of work':<14}{'raw asyncpg':>13}{'via the pool':>14}{'Database':>10}{'saved':>8}"
    )
    for kind, floor, pooled, ours in rows:
        print(f"{kind:<14}{floor:13.0f}{pooled:14.0f}{ours:10.0f}{pooled - ours:8.0f}")


if __name__ == "__main__":
    main()
