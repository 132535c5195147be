"""admin UI: server-side sign-in sessions

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import docuhooks.store.schema

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "ui_sessions",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("csrf_token", sa.String(length=64), nullable=False),
        sa.Column("created_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column("expires_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=False),
        sa.Column(
            "last_seen_at", docuhooks.store.schema.UtcDateTime(timezone=True), nullable=False
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_ui_sessions_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ui_sessions")),
    )
    with op.batch_alter_table("ui_sessions", schema=None) as batch_op:
        batch_op.create_index("ix_ui_sessions_user", ["user_id"], unique=False)
        batch_op.create_index("ix_ui_sessions_expires", ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("ui_sessions", schema=None) as batch_op:
        batch_op.drop_index("ix_ui_sessions_expires")
        batch_op.drop_index("ix_ui_sessions_user")
    op.drop_table("ui_sessions")
