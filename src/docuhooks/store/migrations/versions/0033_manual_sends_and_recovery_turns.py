"""manual sends of every kind counted together; recovery jobs remember their last turn

A site's redeliveries are limited as its test sends are (`delivery.manual_sends`): the
table that counted test sends becomes `manual_sends`, each row of a `kind` (`test`,
`redelivery`), and the test sends of the last minute are carried over so no site gets a
fresh minute from the upgrade.

Recovery runners take the sites in turn instead of the oldest job of any site first
(`delivery.recovery`): a job records when a runner last took it (`claimed_at`), and a
site's most recent such time, read through `ix_recovery_jobs_site_claimed`, says how long
ago it was served. A webhook has one recovery queued or running at a time, found through
`ix_recovery_jobs_webhook_status` among all it ever had.

Revision ID: 0033
Revises: 0032
Create Date: 2026-12-09 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import docuhooks.store.schema

revision: str = "0033"
down_revision: str | None = "0032"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, docuhooks.store.schema.UtcDateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "manual_sends",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        _ts("sent_at"),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_manual_sends_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_manual_sends")),
    )
    op.create_index(
        "ix_manual_sends_site_kind_sent", "manual_sends", ["site_id", "kind", "sent_at"]
    )
    op.execute(
        "INSERT INTO manual_sends (site_id, kind, sent_at) "
        "SELECT site_id, 'test', sent_at FROM test_sends"
    )
    op.drop_index("ix_test_sends_site_sent", table_name="test_sends")
    op.drop_table("test_sends")

    with op.batch_alter_table("recovery_jobs") as batch:
        batch.add_column(_ts("claimed_at", nullable=True))
    op.create_index("ix_recovery_jobs_site_claimed", "recovery_jobs", ["site_id", "claimed_at"])
    op.create_index("ix_recovery_jobs_webhook_status", "recovery_jobs", ["webhook_id", "status"])


def downgrade() -> None:
    op.drop_index("ix_recovery_jobs_webhook_status", table_name="recovery_jobs")
    op.drop_index("ix_recovery_jobs_site_claimed", table_name="recovery_jobs")
    with op.batch_alter_table("recovery_jobs") as batch:
        batch.drop_column("claimed_at")

    op.create_table(
        "test_sends",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("site_id", sa.String(length=36), nullable=False),
        _ts("sent_at"),
        sa.ForeignKeyConstraint(
            ["site_id"], ["sites.id"], name=op.f("fk_test_sends_site_id_sites"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_sends")),
    )
    op.create_index("ix_test_sends_site_sent", "test_sends", ["site_id", "sent_at"], unique=False)
    op.execute(
        "INSERT INTO test_sends (site_id, sent_at) "
        "SELECT site_id, sent_at FROM manual_sends WHERE kind = 'test'"
    )
    op.drop_index("ix_manual_sends_site_kind_sent", table_name="manual_sends")
    op.drop_table("manual_sends")
