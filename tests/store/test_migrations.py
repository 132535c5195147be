"""The migrations build exactly the schema that `store/schema.py` describes, on both stores,
so a table or column added to one and not the other is caught here, not in production."""

from __future__ import annotations

from typing import Any

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
