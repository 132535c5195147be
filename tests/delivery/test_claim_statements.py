"""The claim's statements: a webhook's due deliveries found through its own index whatever
the backlog elsewhere, webhooks served in turn even when the cursor is not written, and how
many statements a worker's claim runs."""

from __future__ import annotations

import re
import sqlite3
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects import sqlite
from tests.delivery.delivery_support import make_webhook, queue_event, webhook
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.core.clock import FakeClock
from docuhooks.delivery import claim_statements, claims
from docuhooks.delivery.queries import Job
from docuhooks.delivery.worker import Worker, WorkerOptions

URL = "https://receiver.example/hook"


async def claim(ctx: AppContext, clock: FakeClock, limit: int) -> list[Job]:
    async with ctx.db.transaction() as conn:
        return await claims.claim(
            conn,
            owner="w1",
            now=clock.now(),
            lease=timedelta(minutes=5),
            limit=limit,
            probe_interval=timedelta(seconds=30),
            caps=claims.Caps(destination=100, site=100),
        )


async def _sqlite_plan(ctx: AppContext, statement: object) -> str:
    """SQLite's plan of `statement`, its steps joined by " | "."""
    assert isinstance(statement, sa.ClauseElement)
    sql = str(statement.compile(dialect=sqlite.dialect()))
    async with ctx.db.read() as conn:
        plan = (
            await conn.exec_driver_sql("EXPLAIN QUERY PLAN " + sql, (None,) * sql.count("?"))
        ).all()
    return " | ".join(str(row[-1]) for row in plan)


async def test_a_webhook_claimed_alone_keeps_its_cursor_and_another_still_gets_its_turn(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    """With one webhook holding work no other waits, so its claim does not write the
    round-robin cursor; the next claim where another has work still serves both."""
    clock = FakeClock()
    busy, _ = await make_webhook(ctx, site, URL, name="busy", maxConcurrency=100)
    quiet, _ = await make_webhook(ctx, other_site, URL + "/b", name="quiet")
    for version in range(30):
        await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"wi-{version}")
    clock.advance(timedelta(seconds=1))

    first = await claim(ctx, clock, limit=10)
    assert [job.webhook.id for job in first] == [busy] * 10
    assert (await webhook(ctx, busy)).claimed_at is None, "alone: no cursor written"

    _, (quiet_delivery,) = await queue_event(ctx, other_site.site_id, now=clock.now())
    clock.advance(timedelta(seconds=1))
    second = await claim(ctx, clock, limit=10)
    assert quiet_delivery in [job.delivery_id for job in second], "20 more of busy's wait"
    assert {job.webhook.id for job in second} == {busy, quiet}
    for hook in (busy, quiet):
        assert (await webhook(ctx, hook)).claimed_at is not None, "shared: both stamped"


async def test_claims_of_one_still_take_turns(
    ctx: AppContext, site: SiteUsers, other_site: SiteUsers
) -> None:
    """A claim of one sees one candidate because of its limit, not because the webhook is
    alone: the cursor is written, so the webhooks alternate."""
    clock = FakeClock()
    hooks = {
        (await make_webhook(ctx, site, URL, name="a"))[0],
        (await make_webhook(ctx, other_site, URL + "/b", name="b"))[0],
    }
    for version in range(3):
        for owner in (site, other_site):
            await queue_event(ctx, owner.site_id, now=clock.now(), work_item_id=f"wi-{version}")
    served = []
    for _ in range(4):
        clock.advance(timedelta(seconds=1))
        (job,) = await claim(ctx, clock, limit=1)
        served.append(job.webhook.id)
    assert set(served[:2]) == hooks and served[2:] == served[:2]


@pytest.mark.parametrize("statement", ["candidates", "lease"])
# The plan is SQLite's; PostgreSQL's generic plans are tested in test_claim_plans.py.
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_on_sqlite_a_claim_reads_the_webhooks_own_due_index(
    ctx: AppContext, site: SiteUsers, statement: str
) -> None:
    """`status = 'pending'` is written into the statements, so SQLite uses the partial index
    of a webhook's due deliveries; with the status bound as a parameter it scanned every due
    delivery of every webhook (`ix_deliveries_due`), a cost that grew with a dead
    receiver's backlog."""
    await make_webhook(ctx, site, URL)
    built = (
        claim_statements.CANDIDATES
        if statement == "candidates"
        else claim_statements.lease_by_webhook("sqlite")
    )
    details = await _sqlite_plan(ctx, built.statement)
    assert "ix_deliveries_webhook_due" in details, details
    assert "ix_deliveries_due " not in details, details


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_on_sqlite_the_ordered_delivery_rule_reads_the_pending_ordered_index(
    ctx: AppContext, site: SiteUsers
) -> None:
    """The lease looks for an earlier pending delivery of the same work item through
    `ix_deliveries_ordering`, which holds pending ordered deliveries only: the rule states
    its predicate (the status as a literal, and an equal `ordering_key`)."""
    await make_webhook(ctx, site, URL, orderedDelivery=True)
    details = await _sqlite_plan(ctx, claim_statements.lease_by_webhook("sqlite").statement)
    assert "SEARCH earlier USING INDEX ix_deliveries_ordering" in details, details


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_on_sqlite_a_workers_claim_is_one_transaction_of_six_statements(
    ctx: AppContext, site: SiteUsers
) -> None:
    """The worker's claim of one webhook's due deliveries, counted by what reaches SQLite:
    the candidates (with the calls in flight they count), the lease, the jobs and their
    webhooks, the flights rows in one statement, and when the next delivery falls due, in
    one transaction. (Each statement more is paid once per claim, several times a second
    under load.)"""
    clock = FakeClock()
    await make_webhook(ctx, site, URL, maxConcurrency=100)
    for version in range(5):
        await queue_event(ctx, site.site_id, now=clock.now(), work_item_id=f"wi-{version}")
    clock.advance(timedelta(seconds=1))
    worker = Worker(ctx, WorkerOptions(), clock=clock)
    worker._next_probe_check = clock.now() + timedelta(hours=1)  # probes are not counted here
    async with ctx.db.transaction() as conn:
        driver = conn.sync_connection.connection.driver_connection  # type: ignore[union-attr]
    assert isinstance(driver, sqlite3.Connection)
    seen: list[str] = []
    driver.set_trace_callback(seen.append)
    try:
        jobs = await worker._claim(10)
    finally:
        driver.set_trace_callback(None)
    assert len(jobs) == 5
    statements = [sql.split()[0].upper() for sql in seen]
    assert statements[0] == "BEGIN" and statements[-1] == "COMMIT", seen
    assert statements[1:-1] == ["SELECT", "WITH", "SELECT", "SELECT", "INSERT", "SELECT"], seen


def _delivery_statements() -> list[tuple[str, sa.ClauseElement]]:
    """Every statement the delivery modules build once and prepare (`Prepared`, and the
    SQLite forms of `ByIds`), with the claim's lease by webhook."""
    import importlib
    import pkgutil

    import docuhooks.delivery
    from docuhooks.delivery.queries import ByIds
    from docuhooks.store.prepared import Prepared

    lease = claim_statements.lease_by_webhook("sqlite").statement
    assert isinstance(lease, sa.ClauseElement)
    found: list[tuple[str, sa.ClauseElement]] = [("claim_statements.lease_by_webhook", lease)]
    for info in pkgutil.iter_modules(docuhooks.delivery.__path__):
        module = importlib.import_module(f"docuhooks.delivery.{info.name}")
        for name, value in vars(module).items():
            if isinstance(value, ByIds):
                value = value._sqlite
            if isinstance(value, Prepared) and isinstance(value.statement, sa.ClauseElement):
                found.append((f"{info.name}.{name}", value.statement))
    return found


def test_no_prepared_delivery_statement_binds_a_status_it_compares() -> None:
    """A delivery's status is compared with a value written into the SQL (`is_pending`),
    never a bound parameter (a value it is set to may be one). SQLite re-prepares a
    statement on every run when a bound parameter decides whether a partial index applies,
    and the deliveries' partial indexes are on their status: the claim's lease (whose
    ordered-webhook rule compared an earlier delivery's status with a parameter) cost 54 µs
    to run where 3 µs was SQLite's work, most of a claim's time with one delivery to take."""
    statements = _delivery_statements()
    assert len(statements) > 10, "the scan finds the worker's statements"
    bound = [
        name
        for name, statement in statements
        if re.search(
            r"\.status\s*(=|!=|<>|IN)\s*\(?\?", str(statement.compile(dialect=sqlite.dialect()))
        )
    ]
    assert bound == []


class _Captured:
    """A connection that keeps the statements given to it instead of running them."""

    def __init__(self, dialect: object) -> None:
        self.dialect = dialect
        self.statements: list[object] = []

    async def execute(self, statement: object, *args: object) -> None:
        self.statements.append(statement)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
async def test_holding_and_releasing_versions_in_order_read_the_ordering_index_on_sqlite(
    ctx: AppContext,
) -> None:
    """Completing a version behind one in post-processing holds (and later releases) its
    ordered deliveries: a work item's few, found through `ix_deliveries_ordering`. With no
    statistics (docuhooks never runs ANALYZE) SQLite read them through `ix_deliveries_due`
    instead: every pending delivery of the installation, in the write lock, per completion."""
    from datetime import UTC, datetime

    from docuhooks.delivery import outbox

    now = datetime.now(UTC)
    captured = _Captured(sqlite.dialect())
    await outbox.hold_in_order(captured, "wi-1", 3, until=now)  # type: ignore[arg-type]
    await outbox.release_in_order(captured, "wi-1", after=2, before=5, now=now)  # type: ignore[arg-type]
    for statement in captured.statements:
        plan = await _sqlite_plan(ctx, statement)
        assert "USING INDEX ix_deliveries_ordering" in plan, plan
