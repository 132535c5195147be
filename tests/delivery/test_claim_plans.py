"""The claim and the health reads stay on the partial index of due deliveries in the plan a
prepared statement settles on.

asyncpg prepares every statement, and after five runs PostgreSQL may keep a *generic* plan,
made without the parameters' values. A partial index can serve such a plan only if the query
states the index's predicate (`status = 'pending'`) literally; with the status as a
parameter, the claim read a webhook's deliveries through `ix_deliveries_webhook_created`,
settled ones included (about 300 ms a claim with a million settled deliveries, in
`bench/claim_plans.py`). These tests make PostgreSQL show the generic plans.
"""

from __future__ import annotations

import importlib.util
import re
from datetime import datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from tests.delivery.delivery_support import event_in_bulk, make_webhook, pending_in_bulk
from tests.support import SiteUsers

from docuhooks.context import AppContext
from docuhooks.delivery import claim_statements, health
from docuhooks.store.database import MIGRATIONS_DIR

SETTLED = 20_000
#: The neighbour's due deliveries.
BACKLOG = 5_000


def literal(value: Any) -> str:
    """A value for `EXECUTE` (which takes no parameters): PostgreSQL casts the quoted text
    to the prepared statement's parameter type."""
    if isinstance(value, datetime):
        text = value.isoformat()
    elif isinstance(value, list):
        text = "{" + ",".join(f'"{item}"' for item in value) + "}"  # an array's text form
    else:
        text = str(value)
    return "'" + text.replace("'", "''") + "'"


async def generic_plan(ctx: AppContext, statement: Any, values: dict[str, Any]) -> str:
    async with ctx.db.engine.connect() as conn:
        compiled = statement.compile(dialect=conn.dialect)
        params = compiled.construct_params(values)
        order = compiled.positiontup
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        await pg.execute("SET plan_cache_mode = force_generic_plan")
        await pg.execute(f"PREPARE shown AS {compiled.string}")
        arguments = ", ".join(literal(params[name]) for name in order)
        rows = await pg.fetch(
            f"EXPLAIN EXECUTE shown({arguments})" if order else "EXPLAIN EXECUTE shown"
        )
        await pg.execute("DEALLOCATE shown")
        await pg.execute("RESET plan_cache_mode")
        return "\n".join(row[0] for row in rows)


async def generic_plan_of_sql(ctx: AppContext, sql: str, values: list[Any]) -> str:
    """`generic_plan` for SQL with `$n` parameters."""
    async with ctx.db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        pg = raw.driver_connection
        assert pg is not None
        await pg.execute("SET plan_cache_mode = force_generic_plan")
        await pg.execute(f"PREPARE shown AS {sql}")
        arguments = ", ".join(literal(value) for value in values)
        rows = await pg.fetch(f"EXPLAIN EXECUTE shown({arguments})")
        await pg.execute("DEALLOCATE shown")
        await pg.execute("RESET plan_cache_mode")
        return "\n".join(row[0] for row in rows)


def _migration(name: str) -> Any:
    path = MIGRATIONS_DIR / "versions" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"migration_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lease_in_docuhooks_claim() -> str:
    """The query by which `docuhooks_claim` (migrations 0019 to 0026) chooses a webhook's deliveries
    to lease, its PL/pgSQL variables as parameters: PL/pgSQL too keeps a generic plan of a
    statement it has run five times."""
    module = _migration("0026_destination_state_per_site")
    chosen = re.search(r"WITH chosen AS \((.*?)\), leased AS", module.claim_function(), re.S)
    assert chosen is not None
    sql = chosen.group(1).replace("FOR UPDATE OF d SKIP LOCKED", "")
    for variable, parameter in [
        ("hook.id", "$1::varchar"),
        ("claim_at", "$2::timestamptz"),
        ("LIMIT share", "LIMIT $3::integer"),
    ]:
        assert variable in sql, variable
        sql = sql.replace(variable, parameter)
    return sql


@pytest.fixture
async def history(ctx: AppContext, site: SiteUsers) -> str:
    """A webhook with a long settled history and one delivery due, beside a neighbour with a
    backlog of older due deliveries (which a read of the installation's due deliveries,
    filtered by webhook, would have to step over)."""
    hook, _ = await make_webhook(ctx, site, "https://receiver.example/hook")
    neighbour, _ = await make_webhook(ctx, site, "https://neighbour.example/hook")
    async with ctx.db.transaction() as conn:
        await event_in_bulk(conn, site.site_id)
        await conn.execute(
            sa.text(
                "INSERT INTO deliveries (id, event_id, webhook_id, site_id, status, attempts, "
                "next_attempt_at, created_at) "
                "SELECT 'd' || i, 'e', :hook, :site, "
                "  CASE WHEN i = :n THEN 'pending' ELSE 'succeeded' END, 1, "
                "  CASE WHEN i = :n THEN now() END, now() - interval '1 day' + i * interval '1 s' "
                "FROM generate_series(1, :n) AS i"
            ),
            {"hook": hook, "site": site.site_id, "n": SETTLED},
        )
        await pending_in_bulk(
            conn,
            site_id=site.site_id,
            hook=neighbour,
            n=BACKLOG,
            prefix="n",
            since=timedelta(days=2),
            step=timedelta(seconds=1),
        )
    async with ctx.db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("ANALYZE deliveries")
    return hook


# Generic plans of prepared statements are PostgreSQL's.
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_the_claims_generic_plans_use_the_partial_index(
    ctx: AppContext, history: str
) -> None:
    now = ctx.now()
    candidates = await generic_plan(
        ctx,
        claim_statements.CANDIDATES_ON_POSTGRESQL.statement,
        {
            "now": now,
            "webhooks": 100,
            "site_cap": 32,
            "destination_cap": 20,
            "ceiling": 20,
            "owner": "w",
            "ended": ["00000000-0000-7000-8000-000000000000"],
        },
    )
    lease = await generic_plan_of_sql(ctx, _lease_in_docuhooks_claim(), [history, now, 10])

    for plan in (candidates, lease):
        assert "ix_deliveries_webhook_due" in plan, plan
        assert "ix_deliveries_webhook_created" not in plan, plan


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_the_health_reads_generic_plan_uses_the_partial_index(
    ctx: AppContext, history: str
) -> None:
    plan = await generic_plan(ctx, health._due_arm(history, ctx.now(), health.DUE_CAP), {})

    assert "ix_deliveries_webhook_due" in plan, plan
    assert "ix_deliveries_webhook_created" not in plan, plan


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_the_ordered_delivery_rule_reads_the_pending_ordered_index(
    ctx: AppContext, history: str
) -> None:
    """`docuhooks_claim`'s lease looks for an earlier pending delivery of the same work
    item through `ix_deliveries_ordering` (pending ordered deliveries only) in its generic
    plan: the rule states the index's predicate."""
    async with ctx.db.transaction() as conn:
        await conn.execute(
            sa.text("UPDATE webhooks SET ordered_delivery = true WHERE id = :hook"),
            {"hook": history},
        )
        await conn.execute(
            sa.text(
                "UPDATE deliveries SET ordering_key = 'wi-' || (length(id) % 7), "
                "ordering_seq = length(id) WHERE webhook_id = :hook"
            ),
            {"hook": history},
        )
    async with ctx.db.engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        await conn.exec_driver_sql("ANALYZE deliveries")

    plan = await generic_plan_of_sql(ctx, _lease_in_docuhooks_claim(), [history, ctx.now(), 10])

    assert "ix_deliveries_ordering" in plan, plan
