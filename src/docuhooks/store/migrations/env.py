"""Alembic environment: runs on the connection `Database.upgrade` hands over, or on
`sqlalchemy.url` when `alembic` is run by hand (to generate a revision)."""

from __future__ import annotations

import sqlalchemy as sa
from alembic import context

from docuhooks.store.schema import metadata

config = context.config


def _run(connection: sa.Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        # Set by `Database.upgrade` for a migration that needs its own transactions (one
        # that builds an index CONCURRENTLY in an `autocommit_block`).
        transaction_per_migration=config.attributes.get("transaction_per_migration", False),
    )
    with context.begin_transaction():
        context.run_migrations()


connection = config.attributes.get("connection")
if connection is not None:
    _run(connection)
else:
    engine = sa.create_engine(config.get_main_option("sqlalchemy.url") or "sqlite://")
    with engine.begin() as conn:
        _run(conn)
