"""trace context: the W3C trace context an event was written in, and the one of the request
that finished a version's interview, so the calls they cause continue that trace

Both columns are nullable: events and versions from before this revision have none, and
their calls start a new trace, as every call did before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 01:20:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TABLES = ("events", "work_item_versions")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("traceparent", sa.String(55), nullable=True))
            batch.add_column(sa.Column("tracestate", sa.String(512), nullable=True))


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("tracestate")
            batch.drop_column("traceparent")
