"""The migrations build exactly the schema that `store/schema.py` describes, on both stores,
so a table or column added to one and not the other is caught here, not in production."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from docuhooks.context import AppContext
from docuhooks.store.database import alembic_config
from docuhooks.store.schema import metadata


def _differences(connection: sa.Connection) -> list[Any]:
    context = MigrationContext.configure(connection, opts={"compare_type": False})
    return list(compare_metadata(context, metadata))


async def test_migrations_build_the_schema_the_code_describes(ctx: AppContext) -> None:
    async with ctx.db.engine.connect() as conn:
        differences = await conn.run_sync(_differences)
    assert differences == []


async def test_the_database_is_at_the_single_head(ctx: AppContext) -> None:
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    assert len(heads) == 1, f"migrations have several heads: {heads}"
    assert await ctx.db.current_revision() == heads[0]


async def test_upgrading_twice_changes_nothing(ctx: AppContext) -> None:
    before = await ctx.db.current_revision()
    await ctx.db.upgrade()
    assert await ctx.db.current_revision() == before


async def test_processes_starting_together_on_postgres_migrate_once(
    postgres_url: str,
) -> None:
    """Several servers started at once against a new PostgreSQL database all come up."""
    import asyncio
    import uuid

    import asyncpg

    from docuhooks.store.database import Database

    name = f"docuhooks_race_{uuid.uuid4().hex[:10]}"
    base = postgres_url.rsplit("/", 1)[0]
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    databases = [Database.from_url(f"{base}/{name}") for _ in range(4)]
    try:
        await asyncio.gather(*(db.upgrade() for db in databases))
        heads = ScriptDirectory.from_config(alembic_config()).get_heads()
        assert [await db.current_revision() for db in databases] == [heads[0]] * 4
    finally:
        for db in databases:
            await db.dispose()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
async def test_deliveries_pages_keep_room_for_the_claims_update_on_postgres(
    ctx: AppContext,
) -> None:
    """A claim changes only unindexed lease columns: with room on the page it is a HOT
    update, which adds no index entry where the next claim starts reading."""
    async with ctx.db.read() as conn:
        options = (
            await conn.execute(
                sa.text("SELECT reloptions FROM pg_class WHERE relname = 'deliveries'")
            )
        ).scalar_one()
    assert options == [
        "fillfactor=70",
        "autovacuum_vacuum_scale_factor=0.02",
        "autovacuum_analyze_scale_factor=0.02",
    ]
    async with ctx.db.read() as conn:
        attempts = (
            await conn.execute(
                sa.text("SELECT reloptions FROM pg_class WHERE relname = 'attempts'")
            )
        ).scalar_one()
    # Both tables grow with traffic: vacuumed and analyzed in small rounds (migration 0016).
    assert "autovacuum_vacuum_scale_factor=0.02" in attempts
    # Which holds only while no index covers the lease.
    from docuhooks.store.schema import deliveries

    indexed = {column.name for index in deliveries.indexes for column in index.columns}
    assert not indexed & {"lease_owner", "lease_expires_at"}
