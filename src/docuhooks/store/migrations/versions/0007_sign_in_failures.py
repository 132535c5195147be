"""sign-in throttling shared by every process: wrong passwords kept in the database

Each process used to count wrong passwords on its own, so running N API processes behind a
load balancer let a guesser try N times as often. The failures now live in a table every
process reads, kept for the throttle's window.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import docuhooks.store.schema

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sign_in_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=400), nullable=False),
        sa.Column("failed_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sign_in_failures")),
    )
    with op.batch_alter_table("sign_in_failures", schema=None) as batch_op:
        batch_op.create_index("ix_sign_in_failures_key", ["key", "failed_at"], unique=False)
        batch_op.create_index("ix_sign_in_failures_failed_at", ["failed_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("sign_in_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_sign_in_failures_failed_at")
        batch_op.drop_index("ix_sign_in_failures_key")
    op.drop_table("sign_in_failures")
