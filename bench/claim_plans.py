"""The query plans of the worker's claim and of the health and metrics reads, at 1,000,000
pending deliveries, on SQLite and PostgreSQL.

    .venv/bin/python bench/claim_plans.py [--pending 1000000] [--settled 1000000]
                                          [--store sqlite|postgresql|both]

For each store it builds a database (a SQLite file in a temporary directory; a throwaway
`plans_<random>` PostgreSQL database on 127.0.0.1:5432, dropped after) with two sites and
five webhooks, `--pending` pending deliveries and `--settled` succeeded ones, inserted in
bulk (SQLite: `executemany` on the driver; PostgreSQL: `INSERT … SELECT` from
`generate_series`):

- A (site 1): half of them, nine tenths due, one tenth scheduled later; 3 calls in flight;
- B (site 1): a quarter, all due; its destination has an adaptive limit of 4;
- C (site 1): the rest but one, all due; its destination's breaker is open, a probe due;
- D (site 2): one due delivery;
- E (site 1): the settled history: `--settled` succeeded deliveries, and one pending
  delivery scheduled for later (nothing due), as most webhooks are most of the time.

Then it runs the real code: one `claims.claim` (limit 100, rolled back), `calls_in_flight.forget`,
`health.of_webhooks` for the four webhooks (as `GET /webhooks/{id}` and the list read them),
and everything a `/metrics` scrape reads (`metrics.refresh_queue_gauges`, with the
per-webhook series). Each call runs 8 times (rolled back each time); the time of the first
run and the median of the last three are printed: asyncpg prepares every statement, and from
the sixth run PostgreSQL may execute a prepared statement with a *generic* plan, made
without the parameters' values. A ninth run, untimed, captures every statement (SQLite: the
driver's trace callback, with the parameters filled in; PostgreSQL: SQLAlchemy's cursor
event), printed with its plan: SQLite's `EXPLAIN QUERY PLAN`, and PostgreSQL's generic
plan (`PREPARE` and `EXPLAIN EXECUTE` under `plan_cache_mode = force_generic_plan`, the
worst a prepared statement can settle on); on PostgreSQL it also prints, through
`auto_explain`, the plan of each statement the claim's functions run on the server (marked
"in" the function), the plans they keep. PostgreSQL is `VACUUM ANALYZE`d first, as
autovacuum would (`--unanalyzed` leaves its statistics empty, as on a new installation
whose autovacuum has not yet caught up with a burst); SQLite is left without statistics, as
docuhooks leaves it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sqlite3
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from docuhooks.core.destinations import destination_of, state_key
from docuhooks.delivery import calls_in_flight, claims, health, metrics
from docuhooks.store.database import Database
from docuhooks.store.prepared import Prepared
from docuhooks.store.prepared import _values as prepared_values
from docuhooks.store.schema import deliveries, destinations, events, flights, sites, webhooks

POSTGRES_ADMIN = os.environ.get(
    "DOCUHOOKS_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
NOW = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
HOOKS = ("A", "B", "C", "D", "E")
CHUNK = 50_000


@asynccontextmanager
async def store(kind: str, directory: Path) -> AsyncIterator[Database]:
    if kind == "sqlite":
        db = Database.from_url(f"sqlite:///{directory / 'plans.db'}")
        try:
            await db.upgrade()
            yield db
        finally:
            await db.dispose()
        return
    import asyncpg

    name = f"plans_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(POSTGRES_ADMIN)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    db = Database.from_url(POSTGRES_ADMIN.rsplit("/", 1)[0] + f"/{name}")
    try:
        await db.upgrade()
        yield db
    finally:
        await db.dispose()
        admin = await asyncpg.connect(POSTGRES_ADMIN)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


# --- the data ----------------------------------------------------------------------------------


def _hook_id(letter: str) -> str:
    return f"00000000-0000-7000-8000-00000000000{HOOKS.index(letter) + 1}"


def _shares(pending: int) -> dict[str, tuple[int, int]]:
    """(due, scheduled) deliveries of each webhook."""
    a, b = pending // 2, pending // 4
    return {
        "A": (a - a // 10, a // 10),
        "B": (b, 0),
        "C": (pending - a - b - 1, 0),
        "D": (1, 0),
        "E": (0, 1),
    }


async def populate(db: Database, pending: int, settled: int, *, analyze: bool = True) -> None:
    if db.dialect == "postgresql" and not analyze:
        # Nor may autovacuum analyze them while the bench runs.
        async with db.transaction() as conn:
            for table in ("deliveries", "events", "flights", "webhooks", "destinations"):
                await conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false)")
    async with db.transaction() as conn:
        for n in (1, 2):
            await conn.execute(
                sites.insert().values(
                    id=f"site-{n}",
                    name=f"Site {n}",
                    base_url=f"https://s{n}.example",
                    created_at=NOW,
                )
            )
            await conn.execute(
                events.insert().values(
                    id=f"event-{n}",
                    site_id=f"site-{n}",
                    event_type="NewWorkItemVersionComplete",
                    payload={},
                    created_at=NOW,
                )
            )
        for letter in HOOKS:
            url = f"https://{letter.lower()}.example/hook"
            await conn.execute(
                webhooks.insert().values(
                    id=_hook_id(letter),
                    site_id="site-2" if letter == "D" else "site-1",
                    name=f"hook {letter}",
                    url=url,
                    event_type="NewWorkItemVersionComplete",
                    auth_method="HMAC",
                    request_verb="POST",
                    active=True,
                    accept_untrusted_ssl=False,
                    work_group_ids=[],
                    template_ids=[],
                    sort_order=0,
                    timeout_seconds=15,
                    ordered_delivery=False,
                    max_concurrency=10,
                    destination=destination_of(url),
                    created_at=NOW,
                    modified_at=NOW,
                )
            )
        await conn.execute(
            destinations.insert(),
            [
                {
                    "origin": state_key("site-1", "https://b.example:443"),
                    "state": "closed",
                    "failures": 0,
                    "since": None,
                    "next_probe_at": None,
                    "concurrency": 4,
                    "updated_at": NOW,
                },
                {
                    "origin": state_key("site-1", "https://c.example:443"),
                    "state": "open",
                    "failures": 7,
                    "since": NOW - timedelta(minutes=5),
                    "next_probe_at": NOW - timedelta(seconds=1),
                    "concurrency": 1,
                    "updated_at": NOW,
                },
            ],
        )
    for letter, (due, scheduled) in _shares(pending).items():
        if db.dialect == "postgresql":
            await _series_postgresql(db, letter, due, scheduled)
        else:
            await _rows_sqlite(db, letter, due, scheduled)
    if db.dialect == "postgresql":
        await _series_postgresql(db, "E", settled, 0, status="succeeded")
    else:
        await _rows_sqlite(db, "E", settled, 0, status="succeeded")
    async with db.transaction() as conn:
        ids = (
            await conn.execute(
                sa.select(deliveries.c.id)
                .where(deliveries.c.webhook_id == _hook_id("A"))
                .order_by(deliveries.c.next_attempt_at)
                .limit(3)
            )
        ).scalars()
        await conn.execute(
            flights.insert(),
            [
                {
                    "delivery_id": delivery_id,
                    "webhook_id": _hook_id("A"),
                    "site_id": "site-1",
                    "destination": "https://a.example:443",
                    "owner": "other-worker",
                    "expires_at": NOW + timedelta(minutes=5),
                }
                for delivery_id in ids
            ],
        )
    if db.dialect == "postgresql" and analyze:
        async with db.engine.connect() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            await conn.exec_driver_sql("VACUUM ANALYZE")


async def _rows_sqlite(
    db: Database, letter: str, due: int, scheduled: int, *, status: str = "pending"
) -> None:
    async with db.transaction() as conn:
        stamp = deliveries.c.next_attempt_at.type.dialect_impl(conn.dialect).bind_processor(
            conn.dialect
        )
        assert stamp is not None
        driver: sqlite3.Connection = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr,assignment]
        site = "site-2" if letter == "D" else "site-1"
        total = due + scheduled
        for start in range(0, total, CHUNK):
            rows = []
            for i in range(start, min(total, start + CHUNK)):
                # Due ones spread over the last day; scheduled ones over the next.
                offset = timedelta(seconds=-86_400 + 86_400 * i / max(due, 1))
                at = NOW + (offset if i < due else timedelta(seconds=60 + i - due))
                created = stamp(at - timedelta(minutes=1))
                rows.append(
                    (
                        f"{HOOKS.index(letter) + 1:04x}{status[0]:0>4}-0000-7000-8000-{i:012x}",
                        f"event-{site[-1]}",
                        _hook_id(letter),
                        site,
                        status,
                        stamp(at) if status == "pending" else None,
                        created,
                    )
                )
            driver.executemany(
                "INSERT INTO deliveries (id, event_id, webhook_id, site_id, status, attempts, "
                "next_attempt_at, created_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?)",
                rows,
            )


async def _series_postgresql(
    db: Database, letter: str, due: int, scheduled: int, *, status: str = "pending"
) -> None:
    site = "site-2" if letter == "D" else "site-1"
    async with db.transaction() as conn:
        await conn.execute(
            sa.text(
                "INSERT INTO deliveries (id, event_id, webhook_id, site_id, status, attempts, "
                "next_attempt_at, created_at) "
                "SELECT md5(:letter || :status || i::text)::uuid::text, :event, :hook, :site, "
                "  :status, 0, "
                "  CASE WHEN :status <> 'pending' THEN NULL WHEN i < :due "
                "    THEN CAST(:now AS timestamptz) "
                "         - interval '1 day' + interval '1 day' * i / greatest(:due, 1) "
                "    ELSE CAST(:now AS timestamptz) + interval '1 second' * (60 + i - :due) END, "
                "  CAST(:now AS timestamptz) - interval '1 day' "
                "FROM generate_series(0, :total - 1) AS i"
            ),
            {
                "letter": letter,
                "status": status,
                "event": f"event-{site[-1]}",
                "hook": _hook_id(letter),
                "site": site,
                "due": due,
                "now": NOW,
                "total": due + scheduled,
            },
        )


# --- capturing and explaining ---------------------------------------------------------------


class Capture:
    """Every statement sent to the database while `on`, with its parameters."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.statements: list[tuple[str, Any]] = []
        self.on = False

    def attach(self, conn: AsyncConnection) -> None:
        if self.db.dialect == "sqlite":
            driver: sqlite3.Connection = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr,assignment]
            driver.set_trace_callback(self._traced)
        else:
            sa.event.listen(conn.sync_connection, "before_cursor_execute", self._executed)
            _CAPTURES[:] = [self]  # and what `Prepared` sends on asyncpg's own calls

    def _traced(self, sql: str) -> None:
        if self.on and not sql.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            self.statements.append((sql, None))

    def _executed(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, *_rest: Any
    ) -> None:
        if self.on:
            self.statements.append((statement, parameters))


#: The capture `Prepared`'s statements on asyncpg go to: they bypass SQLAlchemy's cursor,
#: and so its events.
_CAPTURES: list[Capture] = []


def _capturing_prepared() -> None:
    """Make `Prepared`'s asyncpg calls report their SQL and values to `_CAPTURES`."""
    run, many = Prepared._run_asyncpg, Prepared._executemany_asyncpg

    def report(prepared: Prepared, conn: AsyncConnection, params: Any) -> None:
        for capture in _CAPTURES:
            if capture.on:
                compiled = prepared._prepare_asyncpg(conn, params)
                capture.statements.append((compiled.sql, tuple(prepared_values(compiled, params))))

    async def traced_run(
        prepared: Prepared, conn: AsyncConnection, driver: Any, params: Any
    ) -> Any:
        report(prepared, conn, params)
        return await run(prepared, conn, driver, params)

    async def traced_many(
        prepared: Prepared, conn: AsyncConnection, driver: Any, params: Any
    ) -> None:
        report(prepared, conn, params[0])
        await many(prepared, conn, driver, params)

    Prepared._run_asyncpg = traced_run  # type: ignore[method-assign]
    Prepared._executemany_asyncpg = traced_many  # type: ignore[method-assign]


_capturing_prepared()


def _literal(value: Any) -> str:
    """A value for `EXECUTE`, which takes no parameters: quoted text that PostgreSQL casts
    to the prepared statement's parameter type."""
    if value is None:
        return "NULL"
    if isinstance(value, list | tuple):  # an array parameter, as an array literal's text
        return _literal("{" + ",".join('"' + str(v).replace('"', '\\"') + '"' for v in value) + "}")
    text = value.isoformat() if isinstance(value, datetime) else str(value)
    return "'" + text.replace("'", "''") + "'"


async def explain(db: Database, sql: str, parameters: Any) -> str:
    async with db.engine.connect() as conn:
        if db.dialect == "sqlite":
            driver: sqlite3.Connection = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr,assignment]
            rows = driver.execute(f"EXPLAIN QUERY PLAN {sql}").fetchall()
            depth: dict[int, int] = {0: 0}
            lines = []
            for node, parent, _unused, detail in rows:
                depth[node] = depth.get(parent, 0) + 1
                lines.append("  " * depth[node] + detail)
            return "\n".join(lines)
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        # An executemany's parameters are a list of rows: the plan is the first row's.
        params = parameters[0] if isinstance(parameters, list) else parameters or ()
        await pg.execute("SET plan_cache_mode = force_generic_plan")
        await pg.execute(f"PREPARE shown AS {sql}")
        arguments = f"({', '.join(_literal(p) for p in params)})" if params else ""
        plan = await pg.fetch(f"EXPLAIN EXECUTE shown{arguments}")
        await pg.execute("DEALLOCATE shown")
        await pg.execute("RESET plan_cache_mode")
        return "\n".join(row[0] for row in plan)


def _collapsed(statements: list[tuple[str, Any]]) -> list[tuple[str, Any, int]]:
    """Runs of one statement with different values (an executemany, traced row by row on
    SQLite) as one, with their count."""
    shown: list[tuple[str, Any, int]] = []
    for sql, parameters in statements:
        shape = re.sub(r"'[^']*'", "?", sql)
        if shown and re.sub(r"'[^']*'", "?", shown[-1][0]) == shape:
            shown[-1] = (shown[-1][0], shown[-1][1], shown[-1][2] + 1)
        else:
            shown.append((sql, parameters, 1))
    return shown


RUNS = 8


async def run(db: Database, title: str, call: Callable[[AsyncConnection], Awaitable[Any]]) -> None:
    """Run `call` `RUNS` times on one connection, each in a transaction rolled back, then
    once more to capture its statements; print the times and the statements with their
    plans (on PostgreSQL, those the functions run too)."""
    capture = Capture(db)
    took = []
    nested: list[tuple[str, str]] = []
    stop_explaining: Callable[[], Awaitable[None]] | None = None
    async with db.engine.connect() as conn:
        capture.attach(conn)
        for attempt in range(RUNS + 1):
            # The last run, untimed, captures the statements and the functions' plans.
            capture.on = attempt == RUNS
            if capture.on and db.dialect == "postgresql":
                stop_explaining = await _explain_nested(conn, nested)
            await conn.begin()
            started = time.perf_counter()
            await call(conn)
            took.append((time.perf_counter() - started) * 1000)
            capture.on = False
            await conn.rollback()
        took.pop()
        if stop_explaining is not None:
            await stop_explaining()
    print(
        f"\n### {title} ({db.dialect}): first run {took[0]:.1f} ms, runs 6-8 "
        f"{statistics.median(took[5:]):.1f} ms (median); {len(capture.statements)} statements"
    )
    for sql, parameters, times in _collapsed(capture.statements):
        print("\n" + " ".join(sql.split()) + (f"  -- ×{times}" if times > 1 else ""))
        print("  -> plan:")
        for line in (await explain(db, sql, parameters)).splitlines():
            print(f"     {line}")
    shown: list[tuple[str, str, str, int]] = []
    for where, message in nested:
        lines = message.split("Query Text: ", 1)[1].splitlines()
        start = next(i for i, line in enumerate(lines) if "(cost=" in line)
        query = " ".join(" ".join(re.sub(r"--.*", "", line) for line in lines[:start]).split())
        if query.startswith('SELECT 1 FROM ONLY "public".'):
            continue  # a foreign key's check, by the referenced table's primary key
        if shown and shown[-1][:2] == (where, query):
            shown[-1] = (*shown[-1][:3], shown[-1][3] + 1)
        else:
            shown.append((where, query, "\n".join(lines[start:]), 1))
    for where, query, plan, times in shown:
        print(f"\n(in {where}) {query}" + (f"  -- ×{times}" if times > 1 else ""))
        print("  -> plan:")
        for line in plan.splitlines():
            print(f"     {line}")


async def _explain_nested(
    conn: AsyncConnection, nested: list[tuple[str, str]]
) -> Callable[[], Awaitable[None]]:
    """Collect, through `auto_explain`, the plans of the statements the hot path's functions
    run on the server (each function's kept plan), with the function they ran in, until the
    returned call stops it."""
    raw = await conn.get_raw_connection()
    pg: Any = raw.driver_connection
    await pg.execute("LOAD 'auto_explain'")
    for setting in (
        "auto_explain.log_format = text",
        "auto_explain.log_min_duration = 0",
        "auto_explain.log_nested_statements = on",
        "client_min_messages = log",
    ):
        await pg.execute(f"SET {setting}")

    def listener(_conn: Any, message: Any) -> None:
        function = re.search(r"PL/pgSQL function (\w+)\(", message.context or "")
        if "Query Text: " in message.message and function is not None:
            nested.append((function.group(1), message.message))

    pg.add_log_listener(listener)

    async def stop() -> None:
        pg.remove_log_listener(listener)
        await pg.execute("RESET ALL")

    return stop


async def plans(kind: str, pending: int, settled: int, *, analyze: bool = True) -> None:
    with tempfile.TemporaryDirectory() as directory:
        async with store(kind, Path(directory)) as db:
            started = time.perf_counter()
            await populate(db, pending, settled, analyze=analyze)
            shares = ", ".join(
                f"{k} {d:,} due + {s:,} later" for k, (d, s) in _shares(pending).items()
            )
            print(
                f"\n## {kind}: {pending:,} pending deliveries ({shares}) and {settled:,} "
                f"settled (E){'' if analyze or kind == 'sqlite' else ', not analyzed'}, "
                f"built in {time.perf_counter() - started:.0f} s"
            )

            # What the last run of a call found (each call runs several times).
            said: dict[str, str] = {}

            async def claim(conn: AsyncConnection) -> None:
                jobs = await claims.claim(
                    conn,
                    owner="plans",
                    now=NOW,
                    lease=timedelta(seconds=60),
                    limit=100,
                    probe_interval=timedelta(seconds=30),
                    caps=claims.Caps(),
                )
                taken: dict[str, int] = {}
                for job in jobs:
                    taken[job.webhook.name] = taken.get(job.webhook.name, 0) + 1
                said["claim"] = f"claimed {len(jobs)}: {dict(sorted(taken.items()))}"

            async def forget(conn: AsyncConnection) -> None:
                await calls_in_flight.forget(conn, owner="plans", delivery_ids=["x", "y"])

            async def one_webhook(conn: AsyncConnection) -> None:
                row = (
                    await conn.execute(sa.select(webhooks).where(webhooks.c.id == _hook_id("A")))
                ).one()
                found = (await health.of_webhooks(conn, [row], now=NOW))[row.id]
                said["health"] = (
                    f"health of A: in flight {found.in_flight}, limit {found.concurrency_limit}, "
                    f"due {found.due_backlog} (capped: {found.due_backlog_capped}), "
                    f"oldest due {found.oldest_due_age_seconds(NOW):.0f} s"
                )

            async def page(conn: AsyncConnection) -> None:
                rows = (await conn.execute(sa.select(webhooks).order_by(webhooks.c.id))).all()
                await health.of_webhooks(conn, rows, now=NOW, due_cap=health.LIST_DUE_CAP)

            async def scrape(conn: AsyncConnection) -> None:
                await metrics.refresh_queue_gauges(
                    _Borrowed(conn),  # type: ignore[arg-type]
                    now=NOW,
                    lease_seconds=60,
                    per_webhook=True,
                )

            await run(db, "claim (limit 100)", claim)
            print(f"\n{said['claim']}")
            await run(db, "calls_in_flight.forget", forget)
            await run(db, "GET /webhooks/{id}: health", one_webhook)
            print(f"\n{said['health']}")
            await run(db, "the webhook list: health of a page", page)
            await run(db, "/metrics scrape (per-webhook series on)", scrape)


class _Borrowed:
    """A `Database` whose `read()` is the connection being captured."""

    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        yield self.conn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pending", type=int, default=1_000_000)
    parser.add_argument("--settled", type=int, default=1_000_000)
    parser.add_argument("--store", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument(
        "--unanalyzed",
        action="store_true",
        help="PostgreSQL: leave the tables without statistics (no VACUUM ANALYZE)",
    )
    args = parser.parse_args()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(open(os.devnull, "w")))  # noqa: SIM115
    kinds = ["sqlite", "postgresql"] if args.store == "both" else [args.store]
    for kind in kinds:
        asyncio.run(plans(kind, args.pending, args.settled, analyze=not args.unanalyzed))


if __name__ == "__main__":
    main()
