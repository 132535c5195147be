"""a site's test sends, counted in the database by every process

The test-send limit (`platform.sample_send_limit`) counts a site's test sends of the last
minute in a table every process reads, as the sign-in throttle counts wrong passwords, so N
API processes do not give a site N times the sends.

Revision ID: 0030
Revises: 0029
Create Date: 2026-12-08 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import docuhooks.store.schema

revision: str = "0030"
down_revision: str | None = "0029"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "test_sends",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(length=36), nullable=False),
        sa.Column("sent_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_test_sends_site_id_sites"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_sends")),
    )
    op.create_index("ix_test_sends_site_sent", "test_sends", ["site_id", "sent_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_test_sends_site_sent", table_name="test_sends")
    op.drop_table("test_sends")
