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
