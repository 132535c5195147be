"""delivery worker: probe times of suspended webhooks, and the worker heartbeat table

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-29 21:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import docuhooks.store.schema

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "next_probe_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=True
            )
        )
        batch_op.create_index("ix_webhooks_next_probe", ["next_probe_at"], unique=False)
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("started_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "heartbeat_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_workers")),
    )


def downgrade() -> None:
    op.drop_table("workers")
    with op.batch_alter_table("webhooks", schema=None) as batch_op:
        batch_op.drop_index("ix_webhooks_next_probe")
        batch_op.drop_column("next_probe_at")
