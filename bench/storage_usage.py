"""What counting a site's storage costs a write, before and after the running totals
(migration 0035), on SQLite and PostgreSQL in the same run.

    .venv/bin/python bench/storage_usage.py [--interviews 200000] [--documents 2000]
                                            [--store sqlite|postgresql|both] [--runs 50]

For each store it builds a database at revision 0034 (a SQLite file in a temporary
directory; a throwaway `usage_<random>` PostgreSQL database on 127.0.0.1:5432, dropped
after) with one site keeping `--documents` work items, each with a version, a document of
4 KiB and `--interviews / --documents` interviews (answer sets of some kilobytes each, as
their `answers_size` says), and a second site keeping one of each. Then, on the large site:

- *a write*, before: a transaction changing an interview's answers (`answers_size`), at
  0034, without triggers;
- *the migration*: the upgrade to 0035 (its triggers, and the sums it starts from);
- *a write*, after: the same transaction, now with its trigger's row;
- *recount*: what every write that stores bytes counted before 0035, under the site's lock
  (`storage.recount`: a sum over the site's documents, templates and answer sets);
- *admit*: what it counts now (`storage.admit`, which reads the site's running totals,
  its rows folded first);
- *fold*: folding `FOLD_AFTER` + 1 rows of the site into one, as a write does once they
  are that many.

Each is timed `--runs` times (the migration once) inside its transaction, without its
`BEGIN` and `COMMIT`; the median and the 95th percentile are printed.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog

from docuhooks.platform import storage
from docuhooks.store.database import Database, alembic_config
from docuhooks.store.schema import (
    documents,
    interviews,
    sites,
    storage_usage,
    templates,
    work_groups,
    work_item_versions,
    work_items,
)
from docuhooks.store.scoped import lock_site

POSTGRES_ADMIN = os.environ.get(
    "DOCUHOOKS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
NOW = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
LARGE, SMALL = "site-large", "site-small"
CHUNK = 10_000
#: What an interview's answers take, as kept beside them: a few kilobytes.
ANSWERS_SIZE = 3_000
QUOTA = storage.StorageQuota(bytes=1 << 50, files=1 << 30)


def _revision(connection: sa.Connection, revision: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), revision)


@asynccontextmanager
async def store(kind: str, directory: Path) -> AsyncIterator[Database]:
    """An empty database of `kind`, at revision 0034."""
    if kind == "sqlite":
        db = Database.from_url(f"sqlite:///{directory / 'usage.db'}")
        name = None
    else:
        import asyncpg

        name = f"usage_{uuid.uuid4().hex[:12]}"
        admin = await asyncpg.connect(POSTGRES_ADMIN)
        await admin.execute(f'CREATE DATABASE "{name}"')
        await admin.close()
        db = Database.from_url(POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    try:
        async with db.engine.begin() as conn:
            await conn.run_sync(_revision, "0034")
        yield db
    finally:
        await db.dispose()
        if name is not None:
            import asyncpg

            admin = await asyncpg.connect(POSTGRES_ADMIN)
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            await admin.close()


async def _insert(db: Database, table: sa.Table, rows: list[dict[str, Any]]) -> None:
    for start in range(0, len(rows), CHUNK):
        async with db.transaction() as conn:
            await conn.execute(table.insert(), rows[start : start + CHUNK])


async def populate(db: Database, items: int, interviews_each: int) -> None:
    for site, count in ((LARGE, items), (SMALL, 1)):
        async with db.transaction() as conn:
            await conn.execute(
                sites.insert().values(id=site, name=site, base_url="https://x", created_at=NOW)
            )
            await conn.execute(
                work_groups.insert().values(
                    id=f"{site}-group", site_id=site, name="Clients", created_at=NOW
                )
            )
            await conn.execute(
                templates.insert().values(
                    id=f"{site}-template",
                    site_id=site,
                    name="Letter",
                    file_name="letter.docx",
                    content=b"docx" * 10_000,
                    sha256="0" * 64,
                    variables=[],
                    event_elements=[],
                    created_at=NOW,
                )
            )
        ids = [f"{site}-{n}" for n in range(count)]
        common = {"site_id": site, "created_at": NOW}
        await _insert(
            db,
            work_items,
            [
                {
                    **common,
                    "id": i,
                    "work_group_id": f"{site}-group",
                    "template_id": f"{site}-template",
                    "name": i,
                }
                for i in ids
            ],
        )
        await _insert(
            db,
            work_item_versions,
            [
                {
                    **common,
                    "id": i,
                    "work_item_id": i,
                    "version_number": 1,
                    "status": "InProgress",
                    "answers": {"answers": []},
                    "answers_size": ANSWERS_SIZE,
                }
                for i in ids
            ],
        )
        await _insert(
            db,
            documents,
            [
                {
                    **common,
                    "id": i,
                    "version_id": i,
                    "name": "Letter",
                    "file_name": "letter.pdf",
                    "content_type": "application/pdf",
                    "size": 4096,
                    "sha256": "0" * 64,
                    "content": b"%" * 4096,
                    "assembled_order": 0,
                }
                for i in ids
            ],
        )
        await _insert(
            db,
            interviews,
            [
                {
                    **common,
                    "id": f"{i}-{n}",
                    "work_item_id": i,
                    "version_id": i,
                    "answers": {"answers": []},
                    "answers_size": ANSWERS_SIZE,
                    "status": "finished",
                }
                for i in ids
                for n in range(interviews_each)
            ],
        )
    if db.dialect == "postgresql":
        async with db.autocommit() as conn:
            await conn.exec_driver_sql("VACUUM ANALYZE")


async def timed(
    db: Database, runs: int, step: Callable[[Any, int], Awaitable[None]]
) -> list[float]:
    """Milliseconds of `step` in each of `runs` transactions, without BEGIN and COMMIT."""
    took = []
    for run in range(runs):
        async with db.transaction() as conn:
            started = time.perf_counter()
            await step(conn, run)
            took.append((time.perf_counter() - started) * 1000)
    return took


async def write(conn: Any, run: int) -> None:
    await conn.execute(
        interviews.update()
        .where(interviews.c.id == f"{LARGE}-{run % 100}-0")
        .values(answers_size=ANSWERS_SIZE + run % 2)
    )


async def recount(conn: Any, run: int) -> None:
    await lock_site(conn, LARGE)
    await storage.recount(conn, LARGE)


async def admit(conn: Any, run: int) -> None:
    await storage.admit(conn, QUOTA, LARGE, more_bytes=1, what="a byte")


async def fold_rows(conn: Any, run: int) -> None:
    await storage.fold(conn, LARGE)


async def run_store(
    kind: str, items: int, interviews_each: int, runs: int
) -> list[tuple[str, ...]]:
    rows: list[tuple[str, ...]] = []

    def report(what: str, took: list[float]) -> None:
        ordered = sorted(took)
        p95 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
        rows.append((kind, what, f"{statistics.median(took):.3f}", f"{p95:.3f}", str(len(took))))

    with tempfile.TemporaryDirectory() as directory:
        async with store(kind, Path(directory)) as db:
            started = time.perf_counter()
            await populate(db, items, interviews_each)
            print(f"{kind}: populated in {time.perf_counter() - started:.1f} s", flush=True)
            report("a write, before (no trigger)", await timed(db, runs, write))
            started = time.perf_counter()
            async with db.engine.begin() as conn:
                await conn.run_sync(_revision, "head")
            report("migration 0035", [(time.perf_counter() - started) * 1000])
            report("a write, after (its trigger's row)", await timed(db, runs, write))
            async with db.transaction() as conn:
                await storage.fold(conn, LARGE)
                assert await storage.usage(conn, LARGE) == await storage.recount(conn, LARGE)
            report("recount, under the site's lock (before)", await timed(db, runs, recount))
            report("admit, the running totals (after)", await timed(db, runs, admit))
            filler = [
                {"site_id": LARGE, "bytes": 0, "files": 0} for _ in range(storage.FOLD_AFTER + 1)
            ]
            took = []
            for _ in range(runs):
                async with db.transaction() as conn:
                    await conn.execute(storage_usage.insert(), filler)
                took += await timed(db, 1, fold_rows)
            report(f"fold of {storage.FOLD_AFTER + 1} rows", took)
    return rows


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interviews", type=int, default=200_000)
    parser.add_argument("--documents", type=int, default=2_000)
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(30))
    kinds = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    each = max(1, args.interviews // args.documents)
    print(
        f"a site of {args.documents:,} work items, documents and versions and "
        f"{args.documents * each:,} interviews; {args.runs} runs each"
    )
    rows = [("store", "what", "median ms", "p95 ms", "runs")]
    for kind in kinds:
        rows += await run_store(kind, args.documents, each, args.runs)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    asyncio.run(main())
