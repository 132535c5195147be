"""the installation remembers a check of its secret key

Webhook secrets and access tokens are encrypted with the installation's secret key
(`DOCUHOOKS_SECRET_KEY`, or the one generated into the data directory). A process given
another key (an API server started in another directory on PostgreSQL, which generated a
key of its own; a worker with a mistyped key) used to start without complaint: the one
wrote secrets no other process could read, the other failed every call it signed. The
`installation` table holds one row, a check of the key (`identity.installation_key`): the
first process to start writes it, and every later one stops at start, naming the problem,
when its key does not match.

Revision ID: 0028
Revises: 0027
Create Date: 2026-12-07 13:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import docuhooks.store.schema

revision: str = "0028"
down_revision: str | None = "0027"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "installation",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("key_check", sa.String(length=64), nullable=False),
        sa.Column("created_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_installation_one_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_installation")),
    )


def downgrade() -> None:
    op.drop_table("installation")
