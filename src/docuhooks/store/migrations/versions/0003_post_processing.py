"""post-processing: when a driver acts on a version next, and the original documents

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30 10:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import docuhooks.store.schema

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("work_item_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "post_processing_due_at",
                docuhooks.store.schema.UtcDateTime(timezone=True),
                nullable=True,
            )
        )
        batch_op.create_index(
            "ix_work_item_versions_due", ["status", "post_processing_due_at"], unique=False
        )
    op.create_table(
        "post_processing_originals",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("version_id", sa.String(length=36), nullable=False),
        sa.Column("site_id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=255), nullable=False),
        sa.Column("file_name", sa.String(length=255), nullable=False),
        sa.Column("content_type", sa.String(length=255), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("content", sa.LargeBinary(), nullable=False),
        sa.Column("assembled_order", sa.Integer(), nullable=False),
        sa.Column("created_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["site_id"],
            ["sites.id"],
            name=op.f("fk_post_processing_originals_site_id_sites"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["work_item_versions.id"],
            name=op.f("fk_post_processing_originals_version_id_work_item_versions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("version_id", "id", name=op.f("pk_post_processing_originals")),
    )


def downgrade() -> None:
    op.drop_table("post_processing_originals")
    with op.batch_alter_table("work_item_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_work_item_versions_due")
        batch_op.drop_column("post_processing_due_at")
