"""The claim and the recorder read rows by key on tables PostgreSQL has no statistics for.

A new installation's tables have none until autovacuum analyzes them (and a server whose
autovacuum is off, or behind a burst, may not for long). On such tables the planner joined
the ids of a claim's share and of a batch of outcomes to a scan of the whole `deliveries`
table, and scanned `flights` to forget ended calls: milliseconds a call at a few thousand
rows, where the index takes a fraction of one. `docuhooks_claim` and
`docuhooks_record_successes` now run with `enable_seqscan` and `jit` off (migration 0022), as
does `docuhooks_jobs` (0024).
They also keep one plan per statement, made without the parameters' values
(`plan_cache_mode = force_generic_plan`, migration 0023): replanned on every call, as
PostgreSQL's default did for them, the planning cost more than the statements. These tests
check those settings, and show the plans of the statements inside the functions as they run
(the kept plans, from the first call), through `auto_explain`, whose messages the session
asks to receive.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection
from tests.conftest import new_postgres_database
from tests.delivery.delivery_support import event_in_bulk, make_webhook, pending_in_bulk
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.delivery import claims, recorder_queries


@pytest.fixture
def db_url() -> Iterator[str]:
    """A PostgreSQL database of the test's own: the session's shared one has statistics
    from earlier tests."""
    with new_postgres_database("docuhooks_unanalyzed") as url:
        yield url


#: Due deliveries: few enough that, without statistics, a scan of the table looks cheap.
DUE = 3_000
#: The neighbour's, all older.
BACKLOG = 10_000


@pytest.fixture
async def hooks(ctx: AppContext, site: SiteUsers) -> tuple[str, str]:
    """A webhook with `DUE` due deliveries and a neighbour with an older backlog, their
    tables never analyzed."""
    hook, _ = await make_webhook(ctx, site, "https://receiver.example/hook", maxConcurrency=100)
    neighbour, _ = await make_webhook(ctx, site, "https://neighbour.example/hook")
    async with ctx.db.transaction() as conn:
        # Nor may autovacuum analyze them during the test, on a server where it runs.
        for table in ("deliveries", "events", "flights", "webhooks"):
            await conn.execute(sa.text(f"ALTER TABLE {table} SET (autovacuum_enabled = false)"))
        await event_in_bulk(conn, site.site_id)
        await pending_in_bulk(
            conn,
            site_id=site.site_id,
            hook=hook,
            n=DUE,
            prefix="d",
            since=timedelta(hours=1),
            step=timedelta(milliseconds=1),
        )
        # A neighbour's older backlog: a read of due deliveries in their order, not the
        # webhook's, would step over it.
        await pending_in_bulk(
            conn,
            site_id=site.site_id,
            hook=neighbour,
            n=BACKLOG,
            prefix="n",
            since=timedelta(hours=2),
            step=timedelta(milliseconds=1),
        )
        analyzed = await conn.scalar(
            sa.text(
                "SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'deliveries' "
                "AND (last_analyze IS NOT NULL OR last_autoanalyze IS NOT NULL)"
            )
        )
    assert analyzed == 0
    return hook, neighbour


async def test_the_claim_and_the_recorder_read_deliveries_and_flights_by_key(
    ctx: AppContext, site: SiteUsers, hooks: tuple[str, str]
) -> None:
    now = ctx.now()
    async with ctx.db.autocommit() as conn, kept_plans(conn) as plans:
        jobs = await claims.claim(
            conn,
            owner="w",
            now=now,
            lease=timedelta(seconds=30),
            limit=100,
            probe_interval=timedelta(seconds=30),
            caps=claims.Caps(destination=100, site=100),
            ended=[],
        )
        assert {job.webhook.id for job in jobs} == set(hooks)
        await recorder_queries.record_successes(
            conn,
            owner="w",
            successes=[_success(job, site.site_id, now) for job in jobs],
            stat_rows=[],
        )

    async with ctx.db.transaction() as conn:
        bodies = await conn.scalar(
            sa.text(
                "SELECT string_agg(prosrc, ' ') FROM pg_proc "
                "WHERE proname IN "
                "('docuhooks_claim', 'docuhooks_jobs', 'docuhooks_record_successes')"
            )
        )
    run = _as_run(bodies)
    kept = [plan for plan in plans if _query_text(plan) in run]
    statements = " | ".join(_query_text(plan) for plan in kept)
    for part in (
        "UPDATE deliveries d SET lease_owner",  # the lease
        "UPDATE deliveries d SET status = 'succeeded'",  # the settle
        "FOR NO KEY UPDATE",  # the locks (PERFORM, run as SELECT)
        "FROM flights f WHERE f.webhook_id",  # the counts (SELECT … INTO)
        "DELETE FROM flights",
        "FROM deliveries d JOIN events e",  # the jobs' rows (`docuhooks_jobs`)
    ):
        assert part in statements, (part, statements)
    nested = "\n".join(kept)
    # Each count of calls in flight reads its own index: the expiry, a filter, is no index
    # condition for which another `flights` index could be scanned whole.
    for key, index in (
        ("webhook_id", "ix_flights_webhook"),
        ("destination", "ix_flights_destination"),
        ("site_id", "ix_flights_site"),
    ):
        counts = [plan for plan in kept if f"FROM flights f WHERE f.{key} =" in _query_text(plan)]
        assert counts, key
        assert all(f"using {index} on flights f " in plan for plan in counts), counts
    assert "Delete on flights" in nested, nested
    assert "Seq Scan on deliveries" not in nested, nested
    assert "Seq Scan on flights" not in nested, nested
    assert "ix_deliveries_due " not in nested, nested  # not every due delivery in time order
    async with ctx.db.transaction() as conn:
        settled = await conn.scalar(
            sa.text("SELECT count(*) FROM deliveries WHERE status = 'succeeded'")
        )
        flying = await conn.scalar(sa.text("SELECT count(*) FROM flights"))
    assert (settled, flying) == (len(jobs), 0)


@contextlib.asynccontextmanager
async def kept_plans(conn: AsyncConnection) -> AsyncIterator[list[str]]:
    """The plans (`auto_explain`'s messages) of every statement run on `conn` meanwhile,
    those the functions run included."""
    plans: list[str] = []
    raw = await conn.get_raw_connection()
    pg: Any = raw.driver_connection

    def listener(_conn: Any, message: Any) -> None:
        # `auto_explain`'s, not the server's own statement logging, if it has any.
        if "Query Text: " in message.message:
            plans.append(message.message)

    try:
        await pg.execute("LOAD 'auto_explain'")
    except Exception as exc:  # not installed, or not allowed to this role
        pytest.skip(f"auto_explain cannot be loaded here: {exc}")
    pg.add_log_listener(listener)
    for statement in (
        "SET auto_explain.log_format = text",
        "SET auto_explain.log_min_duration = 0",
        "SET auto_explain.log_nested_statements = on",
        "SET client_min_messages = log",
    ):
        await pg.execute(statement)
    try:
        yield plans
    finally:
        await pg.execute("RESET client_min_messages")
        await pg.execute("RESET auto_explain.log_min_duration")
        pg.remove_log_listener(listener)


def _query_text(plan: str) -> str:
    """The statement an `auto_explain` message shows the plan of, its spaces collapsed."""
    text = plan.split("Query Text: ", 1)[1]
    lines = text.splitlines()
    # The plan starts at the first line naming a plan node with its cost.
    end = next(i for i, line in enumerate(lines) if "(cost=" in line)
    return " ".join(" ".join(lines[:end]).split())


def _as_run(bodies: str) -> str:
    """The functions' statements as PL/pgSQL sends them to the executor: `PERFORM` as
    `SELECT`, a `SELECT … INTO variable` without its `INTO`, spaces collapsed."""
    run = re.sub(r"\bPERFORM\b", "SELECT", bodies)
    run = re.sub(r"(?<!INSERT) INTO \w+", "", run)
    return " ".join(run.split())


async def test_the_functions_run_with_sequential_scans_and_jit_off_and_plans_kept(
    ctx: AppContext,
) -> None:
    """A migration that replaces either function (`CREATE OR REPLACE`) drops its settings."""
    async with ctx.db.transaction() as conn:
        settings: dict[str, list[str] | None] = dict(
            (
                await conn.execute(
                    sa.text(
                        "SELECT proname, proconfig FROM pg_proc WHERE proname IN "
                        "('docuhooks_claim', 'docuhooks_jobs', "
                        "'docuhooks_record_successes')"
                    )
                )
            ).all()
        )

    expected = {"enable_seqscan=off", "jit=off", "plan_cache_mode=force_generic_plan"}
    assert set(settings) == {
        "docuhooks_claim",
        "docuhooks_jobs",
        "docuhooks_record_successes",
    }
    assert all(expected <= set(config or []) for config in settings.values()), settings


def _success(job: Any, site_id: str, now: Any) -> recorder_queries.Success:
    return recorder_queries.Success(
        delivery_id=job.delivery_id,
        status_code=200,
        settled_at=now,
        attempt_row={
            "id": f"a-{job.delivery_id}",
            "delivery_id": job.delivery_id,
            "webhook_id": job.webhook.id,
            "site_id": site_id,
            "attempt_number": 1,
            "started_at": now,
            "duration_ms": 1.0,
            "request_method": "POST",
            "request_url": "https://receiver.example/hook",
            "request_headers": {},
            "status_code": 200,
            "response_headers": {},
            "response_body": "",
            "error_class": None,
            "error": None,
        },
    )
